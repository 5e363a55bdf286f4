package controlfs

// A replay of exactly the bytes the procfs scstadmin (SCST.pm 0.8.22) writes
// for `scstadmin -config` of the usermode sample (spec §3.4, §4.4, §4.5),
// followed by the re-reads scstadmin verifies with, parsed the way SCST.pm
// parses them.

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// scstadminRead is what SCST.pm's readWorkingConfig collects (§4.4).
type scstadminRead struct {
	version  string
	handlers []string          // dirs with a type file
	devices  map[string]string // P/scsi_tgt: name -> handler
	vdisks   map[string][6]string
	vcdroms  []string
	groups   []string
	luns     map[string]map[string]int // group -> device -> lun
	users    map[string][]string
	sessions [][]string
}

func readAsScstadmin(t *testing.T, root string) scstadminRead {
	t.Helper()
	p := filepath.Join(root, "scsi_tgt")
	read := func(rel string) string {
		b, err := os.ReadFile(filepath.Join(p, rel))
		if err != nil {
			t.Fatalf("scstadmin read %s: %v", rel, err)
		}
		return string(b)
	}
	var r scstadminRead
	r.version = read("version")
	parseVersionLine(t, []byte(r.version))
	ents, err := os.ReadDir(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if _, err := os.Stat(filepath.Join(p, e.Name(), "type")); e.IsDir() && err == nil {
			r.handlers = append(r.handlers, e.Name())
		}
	}
	r.devices = map[string]string{}
	for _, l := range bodyLines([]byte(read("scsi_tgt"))) {
		f := strings.Fields(l)
		if len(f) != 2 {
			t.Fatalf("scsi_tgt row %q", l)
		}
		r.devices[f[0]] = f[1]
	}
	r.vdisks = map[string][6]string{}
	for _, l := range bodyLines([]byte(read("vdisk/vdisk"))) {
		m := reHandlerRow.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("vdisk row %q does not match scstadmin's regex", l)
		}
		r.vdisks[m[1]] = [6]string(m[1:])
	}
	for _, l := range bodyLines([]byte(read("vcdrom/vcdrom"))) {
		r.vcdroms = append(r.vcdroms, strings.Fields(l)[0])
	}
	gents, err := os.ReadDir(filepath.Join(p, "groups"))
	if err != nil {
		t.Fatal(err)
	}
	r.luns = map[string]map[string]int{}
	r.users = map[string][]string{}
	for _, g := range gents {
		name := g.Name()
		r.groups = append(r.groups, name)
		r.luns[name] = map[string]int{}
		for _, l := range bodyLines([]byte(read("groups/" + name + "/devices"))) {
			f := strings.Fields(l)
			if len(f) < 2 {
				t.Fatalf("devices row %q", l)
			}
			lun, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatalf("devices row %q: %v", l, err)
			}
			r.luns[name][f[0]] = lun
		}
		if s := read("groups/" + name + "/names"); s != "" {
			r.users[name] = strings.Split(strings.TrimSuffix(s, "\n"), "\n")
		}
	}
	for _, l := range bodyLines([]byte(read("sessions"))) {
		f := strings.Fields(l)
		if len(f) != 4 {
			t.Fatalf("sessions row %q", l)
		}
		r.sessions = append(r.sessions, f)
	}
	read("sgv")
	return r
}

func TestScstadminReplay(t *testing.T) {
	runReplay(t, mountFakes(t))
}

func runReplay(t *testing.T, m *fakeMount) {
	p := m.p("scsi_tgt")
	img := filepath.Join(t.TempDir(), "bzero.img")
	if err := os.WriteFile(img, make([]byte, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}

	// Step 1: readWorkingConfig on the empty tree.
	r := readAsScstadmin(t, m.dir)
	if !slices.Equal(r.handlers, []string{"vcdrom", "vdisk"}) && !slices.Equal(r.handlers, []string{"vdisk", "vcdrom"}) {
		t.Errorf("handlers %v", r.handlers)
	}
	if len(r.devices) != 0 || !slices.Equal(r.groups, []string{"Default"}) {
		t.Errorf("initial state: %+v", r)
	}

	// Steps 4-7, byte for byte as SCST.pm writes them (§4.4).
	type w struct{ file, data string }
	script := []w{
		{"vdisk/vdisk", "open null_NULLIO /dev/zero 512 NULLIO\x00"},
		{"vdisk/vdisk", "set_t10_dev_id null_NULLIO N000\n\x00"},
		{"vdisk/vdisk", "open zero_ZERO /dev/zero 512 NV_CACHE\x00"},
		{"vdisk/vdisk", "set_t10_dev_id zero_ZERO Z000\n\x00"},
		{"vdisk/vdisk", "open zero_BZERO " + img + " 512 BLOCKIO\x00"},
		{"vdisk/vdisk", "set_t10_dev_id zero_BZERO BZ000\n\x00"},
		// An empty block size field leaves a double space.
		{"vdisk/vdisk", "open disk_c1 " + img + "  NV_CACHE WRITE_THROUGH\x00"},
		{"scsi_tgt", "add_group cian\n"},
		{"groups/cian/names", "add iqn.1993-08.org.debian:01:cian0001\n\x00"},
		{"groups/cian/names", "add iqn.1993-08.org.debian:01:cian0002\n\x00"},
		{"scsi_tgt", "add_group blackbox\n"},
		{"groups/blackbox/names", "add iqn.1993-08.org.debian:01:blackbox\n\x00"},
		// A Default_<target> group is created under a temporary name.
		{"scsi_tgt", "add_group TMP_GRP4711\n"},
		{"groups/TMP_GRP4711/names", "add iqn.1993-08.org.debian:01:tgtmode\n\x00"},
		{"groups/Default/devices", "add null_NULLIO 0 \n\x00"},
		{"groups/Default/devices", "add zero_ZERO 1 \n\x00"},
		{"groups/Default/devices", "add zero_BZERO 2 \n\x00"},
		{"groups/cian/devices", "add null_NULLIO 0 \n\x00"},
		{"groups/cian/devices", "add zero_ZERO 1 \n\x00"},
		{"groups/cian/devices", "add zero_BZERO 2 READ_ONLY\n\x00"},
		{"groups/blackbox/devices", "add null_NULLIO 0 \n\x00"},
		{"groups/blackbox/devices", "add zero_ZERO 1 \n\x00"},
		{"groups/blackbox/devices", "add zero_BZERO 2 \n\x00"},
		{"groups/TMP_GRP4711/devices", "add disk_c1 0 \n\x00"},
		{"scsi_tgt", "rename_group TMP_GRP4711 Default_iqn.2001-04.com.example:t1\n"},
		// -ForceConfig style corrections.
		{"groups/blackbox/devices", "replace disk_c1 2 \n\x00"},
		{"groups/cian/names", "move iqn.1993-08.org.debian:01:cian0002 blackbox\n\x00"},
	}
	wr := startWriter(t, nil)
	defer wr.close()
	for _, s := range script {
		if res := wr.write(filepath.Join(p, s.file), []byte(s.data)); res.errno != 0 || res.n != len(s.data) {
			t.Fatalf("%s <- %q: %v", s.file, s.data, res)
		}
	}

	// Verification as scstadmin does it: re-read and compare.
	r = readAsScstadmin(t, m.dir)
	wantDevs := map[string]string{"null_NULLIO": "vdisk_nullio", "zero_ZERO": "vdisk_fileio", "zero_BZERO": "vdisk_blockio", "disk_c1": "vdisk_fileio"}
	if len(r.devices) != len(wantDevs) {
		t.Errorf("devices %v", r.devices)
	}
	for k, v := range wantDevs {
		if r.devices[k] != v {
			t.Errorf("device %s handler %q, want %q", k, r.devices[k], v)
		}
	}
	for name, want := range map[string][2]string{
		"null_NULLIO": {"NIO", "N000"}, "zero_ZERO": {"NV", "Z000"}, "zero_BZERO": {"BIO", "BZ000"}, "disk_c1": {"WT NV", ""},
	} {
		f, ok := r.vdisks[name]
		if !ok {
			t.Errorf("vdisk %s not listed", name)
			continue
		}
		if strings.TrimSpace(f[3]) != want[0] {
			t.Errorf("vdisk %s options %q, want %q", name, f[3], want[0])
		}
		if want[1] != "" && strings.TrimSpace(f[5]) != want[1] {
			t.Errorf("vdisk %s T10 id %q, want %q", name, f[5], want[1])
		}
		if f[2] != "512" || !strings.HasPrefix(f[4], "/") {
			t.Errorf("vdisk %s fields %q", name, f)
		}
	}
	// os.ReadDir sorts by name, like scstadmin's hash order it means nothing.
	if !slices.Equal(r.groups, []string{"Default", "Default_iqn.2001-04.com.example:t1", "blackbox", "cian"}) {
		t.Errorf("groups %v", r.groups)
	}
	wantLUNs := map[string]map[string]int{
		"Default":                            {"null_NULLIO": 0, "zero_ZERO": 1, "zero_BZERO": 2},
		"cian":                               {"null_NULLIO": 0, "zero_ZERO": 1, "zero_BZERO": 2},
		"blackbox":                           {"null_NULLIO": 0, "zero_ZERO": 1, "disk_c1": 2},
		"Default_iqn.2001-04.com.example:t1": {"disk_c1": 0},
	}
	for g, want := range wantLUNs {
		if len(r.luns[g]) != len(want) {
			t.Errorf("group %s LUNs %v, want %v", g, r.luns[g], want)
		}
		for d, l := range want {
			if got, ok := r.luns[g][d]; !ok || got != l {
				t.Errorf("group %s: %s at %d (%v), want %d", g, d, got, ok, l)
			}
		}
	}
	wantUsers := map[string][]string{
		"cian":                               {"iqn.1993-08.org.debian:01:cian0001"},
		"blackbox":                           {"iqn.1993-08.org.debian:01:blackbox", "iqn.1993-08.org.debian:01:cian0002"},
		"Default_iqn.2001-04.com.example:t1": {"iqn.1993-08.org.debian:01:tgtmode"},
	}
	for g, want := range wantUsers {
		if !slices.Equal(r.users[g], want) {
			t.Errorf("group %s users %v, want %v", g, r.users[g], want)
		}
	}
	if ro, _ := os.ReadFile(filepath.Join(p, "groups/cian/devices")); !strings.Contains(string(ro), "zero_BZERO                                                  2            RO\n") {
		t.Errorf("cian devices:\n%s", ro)
	}

	// -ClearConfig: del_group for every group but Default, close every
	// virtual device (which also drops its mappings in Default).
	clear := []w{}
	for _, g := range r.groups {
		if g != "Default" {
			clear = append(clear, w{"scsi_tgt", "del_group " + g + "\n"})
		}
	}
	for name := range r.vdisks {
		clear = append(clear, w{"vdisk/vdisk", "close " + name + " \n\x00"})
	}
	for _, s := range clear {
		if res := wr.write(filepath.Join(p, s.file), []byte(s.data)); res.errno != 0 {
			t.Fatalf("%s <- %q: %v", s.file, s.data, res)
		}
	}
	r = readAsScstadmin(t, m.dir)
	if len(r.devices) != 0 || len(r.vdisks) != 0 || !slices.Equal(r.groups, []string{"Default"}) || len(r.luns["Default"]) != 0 {
		t.Errorf("after -ClearConfig: %+v", r)
	}
}
