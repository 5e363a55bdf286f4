package vdisk

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scstd/scstd/target/scsi"
	"github.com/scstd/scstd/test/testenv"
)

// loopDevice attaches a loop block device to a new file of size bytes, or
// skips the test when that is impossible (not root, no loop driver).
func loopDevice(t *testing.T, size int64) string {
	t.Helper()
	testenv.NeedRoot(t, "a loop device")
	testenv.NeedTools(t, "losetup")
	img := filepath.Join(t.TempDir(), "loop.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "-f", "--show", img).CombinedOutput()
	if err != nil {
		t.Skipf("losetup: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev
}

// TestBlockDevice serves a real block device through vdisk_blockio (O_DIRECT
// and AIO) and vdisk_fileio, checking size detection and data integrity.
func TestBlockDevice(t *testing.T) {
	dev := loopDevice(t, 8<<20)
	for _, f := range []Flags{{BlockIO: true}, {}} {
		h := newHarness(t, ManagerOptions{})
		if err := h.m.Open("bd", dev, 512, f); err != nil {
			t.Fatal(err)
		}
		if d := h.m.Disks()[0]; d.Size != 8<<20 || d.Path != dev {
			t.Fatalf("block device row %+v", d)
		}
		lun := h.mapLUN("bd", false)
		s := h.session("iqn.init")
		s.clearUA(lun)
		data := pattern(64<<10, 11)
		good(t, "write", s.run(lun, cdb10(scsi.OpWrite10, 100, 128, 0x08), uint32(len(data)), data))
		good(t, "sync", s.run(lun, cdb10(scsi.OpSynchronizeCache10, 0, 0, 0), 0, nil))
		r := s.run(lun, cdb16(scsi.OpRead16, 100, 128, 0), uint32(len(data)), nil)
		good(t, "read", r)
		if !bytes.Equal(r.data, data) {
			t.Fatal("block device data mismatch")
		}
		expect(t, "past end", s.run(lun, cdb10(scsi.OpRead10, 16384, 1, 0), 512, nil), scsi.SenseIllegalRequest, scsi.ASCLBAOutOfRange)
		if err := h.m.Close("bd"); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBlockDeviceDiscard: block devices are thick by default; with ThinOn
// UNMAP and WRITE SAME UNMAP reach the device as BLKDISCARD (a loop device
// punches the hole in its backing file).
func TestBlockDeviceDiscard(t *testing.T) {
	dev := loopDevice(t, 8<<20)
	h := newHarness(t, ManagerOptions{})
	if err := h.m.Open("auto", dev, 512, Flags{BlockIO: true}); err != nil {
		t.Fatal(err)
	}
	if h.m.Disks()[0].Thin {
		t.Fatal("a block device is thin without ThinOn")
	}
	if err := h.m.Close("auto"); err != nil {
		t.Fatal(err)
	}
	if err := h.m.Open("bd", dev, 512, Flags{BlockIO: true}); err != nil {
		t.Fatal(err)
	}
	if err := h.m.SetThinProvisioning("bd", ThinOn); err != nil {
		t.Fatal(err)
	}
	if !h.m.Disks()[0].Thin {
		t.Fatal("ThinOn ignored for a block device")
	}
	lun := h.mapLUN("bd", false)
	s := h.session("iqn.init")
	s.clearUA(lun)
	rc := s.run(lun, readCap16(32), 32, nil)
	if rc.data[14]&0xc0 != 0x80 {
		t.Fatalf("block device: LBPME without LBPRZ expected, byte 14 %#x", rc.data[14])
	}
	data := pattern(64<<10, 3)
	good(t, "write", s.run(lun, cdb10(scsi.OpWrite10, 0, 128, 0x08), uint32(len(data)), data))
	p := unmapParamList([2]uint64{0, 64})
	good(t, "unmap", s.run(lun, unmapCDB(uint16(len(p)), false), uint32(len(p)), p))
	good(t, "write same unmap", s.run(lun, cdb16(scsi.OpWriteSame16, 64, 64, 0x08), 512, make([]byte, 512)))
	r := s.run(lun, cdb16(scsi.OpRead16, 0, 128, 0), uint32(len(data)), nil)
	good(t, "read", r)
	if !bytes.Equal(r.data, make([]byte, len(data))) {
		t.Fatal("discarded loop device blocks do not read as zeros")
	}
}
