package controlfs

import (
	"strings"
	"syscall"
	"testing"
)

func noSpace(s string) bool {
	for i := 0; i < len(s); i++ {
		if isspace(s[i]) || s[i] == 0 {
			return false
		}
	}
	return true
}

func FuzzCommandText(f *testing.F) {
	for _, s := range []string{"", "\n", "add_group x\n\x00", "a\x00b", "x\n\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s := commandText(b)
		if strings.IndexByte(s, 0) >= 0 || len(s) > len(b) || !strings.HasPrefix(string(b), s) {
			t.Fatalf("commandText(%q) = %q", b, s)
		}
	})
}

func FuzzParseScsiTgt(f *testing.F) {
	for _, s := range []string{"add_group g1", "ADD_GROUP g FLAT", "del_group g", "rename_group a b", "assign 0:0:0:0 x", "add_group Default", "rename_group a b c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		s = commandText([]byte(s)) // parsers see what a write leaves
		c, errno := parseScsiTgt(s)
		if errno != 0 {
			return
		}
		if c.Group == "" || c.Group == "Default" || !noSpace(c.Group) {
			t.Fatalf("%q: bad group %q", s, c.Group)
		}
		if c.Op == opAddGroup && !validGroupName(c.Group) {
			t.Fatalf("%q: unrepresentable group %q", s, c.Group)
		}
		if c.Op == opRenameGroup && (!validGroupName(c.NewName) || c.NewName == "Default") {
			t.Fatalf("%q: bad new name %q", s, c.NewName)
		}
	})
}

func FuzzParseDevices(f *testing.F) {
	for _, s := range []string{"add d 0", "add d 0x10 READ_ONLY", "replace d 1", "del d", "clear", "add d 16384", "add d 1 RO"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		s = commandText([]byte(s)) // parsers see what a write leaves
		c, errno := parseDevices(s)
		if errno != 0 {
			return
		}
		if c.LUN > maxLUN {
			t.Fatalf("%q: LUN %d", s, c.LUN)
		}
		if c.Op != opLUNClear && (c.Dev == "" || !noSpace(c.Dev)) {
			t.Fatalf("%q: dev %q", s, c.Dev)
		}
	})
}

func FuzzParseNames(f *testing.F) {
	for _, s := range []string{"add n", "del n", "move n g", "clear", "add a b", "move n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		s = commandText([]byte(s)) // parsers see what a write leaves
		c, errno := parseNames(s)
		if errno != 0 {
			return
		}
		if c.Op != opNameClear && (c.Name == "" || !noSpace(c.Name)) {
			t.Fatalf("%q: name %q", s, c.Name)
		}
		if c.Op == opNameMove && (c.NewGroup == "" || !noSpace(c.NewGroup)) {
			t.Fatalf("%q: group %q", s, c.NewGroup)
		}
	})
}

func FuzzParseThreads(f *testing.F) {
	for _, s := range []string{"1", "0x10", "010", "0", "-1", "abc"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		s = commandText([]byte(s))
		n, errno := parseThreads(s)
		if errno == 0 && n <= 0 {
			t.Fatalf("%q: %d accepted", s, n)
		}
	})
}

func checkDevCmd(t *testing.T, s string, c vdiskCmd) {
	if c.Name == "" || len(c.Name) > maxDevName || strings.ContainsAny(c.Name, "/.") || !noSpace(c.Name) {
		t.Fatalf("%q: name %q", s, c.Name)
	}
	if len(c.T10ID) > maxT10ID {
		t.Fatalf("%q: t10 %q", s, c.T10ID)
	}
}

func FuzzParseVdisk(f *testing.F) {
	for _, s := range []string{"open d /f", "open d /f 4096 NV_CACHE", "open n /dev/zero 512 NULLIO", "open d /f  READ_ONLY O_DIRECT",
		"close d ", "resync_size d", "set_t10_dev_id d  a b", "open d rel", "open d /f 512x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		s = commandText([]byte(s)) // parsers see what a write leaves
		c, errno := parseVdisk(s)
		if errno != 0 {
			return
		}
		checkDevCmd(t, s, c)
		if c.Op == opVdiskOpen {
			if c.Path == "" || !noSpace(c.Path) || (!c.Flags.NullIO && c.Path[0] != '/') {
				t.Fatalf("%q: path %q", s, c.Path)
			}
			if c.BlockSize != 0 && c.BlockSize < 512 {
				t.Fatalf("%q: block size %d", s, c.BlockSize)
			}
		}
	})
}

func FuzzParseVcdrom(f *testing.F) {
	for _, s := range []string{"open c", "open c /a.iso", "change c /b.iso ", "change c", "close c", "open c rel"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		s = commandText([]byte(s)) // parsers see what a write leaves
		c, errno := parseVcdrom(s)
		if errno != 0 {
			return
		}
		checkDevCmd(t, s, c)
		if c.Path != "" && c.Path[0] != '/' {
			t.Fatalf("%q: path %q", s, c.Path)
		}
	})
}

func FuzzParseModuleParam(f *testing.F) {
	for _, s := range []string{"1\n", "0x10", "-1", "4294967295", "abc", " +5"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, errno := parseModuleParam(b)
		if errno != 0 && errno != syscall.EINVAL && errno != syscall.ERANGE {
			t.Fatalf("%q: errno %v", b, errno)
		}
	})
}

// FuzzProcWrite drives whole writes through every writable file of a fake
// state: whatever the bytes, a write either fails with an errno or returns
// its full length, and the state stays renderable.
func FuzzProcWrite(f *testing.F) {
	for _, s := range []string{"add_group g\n", "open d /dev/zero 512 NULLIO\x00", "add d 0 \n\x00", "add n\n\x00", "4\n", "\x00", ""} {
		f.Add(uint8(0), []byte(s))
	}
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		st, _, _ := newFakeState()
		ws := []writeFunc{
			st.procWrite(st.execScsiTgt),
			st.handlerWrite(st.execVdisk),
			st.handlerWrite(st.execVcdrom),
			st.procWrite(func(s string) syscall.Errno { return st.execDevices("Default", s) }),
			st.procWrite(func(s string) syscall.Errno { return st.execNames("Default", s) }),
			st.procWrite(st.execThreads),
		}
		n, errno := ws[int(which)%len(ws)](data)
		if errno == 0 && n != uint32(len(data)) {
			t.Fatalf("write %q returned %d", data, n)
		}
		if errno != 0 && n != 0 {
			t.Fatalf("write %q returned %d with %v", data, n, errno)
		}
		st.readScsiTgt()
		renderVdisks(st.vd.Disks())
		for _, g := range st.core.Groups() {
			renderGroupDevices(g.LUNs)
			renderNames(g.Names)
		}
	})
}
