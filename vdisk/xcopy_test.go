package vdisk

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/scstd/scstd/target/scsi"
)

// naaOf reads the NAA designator of a LUN through INQUIRY VPD 0x83.
func naaOf(t *testing.T, s *sess, lun uint64) []byte {
	t.Helper()
	r := s.run(lun, inquiry(true, 0x83, 255), 255, nil)
	good(t, "vpd 83", r)
	for p := 4; p+4 <= len(r.data); p += 4 + int(r.data[p+3]) {
		if r.data[p+1]&0x0f == 3 {
			return r.data[p+4 : p+4+int(r.data[p+3])]
		}
	}
	t.Fatal("no NAA designator")
	return nil
}

type xcSeg struct {
	src, dst   uint16
	n          uint16
	slba, dlba uint64
}

func cscd(naa []byte, bs uint32) []byte {
	d := make([]byte, xcCSCDLen)
	d[0] = xcCSCDIdent
	d[4], d[5], d[7] = 0x01, 0x03, byte(len(naa))
	copy(d[8:], naa)
	d[29], d[30], d[31] = byte(bs>>16), byte(bs>>8), byte(bs)
	return d
}

func xcParamList(listID, usage byte, cscds [][]byte, segs []xcSeg) []byte {
	var c, sg []byte
	for _, d := range cscds {
		c = append(c, d...)
	}
	for _, s := range segs {
		d := make([]byte, xcB2BLen)
		d[0] = xcSegBlockBlock
		binary.BigEndian.PutUint16(d[2:], xcB2BLen-4)
		binary.BigEndian.PutUint16(d[4:], s.src)
		binary.BigEndian.PutUint16(d[6:], s.dst)
		binary.BigEndian.PutUint16(d[10:], s.n)
		binary.BigEndian.PutUint64(d[12:], s.slba)
		binary.BigEndian.PutUint64(d[20:], s.dlba)
		sg = append(sg, d...)
	}
	h := make([]byte, xcHeaderLen)
	h[0], h[1] = listID, usage<<3
	binary.BigEndian.PutUint16(h[2:], uint16(len(c)))
	binary.BigEndian.PutUint32(h[8:], uint32(len(sg)))
	return append(append(h, c...), sg...)
}

func xcopyCDB(pll int) []byte {
	c := make([]byte, 16)
	c[0] = scsi.OpExtendedCopy
	binary.BigEndian.PutUint32(c[10:], uint32(pll))
	return c
}

func rcrCDB(sa, listID byte) []byte {
	c := make([]byte, 16)
	c[0], c[1], c[2] = scsi.OpReceiveCopyResults, sa, listID
	binary.BigEndian.PutUint32(c[10:], 1024)
	return c
}

func TestExtendedCopy(t *testing.T) {
	h := newHarness(t, ManagerOptions{})
	a, _ := h.disk("a", 1024*512, 512, Flags{})
	b, _ := h.disk("b", 1024*512, 512, Flags{ODirect: true})
	hiddenLUN, _ := h.disk("hidden", 1024*512, 512, Flags{}) // unmapped below: not a copy target
	s := h.session("iqn.init")
	s.clearUA(a)
	s.clearUA(b)
	naaA, naaB := naaOf(t, s, a), naaOf(t, s, b)

	expect(t, "status before any copy", s.run(a, rcrCDB(0, 1), 1024, nil), scsi.SenseIllegalRequest, scsi.ASCInvalidFieldInCDB)
	op := s.run(a, rcrCDB(3, 0), 1024, nil)
	good(t, "operating parameters", op)
	if binary.BigEndian.Uint16(op.data[8:]) != xcMaxCSCDs || binary.BigEndian.Uint16(op.data[10:]) != xcMaxSegments ||
		op.data[43] != 2 || !bytes.Equal(op.data[44:46], []byte{0x02, 0xe4}) {
		t.Fatalf("operating parameters % x", op.data)
	}

	data := pattern(300*512, 5)
	good(t, "write", s.run(a, cdb16(scsi.OpWrite16, 0, 300, 0), 300*512, data))
	// Within LUN a, then from a to b, in one parameter list.
	p := xcParamList(1, 0, [][]byte{cscd(naaA, 512), cscd(naaB, 512)},
		[]xcSeg{{0, 0, 100, 0, 500}, {0, 1, 300, 0, 700}})
	good(t, "xcopy", s.run(a, xcopyCDB(len(p)), uint32(len(p)), p))
	r := s.run(a, cdb16(scsi.OpRead16, 500, 100, 0), 100*512, nil)
	if !bytes.Equal(r.data, data[:100*512]) {
		t.Fatal("copy within the LUN differs")
	}
	r = s.run(b, cdb16(scsi.OpRead16, 700, 300, 0), 300*512, nil)
	if !bytes.Equal(r.data, data) {
		t.Fatal("copy across LUNs differs")
	}
	st := s.run(a, rcrCDB(0, 1), 1024, nil)
	good(t, "copy status", st)
	if st.data[4] != 1 || binary.BigEndian.Uint16(st.data[5:]) != 2 || binary.BigEndian.Uint32(st.data[8:]) != 200 {
		t.Fatalf("copy status % x", st.data)
	}

	s.clearUA(hiddenLUN)
	hidden := naaOf(t, s, hiddenLUN)
	if err := h.core.DelLUN("Default", "hidden"); err != nil {
		t.Fatal(err)
	}
	ro := h.mapLUN("b", true)
	s.clearUA(a)
	ill := scsi.SenseIllegalRequest
	cases := []struct {
		name string
		p    []byte
		key  byte
		asc  scsi.ASC
	}{
		{"empty", nil, 0, 0},
		{"short header", make([]byte, 10), ill, scsi.ASCParameterListLengthError},
		{"truncated", xcParamList(2, 2, [][]byte{cscd(naaA, 512)}, []xcSeg{{0, 0, 1, 0, 1}})[:40], ill, scsi.ASCParameterListLengthError},
		{"bad cscd type", func() []byte {
			p := xcParamList(2, 2, [][]byte{cscd(naaA, 512)}, []xcSeg{{0, 0, 1, 0, 1}})
			p[16] = 0xe0
			return p
		}(), ill, ascUnsupportedCSCDType},
		{"bad segment type", func() []byte {
			p := xcParamList(2, 2, [][]byte{cscd(naaA, 512)}, []xcSeg{{0, 0, 1, 0, 1}})
			p[48] = 0x03
			return p
		}(), ill, ascUnsupportedSegType},
		{"too many cscds", xcParamList(2, 2, bytes.Split(bytes.Repeat(append(cscd(naaA, 512), '|'), xcMaxCSCDs+1), []byte{'|'})[:xcMaxCSCDs+1],
			[]xcSeg{{0, 0, 1, 0, 1}}), ill, ascTooManyCSCDs},
		{"too many segments", xcParamList(2, 2, [][]byte{cscd(naaA, 512)}, make([]xcSeg, xcMaxSegments+1)), ill, ascTooManySegments},
		{"bad index", xcParamList(2, 2, [][]byte{cscd(naaA, 512)}, []xcSeg{{0, 1, 1, 0, 1}}), scsi.SenseCopyAborted, ascCopyTargetNotReach},
		{"unmapped target", xcParamList(2, 2, [][]byte{cscd(naaA, 512), cscd(hidden, 512)}, []xcSeg{{0, 1, 1, 0, 1}}), scsi.SenseCopyAborted, ascCopyTargetNotReach},
		{"beyond the end", xcParamList(2, 2, [][]byte{cscd(naaA, 512)}, []xcSeg{{0, 0, 2, 0, 1023}}), scsi.SenseCopyAborted, 0},
		{"block length", xcParamList(2, 2, [][]byte{cscd(naaA, 4096)}, []xcSeg{{0, 0, 1, 0, 1}}), ill, scsi.ASCInvalidFieldInParameterList},
	}
	for _, tc := range cases {
		expect(t, tc.name, s.run(a, xcopyCDB(len(tc.p)), uint32(len(tc.p)), tc.p), tc.key, tc.asc)
	}
	// Through a read-only mapping the destination is write-protected.
	s.clearUA(ro)
	p = xcParamList(3, 0, [][]byte{cscd(naaB, 512)}, []xcSeg{{0, 0, 1, 0, 1}})
	s2 := h.session("iqn.other")
	s2.clearUA(ro)
	expect(t, "read-only mapping", s2.run(ro, xcopyCDB(len(p)), uint32(len(p)), p), scsi.SenseCopyAborted, scsi.ASCWriteProtected)
	if st := s2.run(ro, rcrCDB(0, 3), 1024, nil); st.status != scsi.StatusGood || st.data[4] != 2 {
		t.Fatalf("failed copy status: %+v", st)
	}
}

func FuzzParseXCopy(f *testing.F) {
	naa := make([]byte, 8)
	f.Add(xcParamList(1, 0, [][]byte{cscd(naa, 512)}, []xcSeg{{0, 0, 1, 0, 1}}))
	f.Add(xcParamList(1, 3, [][]byte{cscd(naa, 512), cscd(naa, 4096)}, []xcSeg{{0, 1, 1, 0, 1}, {1, 0, 5, 9, 9}}))
	f.Add(make([]byte, 16))
	f.Fuzz(func(t *testing.T, p []byte) {
		l, s, ok := parseXCopy(p)
		if !ok {
			if s.Key != scsi.SenseIllegalRequest {
				t.Fatalf("key %#x", s.Key)
			}
			return
		}
		if len(l.cscds) != l.numCSCDs*xcCSCDLen || len(l.segs) != l.numSegs*xcB2BLen ||
			l.numCSCDs > xcMaxCSCDs || l.numSegs > xcMaxSegments {
			t.Fatalf("inconsistent list: %d cscds in %d bytes, %d segments in %d bytes", l.numCSCDs, len(l.cscds), l.numSegs, len(l.segs))
		}
	})
}
