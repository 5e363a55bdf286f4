package vdisk

import (
	"bytes"
	"encoding/binary"
	"os"
	"sync"
	"testing"

	"github.com/scstd/scstd/target/scsi"
	"github.com/scstd/scstd/test/testenv"
	"golang.org/x/sys/unix"
)

// thickDisk opens a fully provisioned 512-byte-block disk (before any
// session exists, so the provisioning change raises no unit attention).
func (h *harness) thickDisk(name string, size int64) uint64 {
	h.t.Helper()
	lun, _ := h.disk(name, size, 512, Flags{})
	if err := h.m.SetThinProvisioning(name, ThinOff); err != nil {
		h.t.Fatal(err)
	}
	return lun
}

func unmapCDB(pll uint16, anchor bool) []byte {
	c := make([]byte, 10)
	c[0] = scsi.OpUnmap
	if anchor {
		c[1] = 1
	}
	binary.BigEndian.PutUint16(c[7:], pll)
	return c
}

// unmapParamList builds an UNMAP parameter list from (lba, count) pairs.
func unmapParamList(ext ...[2]uint64) []byte {
	p := make([]byte, 8+16*len(ext))
	binary.BigEndian.PutUint16(p[0:], uint16(len(p)-2))
	binary.BigEndian.PutUint16(p[2:], uint16(16*len(ext)))
	for i, e := range ext {
		binary.BigEndian.PutUint64(p[8+16*i:], e[0])
		binary.BigEndian.PutUint32(p[8+16*i+8:], uint32(e[1]))
	}
	return p
}

func getLBAStatus(lba uint64, alloc uint32) []byte {
	c := make([]byte, 16)
	c[0], c[1] = scsi.OpServiceActionIn16, scsi.SAGetLBAStatus
	binary.BigEndian.PutUint64(c[2:], lba)
	binary.BigEndian.PutUint32(c[10:], alloc)
	return c
}

type lbaDesc struct {
	lba   uint64
	n     uint32
	state byte
}

func parseLBAStatus(t *testing.T, b []byte) []lbaDesc {
	t.Helper()
	if len(b) < 8 || int(binary.BigEndian.Uint32(b))+4 != len(b) || (len(b)-8)%16 != 0 {
		t.Fatalf("GET LBA STATUS data % x", b)
	}
	var out []lbaDesc
	for p := 8; p < len(b); p += 16 {
		out = append(out, lbaDesc{binary.BigEndian.Uint64(b[p:]), binary.BigEndian.Uint32(b[p+8:]), b[p+12] & 0x0f})
	}
	return out
}

func allocatedBytes(t *testing.T, path string) int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// TestThinProvisioning writes, unmaps, reads zeros back and follows the
// provisioning state through GET LBA STATUS and the backing file.
func TestThinProvisioning(t *testing.T) {
	h := newHarness(t, ManagerOptions{})
	const nb = 4096 // 2 MiB of 512-byte blocks
	lun, path := h.disk("d", nb*512, 512, Flags{})
	if !h.m.Disks()[0].Thin {
		testenv.Missing(t, "the test file system cannot punch holes")
	}
	s := h.session("iqn.init")
	s.clearUA(lun)

	// Provisioning is advertised consistently.
	rc := s.run(lun, readCap16(32), 32, nil)
	good(t, "rc16", rc)
	if rc.data[14]&0xc0 != 0xc0 {
		t.Fatalf("READ CAPACITY 16 byte 14 %#x, want LBPME|LBPRZ", rc.data[14])
	}
	lbp := s.run(lun, inquiry(true, 0xb2, 255), 255, nil)
	good(t, "vpd b2", lbp)
	if lbp.data[5]&0xe4 != 0xe4 || lbp.data[6]&7 != 2 {
		t.Fatalf("VPD B2 % x", lbp.data)
	}
	bl := s.run(lun, inquiry(true, 0xb0, 255), 255, nil)
	good(t, "vpd b0", bl)
	if len(bl.data) != 64 || binary.BigEndian.Uint32(bl.data[20:]) == 0 || binary.BigEndian.Uint32(bl.data[24:]) != maxUnmapDescs ||
		bl.data[5] != maxCAWBlocks || binary.BigEndian.Uint64(bl.data[36:]) == 0 || binary.BigEndian.Uint32(bl.data[44:]) == 0 {
		t.Fatalf("VPD B0 % x", bl.data)
	}

	data := pattern(nb*512, 7)
	good(t, "write all", s.run(lun, cdb16(scsi.OpWrite16, 0, nb, 0), nb*512, data))
	before := allocatedBytes(t, path)
	if st := s.run(lun, getLBAStatus(0, 64), 64, nil); st.status == scsi.StatusGood {
		d := parseLBAStatus(t, st.data)
		if d[0] != (lbaDesc{0, nb, 0}) {
			t.Fatalf("fully written: %+v", d)
		}
	} else {
		t.Fatalf("get lba status: %+v", st)
	}

	// Unmap two extents (one 4 KiB aligned, one not) in one command; the
	// first is listed in adjacent pieces (discarded as one run) with an
	// empty descriptor in between.
	p := unmapParamList([2]uint64{64, 32}, [2]uint64{96, 1}, [2]uint64{500, 0}, [2]uint64{97, 15}, [2]uint64{112, 16}, [2]uint64{1001, 3})
	good(t, "unmap", s.run(lun, unmapCDB(uint16(len(p)), false), uint32(len(p)), p))
	copy(data[64*512:], make([]byte, 64*512))
	copy(data[1001*512:], make([]byte, 3*512))
	r := s.run(lun, cdb16(scsi.OpRead16, 0, nb, 0), nb*512, nil)
	good(t, "read back", r)
	if !bytes.Equal(r.data, data) {
		t.Fatal("data after UNMAP differs: unmapped blocks must read as zeros, others unchanged")
	}
	file, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(file, data) {
		t.Fatalf("backing file differs after UNMAP (%v)", err)
	}
	if after := allocatedBytes(t, path); after > before-64*512 {
		t.Errorf("allocation %d -> %d: UNMAP did not free the blocks", before, after)
	}
	st := s.run(lun, getLBAStatus(0, 1024), 1024, nil)
	good(t, "get lba status", st)
	d := parseLBAStatus(t, st.data)
	want := []lbaDesc{{0, 64, 0}, {64, 64, 1}, {128, nb - 128, 0}}
	if len(d) != len(want) {
		t.Fatalf("descriptors %+v, want %+v", d, want)
	}
	for i := range want {
		if d[i] != want[i] {
			t.Fatalf("descriptors %+v, want %+v", d, want)
		}
	}
	// Starting inside the hole; the allocation length limits descriptors.
	st = s.run(lun, getLBAStatus(100, 24), 24, nil)
	good(t, "get lba status in hole", st)
	if d := parseLBAStatus(t, st.data); len(d) != 1 || d[0] != (lbaDesc{100, 28, 1}) {
		t.Fatalf("from 100: %+v", d)
	}

	// WRITE SAME with UNMAP deallocates (the data is not written: the
	// blocks read as zeros, LBPRZ); without it the block is replicated.
	ws := cdb16(scsi.OpWriteSame16, 256, 256, 0x08)
	good(t, "write same unmap", s.run(lun, ws, 512, bytes.Repeat([]byte{0xff}, 512)))
	st = s.run(lun, getLBAStatus(256, 24), 24, nil)
	if d := parseLBAStatus(t, st.data); d[0] != (lbaDesc{256, 256, 1}) {
		t.Fatalf("after WRITE SAME UNMAP: %+v", d)
	}
	blk := pattern(512, 9)
	good(t, "write same data", s.run(lun, cdb10(scsi.OpWriteSame10, 300, 10, 0), 512, blk))
	ws10 := cdb10(scsi.OpWriteSame10, 0, 0, 0)
	binary.BigEndian.PutUint32(ws10[2:], nb-5) // zero blocks: to the end
	good(t, "write same to end", s.run(lun, ws10, 512, blk))
	r = s.run(lun, cdb16(scsi.OpRead16, 0, nb, 0), nb*512, nil)
	good(t, "read", r)
	for i := 0; i < nb; i++ {
		var w []byte
		switch {
		case i >= 300 && i < 310, i >= nb-5:
			w = blk
		case i >= 256 && i < 512:
			w = make([]byte, 512)
		default:
			w = data[i*512 : i*512+512]
		}
		if !bytes.Equal(r.data[i*512:i*512+512], w) {
			t.Fatalf("block %d wrong after WRITE SAME", i)
		}
	}
	// NDOB writes zeros without data-out.
	good(t, "write same ndob", s.run(lun, cdb16(scsi.OpWriteSame16, 300, 10, 0x01), 0, nil))
	r = s.run(lun, cdb16(scsi.OpRead16, 300, 10, 0), 5120, nil)
	if !bytes.Equal(r.data, make([]byte, 5120)) {
		t.Fatal("NDOB did not write zeros")
	}
}

func TestUnmapParameterErrors(t *testing.T) {
	h := newHarness(t, ManagerOptions{})
	const nb = 1024
	lun, _ := h.disk("d", nb*512, 512, Flags{})
	if !h.m.Disks()[0].Thin {
		testenv.Missing(t, "the test file system cannot punch holes")
	}
	s := h.session("iqn.init")
	s.clearUA(lun)
	ill := scsi.SenseIllegalRequest
	bad := unmapParamList([2]uint64{0, 1})
	binary.BigEndian.PutUint16(bad[2:], 32) // claims two descriptors
	cases := []struct {
		name   string
		anchor bool
		p      []byte
		key    byte
		asc    scsi.ASC
	}{
		{"empty", false, nil, 0, 0},
		{"header only", false, unmapParamList(), 0, 0},
		{"zero blocks at the end", false, unmapParamList([2]uint64{nb, 0}), 0, 0},
		{"short header", false, []byte{0, 6, 0, 16, 0}, ill, scsi.ASCParameterListLengthError},
		{"descriptors beyond the list", false, bad, ill, scsi.ASCParameterListLengthError},
		{"beyond the end", false, unmapParamList([2]uint64{nb - 1, 2}), ill, scsi.ASCLBAOutOfRange},
		{"lba overflow", false, unmapParamList([2]uint64{^uint64(0), 2}), ill, scsi.ASCLBAOutOfRange},
		{"anchor", true, unmapParamList([2]uint64{0, 1}), ill, scsi.ASCInvalidFieldInCDB},
	}
	for _, tc := range cases {
		r := s.run(lun, unmapCDB(uint16(len(tc.p)), tc.anchor), uint32(len(tc.p)), tc.p)
		expect(t, tc.name, r, tc.key, tc.asc)
	}
	// A write-protected LUN refuses UNMAP as a write.
	ro := h.mapLUN("d", true)
	s.clearUA(ro)
	p := unmapParamList([2]uint64{0, 1})
	expect(t, "read-only mapping", s.run(ro, unmapCDB(uint16(len(p)), false), uint32(len(p)), p),
		scsi.SenseDataProtect, scsi.ASCWriteProtected)
}

func TestThickDiskAdvertisesNoProvisioning(t *testing.T) {
	h := newHarness(t, ManagerOptions{})
	lun := h.thickDisk("d", 1024*512)
	s := h.session("iqn.init")
	s.clearUA(lun)
	rc := s.run(lun, readCap16(32), 32, nil)
	if rc.data[14]&0xc0 != 0 {
		t.Fatalf("thick disk sets LBPME/LBPRZ: %#x", rc.data[14])
	}
	bl := s.run(lun, inquiry(true, 0xb0, 255), 255, nil)
	if binary.BigEndian.Uint32(bl.data[20:]) != 0 || binary.BigEndian.Uint32(bl.data[24:]) != 0 {
		t.Fatal("thick disk reports UNMAP limits")
	}
	lbp := s.run(lun, inquiry(true, 0xb2, 255), 255, nil)
	if lbp.data[5] != 0 {
		t.Fatalf("thick disk VPD B2 byte 5 %#x", lbp.data[5])
	}
	// GET LBA STATUS works and reports everything mapped.
	st := s.run(lun, getLBAStatus(10, 64), 64, nil)
	good(t, "get lba status", st)
	if d := parseLBAStatus(t, st.data); len(d) != 1 || d[0] != (lbaDesc{10, 1014, 0}) {
		t.Fatalf("thick: %+v", d)
	}
	if h.m.Disks()[0].Thin {
		t.Fatal("DiskInfo.Thin set for ThinOff")
	}
}

func cawCDB(lba uint64, n byte, flags byte) []byte {
	c := make([]byte, 16)
	c[0], c[1] = scsi.OpCompareAndWrite, flags
	binary.BigEndian.PutUint64(c[2:], lba)
	c[13] = n
	return c
}

func TestCompareAndWrite(t *testing.T) {
	for _, f := range []Flags{{}, {ODirect: true}, {NullIO: true}} {
		h := newHarness(t, ManagerOptions{})
		lun, _ := h.disk("d", 256*512, 512, f)
		s := h.session("iqn.init")
		s.clearUA(lun)
		old := pattern(4*512, 1)
		good(t, "write", s.run(lun, cdb16(scsi.OpWrite16, 8, 4, 0), 2048, old))
		if f.NullIO {
			old = make([]byte, 2048) // NULLIO reads zeros
		}
		neu := pattern(4*512, 2)
		good(t, "caw match", s.run(lun, cawCDB(8, 4, 0x08), 4096, append(append([]byte{}, old...), neu...)))
		r := s.run(lun, cdb16(scsi.OpRead16, 8, 4, 0), 2048, nil)
		if !f.NullIO && !bytes.Equal(r.data, neu) {
			t.Fatal("COMPARE AND WRITE did not write")
		}
		if f.NullIO {
			continue
		}
		// A miscompare reports the offset and writes nothing.
		cmp := append([]byte{}, neu...)
		cmp[1234] ^= 0xff
		r = s.run(lun, cawCDB(8, 4, 0), 4096, append(cmp, old...))
		expect(t, "caw miscompare", r, scsi.SenseMiscompare, scsi.ASCMiscompareDuringVerify)
		if !r.infoOK || r.info != 1234 {
			t.Fatalf("miscompare INFORMATION %d (valid %v), want 1234", r.info, r.infoOK)
		}
		r = s.run(lun, cdb16(scsi.OpRead16, 8, 4, 0), 2048, nil)
		if !bytes.Equal(r.data, neu) {
			t.Fatal("a miscompare changed the medium")
		}
		good(t, "caw zero blocks", s.run(lun, cawCDB(8, 0, 0), 0, nil))
	}
}

// TestCompareAndWriteAtomic races COMPARE AND WRITE increments of one
// counter block from several sessions with plain writes of other blocks in
// the same range: every successful CAW must see the value it compared, so
// the final count equals the number of successes.
func TestCompareAndWriteAtomic(t *testing.T) {
	h := newHarness(t, ManagerOptions{})
	lun, _ := h.disk("d", 64*512, 512, Flags{})
	const workers, rounds = 4, 60
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for w := 0; w < workers; w++ {
		s := h.session("iqn.init" + string(rune('a'+w)))
		s.clearUA(lun)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				r := s.run(lun, cdb16(scsi.OpRead16, 0, 1, 0), 512, nil)
				if r.status != scsi.StatusGood {
					t.Errorf("read: %+v", r)
					return
				}
				cur := binary.BigEndian.Uint64(r.data)
				buf := make([]byte, 1024)
				copy(buf, r.data)
				copy(buf[512:], r.data)
				binary.BigEndian.PutUint64(buf[512:], cur+1)
				r = s.run(lun, cawCDB(0, 1, 0), 1024, buf)
				switch {
				case r.status == scsi.StatusGood:
					mu.Lock()
					wins++
					mu.Unlock()
				case r.key != scsi.SenseMiscompare:
					t.Errorf("caw: %+v", r)
					return
				}
				blk := pattern(512, uint64(i))
				if r := s.run(lun, cdb10(scsi.OpWrite10, 1+uint32(i%8), 1, 0), 512, blk); r.status != scsi.StatusGood {
					t.Errorf("write: %+v", r)
					return
				}
			}
		}()
	}
	wg.Wait()
	s := h.session("iqn.check")
	s.clearUA(lun)
	r := s.run(lun, cdb16(scsi.OpRead16, 0, 1, 0), 512, nil)
	if got := binary.BigEndian.Uint64(r.data); got != uint64(wins) || wins == 0 {
		t.Fatalf("counter %d after %d successful COMPARE AND WRITEs", got, wins)
	}
}

func TestOrWriteAndWriteAtomic(t *testing.T) {
	h := newHarness(t, ManagerOptions{})
	const nb = 20000 // more than MAXIMUM ATOMIC TRANSFER LENGTH
	lun, _ := h.disk("d", nb*512, 512, Flags{})
	s := h.session("iqn.init")
	s.clearUA(lun)
	a := bytes.Repeat([]byte{0xa5}, 1024)
	good(t, "write", s.run(lun, cdb16(scsi.OpWrite16, 4, 2, 0), 1024, a))
	good(t, "orwrite", s.run(lun, cdb16(scsi.OpOrWrite, 4, 2, 0x08), 1024, bytes.Repeat([]byte{0x5a}, 1024)))
	r := s.run(lun, cdb16(scsi.OpRead16, 4, 2, 0), 1024, nil)
	if !bytes.Equal(r.data, bytes.Repeat([]byte{0xff}, 1024)) {
		t.Fatal("ORWRITE did not OR")
	}
	good(t, "orwrite 0", s.run(lun, cdb16(scsi.OpOrWrite, nb, 0, 0), 0, nil))

	wa := make([]byte, 16)
	wa[0] = scsi.OpWriteAtomic16
	binary.BigEndian.PutUint64(wa[2:], 10)
	binary.BigEndian.PutUint16(wa[12:], 3)
	data := pattern(1536, 3)
	good(t, "write atomic", s.run(lun, wa, 1536, data))
	r = s.run(lun, cdb16(scsi.OpRead16, 10, 3, 0), 1536, nil)
	if !bytes.Equal(r.data, data) {
		t.Fatal("WRITE ATOMIC data differs")
	}
	binary.BigEndian.PutUint16(wa[12:], uint16(maxAtomic(&vdev{shift: 9})+1))
	expect(t, "write atomic too long", s.run(lun, wa, 0, nil), scsi.SenseIllegalRequest, scsi.ASCInvalidFieldInCDB)
}

func TestReadDefectData(t *testing.T) {
	h := newHarness(t, ManagerOptions{})
	lun, _ := h.disk("d", 64*512, 512, Flags{})
	s := h.session("iqn.init")
	s.clearUA(lun)
	r := s.run(lun, []byte{scsi.OpReadDefectData10, 0, 0x18 | 5, 0, 0, 0, 0, 0, 32, 0}, 32, nil)
	good(t, "rdd10", r)
	if !bytes.Equal(r.data, []byte{0, 0x1d, 0, 0}) {
		t.Fatalf("rdd10 % x", r.data)
	}
	r = s.run(lun, []byte{scsi.OpReadDefectData12, 0x08 | 4, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0}, 32, nil)
	good(t, "rdd12", r)
	if !bytes.Equal(r.data, []byte{0, 0x0c, 0, 0, 0, 0, 0, 0}) {
		t.Fatalf("rdd12 % x", r.data)
	}
}

func FuzzUnmapList(f *testing.F) {
	f.Add(unmapParamList([2]uint64{0, 1}), uint64(100))
	f.Add(unmapParamList([2]uint64{99, 1}, [2]uint64{0, 0}), uint64(100))
	f.Add([]byte{0, 6, 0, 16, 0, 0, 0}, uint64(100))
	f.Add(unmapParamList([2]uint64{^uint64(0), 1}), uint64(100))
	f.Fuzz(func(t *testing.T, p []byte, nb uint64) {
		descs, blocks, s, ok := unmapList(p, nb)
		if !ok {
			if s.Key != scsi.SenseIllegalRequest {
				t.Fatalf("error with key %#x", s.Key)
			}
			return
		}
		var sum uint64
		for i := 0; i+16 <= len(descs); i += 16 {
			lba := binary.BigEndian.Uint64(descs[i:])
			n := uint64(binary.BigEndian.Uint32(descs[i+8:]))
			if lba > nb || n > nb-lba {
				t.Fatalf("accepted out-of-range extent %d+%d of %d", lba, n, nb)
			}
			sum += n
		}
		if sum != blocks || len(descs)%16 != 0 || len(descs) > 16*maxUnmapDescs {
			t.Fatalf("blocks %d vs %d, %d descriptor bytes", blocks, sum, len(descs))
		}
	})
}

func TestSetThinProvisioning(t *testing.T) {
	h := newHarness(t, ManagerOptions{})
	lun, _ := h.disk("d", 1024*512, 512, Flags{})
	if !h.m.Disks()[0].Thin {
		testenv.Missing(t, "the test file system cannot punch holes")
	}
	s := h.session("iqn.init")
	s.clearUA(lun)
	if err := h.m.SetThinProvisioning("d", ThinOff); err != nil {
		t.Fatal(err)
	}
	expect(t, "inquiry data changed", s.run(lun, tur(), 0, nil), scsi.SenseUnitAttention, scsi.ASCInquiryDataHasChanged)
	expect(t, "capacity data changed", s.run(lun, tur(), 0, nil), scsi.SenseUnitAttention, scsi.ASCCapacityDataHasChanged)
	p := unmapParamList([2]uint64{0, 1})
	expect(t, "unmap when thick", s.run(lun, unmapCDB(uint16(len(p)), false), uint32(len(p)), p),
		scsi.SenseIllegalRequest, scsi.ASCInvalidCommandOperationCode)
	if err := h.m.SetThinProvisioning("d", ThinOff); err != nil {
		t.Fatal(err)
	}
	good(t, "no UA without a change", s.run(lun, tur(), 0, nil))
	if err := h.m.SetThinProvisioning("d", ThinAuto); err != nil || !h.m.Disks()[0].Thin {
		t.Fatalf("back to auto: %v", err)
	}
	s.clearUA(lun)
	good(t, "unmap when thin", s.run(lun, unmapCDB(uint16(len(p)), false), uint32(len(p)), p))
	if err := h.m.SetThinProvisioning("nope", ThinOn); err == nil {
		t.Fatal("unknown device accepted")
	}
	if err := h.m.SetThinProvisioning("d", ThinMode(9)); err == nil {
		t.Fatal("bad mode accepted")
	}
}
