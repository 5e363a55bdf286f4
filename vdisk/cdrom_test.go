package vdisk

import (
	"bytes"
	"encoding/binary"
	"os"
	"syscall"
	"testing"

	"github.com/scstd/scstd/target/scsi"
)

func readTOC(msf bool, format, track byte, alloc uint16) []byte {
	c := make([]byte, 10)
	c[0], c[2], c[6] = scsi.OpReadTOC, format, track
	if msf {
		c[1] = 0x02
	}
	binary.BigEndian.PutUint16(c[7:], alloc)
	return c
}

func TestCDROM(t *testing.T) {
	h := newHarness(t, ManagerOptions{})
	iso1 := h.file("one.iso", 300*2048, 0)
	iso2 := h.file("two.iso", 1000*2048, 0)
	data := pattern(2048*4, 5)
	if f, err := os.OpenFile(iso2, os.O_WRONLY, 0); err == nil {
		f.WriteAt(data, 10*2048)
		f.Close()
	}
	wantErrno(t, "relative", h.m.OpenCDROM("cd", "one.iso"), syscall.EINVAL)
	wantErrno(t, "missing", h.m.OpenCDROM("cd", h.dir+"/none.iso"), syscall.ENOENT)
	wantErrno(t, "empty", h.m.OpenCDROM("cd", ""), 0)
	lun := h.mapLUN("cd", false)
	s := h.session("iqn.init")
	s.clearUA(lun)

	r := s.run(lun, inquiry(false, 0, 96), 96, nil)
	good(t, "inquiry", r)
	if r.data[0] != 5 || r.data[1]&0x80 == 0 {
		t.Fatalf("cd inquiry % x", r.data[:8])
	}
	expect(t, "tur empty", s.run(lun, tur(), 0, nil), scsi.SenseNotReady, scsi.ASCMediumNotPresentTrayClosed)
	expect(t, "read empty", s.run(lun, cdb10(scsi.OpRead10, 0, 1, 0), 2048, nil), scsi.SenseNotReady, scsi.ASCMediumNotPresentTrayClosed)
	good(t, "mode sense empty", s.run(lun, modeSense10(0, 0x2a, 0, 0, 512), 512, nil))
	good(t, "get configuration empty", s.run(lun, []byte{scsi.OpGetConfiguration, 0, 0, 0, 0, 0, 0, 1, 0, 0}, 256, nil))

	// Load a disc: NOT READY TO READY CHANGE, then it reads.
	wantErrno(t, "change", h.m.ChangeCDROM("cd", iso1), 0)
	expect(t, "media changed UA", s.run(lun, tur(), 0, nil), scsi.SenseUnitAttention, scsi.ASCNotReadyToReadyChange)
	good(t, "tur loaded", s.run(lun, tur(), 0, nil))
	r = s.run(lun, []byte{scsi.OpReadCapacity10, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 8, nil)
	if binary.BigEndian.Uint32(r.data) != 299 || binary.BigEndian.Uint32(r.data[4:]) != 2048 {
		t.Fatalf("read capacity % x", r.data)
	}
	expect(t, "write refused", s.run(lun, cdb10(scsi.OpWrite10, 0, 1, 0), 2048, make([]byte, 2048)),
		scsi.SenseIllegalRequest, scsi.ASCInvalidCommandOperationCode)

	// GET EVENT STATUS NOTIFICATION reports the new medium once.
	gesn := []byte{scsi.OpGetEventStatusNotification, 1, 0, 0, 0x10, 0, 0, 0, 8, 0}
	r = s.run(lun, gesn, 8, nil)
	good(t, "gesn", r)
	if r.data[2] != 4 || r.data[4] != mediaNew || r.data[5] != 0x02 {
		t.Fatalf("gesn % x", r.data)
	}
	r = s.run(lun, gesn, 8, nil)
	if r.data[4] != mediaNoChange {
		t.Fatalf("event repeated: % x", r.data)
	}
	expect(t, "gesn async", s.run(lun, []byte{scsi.OpGetEventStatusNotification, 0, 0, 0, 0x10, 0, 0, 0, 8, 0}, 8, nil),
		scsi.SenseIllegalRequest, scsi.ASCInvalidFieldInCDB)

	// Prevented removal blocks change with EBUSY.
	good(t, "prevent", s.run(lun, []byte{scsi.OpPreventAllowMediumRemoval, 0, 0, 0, 1, 0}, 0, nil))
	wantErrno(t, "change prevented", h.m.ChangeCDROM("cd", iso2), syscall.EBUSY)
	good(t, "allow", s.run(lun, []byte{scsi.OpPreventAllowMediumRemoval, 0, 0, 0, 0, 0}, 0, nil))
	wantErrno(t, "change relative", h.m.ChangeCDROM("cd", "two.iso"), syscall.EINVAL)
	wantErrno(t, "change unknown", h.m.ChangeCDROM("nope", iso2), syscall.EINVAL)
	wantErrno(t, "change", h.m.ChangeCDROM("cd", " "+iso2+"\n"), 0)
	s.clearUA(lun)
	r = s.run(lun, cdb10(scsi.OpRead10, 10, 4, 0), 8192, nil)
	good(t, "read", r)
	if !bytes.Equal(r.data, data) {
		t.Fatal("cd read data mismatch")
	}
	r = s.run(lun, cdb12(scsi.OpRead12, 11, 1, 0), 2048, nil)
	if !bytes.Equal(r.data, data[2048:4096]) {
		t.Fatal("cd read12 data mismatch")
	}
	if cds := h.m.CDROMs(); cds[0].Path != iso2 || cds[0].Size != 1000*2048 {
		t.Fatalf("cdroms %+v", cds)
	}

	// READ TOC format 0 (LBA and MSF), track AAh, format 1.
	r = s.run(lun, readTOC(false, 0, 0, 100), 100, nil)
	good(t, "toc", r)
	if binary.BigEndian.Uint16(r.data) != 18 || r.data[2] != 1 || r.data[3] != 1 ||
		r.data[6] != 1 || r.data[14] != 0xaa || binary.BigEndian.Uint32(r.data[16:]) != 1000 {
		t.Fatalf("toc % x", r.data)
	}
	r = s.run(lun, readTOC(true, 0, 0, 100), 100, nil)
	// 1000+150 frames = 0:15:25; track 1 starts at 0:02:00.
	if !bytes.Equal(r.data[8:12], []byte{0, 0, 2, 0}) || !bytes.Equal(r.data[16:20], []byte{0, 0, 15, 25}) {
		t.Fatalf("toc msf % x", r.data)
	}
	r = s.run(lun, readTOC(false, 0, 0xaa, 100), 100, nil)
	if binary.BigEndian.Uint16(r.data) != 10 || r.data[6] != 0xaa {
		t.Fatalf("toc lead-out % x", r.data)
	}
	r = s.run(lun, readTOC(false, 1, 0, 100), 100, nil)
	if binary.BigEndian.Uint16(r.data) != 10 || r.data[6] != 1 {
		t.Fatalf("session info % x", r.data)
	}
	expect(t, "toc track 2", s.run(lun, readTOC(false, 0, 2, 100), 100, nil), scsi.SenseIllegalRequest, scsi.ASCInvalidFieldInCDB)
	expect(t, "toc format 5", s.run(lun, readTOC(false, 5, 0, 100), 100, nil), scsi.SenseIllegalRequest, scsi.ASCInvalidFieldInCDB)

	// GET CONFIGURATION: current profile CD-ROM; RT=2 returns one feature.
	r = s.run(lun, []byte{scsi.OpGetConfiguration, 0, 0, 0, 0, 0, 0, 1, 0, 0}, 256, nil)
	if binary.BigEndian.Uint16(r.data[6:]) != 0x0008 || int(binary.BigEndian.Uint32(r.data))+4 != len(r.data) {
		t.Fatalf("get configuration % x", r.data)
	}
	r = s.run(lun, []byte{scsi.OpGetConfiguration, 2, 0, 0x10, 0, 0, 0, 1, 0, 0}, 256, nil)
	if len(r.data) != 8+12 || binary.BigEndian.Uint16(r.data[8:]) != 0x10 {
		t.Fatalf("get configuration rt=2 % x", r.data)
	}
	r = s.run(lun, []byte{scsi.OpReadDiscInformation, 0, 0, 0, 0, 0, 0, 0, 34, 0}, 34, nil)
	good(t, "disc info", r)
	if r.data[2]&0x03 != 0x02 {
		t.Fatalf("disc info % x", r.data)
	}
	// Mode pages for CD: capabilities page, no caching page.
	r = s.run(lun, modeSense6(0, 0x3f, 0, true, 255), 255, nil)
	if modeSensePage(r.data, 0x2a) == nil || modeSensePage(r.data, 0x08) != nil || r.data[2]&0x80 == 0 {
		t.Fatalf("cd mode pages % x", r.data)
	}
	// Eject with START STOP UNIT, then load again.
	good(t, "eject", s.run(lun, []byte{scsi.OpStartStopUnit, 0, 0, 0, 0x02, 0}, 0, nil))
	expect(t, "tray open", s.run(lun, tur(), 0, nil), scsi.SenseNotReady, scsi.ASCMediumNotPresentTrayOpen)
	good(t, "load", s.run(lun, []byte{scsi.OpStartStopUnit, 0, 0, 0, 0x03, 0}, 0, nil))
	good(t, "tur", s.run(lun, tur(), 0, nil))
	// Eject through the control interface.
	wantErrno(t, "eject", h.m.ChangeCDROM("cd", ""), 0)
	s.clearUA(lun)
	expect(t, "tur after eject", s.run(lun, tur(), 0, nil), scsi.SenseNotReady, scsi.ASCMediumNotPresentTrayClosed)
	wantErrno(t, "close", h.m.CloseCDROM("cd"), 0)
	wantErrno(t, "close again", h.m.CloseCDROM("cd"), syscall.EINVAL)
}

// TestCDROMChangeUnderLoad swaps media while reads are in flight; no read
// may fail with anything but NOT READY / UNIT ATTENTION, and nothing leaks.
func TestCDROMChangeUnderLoad(t *testing.T) {
	h := newHarness(t, ManagerOptions{})
	a := h.file("a.iso", 64*2048, 'a')
	b := h.file("b.iso", 64*2048, 'b')
	if err := h.m.OpenCDROM("cd", a); err != nil {
		t.Fatal(err)
	}
	lun := h.mapLUN("cd", false)
	s := h.session("iqn.init")
	s.clearUA(lun)
	stop := make(chan struct{})
	errs := make(chan string, 1)
	go func() {
		defer close(errs)
		for {
			select {
			case <-stop:
				return
			default:
			}
			r := s.run(lun, cdb10(scsi.OpRead10, 0, 8, 0), 8*2048, nil)
			if r.status == scsi.StatusGood {
				if r.data[0] != 'a' && r.data[0] != 'b' {
					errs <- "bad data"
					return
				}
				continue
			}
			if r.key != scsi.SenseUnitAttention && r.key != scsi.SenseNotReady {
				errs <- "unexpected sense"
				return
			}
		}
	}()
	for i := 0; i < 50; i++ {
		p := a
		if i%2 == 1 {
			p = b
		}
		if err := h.m.ChangeCDROM("cd", p); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	if e, ok := <-errs; ok {
		t.Fatal(e)
	}
}
