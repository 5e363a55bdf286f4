package controlfs

import (
	"io"
	"strings"
	"syscall"
	"testing"

	"github.com/scstd/scstd/target"
	"github.com/scstd/scstd/vdisk"
	"github.com/sirupsen/logrus"
)

func testLog() *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return logrus.NewEntry(l)
}

func TestCommandText(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"\n", ""},
		{"add_group x\n", "add_group x"},
		{"add_group x\n\n", "add_group x\n"},
		{"add 0 \n\x00", "add 0 "},
		{"open a /b 512 NULLIO\x00", "open a /b 512 NULLIO"},
		{"x\x00y\n", "x"},
		{"\x00add_group x\n", ""},
		{"a\r\n", "a\r"},
	} {
		if got := commandText([]byte(tc.in)); got != tc.want {
			t.Errorf("commandText(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestStrtoul(t *testing.T) {
	for _, tc := range []struct {
		in       string
		v        uint64
		rest     string
		ok, over bool
	}{
		{"123", 123, "", true, false},
		{"0x7b", 123, "", true, false},
		{"0X7B z", 123, " z", true, false},
		{"0173", 123, "", true, false},
		{"0", 0, "", true, false},
		{"0x", 0, "x", true, false},
		{"0xg", 0, "xg", true, false},
		{"08", 0, "8", true, false},
		{"", 0, "", false, false},
		{"abc", 0, "abc", false, false},
		{" 5", 0, " 5", false, false},
		{"-5", 0, "-5", false, false},
		{"18446744073709551615", 1<<64 - 1, "", true, false},
		{"18446744073709551616", 0, "", true, true},
		{"12READ_ONLY", 12, "READ_ONLY", true, false},
	} {
		v, rest, ok, over := strtoul(tc.in)
		if (!tc.over && v != tc.v) || rest != tc.rest || ok != tc.ok || over != tc.over {
			t.Errorf("strtoul(%q) = %d,%q,%v,%v want %d,%q,%v,%v", tc.in, v, rest, ok, over, tc.v, tc.rest, tc.ok, tc.over)
		}
	}
}

func TestParseScsiTgt(t *testing.T) {
	for _, tc := range []struct {
		in    string
		want  scsiTgtCmd
		errno syscall.Errno
	}{
		{"add_group g1", scsiTgtCmd{Op: opAddGroup, Group: "g1"}, 0},
		{"ADD_GROUP g1", scsiTgtCmd{Op: opAddGroup, Group: "g1"}, 0},
		{"Add_Group   g1  ", scsiTgtCmd{Op: opAddGroup, Group: "g1"}, 0},
		{"add_group g1 FLAT", scsiTgtCmd{Op: opAddGroup, Group: "g1", Addr: target.AddrFlat}, 0},
		{"add_group g1 flat", scsiTgtCmd{Op: opAddGroup, Group: "g1", Addr: target.AddrFlat}, 0},
		{"add_group g1\tlun", scsiTgtCmd{Op: opAddGroup, Group: "g1", Addr: target.AddrLUN}, 0},
		{"add_group g1 PERIPHERAL", scsiTgtCmd{}, syscall.EINVAL},
		{"add_group g1 FLAT x", scsiTgtCmd{}, syscall.EINVAL},
		{"add_group Default", scsiTgtCmd{}, syscall.EINVAL},
		{"add_group default", scsiTgtCmd{Op: opAddGroup, Group: "default"}, 0},
		{"add_group ", scsiTgtCmd{}, syscall.EINVAL},
		{"add_group", scsiTgtCmd{}, syscall.EINVAL},
		{"add_group\tg1", scsiTgtCmd{}, syscall.EINVAL},
		{"add_group a/b", scsiTgtCmd{}, syscall.EINVAL},
		{"add_group ..", scsiTgtCmd{}, syscall.EINVAL},
		{"add_group " + strings.Repeat("g", 256), scsiTgtCmd{}, syscall.EINVAL},
		{"del_group g1", scsiTgtCmd{Op: opDelGroup, Group: "g1"}, 0},
		{"del_group g1 ", scsiTgtCmd{Op: opDelGroup, Group: "g1"}, 0},
		{"del_group g1 x", scsiTgtCmd{}, syscall.EINVAL},
		{"del_group Default", scsiTgtCmd{}, syscall.EINVAL},
		{"del_group ", scsiTgtCmd{}, syscall.EINVAL},
		{"rename_group a b", scsiTgtCmd{Op: opRenameGroup, Group: "a", NewName: "b"}, 0},
		{"rename_group a b c", scsiTgtCmd{}, syscall.EINVAL},
		{"rename_group a", scsiTgtCmd{}, syscall.EINVAL},
		{"rename_group Default b", scsiTgtCmd{}, syscall.EINVAL},
		{"rename_group a Default", scsiTgtCmd{}, syscall.EINVAL},
		{"rename_group a x/y", scsiTgtCmd{}, syscall.EINVAL},
		{"assign 0:0:0:0 vdisk", scsiTgtCmd{}, syscall.EINVAL},
		{"assign disk1 vdisk", scsiTgtCmd{}, syscall.EINVAL},
		{"bogus", scsiTgtCmd{}, syscall.EINVAL},
		{"", scsiTgtCmd{}, syscall.EINVAL},
		{" add_group g1", scsiTgtCmd{}, syscall.EINVAL},
	} {
		got, errno := parseScsiTgt(tc.in)
		if errno != tc.errno || (errno == 0 && got != tc.want) {
			t.Errorf("parseScsiTgt(%q) = %+v, %v; want %+v, %v", tc.in, got, errno, tc.want, tc.errno)
		}
	}
}

func TestParseDevices(t *testing.T) {
	for _, tc := range []struct {
		in    string
		want  devicesCmd
		errno syscall.Errno
	}{
		{"add d0 0", devicesCmd{Op: opLUNAdd, Dev: "d0"}, 0},
		{"add d0 0 ", devicesCmd{Op: opLUNAdd, Dev: "d0"}, 0},
		{"ADD d0 7 READ_ONLY", devicesCmd{Op: opLUNAdd, Dev: "d0", LUN: 7, ReadOnly: true}, 0},
		{"add d0 7 read_only", devicesCmd{Op: opLUNAdd, Dev: "d0", LUN: 7, ReadOnly: true}, 0},
		{"add d0 7 READ_ONLYjunk", devicesCmd{Op: opLUNAdd, Dev: "d0", LUN: 7, ReadOnly: true}, 0},
		{"add d0 7 RO", devicesCmd{}, syscall.EINVAL},
		{"add d0 0x10", devicesCmd{Op: opLUNAdd, Dev: "d0", LUN: 16}, 0},
		{"add d0 010", devicesCmd{Op: opLUNAdd, Dev: "d0", LUN: 8}, 0},
		{"add d0", devicesCmd{Op: opLUNAdd, Dev: "d0"}, 0},
		{"add d0 READ_ONLY", devicesCmd{Op: opLUNAdd, Dev: "d0", ReadOnly: true}, 0},
		{"add d0 16383", devicesCmd{Op: opLUNAdd, Dev: "d0", LUN: 16383}, 0},
		{"add d0 16384", devicesCmd{}, syscall.EINVAL},
		{"add d0 99999999999999999999999", devicesCmd{}, syscall.EINVAL},
		{"add d0 -1", devicesCmd{}, syscall.EINVAL},
		{"add d0 1x", devicesCmd{}, syscall.EINVAL},
		{"add ", devicesCmd{}, syscall.EINVAL},
		{"add", devicesCmd{}, syscall.EINVAL},
		{"replace d1 3", devicesCmd{Op: opLUNReplace, Dev: "d1", LUN: 3}, 0},
		{"replace d1 3 READ_ONLY", devicesCmd{Op: opLUNReplace, Dev: "d1", LUN: 3, ReadOnly: true}, 0},
		{"del d1", devicesCmd{Op: opLUNDel, Dev: "d1"}, 0},
		{"del d1 junk more", devicesCmd{Op: opLUNDel, Dev: "d1"}, 0},
		{"del ", devicesCmd{}, syscall.EINVAL},
		{"clear", devicesCmd{Op: opLUNClear}, 0},
		{"CLEAR", devicesCmd{Op: opLUNClear}, 0},
		{"clearXYZ", devicesCmd{Op: opLUNClear}, 0},
		{"clea", devicesCmd{}, syscall.EINVAL},
		{"remove d1", devicesCmd{}, syscall.EINVAL},
		{"", devicesCmd{}, syscall.EINVAL},
	} {
		got, errno := parseDevices(tc.in)
		if errno != tc.errno || (errno == 0 && got != tc.want) {
			t.Errorf("parseDevices(%q) = %+v, %v; want %+v, %v", tc.in, got, errno, tc.want, tc.errno)
		}
	}
}

func TestParseNames(t *testing.T) {
	for _, tc := range []struct {
		in    string
		want  namesCmd
		errno syscall.Errno
	}{
		{"add iqn.1993-08.org.debian:01:abc", namesCmd{Op: opNameAdd, Name: "iqn.1993-08.org.debian:01:abc"}, 0},
		{"ADD *", namesCmd{Op: opNameAdd, Name: "*"}, 0},
		{"add n1 ", namesCmd{Op: opNameAdd, Name: "n1"}, 0},
		{"add n1 n2", namesCmd{}, syscall.EINVAL},
		{"add ", namesCmd{}, syscall.EINVAL},
		{"del n1", namesCmd{Op: opNameDel, Name: "n1"}, 0},
		{"del n1 x", namesCmd{}, syscall.EINVAL},
		{"move n1 g2", namesCmd{Op: opNameMove, Name: "n1", NewGroup: "g2"}, 0},
		{"Move n1 g2 ", namesCmd{Op: opNameMove, Name: "n1", NewGroup: "g2"}, 0},
		{"move n1", namesCmd{}, syscall.EINVAL},
		{"move n1 g2 g3", namesCmd{}, syscall.EINVAL},
		{"clear", namesCmd{Op: opNameClear}, 0},
		{"clear all", namesCmd{Op: opNameClear}, 0},
		{"list", namesCmd{}, syscall.EINVAL},
		{"", namesCmd{}, syscall.EINVAL},
	} {
		got, errno := parseNames(tc.in)
		if errno != tc.errno || (errno == 0 && got != tc.want) {
			t.Errorf("parseNames(%q) = %+v, %v; want %+v, %v", tc.in, got, errno, tc.want, tc.errno)
		}
	}
}

func TestParseThreads(t *testing.T) {
	for _, tc := range []struct {
		in    string
		want  int32
		errno syscall.Errno
	}{
		{"123\n", 123, 0}, {"0x7b", 123, 0}, {"0173", 123, 0}, {"4junk", 4, 0},
		{"0", 0, syscall.EINVAL}, {"-1", 0, syscall.EINVAL}, {"abc", 0, syscall.EINVAL},
		{" 5", 0, syscall.EINVAL}, {"", 0, syscall.EINVAL}, {"2147483648", 0, syscall.EINVAL},
		{"2147483647", 2147483647, 0},
	} {
		got, errno := parseThreads(tc.in)
		if errno != tc.errno || got != tc.want {
			t.Errorf("parseThreads(%q) = %d, %v; want %d, %v", tc.in, got, errno, tc.want, tc.errno)
		}
	}
}

func TestParseVdisk(t *testing.T) {
	long := strings.Repeat("n", 64)
	for _, tc := range []struct {
		in    string
		want  vdiskCmd
		errno syscall.Errno
	}{
		{"open d1 /tmp/f", vdiskCmd{Op: opVdiskOpen, Name: "d1", Path: "/tmp/f"}, 0},
		{"open d1 /tmp/f 4096", vdiskCmd{Op: opVdiskOpen, Name: "d1", Path: "/tmp/f", BlockSize: 4096}, 0},
		{"open d1 /tmp/f 0x1000 NV_CACHE", vdiskCmd{Op: opVdiskOpen, Name: "d1", Path: "/tmp/f", BlockSize: 4096, Flags: vdisk.Flags{NVCache: true}}, 0},
		{"open d1 /tmp/f 0", vdiskCmd{Op: opVdiskOpen, Name: "d1", Path: "/tmp/f"}, 0},
		{"open null_NULLIO /dev/zero 512 NULLIO", vdiskCmd{Op: opVdiskOpen, Name: "null_NULLIO", Path: "/dev/zero", BlockSize: 512, Flags: vdisk.Flags{NullIO: true}}, 0},
		// scstadmin: empty block size leaves a double space, options follow.
		{"open d1 /tmp/f  WRITE_THROUGH READ_ONLY O_DIRECT NULLIO NV_CACHE BLOCKIO REMOVABLE", vdiskCmd{Op: opVdiskOpen, Name: "d1", Path: "/tmp/f",
			Flags: vdisk.Flags{WriteThrough: true, ReadOnly: true, ODirect: true, NullIO: true, NVCache: true, BlockIO: true, Removable: true}}, 0},
		{"open d1 /tmp/f 512 READ_ONLYNULLIO", vdiskCmd{Op: opVdiskOpen, Name: "d1", Path: "/tmp/f", BlockSize: 512, Flags: vdisk.Flags{ReadOnly: true, NullIO: true}}, 0},
		{"open d1 rel NULLIO", vdiskCmd{Op: opVdiskOpen, Name: "d1", Path: "rel", Flags: vdisk.Flags{NullIO: true}}, 0},
		{"open d1 rel", vdiskCmd{}, syscall.EINVAL},
		{"open d1 /tmp/f read_only", vdiskCmd{}, syscall.EINVAL},
		{"open d1 /tmp/f 512 BOGUS", vdiskCmd{}, syscall.EINVAL},
		{"open d1 /tmp/f 512x", vdiskCmd{}, syscall.EINVAL},
		{"open d1 /tmp/f 256", vdiskCmd{}, syscall.EINVAL},
		{"open d1 /tmp/f 99999999999", vdiskCmd{}, syscall.EINVAL},
		{"open d1", vdiskCmd{}, syscall.EINVAL},
		{"open ", vdiskCmd{}, syscall.EINVAL},
		{"open", vdiskCmd{}, syscall.EINVAL},
		{"OPEN d1 /tmp/f", vdiskCmd{}, syscall.EINVAL},
		{"open " + long + " /f", vdiskCmd{Op: opVdiskOpen, Name: long, Path: "/f"}, 0},
		{"open " + long + "x /f", vdiskCmd{}, syscall.EINVAL},
		{"open a.b /f", vdiskCmd{}, syscall.EINVAL},
		{"open a/b /f", vdiskCmd{}, syscall.EINVAL},
		{"close d1 ", vdiskCmd{Op: opVdiskClose, Name: "d1"}, 0},
		{"close d1 /whatever", vdiskCmd{Op: opVdiskClose, Name: "d1"}, 0},
		{"close ", vdiskCmd{}, syscall.EINVAL},
		{"resync_size d1", vdiskCmd{Op: opVdiskResync, Name: "d1"}, 0},
		{"resync_size", vdiskCmd{}, syscall.EINVAL},
		{"set_t10_dev_id d1 N000", vdiskCmd{Op: opVdiskSetT10, Name: "d1", T10ID: "N000"}, 0},
		{"set_t10_dev_id d1   a b  ", vdiskCmd{Op: opVdiskSetT10, Name: "d1", T10ID: "a b  "}, 0},
		{"set_t10_dev_id d1 " + strings.Repeat("x", 30), vdiskCmd{Op: opVdiskSetT10, Name: "d1", T10ID: strings.Repeat("x", 25)}, 0},
		{"set_t10_dev_id d1", vdiskCmd{}, syscall.EINVAL},
		{"set_t10_dev_id d1   ", vdiskCmd{}, syscall.EINVAL},
		{"change d1 /f", vdiskCmd{}, syscall.EINVAL},
		{"", vdiskCmd{}, syscall.EINVAL},
	} {
		got, errno := parseVdisk(tc.in)
		if errno != tc.errno || (errno == 0 && got != tc.want) {
			t.Errorf("parseVdisk(%q) = %+v, %v; want %+v, %v", tc.in, got, errno, tc.want, tc.errno)
		}
	}
}

func TestParseVcdrom(t *testing.T) {
	for _, tc := range []struct {
		in    string
		want  vdiskCmd
		errno syscall.Errno
	}{
		{"open cd1 /iso/a.iso", vdiskCmd{Op: opCDROMOpen, Name: "cd1", Path: "/iso/a.iso"}, 0},
		{"open cd1 /iso/a.iso ignored tokens", vdiskCmd{Op: opCDROMOpen, Name: "cd1", Path: "/iso/a.iso"}, 0},
		{"open cd1", vdiskCmd{Op: opCDROMOpen, Name: "cd1"}, 0},
		{"open cd1 rel.iso", vdiskCmd{}, syscall.EINVAL},
		{"change cd1  /iso/b.iso  ", vdiskCmd{Op: opCDROMChange, Name: "cd1", Path: "/iso/b.iso"}, 0},
		{"change cd1", vdiskCmd{Op: opCDROMChange, Name: "cd1"}, 0},
		{"change cd1 b.iso", vdiskCmd{}, syscall.EINVAL},
		{"close cd1", vdiskCmd{Op: opCDROMClose, Name: "cd1"}, 0},
		{"close", vdiskCmd{}, syscall.EINVAL},
		{"eject cd1", vdiskCmd{}, syscall.EINVAL},
		{"Open cd1", vdiskCmd{}, syscall.EINVAL},
	} {
		got, errno := parseVcdrom(tc.in)
		if errno != tc.errno || (errno == 0 && got != tc.want) {
			t.Errorf("parseVcdrom(%q) = %+v, %v; want %+v, %v", tc.in, got, errno, tc.want, tc.errno)
		}
	}
}

func TestParseModuleParam(t *testing.T) {
	for _, tc := range []struct {
		in    string
		want  int32
		errno syscall.Errno
	}{
		{"1\n", 1, 0}, {" 0x10", 16, 0}, {"+7", 7, 0}, {"010", 8, 0}, {"5 junk", 5, 0},
		{"4294967295", -1, 0}, {"2147483648", -2147483648, 0},
		{"4294967296", 0, syscall.ERANGE}, {"-1", 0, syscall.ERANGE},
		{"abc", 0, syscall.EINVAL}, {"", 0, syscall.EINVAL},
		{"99999999999999999999", 0, syscall.EINVAL},
	} {
		got, errno := parseModuleParam([]byte(tc.in))
		if errno != tc.errno || got != tc.want {
			t.Errorf("parseModuleParam(%q) = %d, %v; want %d, %v", tc.in, got, errno, tc.want, tc.errno)
		}
	}
}

// TestProcWriteRules checks the generic write rules of §0 on every file kind.
func TestProcWriteRules(t *testing.T) {
	st, _, _ := newFakeState()
	core := st.procWrite(st.execScsiTgt)
	vd := st.handlerWrite(st.execVdisk)
	for _, tc := range []struct {
		name  string
		w     writeFunc
		in    string
		n     uint32
		errno syscall.Errno
	}{
		{"empty core", core, "", 0, 0},
		{"empty vdisk", vd, "", 0, 0},
		{"nul-first core", core, "\x00add_group x\n", 0, syscall.EINVAL},
		{"nul-first vdisk", vd, "\x00open x /y", 10, 0},
		{"newline-only vdisk", vd, "\n", 0, syscall.EINVAL},
		{"full length incl NUL", core, "add_group g1\n\x00", 14, 0},
		{"overflow", core, "add_group " + strings.Repeat("x", maxWrite), 0, syscall.EOVERFLOW},
		{"overflow vdisk", vd, strings.Repeat("x", maxWrite+1), 0, syscall.EOVERFLOW},
		{"max length ok", core, "add_group g2" + strings.Repeat(" ", maxWrite-12), maxWrite, 0},
	} {
		n, errno := tc.w([]byte(tc.in))
		if n != tc.n || errno != tc.errno {
			t.Errorf("%s: got %d, %v; want %d, %v", tc.name, n, errno, tc.n, tc.errno)
		}
	}
}

// TestExecErrnos runs every command of §1 against the fakes and checks the
// errno the writer would get, including the errnos that come from the core.
func TestExecErrnos(t *testing.T) {
	st, core, _ := newFakeState()
	core.sessions = []target.SessionStat{{Info: target.SessionInfo{Initiator: "i1", Transport: "iscsi"}, Group: "busy"}}
	steps := []struct {
		file, cmd string
		errno     syscall.Errno
	}{
		{"scsi_tgt", "add_group g1\n", 0},
		{"scsi_tgt", "add_group g1\n", syscall.EINVAL},
		{"scsi_tgt", "add_group busy\n", 0},
		{"scsi_tgt", "del_group busy\n", syscall.EBUSY},
		{"scsi_tgt", "del_group nope\n", syscall.EINVAL},
		{"scsi_tgt", "rename_group nope x\n", syscall.EINVAL},
		{"scsi_tgt", "rename_group g1 busy\n", syscall.EEXIST},
		{"scsi_tgt", "rename_group g1 g2\n", 0},
		{"vdisk", "open d0 /dev/zero 512 NV_CACHE\x00", 0},
		{"vdisk", "open d0 /dev/zero\x00", syscall.EEXIST},
		{"vdisk", "open d9 /nonexistent/file\x00", syscall.ENOENT},
		{"vdisk", "open d9 /dev/null\x00", syscall.EINVAL},
		{"vdisk", "resync_size nope\n\x00", syscall.EINVAL},
		{"vdisk", "set_t10_dev_id nope X\n\x00", syscall.EINVAL},
		{"vdisk", "set_t10_dev_id d0 T0\n\x00", 0},
		{"vcdrom", "open cd0\n", 0},
		{"vcdrom", "open d0\n", syscall.EEXIST},
		{"vcdrom", "change nope /dev/zero\n", syscall.EINVAL},
		{"vcdrom", "change cd0 /dev/zero\n", 0},
		{"vcdrom", "close nope\n", syscall.EINVAL},
		{"g2/devices", "add d0 0 \n\x00", 0},
		{"g2/devices", "add d0 0 \n\x00", syscall.EEXIST},
		{"g2/devices", "add nodev 1\n\x00", syscall.EINVAL},
		{"g2/devices", "replace d0 0 READ_ONLY\n\x00", 0},
		{"g2/devices", "replace cd0 5\n\x00", 0},
		{"g2/devices", "del nodev\n\x00", syscall.EINVAL},
		{"g2/devices", "del cd0\n\x00", 0},
		{"g2/devices", "del cd0\n\x00", 0}, // not mapped: only logged
		{"nogroup/devices", "add d0 1\n", syscall.EINVAL},
		{"g2/names", "add n1\n\x00", 0},
		{"g2/names", "add n1\n\x00", syscall.EEXIST},
		{"g2/names", "del n2\n\x00", syscall.EINVAL},
		{"g2/names", "move n1 nope\n\x00", syscall.EINVAL},
		{"g2/names", "move n2 busy\n\x00", syscall.EINVAL},
		{"busy/names", "add n1\n\x00", 0},
		{"g2/names", "move n1 busy\n\x00", syscall.EEXIST},
		{"g2/names", "clear\n\x00", 0},
		{"threads", "0\n", syscall.EINVAL},
		{"threads", "4\n", 0},
		{"vdisk", "close d0 \n\x00", 0},
		{"vdisk", "close d0 \n\x00", syscall.EINVAL},
	}
	for i, s := range steps {
		var w writeFunc
		switch {
		case s.file == "scsi_tgt":
			w = st.procWrite(st.execScsiTgt)
		case s.file == "vdisk":
			w = st.handlerWrite(st.execVdisk)
		case s.file == "vcdrom":
			w = st.handlerWrite(st.execVcdrom)
		case s.file == "threads":
			w = st.procWrite(st.execThreads)
		case strings.HasSuffix(s.file, "/devices"):
			g := strings.TrimSuffix(s.file, "/devices")
			w = st.procWrite(func(c string) syscall.Errno { return st.execDevices(g, c) })
		case strings.HasSuffix(s.file, "/names"):
			g := strings.TrimSuffix(s.file, "/names")
			w = st.procWrite(func(c string) syscall.Errno { return st.execNames(g, c) })
		}
		n, errno := w([]byte(s.cmd))
		if errno != s.errno {
			t.Errorf("step %d: %s <- %q: errno %v, want %v", i, s.file, s.cmd, errno, s.errno)
		}
		if errno == 0 && n != uint32(len(s.cmd)) {
			t.Errorf("step %d: %s <- %q: returned %d, want %d", i, s.file, s.cmd, n, len(s.cmd))
		}
	}
	if got := st.tun.Threads(); got != 4 {
		t.Errorf("threads = %d, want 4", got)
	}
	g, _ := st.group("g2")
	if len(g.LUNs) != 0 {
		t.Errorf("g2 LUNs after closing d0 = %+v, want none", g.LUNs)
	}
}

// TestErrnoOfNonErrno checks that a contract violation surfaces as EIO.
func TestErrnoOfNonErrno(t *testing.T) {
	st, _, v := newFakeState()
	v.failOpen = io.ErrUnexpectedEOF
	if _, errno := st.handlerWrite(st.execVdisk)([]byte("open d1 /dev/zero")); errno != syscall.EIO {
		t.Errorf("errno = %v, want EIO", errno)
	}
}
