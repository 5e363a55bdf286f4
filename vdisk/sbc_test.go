package vdisk

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"syscall"
	"testing"

	"github.com/scstd/scstd/target/scsi"
	"github.com/scstd/scstd/vdisk/backend"
)

func pattern(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// TestReadWriteIntegrity writes through every WRITE CDB size and reads back
// through every READ CDB size, on every backend variant and block size, and
// checks the backing file holds the bytes.
func TestReadWriteIntegrity(t *testing.T) {
	variants := []struct {
		name  string
		flags Flags
	}{
		{"fileio", Flags{}},
		{"fileio-wt", Flags{WriteThrough: true}},
		{"odirect", Flags{ODirect: true}},
		{"blockio", Flags{BlockIO: true}},
		{"nvcache", Flags{NVCache: true}},
	}
	for _, v := range variants {
		for _, bs := range []uint32{512, 1024, 2048, 4096} {
			t.Run(v.name+"/"+string(rune('0'+bs/512)), func(t *testing.T) {
				h := newHarness(t, ManagerOptions{})
				const blocks = 512
				lun, path := h.disk("d", int64(bs)*blocks, bs, v.flags)
				s := h.session("iqn.init")
				s.clearUA(lun)
				writes := []struct {
					cdb  []byte
					lba  uint32
					n    uint32
					seed uint64
				}{
					{cdb6(scsi.OpWrite6, 1, 3), 1, 3, 1},
					{cdb10(scsi.OpWrite10, 10, 5, 0x08), 10, 5, 2},
					{cdb12(scsi.OpWrite12, 100, 7, 0), 100, 7, 3},
					{cdb16(scsi.OpWrite16, blocks-9, 9, 0x18), blocks - 9, 9, 4},
				}
				for _, w := range writes {
					data := pattern(int(w.n*bs), w.seed)
					r := s.run(lun, w.cdb, uint32(len(data)), data)
					good(t, "write", r)
					if r.xferLen != w.n*bs {
						t.Fatalf("write TransferLen %d, want %d", r.xferLen, w.n*bs)
					}
					for _, rd := range [][]byte{
						cdb6(scsi.OpRead6, w.lba, byte(w.n)),
						cdb10(scsi.OpRead10, w.lba, uint16(w.n), 0x18),
						cdb12(scsi.OpRead12, w.lba, w.n, 0),
						cdb16(scsi.OpRead16, uint64(w.lba), w.n, 0x08),
					} {
						r := s.run(lun, rd, w.n*bs, nil)
						good(t, "read", r)
						if !bytes.Equal(r.data, data) {
							t.Fatalf("read %x: data mismatch", rd[0])
						}
					}
					// VERIFY with BYTCHK=1 agrees.
					good(t, "verify", s.run(lun, cdb10(scsi.OpVerify10, w.lba, uint16(w.n), 0x02), w.n*bs, data))
				}
				good(t, "sync", s.run(lun, cdb10(scsi.OpSynchronizeCache10, 0, 0, 0), 0, nil))
				file, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				for _, w := range writes {
					off := int(w.lba * bs)
					if !bytes.Equal(file[off:off+int(w.n*bs)], pattern(int(w.n*bs), w.seed)) {
						t.Fatalf("backing file differs at lba %d", w.lba)
					}
				}
			})
		}
	}
}

func TestNullIO(t *testing.T) {
	h := newHarness(t, ManagerOptions{})
	lun, _ := h.disk("n", 0, 0, Flags{NullIO: true})
	s := h.session("iqn.init")
	s.clearUA(lun)
	good(t, "write", s.run(lun, cdb10(scsi.OpWrite10, 0, 1, 0), 512, pattern(512, 1)))
	r := s.run(lun, cdb10(scsi.OpRead10, 0, 1, 0), 512, nil)
	good(t, "read", r)
	if !bytes.Equal(r.data, make([]byte, 512)) {
		t.Fatal("NULLIO must read zeros")
	}
	r = s.run(lun, readCap16(32), 32, nil)
	good(t, "rc16", r)
	if got := binary.BigEndian.Uint64(r.data) + 1; got != nullIOSize/512 {
		t.Fatalf("NULLIO blocks %d", got)
	}
}

func TestRangeAndFieldErrors(t *testing.T) {
	h := newHarness(t, ManagerOptions{})
	const nb = 1000
	lun := h.thickDisk("d", nb*512)
	s := h.session("iqn.init")
	s.clearUA(lun)
	maxBlocks := uint32(maxXferBytes / 512)
	oob := scsi.ASCLBAOutOfRange
	ill := scsi.SenseIllegalRequest
	cases := []struct {
		name    string
		cdb     []byte
		edtl    uint32
		key     byte
		asc     scsi.ASC
		ptr     int
		dataOut bool
	}{
		{"read10 0 blocks at 0", cdb10(scsi.OpRead10, 0, 0, 0), 0, 0, 0, -1, false},
		{"read10 0 blocks at end", cdb10(scsi.OpRead10, nb, 0, 0), 0, 0, 0, -1, false},
		{"read10 0 blocks past end", cdb10(scsi.OpRead10, nb+1, 0, 0), 0, ill, oob, -1, false},
		{"read10 last block", cdb10(scsi.OpRead10, nb-1, 1, 0), 512, 0, 0, -1, false},
		{"read10 beyond eol", cdb10(scsi.OpRead10, nb-1, 2, 0), 1024, ill, oob, -1, false},
		{"read10 lba -1", cdb10(scsi.OpRead10, 0xffffffff, 1, 0), 512, ill, oob, -1, false},
		{"read16 lba 2^64-1", cdb16(scsi.OpRead16, ^uint64(0), 1, 0), 512, ill, oob, -1, false},
		{"read16 wrap", cdb16(scsi.OpRead16, ^uint64(0)-1, 4, 0), 2048, ill, oob, -1, false},
		{"read12 beyond", cdb12(scsi.OpRead12, nb, 1, 0), 512, ill, oob, -1, false},
		{"read6 beyond", cdb6(scsi.OpRead6, nb-1, 2), 1024, ill, oob, -1, false},
		{"read10 rdprotect", cdb10(scsi.OpRead10, 0, 1, 0x20), 512, ill, scsi.ASCInvalidFieldInCDB, 1, false},
		{"write10 wrprotect", cdb10(scsi.OpWrite10, 0, 1, 0xe0), 512, ill, scsi.ASCInvalidFieldInCDB, 1, true},
		{"verify10 vrprotect", cdb10(scsi.OpVerify10, 0, 1, 0x22), 512, ill, scsi.ASCInvalidFieldInCDB, 1, true},
		{"verify10 bytchk 2", cdb10(scsi.OpVerify10, 0, 1, 0x04), 512, ill, scsi.ASCInvalidFieldInCDB, 1, true},
		{"write10 beyond", cdb10(scsi.OpWrite10, nb, 1, 0), 512, ill, oob, -1, true},
		{"write16 0 blocks past end", cdb16(scsi.OpWrite16, nb+1, 0, 0), 0, ill, oob, -1, false},
		{"verify16 past end", cdb16(scsi.OpVerify16, nb, 1, 0), 0, ill, oob, -1, false},
		{"writeverify12 past end", cdb12(scsi.OpWriteVerify12, nb, 1, 0), 512, ill, oob, -1, true},
		{"prefetch10 ok", cdb10(scsi.OpPreFetch10, nb-256, 256, 0x02), 0, 0, 0, -1, false},
		{"prefetch10 beyond", cdb10(scsi.OpPreFetch10, nb-1, 2, 0), 0, ill, oob, -1, false},
		{"prefetch16 lba -1", cdb16(scsi.OpPreFetch16, ^uint64(0), 0, 0), 0, ill, oob, -1, false},
		{"sync10 range", cdb10(scsi.OpSynchronizeCache10, nb, 1, 0), 0, ill, oob, -1, false},
		{"sync16 ok immed", cdb16(scsi.OpSynchronizeCache16, 0, nb, 0x02), 0, 0, 0, -1, false},
		{"read12 too long", cdb12(scsi.OpRead12, 0, maxBlocks+1, 0), 0, ill, oob, -1, false},
		{"unmap on a thick disk", []byte{scsi.OpUnmap, 0, 0, 0, 0, 0, 0, 0, 24, 0}, 24, ill, scsi.ASCInvalidCommandOperationCode, -1, true},
		{"write same unmap on a thick disk", cdb16(scsi.OpWriteSame16, 0, 1, 0x08), 512, ill, scsi.ASCInvalidFieldInCDB, 1, true},
		{"compare and write wrprotect", cdb16(scsi.OpCompareAndWrite, 0, 1, 0x20), 1024, ill, scsi.ASCInvalidFieldInCDB, 1, true},
		{"compare and write short data", cdb16(scsi.OpCompareAndWrite, 0, 1, 0), 512, ill, scsi.ASCInvalidFieldInCDB, 13, true},
		{"compare and write zero blocks with data", cdb16(scsi.OpCompareAndWrite, 0, 0, 0), 1024, ill, scsi.ASCInvalidFieldInCDB, 13, true},
		{"compare and write range", cdb16(scsi.OpCompareAndWrite, nb, 1, 0), 1024, ill, oob, -1, true},
		{"get lba status beyond end", []byte{0x9e, 0x12, 0, 0, 0, 0, 0, 0, 0x03, 0xe8, 0, 0, 0, 32, 0, 0}, 32, ill, oob, -1, false},
		{"get lba status far beyond end", []byte{0x9e, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 32, 0, 0}, 32, ill, oob, -1, false},
		{"write same anchor", cdb16(scsi.OpWriteSame16, 0, 1, 0x18), 512, ill, scsi.ASCInvalidFieldInCDB, 1, true},
		{"write same beyond end", cdb16(scsi.OpWriteSame16, nb-1, 2, 0), 512, ill, oob, -1, true},
		{"write same too long", cdb16(scsi.OpWriteSame16, 0, 1<<20, 0), 512, ill, oob, -1, true},
		{"write same data size", cdb16(scsi.OpWriteSame16, 0, 1, 0), 1024, ill, scsi.ASCInvalidFieldInInformationUnit, -1, true},
		{"orwrite orprotect", cdb16(scsi.OpOrWrite, 0, 1, 0x20), 512, ill, scsi.ASCInvalidFieldInCDB, 1, true},
		{"orwrite range", cdb16(scsi.OpOrWrite, nb, 1, 0), 512, ill, oob, -1, true},
		{"write atomic boundary", []byte{scsi.OpWriteAtomic16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0}, 512, ill, scsi.ASCInvalidFieldInCDB, 10, true},
		{"write atomic range", []byte{scsi.OpWriteAtomic16, 0, 0, 0, 0, 0, 0, 0, 0x03, 0xe8, 0, 0, 0, 1, 0, 0}, 512, ill, oob, -1, true},
		{"rc10 lba without pmi", []byte{scsi.OpReadCapacity10, 0, 0, 0, 0, 1, 0, 0, 0, 0}, 8, ill, scsi.ASCInvalidFieldInCDB, 2, false},
		{"inquiry cmddt", []byte{scsi.OpInquiry, 2, 0, 0, 255, 0}, 255, ill, scsi.ASCInvalidFieldInCDB, 1, false},
		{"inquiry page without evpd", inquiry(false, 0x80, 255), 255, ill, scsi.ASCInvalidFieldInCDB, 2, false},
		{"inquiry unknown vpd", inquiry(true, 0x99, 255), 255, ill, scsi.ASCInvalidFieldInCDB, 2, false},
		{"start stop loej not removable", []byte{scsi.OpStartStopUnit, 0, 0, 0, 0x02, 0}, 0, ill, scsi.ASCInvalidFieldInCDB, 4, false},
		{"prevent allow not removable", []byte{scsi.OpPreventAllowMediumRemoval, 0, 0, 0, 1, 0}, 0, ill, scsi.ASCInvalidCommandOperationCode, -1, false},
	}
	for _, tc := range cases {
		var out []byte
		if tc.dataOut {
			out = make([]byte, tc.edtl)
		}
		r := s.run(lun, tc.cdb, tc.edtl, out)
		expect(t, tc.name, r, tc.key, tc.asc)
		if tc.ptr >= 0 && r.fieldPtr != tc.ptr {
			t.Errorf("%s: field pointer %d, want %d", tc.name, r.fieldPtr, tc.ptr)
		}
	}
	// Transfer length over MAXIMUM TRANSFER LENGTH (in range).
	h2 := newHarness(t, ManagerOptions{})
	big, _ := h2.disk("big", int64(maxBlocks+10)*512, 512, Flags{})
	s2 := h2.session("iqn.init")
	s2.clearUA(big)
	r := s2.run(big, cdb12(scsi.OpRead12, 0, maxBlocks+1, 0), 0, nil)
	expect(t, "max transfer length", r, ill, scsi.ASCInvalidFieldInCDB)
	if r.fieldPtr != 6 {
		t.Errorf("max transfer field pointer %d", r.fieldPtr)
	}
	good(t, "max transfer ok", s2.run(big, cdb12(scsi.OpRead12, 0, maxBlocks, 0), 0, nil))
}

// TestResiduals follows libiscsi's iSCSI.iSCSIResiduals expectations: the
// command reports the CDB's byte count and moves at most EDTL bytes.
func TestResiduals(t *testing.T) {
	h := newHarness(t, ManagerOptions{})
	lun, path := h.disk("d", 64*512, 512, Flags{})
	s := h.session("iqn.init")
	s.clearUA(lun)
	base := bytes.Repeat([]byte{'a'}, 2*512)
	reset := func() { good(t, "reset", s.run(lun, cdb10(scsi.OpWrite10, 0, 2, 0), 1024, base)) }
	readBack := func() []byte {
		r := s.run(lun, cdb10(scsi.OpRead10, 0, 2, 0), 1024, nil)
		good(t, "read back", r)
		return r.data
	}
	// Reads.
	for _, tc := range []struct {
		blocks uint16
		edtl   uint32
		want   int
	}{{1, 0, 0}, {1, 10000, 512}, {1, 200, 200}, {2, 512, 512}} {
		r := s.run(lun, cdb10(scsi.OpRead10, 0, tc.blocks, 0), tc.edtl, nil)
		good(t, "read residual", r)
		if r.xferLen != uint32(tc.blocks)*512 || len(r.data) != tc.want {
			t.Fatalf("read %d blocks edtl %d: TransferLen %d data %d", tc.blocks, tc.edtl, r.xferLen, len(r.data))
		}
	}
	// Writes and WRITE AND VERIFY.
	for _, op := range []byte{scsi.OpWrite10, scsi.OpWriteVerify10} {
		for _, tc := range []struct {
			blocks  uint16
			edtl    int
			status  byte
			written int // bytes of 'b' expected at the start
		}{
			{1, 0, scsi.StatusGood, 0},
			{1, 1024, scsi.StatusGood, 512},
			{2, 512, scsi.StatusGood, 512},
			{1, 10000, scsi.StatusGood, 512},
			{1, 200, scsi.StatusCheckCondition, 0},
		} {
			reset()
			flags := byte(0)
			if op == scsi.OpWriteVerify10 {
				flags = 0x02
			}
			r := s.run(lun, cdb10(op, 0, tc.blocks, flags), uint32(tc.edtl), bytes.Repeat([]byte{'b'}, tc.edtl))
			if r.status != tc.status {
				t.Fatalf("op %#x blocks %d edtl %d: status %#x", op, tc.blocks, tc.edtl, r.status)
			}
			if r.status == scsi.StatusCheckCondition {
				expect(t, "partial block", r, scsi.SenseIllegalRequest, scsi.ASCInvalidFieldInInformationUnit)
			}
			if r.xferLen != uint32(tc.blocks)*512 && r.status == scsi.StatusGood {
				t.Fatalf("TransferLen %d", r.xferLen)
			}
			got := readBack()
			want := append(bytes.Repeat([]byte{'b'}, tc.written), bytes.Repeat([]byte{'a'}, 1024-tc.written)...)
			if !bytes.Equal(got, want) {
				t.Fatalf("op %#x blocks %d edtl %d: medium has %q...", op, tc.blocks, tc.edtl, got[:8])
			}
		}
	}
	_ = path
}

func TestVerify(t *testing.T) {
	h := newHarness(t, ManagerOptions{})
	lun, _ := h.disk("d", 64*512, 512, Flags{})
	s := h.session("iqn.init")
	s.clearUA(lun)
	data := pattern(4*512, 7)
	good(t, "write", s.run(lun, cdb10(scsi.OpWrite10, 8, 4, 0), 2048, data))
	for _, op := range []struct {
		name string
		cdb  func(flags byte) []byte
	}{
		{"verify10", func(f byte) []byte { return cdb10(scsi.OpVerify10, 8, 4, f) }},
		{"verify12", func(f byte) []byte { return cdb12(scsi.OpVerify12, 8, 4, f) }},
		{"verify16", func(f byte) []byte { return cdb16(scsi.OpVerify16, 8, 4, f) }},
	} {
		good(t, op.name+" bytchk 0", s.run(lun, op.cdb(0x00), 0, nil))
		good(t, op.name+" dpo", s.run(lun, op.cdb(0x10), 0, nil))
		good(t, op.name+" bytchk 1", s.run(lun, op.cdb(0x02), 2048, data))
		bad := append([]byte(nil), data...)
		bad[1234] ^= 'X'
		r := s.run(lun, op.cdb(0x02), 2048, bad)
		expect(t, op.name+" miscompare", r, scsi.SenseMiscompare, scsi.ASCMiscompareDuringVerify)
		if !r.infoOK || r.info != 1234 {
			t.Fatalf("%s: miscompare info %d valid %v, want 1234", op.name, r.info, r.infoOK)
		}
	}
	// BYTCHK=3: one block compared with each block of the range.
	same := pattern(512, 9)
	good(t, "write same pattern", s.run(lun, cdb10(scsi.OpWrite10, 20, 3, 0), 1536, bytes.Repeat(same, 3)))
	good(t, "bytchk 3", s.run(lun, cdb10(scsi.OpVerify10, 20, 3, 0x06), 512, same))
	r := s.run(lun, cdb10(scsi.OpVerify10, 19, 3, 0x06), 512, same)
	expect(t, "bytchk 3 miscompare", r, scsi.SenseMiscompare, scsi.ASCMiscompareDuringVerify)
	// WRITE AND VERIFY 10/12/16.
	for i, cdb := range [][]byte{
		cdb10(scsi.OpWriteVerify10, 30, 2, 0x02),
		cdb12(scsi.OpWriteVerify12, 32, 2, 0x12),
		cdb16(scsi.OpWriteVerify16, 34, 2, 0x00),
	} {
		d := pattern(1024, uint64(100+i))
		good(t, "write and verify", s.run(lun, cdb, 1024, d))
		lba := 30 + 2*i
		r := s.run(lun, cdb10(scsi.OpRead10, uint32(lba), 2, 0), 1024, nil)
		if !bytes.Equal(r.data, d) {
			t.Fatalf("write and verify %d: data not written", i)
		}
	}
}

func TestWriteProtection(t *testing.T) {
	h := newHarness(t, ManagerOptions{})
	roLUN, _ := h.disk("ro", 64*512, 512, Flags{ReadOnly: true})
	rw, _ := h.disk("rw", 64*512, 512, Flags{})
	if err := h.m.Open("rwmap", h.file("rwmap.img", 64*512, 0), 512, Flags{}); err != nil {
		t.Fatal(err)
	}
	mapRO := h.mapLUN("rwmap", true)
	s := h.session("iqn.init")
	for _, lun := range []uint64{roLUN, rw, mapRO} {
		s.clearUA(lun)
	}
	wp := scsi.ASCWriteProtected
	for _, lun := range []uint64{roLUN, mapRO} {
		for _, cdb := range [][]byte{
			cdb6(scsi.OpWrite6, 0, 1), cdb10(scsi.OpWrite10, 0, 1, 0), cdb12(scsi.OpWrite12, 0, 1, 0),
			cdb16(scsi.OpWrite16, 0, 1, 0), cdb10(scsi.OpWriteVerify10, 0, 1, 0), cdb16(scsi.OpWriteVerify16, 0, 1, 0),
		} {
			expect(t, "write protected", s.run(lun, cdb, 512, make([]byte, 512)), scsi.SenseDataProtect, wp)
		}
		good(t, "read ok", s.run(lun, cdb10(scsi.OpRead10, 0, 1, 0), 512, nil))
		r := s.run(lun, modeSense6(0, 0x3f, 0, false, 255), 255, nil)
		if r.data[2]&0x80 == 0 {
			t.Fatal("MODE SENSE WP not set on write-protected LUN")
		}
	}
	good(t, "writable", s.run(rw, cdb10(scsi.OpWrite10, 0, 1, 0), 512, make([]byte, 512)))
}

func TestIOSenseMapping(t *testing.T) {
	for _, tc := range []struct {
		err   error
		write bool
		key   byte
		asc   scsi.ASC
	}{
		{errnoEIO, false, scsi.SenseMediumError, scsi.ASCUnrecoveredReadError},
		{errnoEIO, true, scsi.SenseMediumError, scsi.ASCWriteError},
		{errnoENOSPC, true, scsi.SenseDataProtect, scsi.ASCNoSpace},
		{errnoEROFS, true, scsi.SenseDataProtect, scsi.ASCWriteProtected},
	} {
		s := ioSense(tc.err, tc.write)
		if s.Key != tc.key || s.ASC != tc.asc {
			t.Errorf("%v write=%v: %#x/%#04x", tc.err, tc.write, s.Key, uint16(s.ASC))
		}
	}
}

// failEngine completes every request with err, as a failing disk would.
type failEngine struct{ err error }

func (f failEngine) Submit(r *backend.Request) { r.Err = f.err; r.Done(r) }
func (failEngine) Close() error                { return nil }
func (failEngine) Name() string                { return "fail" }

// TestBackendErrors maps engine failures to sense data through the handler.
func TestBackendErrors(t *testing.T) {
	h := newHarness(t, ManagerOptions{})
	lun, _ := h.disk("d", 64*512, 512, Flags{})
	s := h.session("iqn.init")
	s.clearUA(lun)
	v, _ := h.m.lookup("d", scsi.TypeDisk)
	real := v.med.Load().eng
	defer func() { v.med.Load().eng = real }()
	for _, tc := range []struct {
		err  error
		cdb  []byte
		out  bool
		key  byte
		asc  scsi.ASC
		name string
	}{
		{syscall.EIO, cdb10(scsi.OpRead10, 0, 1, 0), false, scsi.SenseMediumError, scsi.ASCUnrecoveredReadError, "read EIO"},
		{syscall.EIO, cdb10(scsi.OpWrite10, 0, 1, 0), true, scsi.SenseMediumError, scsi.ASCWriteError, "write EIO"},
		{syscall.ENOSPC, cdb16(scsi.OpWrite16, 0, 1, 0), true, scsi.SenseDataProtect, scsi.ASCNoSpace, "write ENOSPC"},
		{syscall.EIO, cdb10(scsi.OpVerify10, 0, 1, 0), false, scsi.SenseMediumError, scsi.ASCUnrecoveredReadError, "verify EIO"},
		{syscall.EIO, cdb10(scsi.OpWriteVerify10, 0, 1, 0), true, scsi.SenseMediumError, scsi.ASCWriteError, "write and verify EIO"},
		{syscall.EIO, cdb10(scsi.OpSynchronizeCache10, 0, 0, 0), false, scsi.SenseMediumError, scsi.ASCWriteError, "sync EIO"},
	} {
		v.med.Load().eng = failEngine{tc.err}
		var out []byte
		if tc.out {
			out = make([]byte, 512)
		}
		expect(t, tc.name, s.run(lun, tc.cdb, 512, out), tc.key, tc.asc)
	}
	v.med.Load().eng = real
	good(t, "recovered", s.run(lun, cdb10(scsi.OpRead10, 0, 1, 0), 512, nil))
}
