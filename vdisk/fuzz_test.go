package vdisk

import (
	"testing"

	"github.com/scstd/scstd/target/scsi"
)

// fuzzTarget is a harness with one device of every kind mapped at LUN 0-3.
func fuzzTarget(f *testing.F) (*sess, []uint64) {
	h := newHarness(f, ManagerOptions{StateDir: f.TempDir()})
	var luns []uint64
	l, _ := h.disk("file", 256*512, 512, Flags{})
	luns = append(luns, l)
	l, _ = h.disk("null", 0, 4096, Flags{NullIO: true, Removable: true})
	luns = append(luns, l)
	l, _ = h.disk("ro", 64*4096, 4096, Flags{ReadOnly: true, NVCache: true})
	luns = append(luns, l)
	if err := h.m.OpenCDROM("cd", h.file("cd.iso", 64*2048, 0)); err != nil {
		f.Fatal(err)
	}
	luns = append(luns, h.mapLUN("cd", false))
	s := h.session("iqn.fuzz")
	for _, l := range luns {
		s.clearUA(l)
	}
	return s, luns
}

func checkResult(t *testing.T, r result, edtl uint32) {
	switch r.status {
	case scsi.StatusGood:
		if uint32(len(r.data)) > edtl {
			t.Fatalf("returned %d bytes for EDTL %d", len(r.data), edtl)
		}
	case scsi.StatusCheckCondition:
		if len(r.sense) < 8 || (r.sense[0]&0x7f != 0x70 && r.sense[0]&0x7f != 0x72) {
			t.Fatalf("malformed sense % x", r.sense)
		}
		if r.key == scsi.SenseNoSense {
			t.Fatalf("CHECK CONDITION without a sense key: % x", r.sense)
		}
	default:
		t.Fatalf("status %#x", r.status)
	}
}

// FuzzDispatch feeds arbitrary CDBs and data-out buffers to every device
// type: the handler must never panic, must complete exactly once and must
// answer GOOD or CHECK CONDITION with well-formed sense data.
func FuzzDispatch(f *testing.F) {
	seeds := [][]byte{
		tur(), inquiry(true, 0x83, 255), inquiry(false, 0, 4), readCap16(32),
		cdb10(scsi.OpRead10, 0, 8, 0x18), cdb16(scsi.OpWrite16, 1, 2, 0x08), cdb12(scsi.OpVerify12, 0, 2, 0x02),
		cdb10(scsi.OpWriteVerify10, 3, 1, 0x02), cdb6(scsi.OpRead6, 0, 0), cdb10(scsi.OpSynchronizeCache10, 0, 0, 2),
		modeSense6(0, 0x3f, 0xff, false, 255), modeSense10(1, 0x08, 0, 0x10, 100), modeSelect6(true, true, 24),
		rsoc(true, 0, 0, 0, 4096), rsoc(false, 2, 0x9e, 0x10, 64), readTOC(true, 0, 0xaa, 20),
		{scsi.OpStartStopUnit, 1, 0, 0, 0x02, 0}, {scsi.OpGetConfiguration, 1, 0, 0, 0, 0, 0, 0, 100, 0},
		{scsi.OpGetEventStatusNotification, 1, 0, 0, 0xff, 0, 0, 0, 8, 0}, {0xff}, {},
		unmapCDB(24, false), cdb16(scsi.OpWriteSame16, 0, 4, 0x08), cdb10(scsi.OpWriteSame10, 1, 0, 0),
		getLBAStatus(0, 64), cawCDB(0, 1, 0), cdb16(scsi.OpOrWrite, 0, 1, 0), xcopyCDB(12), rcrCDB(3, 0),
		sanitizeCDB(saCryptoErase, false, 0), sanitizeCDB(saOverwrite, true, 8),
		{scsi.OpWriteAtomic16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0},
	}
	for i, c := range seeds {
		f.Add(c, []byte{0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 2, 0}, uint32(512), uint8(i))
	}
	s, luns := fuzzTarget(f)
	f.Fuzz(func(t *testing.T, cdb, data []byte, edtl uint32, which uint8) {
		if len(cdb) > 16 {
			cdb = cdb[:16]
		}
		edtl %= 1 << 20
		if uint32(len(data)) > edtl {
			data = data[:edtl]
		}
		var out []byte
		if len(data) > 0 {
			out = data
		}
		lun := luns[int(which)%len(luns)]
		r := s.runT(t, lun, cdb, edtl, out)
		checkResult(t, r, edtl)
	})
}

// FuzzModeSelect feeds arbitrary MODE SELECT parameter lists: the result is
// GOOD or CHECK CONDITION, and the device's state stays consistent.
func FuzzModeSelect(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0x0a, 0x0a, 0x04, 0x10, 0x08, 0, 0, 0, 0xff, 0xff, 0, 0}, false, true)
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x14, 0, 0, 0, 0, 0, 0}, true, false)
	f.Add([]byte{0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 2, 0, 0x1c, 0x0a, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0}, false, false)
	f.Add([]byte{0, 0, 0, 0, 0x4a, 0x01, 0x00, 0x04}, false, false)
	s, luns := fuzzTarget(f)
	f.Fuzz(func(t *testing.T, list []byte, ten, sp bool) {
		if len(list) > 512 {
			list = list[:512]
		}
		for _, lun := range luns {
			var cdb []byte
			if ten {
				cdb = []byte{scsi.OpModeSelect10, 0x10, 0, 0, 0, 0, 0, byte(len(list) >> 8), byte(len(list)), 0}
			} else {
				if len(list) > 255 {
					list = list[:255]
				}
				cdb = modeSelect6(true, sp, byte(len(list)))
			}
			if sp {
				cdb[1] |= 0x01
			}
			r := s.runT(t, lun, cdb, uint32(len(list)), list)
			checkResult(t, r, uint32(len(list)))
			ms := s.runT(t, lun, modeSense6(0, 0x3f, 0, false, 255), 255, nil)
			if ms.status != scsi.StatusGood {
				t.Fatalf("MODE SENSE after MODE SELECT: %#x/%#04x", ms.key, uint16(ms.asc))
			}
		}
	})
}
