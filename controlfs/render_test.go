package controlfs

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/scstd/scstd/target"
	"github.com/scstd/scstd/vdisk"
)

// The golden files were produced from the printf formats of spec/procfs.md
// §1 by an independent implementation (Python %-formatting), not by this
// package.

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	want, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s mismatch\ngot:\n%q\nwant:\n%q", name, got, want)
	}
}

// paperDisks are the vdisk rows of the paper's run (§1.15).
func paperDisks() []vdisk.DiskInfo {
	return []vdisk.DiskInfo{
		{Name: "null_NULLIO", Size: 5 << 40 / 2, BlockSize: 512, Flags: vdisk.Flags{NullIO: true}, Path: "/dev/zero", T10ID: "N000", Handler: "vdisk_nullio"},
		{Name: "zero_ZERO", Size: 1 << 50, BlockSize: 512, Flags: vdisk.Flags{NVCache: true}, Path: "/dev/zero", T10ID: "Z000", Handler: "vdisk_fileio"},
		{Name: "disk_sda5", Size: 15280<<20 + 12345, BlockSize: 4096, Path: "/dev/sda5", T10ID: "sda5", Handler: "vdisk_fileio"},
		{Name: "file_b1", Size: 600 << 20, BlockSize: 512, Flags: vdisk.Flags{NVCache: true}, Path: "/tmp/disk_b1", T10ID: "F_b1", Handler: "vdisk_fileio"},
	}
}

func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		file string
		got  []byte
	}{
		{"scsi_tgt.golden", renderScsiTgt([]deviceRow{{"null_NULLIO", "vdisk_nullio"}, {"zero_ZERO", "vdisk_fileio"}, {"disk_sda5", "vdisk_fileio"}})},
		{"vdisk.golden", renderVdisks(paperDisks())},
		{"vdisk_flags.golden", renderVdisks([]vdisk.DiskInfo{
			{Name: "all_flags", Size: 1 << 20, BlockSize: 4096, Flags: vdisk.Flags{WriteThrough: true, NVCache: true, ReadOnly: true, NullIO: true, BlockIO: true, Removable: true}, Path: "/tmp/all", T10ID: "1234abcd-all_flags"},
			{Name: "rm_only", Size: 1<<20 - 1, BlockSize: 512, Flags: vdisk.Flags{Removable: true}, T10ID: "x"},
			{Name: "a_very_long_device_name_over_17", Size: 2047 << 20, BlockSize: 512, Flags: vdisk.Flags{WriteThrough: true, BlockIO: true},
				Path: "/var/lib/scst/images/a_path_that_is_longer_than_45_characters.img", T10ID: "a-t10-id-of-25-chars-abcd"},
		})},
		{"vcdrom.golden", renderVcdroms([]vdisk.CDROMInfo{{Name: "cd1", Size: 600 << 20, Path: "/iso/a.iso"}, {Name: "cd_empty"}})},
		{"sessions.golden", renderSessions([]target.SessionStat{
			{Info: target.SessionInfo{Initiator: "iqn.1993-08.org.debian:01:9778279657b7", Target: "iqn.2001-04.com.example.blackbox:1", Transport: "iscsi"}, Group: "cian"},
			{Info: target.SessionInfo{Initiator: "chapuser@iqn.2005-03.org.open-iscsi:aabbccddeeff", Transport: "iscsi"}, Group: "Default", ActiveCmds: 3, AllCmds: 17},
		})},
		{"devices.golden", renderGroupDevices([]target.LUNInfo{{LUN: 31, Device: "file_c1"}, {LUN: 1, Device: "zero_ZERO"}, {LUN: 0, Device: "null_NULLIO", ReadOnly: true}})},
		{"names.golden", renderNames([]string{"iqn.1993-08.org.debian:01:9778279657b7", "iqn.1993-08.org.debian:01:*"})},
		{"help.golden", renderHelp()},
		{"version.golden", renderVersion()},
		{"version.golden", renderISCSIVersion()},
		{"sgv.golden", renderSGV(sgvStats{HiWatermark: 31888})},
		{"iscsi_session.golden", renderISCSISession(paperTargets())},
		{"type_vdisk.golden", renderType(0)},
		{"type_vcdrom.golden", renderType(5)},
		{"vdisk_help.golden", []byte(vdiskHelpText)},
		{"vcdrom_help.golden", []byte(vcdromHelpText)},
	} {
		golden(t, tc.file, tc.got)
	}
}

func TestSmallRenders(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{string(renderAddrMethod(target.AddrPeripheral)), "PERIPHERAL\n"},
		{string(renderAddrMethod(target.AddrFlat)), "FLAT\n"},
		{string(renderAddrMethod(target.AddrLUN)), "LUN\n"},
		{string(renderAddrMethod(target.AddrMethod(9))), "UNKNOWN\n"},
		{string(renderThreads(1)), "1\n"},
		{string(renderModuleParam(1)), "1 0x1\n"},
		{string(renderModuleParam(1993)), "1993 0x7c9\n"},
		{string(renderModuleParam(-1)), "-1 0xffffffff\n"},
		{string(renderType(16)), "16 - unknown\n"},
		{string(renderNames(nil)), ""},
		{ipString(nil), ""},
		{ipString([]byte{0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}), "[2001:db8::1]"},
		{digestName("CRC32C"), "crc32c"},
		{digestName("md5"), "unknown"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// TestPaperExamples compares renders with the literal examples of the spec
// (whose trailing blanks the markdown dropped).
func TestPaperExamples(t *testing.T) {
	for _, tc := range []struct {
		got  []byte
		want string
	}{
		{renderVdisks(paperDisks()), `Name              Size(MB)    Block size  Options         File name                                     T10 device id
null_NULLIO       2621440     512         NIO             /dev/zero                                     N000
zero_ZERO         1073741824  512         NV              /dev/zero                                     Z000
disk_sda5         15280       4096                        /dev/sda5                                     sda5
file_b1           600         512         NV              /tmp/disk_b1                                  F_b1
`},
		{renderGroupDevices([]target.LUNInfo{{LUN: 31, Device: "file_c1"}, {LUN: 1, Device: "zero_ZERO"}}), `Device (host:ch:id:lun or name)                             LUN          Options
file_c1                                                     31
zero_ZERO                                                   1
`},
		{renderSessions([]target.SessionStat{{Info: target.SessionInfo{Initiator: "iqn.1993-08.org.debian:01:9778279657b7", Transport: "iscsi"}, Group: "cian"}}),
			`Target name          Initiator name                                Group name                          Active/All Commands Count
iscsi                iqn.1993-08.org.debian:01:9778279657b7        cian                                0/0
`},
		{renderISCSISession(paperTargets()), "tid:1 name:iqn.2001-04.com.example.blackbox:1\n" +
			"\tsid:10000043d0200 initiator:iqn.1993-08.org.debian:01:9778279657b7 (reinstating no)\n" +
			"\t\tcid:0 ip:10.42.0.95 state:read_processing  hd:none dd:none\n" +
			"tid:2 name:iqn.2001-04.com.example.blackbox:2\n"},
	} {
		var lines []string
		for _, l := range strings.SplitAfter(string(tc.got), "\n") {
			lines = append(lines, strings.TrimRight(l, " \n")+map[bool]string{true: "\n"}[strings.HasSuffix(l, "\n")])
		}
		if got := strings.Join(lines, ""); got != tc.want {
			t.Errorf("got:\n%s\nwant:\n%s", got, tc.want)
		}
	}
	sgv := string(renderSGV(sgvStats{HiWatermark: 31888}))
	if !strings.HasPrefix(sgv, "Inactive/active pages                      0/0\nHi/lo watermarks [pages]                   31888/0\nHi watermark releases/failures             0/0\n") {
		t.Errorf("sgv head: %q", sgv[:150])
	}
}

// scstadmin's parsing of each file (SCST.pm, spec §4.4), transcribed.
var (
	reHandlerRow = regexp.MustCompile(`^(\S+)\s+(\S+)\s+(\S+)\s+(.*?)\s+(/\S+)\s+(.*)$`)
	reVersion    = regexp.MustCompile(`^(\d+)\.(\d+)\.(\d+)`)
)

// scstadminParse checks a tree snapshot with scstadmin's parsers and
// returns what it would see.
type scstadminView struct {
	version [3]int
	devices map[string]string            // name -> handler
	vdisks  map[string][6]string         // name -> fields
	groups  map[string]map[string]string // group -> device -> lun
	users   map[string][]string
	sessns  [][]string
}

func parseVersionLine(t *testing.T, b []byte) [3]int {
	line, _, _ := strings.Cut(string(b), "\n")
	m := reVersion.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("version line %q does not parse", line)
	}
	var v [3]int
	for i := range v {
		for _, c := range m[i+1] {
			v[i] = v[i]*10 + int(c-'0')
		}
	}
	if v[0] < 2 {
		t.Fatalf("version %v < 2.0.0", v)
	}
	return v
}

func bodyLines(b []byte) []string {
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) > 0 {
		lines = lines[1:] // header
	}
	return lines
}

func TestScstadminParsesRenders(t *testing.T) {
	parseVersionLine(t, renderVersion())
	for _, l := range bodyLines(renderVdisks(paperDisks())) {
		m := reHandlerRow.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("vdisk row %q does not match scstadmin's regex", l)
		}
		if strings.TrimSpace(m[6]) == "" || m[5] == "" {
			t.Errorf("row %q: fields %q", l, m[1:])
		}
	}
	// The NV row must map back to NV_CACHE, the sda5 row to no option.
	rows := bodyLines(renderVdisks(paperDisks()))
	if m := reHandlerRow.FindStringSubmatch(rows[1]); strings.TrimSpace(m[4]) != "NV" || strings.TrimSpace(m[6]) != "Z000" {
		t.Errorf("zero_ZERO parsed as %q", m[1:])
	}
	if m := reHandlerRow.FindStringSubmatch(rows[2]); strings.TrimSpace(m[4]) != "" || m[5] != "/dev/sda5" {
		t.Errorf("disk_sda5 parsed as %q", m[1:])
	}
}
