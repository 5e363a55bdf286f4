package vdisk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/scstd/scstd/target"
	"github.com/scstd/scstd/target/scsi"
)

func wantErrno(t *testing.T, what string, err error, want syscall.Errno) {
	t.Helper()
	if want == 0 {
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return
	}
	var got syscall.Errno
	if !errors.As(err, &got) || got != want {
		t.Fatalf("%s: err %v, want %v", what, err, want)
	}
}

func TestOpenValidation(t *testing.T) {
	h := newHarness(t, ManagerOptions{})
	img := h.file("a.img", 1<<20, 0)
	dir := t.TempDir()
	noPerm := h.file("noperm.img", 4096, 0)
	os.Chmod(noPerm, 0)
	cases := []struct {
		name, path string
		bs         uint32
		f          Flags
		want       syscall.Errno
	}{
		{"", img, 0, Flags{}, syscall.EINVAL},
		{strings.Repeat("x", 65), img, 0, Flags{}, syscall.EINVAL},
		{strings.Repeat("x", 64), img, 0, Flags{}, 0},
		{"a/b", img, 0, Flags{}, syscall.EINVAL},
		{"a.b", img, 0, Flags{}, syscall.EINVAL},
		{"rel", "a.img", 0, Flags{}, syscall.EINVAL},
		{"nofile", "", 0, Flags{}, syscall.EINVAL},
		{"missing", filepath.Join(dir, "missing"), 0, Flags{}, syscall.ENOENT},
		{"dir", dir, 0, Flags{}, syscall.EINVAL},
		{"devnull", "/dev/null", 0, Flags{}, syscall.EINVAL},
		{"bs256", img, 256, Flags{}, syscall.EINVAL},
		{"bs8192", img, 8192, Flags{}, syscall.EINVAL},
		{"bs1000", img, 1000, Flags{}, 0}, // floor(log2) = 512
		{"bs4096", img, 4096, Flags{}, 0},
		{"nullrel", "whatever", 0, Flags{NullIO: true}, 0},
		{"zero", "/dev/zero", 0, Flags{}, 0},
		{"dup", img, 0, Flags{}, 0},
		{"dup", img, 0, Flags{}, syscall.EEXIST},
	}
	if os.Getuid() != 0 {
		cases = append(cases, struct {
			name, path string
			bs         uint32
			f          Flags
			want       syscall.Errno
		}{"noperm", noPerm, 0, Flags{}, syscall.EACCES})
	}
	for _, tc := range cases {
		wantErrno(t, fmt.Sprintf("open %q %q", tc.name, tc.path), h.m.Open(tc.name, tc.path, tc.bs, tc.f), tc.want)
	}
	// vdisk and vcdrom names share one namespace.
	wantErrno(t, "cdrom with disk name", h.m.OpenCDROM("dup", ""), syscall.EEXIST)
	wantErrno(t, "cdrom", h.m.OpenCDROM("cd", ""), 0)
	wantErrno(t, "disk with cdrom name", h.m.Open("cd", img, 0, Flags{}), syscall.EEXIST)
	// close/resync/set_t10_dev_id on unknown or wrong-type devices.
	wantErrno(t, "close unknown", h.m.Close("nope"), syscall.EINVAL)
	wantErrno(t, "close cdrom as disk", h.m.Close("cd"), syscall.EINVAL)
	wantErrno(t, "close disk as cdrom", h.m.CloseCDROM("dup"), syscall.EINVAL)
	wantErrno(t, "resync unknown", h.m.ResyncSize("nope"), syscall.EINVAL)
	wantErrno(t, "resync nullio", h.m.ResyncSize("nullrel"), syscall.EINVAL)
	wantErrno(t, "t10 unknown", h.m.SetT10ID("nope", "x"), syscall.EINVAL)
	wantErrno(t, "t10 empty", h.m.SetT10ID("dup", ""), syscall.EINVAL)

	sizes := map[string]int64{}
	blocks := map[string]uint32{}
	for _, d := range h.m.Disks() {
		sizes[d.Name] = d.Size
		blocks[d.Name] = d.BlockSize
	}
	if sizes["nullrel"] != nullIOSize || sizes["zero"] != devZeroSize || sizes["dup"] != 1<<20 {
		t.Fatalf("sizes %v", sizes)
	}
	if blocks["bs1000"] != 512 || blocks["bs4096"] != 4096 {
		t.Fatalf("block sizes %v", blocks)
	}
	wantErrno(t, "close", h.m.Close("dup"), 0)
	wantErrno(t, "close again", h.m.Close("dup"), syscall.EINVAL)
}

func TestDisksListing(t *testing.T) {
	h := newHarness(t, ManagerOptions{VdiskID: 1})
	img := h.file("b1.img", 600<<20, 0)
	steps := []struct {
		name string
		path string
		bs   uint32
		f    Flags
	}{
		{"null_NULLIO", "/dev/zero", 512, Flags{NullIO: true}},
		{"file_b1", img, 512, Flags{NVCache: true}},
		{"bio", img, 4096, Flags{BlockIO: true, WriteThrough: true, ReadOnly: true, Removable: true}},
	}
	for _, s := range steps {
		if err := h.m.Open(s.name, s.path, s.bs, s.f); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.m.OpenCDROM("cd", ""); err != nil {
		t.Fatal(err)
	}
	disks := h.m.Disks()
	if len(disks) != 3 {
		t.Fatalf("%d disks", len(disks))
	}
	tab := crc32.MakeTable(crc32.Castagnoli)
	for i, d := range disks {
		s := steps[i]
		if d.Name != s.name || d.Path != s.path || d.Flags != s.f || d.BlockSize != s.bs {
			t.Fatalf("row %d: %+v", i, d)
		}
		// Kernel crc32c(0, name, len+1): raw CRC, seed 0, no inversion.
		raw := ^crc32.Update(^uint32(0), tab, append([]byte(s.name), 0))
		want := fmt.Sprintf("%x-%s", uint64(1)<<32|uint64(raw), s.name)
		if len(want) > 25 {
			want = want[:25]
		}
		if d.T10ID != want {
			t.Fatalf("t10 id %q, want %q", d.T10ID, want)
		}
	}
	if disks[0].Handler != "vdisk_nullio" || disks[1].Handler != "vdisk_fileio" || disks[2].Handler != "vdisk_blockio" {
		t.Fatalf("handlers %s %s %s", disks[0].Handler, disks[1].Handler, disks[2].Handler)
	}
	if disks[1].Size != 600<<20 {
		t.Fatalf("size %d", disks[1].Size)
	}
	if err := h.m.SetT10ID("file_b1", "F_b1 with a very long id that is truncated"); err != nil {
		t.Fatal(err)
	}
	if got := h.m.Disks()[1].T10ID; got != "F_b1 with a very long id " {
		t.Fatalf("t10 id %q", got)
	}
	if cds := h.m.CDROMs(); len(cds) != 1 || cds[0].Name != "cd" || cds[0].Path != "" || cds[0].Size != 0 {
		t.Fatalf("cdroms %+v", cds)
	}
}

// TestCRC32CKnownValue pins the raw crc32c to a value computed by hand from
// the Castagnoli polynomial (bitwise, reflected, seed 0, no final xor).
func TestCRC32CKnownValue(t *testing.T) {
	m := NewManager(target.NewCore(target.Options{}), ManagerOptions{})
	for _, name := range []string{"disk1", "null_NULLIO", "x"} {
		crc := uint32(0)
		for _, b := range append([]byte(name), 0) {
			crc ^= uint32(b)
			for i := 0; i < 8; i++ {
				if crc&1 != 0 {
					crc = crc>>1 ^ 0x82f63b78
				} else {
					crc >>= 1
				}
			}
		}
		if got := m.devIDNum(name); got != uint64(crc) {
			t.Fatalf("%s: %x, want %x", name, got, crc)
		}
	}
}

func TestResyncSize(t *testing.T) {
	h := newHarness(t, ManagerOptions{})
	lun, path := h.disk("d", 100*512, 512, Flags{})
	s := h.session("iqn.init")
	s.clearUA(lun)
	if err := os.Truncate(path, 300*512); err != nil {
		t.Fatal(err)
	}
	if err := h.m.ResyncSize("d"); err != nil {
		t.Fatal(err)
	}
	expect(t, "capacity UA", s.run(lun, tur(), 0, nil), scsi.SenseUnitAttention, scsi.ASCCapacityDataHasChanged)
	r := s.run(lun, readCap16(32), 32, nil)
	if got := binary.BigEndian.Uint64(r.data); got != 299 {
		t.Fatalf("last lba %d", got)
	}
	good(t, "read new area", s.run(lun, cdb10(scsi.OpRead10, 299, 1, 0), 512, nil))
	if h.m.Disks()[0].Size != 300*512 {
		t.Fatal("Disks size not updated")
	}
}

func TestCloseWithMappedLUN(t *testing.T) {
	h := newHarness(t, ManagerOptions{})
	lun, _ := h.disk("d", 100*512, 512, Flags{})
	s := h.session("iqn.init")
	s.clearUA(lun)
	good(t, "write", s.run(lun, cdb10(scsi.OpWrite10, 0, 1, 0), 512, make([]byte, 512)))
	if err := h.m.Close("d"); err != nil {
		t.Fatal(err)
	}
	r := s.run(lun, tur(), 0, nil)
	if r.status == scsi.StatusGood {
		t.Fatal("closed device still answers")
	}
	if len(h.m.Disks()) != 0 {
		t.Fatal("device still listed")
	}
}
