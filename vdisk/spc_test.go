package vdisk

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/scstd/scstd/target"
	"github.com/scstd/scstd/target/scsi"
)

func TestInquiry(t *testing.T) {
	h := newHarness(t, ManagerOptions{VdiskID: 7})
	lun, _ := h.disk("disk01", 1<<20, 512, Flags{})
	rm, _ := h.disk("rm01", 1<<20, 4096, Flags{Removable: true, BlockIO: true})
	s := h.session("iqn.init")
	s.clearUA(lun)
	s.clearUA(rm)

	r := s.run(lun, inquiry(false, 0, 260), 260, nil)
	good(t, "std inquiry", r)
	d := r.data
	if len(d) < 36 || int(d[4]) != len(d)-5 {
		t.Fatalf("standard data %d bytes, additional length %d", len(d), d[4])
	}
	if d[0] != 0 || d[1]&0x80 != 0 || d[2] != 6 || d[3]&0x0f != 2 || d[7]&0x02 == 0 {
		t.Fatalf("header % x", d[:8])
	}
	if got := string(d[8:16]); got != "SCST_FIO" {
		t.Fatalf("vendor %q", got)
	}
	if got := string(d[16:32]); got != "disk01          " {
		t.Fatalf("product %q", got)
	}
	var vers []uint16
	for i := 58; i+1 < len(d); i += 2 {
		vers = append(vers, binary.BigEndian.Uint16(d[i:]))
	}
	for _, want := range []uint16{verSPC4, verSBC3} {
		found := false
		for _, v := range vers {
			found = found || v == want
		}
		if !found {
			t.Fatalf("version descriptor %#x missing from %x", want, vers)
		}
	}
	// Allocation lengths: truncation, 16-bit lengths, zero.
	for _, alloc := range []uint16{0, 5, 36, 255, 511, 512} {
		r := s.run(lun, inquiry(false, 0, alloc), uint32(alloc), nil)
		good(t, "alloc", r)
		want := min(int(alloc), len(d))
		if r.xferLen != uint32(want) || !bytes.Equal(r.data, d[:want]) {
			t.Fatalf("alloc %d: TransferLen %d", alloc, r.xferLen)
		}
	}
	r = s.run(rm, inquiry(false, 0, 96), 96, nil)
	if r.data[1]&0x80 == 0 || string(r.data[8:16]) != "SCST_BIO" {
		t.Fatalf("removable blockio inquiry % x", r.data[:16])
	}

	// VPD pages: the supported list is sorted and each page is readable.
	r = s.run(lun, inquiry(true, 0x00, 255), 255, nil)
	good(t, "vpd 0", r)
	pages := r.data[4 : 4+binary.BigEndian.Uint16(r.data[2:])]
	if !bytes.Equal(pages, []byte{0x00, 0x80, 0x83, 0x8f, 0xb0, 0xb1, 0xb2}) {
		t.Fatalf("supported pages % x", pages)
	}
	for _, p := range pages {
		r := s.run(lun, inquiry(true, p, 255), 255, nil)
		good(t, "vpd page", r)
		if r.data[1] != p || int(binary.BigEndian.Uint16(r.data[2:]))+4 != len(r.data) {
			t.Fatalf("page %#x: header % x len %d", p, r.data[:4], len(r.data))
		}
	}
	id := h.m.devIDNum("disk01")
	if id>>32 != 7 {
		t.Fatalf("id %x lacks VdiskID", id)
	}
	r = s.run(lun, inquiry(true, 0x80, 255), 255, nil)
	if got := string(r.data[4:]); got != hexU64(id) {
		t.Fatalf("serial %q", got)
	}
	r = s.run(lun, inquiry(true, 0x83, 255), 255, nil)
	t10 := h.m.Disks()[0].T10ID
	if !bytes.Contains(r.data, []byte("SCST_FIO"+t10)) {
		t.Fatalf("device id page lacks T10 vendor designator: %q", r.data)
	}
	naa := false
	for p := 4; p+4 <= len(r.data); p += 4 + int(r.data[p+3]) {
		if r.data[p+1]&0x0f == 3 && r.data[p+4]>>4 == 3 {
			naa = true
		}
	}
	if !naa {
		t.Fatal("no NAA designator")
	}
	r = s.run(lun, inquiry(true, 0xb0, 255), 255, nil)
	if got := binary.BigEndian.Uint32(r.data[8:]); got != maxXferBytes/512 || r.data[3] != 0x3c {
		t.Fatalf("block limits max transfer %d len %#x", got, r.data[3])
	}
	r = s.run(rm, inquiry(true, 0xb0, 255), 255, nil)
	if got := binary.BigEndian.Uint32(r.data[8:]); got != maxXferBytes/4096 {
		t.Fatalf("4K block limits max transfer %d", got)
	}
}

func hexU64(v uint64) string {
	const digits = "0123456789abcdef"
	if v == 0 {
		return "0"
	}
	var b []byte
	for ; v > 0; v >>= 4 {
		b = append([]byte{digits[v&15]}, b...)
	}
	return string(b)
}

func TestReadCapacity(t *testing.T) {
	h := newHarness(t, ManagerOptions{})
	lun, _ := h.disk("d", 1000*2048, 2048, Flags{})
	s := h.session("iqn.init")
	s.clearUA(lun)
	r := s.run(lun, []byte{scsi.OpReadCapacity10, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 8, nil)
	good(t, "rc10", r)
	if binary.BigEndian.Uint32(r.data) != 999 || binary.BigEndian.Uint32(r.data[4:]) != 2048 {
		t.Fatalf("rc10 % x", r.data)
	}
	for alloc := uint32(0); alloc <= 32; alloc++ {
		r := s.run(lun, readCap16(alloc), alloc, nil)
		good(t, "rc16", r)
		if r.xferLen != alloc {
			t.Fatalf("rc16 alloc %d TransferLen %d", alloc, r.xferLen)
		}
	}
	r = s.run(lun, readCap16(32), 32, nil)
	if binary.BigEndian.Uint64(r.data) != 999 || binary.BigEndian.Uint32(r.data[8:]) != 2048 || r.data[12] != 0 || r.data[13] != 1 {
		t.Fatalf("rc16 % x", r.data)
	}
}

// modeSensePage extracts page code from MODE SENSE(6) data.
func modeSensePage(data []byte, code byte) []byte {
	p := 4 + int(data[3])
	end := int(data[0]) + 1
	for p+2 <= end && p+2 <= len(data) {
		l := 2 + int(data[p+1])
		if data[p]&0x3f == code {
			return data[p : p+l]
		}
		p += l
	}
	return nil
}

func TestModeSense(t *testing.T) {
	h := newHarness(t, ManagerOptions{})
	lun, _ := h.disk("d", 4096*512, 512, Flags{})
	wt, _ := h.disk("wt", 4096*512, 512, Flags{WriteThrough: true})
	nv, _ := h.disk("nv", 4096*512, 512, Flags{NVCache: true})
	s := h.session("iqn.init")
	for _, l := range []uint64{lun, wt, nv} {
		s.clearUA(l)
	}
	r := s.run(lun, modeSense6(0, 0x3f, 0, false, 255), 255, nil)
	good(t, "all pages", r)
	if int(r.data[0])+1 != len(r.data) || r.data[3] != 8 || r.data[2] != 0x10 {
		t.Fatalf("header % x len %d", r.data[:4], len(r.data))
	}
	if nb := binary.BigEndian.Uint32(r.data[4:]); nb != 4096 || binary.BigEndian.Uint32(r.data[8:])&0xffffff != 512 {
		t.Fatalf("block descriptor % x", r.data[4:12])
	}
	for _, code := range []byte{0x01, 0x03, 0x04, 0x08, 0x0a, 0x1c} {
		all := modeSensePage(r.data, code)
		if all == nil {
			t.Fatalf("page %#x missing from all pages", code)
		}
		one := s.run(lun, modeSense6(0, code, 0, true, 255), 255, nil)
		good(t, "one page", one)
		if one.data[3] != 0 || !bytes.Equal(modeSensePage(one.data, code), all) {
			t.Fatalf("page %#x differs when read alone", code)
		}
		good(t, "subpage ff", s.run(lun, modeSense6(0, code, 0xff, true, 255), 255, nil))
	}
	if c := modeSensePage(r.data, 0x08); c[2]&0x04 == 0 {
		t.Fatal("WCE must be set by default")
	}
	ctl := modeSensePage(r.data, 0x0a)
	if ctl[2]&0x04 != 0 || ctl[4]&0x08 != 0 || binary.BigEndian.Uint16(ctl[8:]) == 0 {
		t.Fatalf("control page % x", ctl)
	}
	// Changeable mask.
	ch := s.run(lun, modeSense6(1, 0x3f, 0, true, 255), 255, nil)
	if c := modeSensePage(ch.data, 0x08); c[2] != 0x04 {
		t.Fatalf("caching changeable % x", c)
	}
	if c := modeSensePage(ch.data, 0x0a); c[2] != 0x04 || c[4] != 0x08 {
		t.Fatalf("control changeable % x", c)
	}
	// Defaults; saved pages unsupported without a state dir.
	good(t, "default", s.run(lun, modeSense6(2, 0x3f, 0, false, 255), 255, nil))
	expect(t, "saved", s.run(lun, modeSense6(3, 0x3f, 0, false, 255), 255, nil),
		scsi.SenseIllegalRequest, scsi.ASCSavingParametersNotSupported)
	expect(t, "bad page", s.run(lun, modeSense6(0, 0x05, 0, false, 255), 255, nil), scsi.SenseIllegalRequest, scsi.ASCInvalidFieldInCDB)
	expect(t, "bad subpage", s.run(lun, modeSense6(0, 0x0a, 0x01, false, 255), 255, nil), scsi.SenseIllegalRequest, scsi.ASCInvalidFieldInCDB)
	// Residuals: 4-byte allocation returns 4 bytes.
	r4 := s.run(lun, modeSense6(0, 0x3f, 0, false, 4), 4, nil)
	if r4.xferLen != 4 || len(r4.data) != 4 {
		t.Fatalf("alloc 4: %d", r4.xferLen)
	}
	// MODE SENSE(10) with LLBAA.
	r10 := s.run(lun, modeSense10(0, 0x08, 0, 0x10, 512), 512, nil)
	good(t, "ms10", r10)
	if r10.data[4]&1 == 0 || binary.BigEndian.Uint16(r10.data[6:]) != 16 || binary.BigEndian.Uint64(r10.data[8:]) != 4096 {
		t.Fatalf("ms10 llbaa % x", r10.data[:24])
	}
	if int(binary.BigEndian.Uint16(r10.data))+2 != len(r10.data) {
		t.Fatal("ms10 length")
	}
	// WRITE_THROUGH and NV_CACHE show WCE=0; NV_CACHE makes it fixed.
	for _, l := range []uint64{wt, nv} {
		r := s.run(l, modeSense6(0, 0x08, 0, true, 255), 255, nil)
		if modeSensePage(r.data, 0x08)[2]&0x04 != 0 {
			t.Fatal("WCE set with WRITE_THROUGH/NV_CACHE")
		}
	}
	r = s.run(nv, modeSense6(1, 0x08, 0, true, 255), 255, nil)
	if modeSensePage(r.data, 0x08)[2] != 0 {
		t.Fatal("WCE changeable with NV_CACHE")
	}
}

// modeSelectList builds a MODE SELECT(6) parameter list carrying page.
func modeSelectList(page []byte) []byte {
	b := make([]byte, 4, 4+len(page))
	b = append(b, page...)
	b[4] &^= 0x80 // PS is reserved in MODE SELECT
	return b
}

func TestModeSelect(t *testing.T) {
	h := newHarness(t, ManagerOptions{StateDir: t.TempDir()})
	lun, _ := h.disk("d", 4096*512, 512, Flags{})
	a := h.session("iqn.a")
	b := h.session("iqn.b")
	a.clearUA(lun)
	b.clearUA(lun)
	get := func(code byte) []byte {
		r := a.run(lun, modeSense6(0, code, 0, true, 255), 255, nil)
		good(t, "mode sense", r)
		return append([]byte(nil), modeSensePage(r.data, code)...)
	}
	sel := func(page []byte, sp bool) result {
		l := modeSelectList(page)
		return a.run(lun, modeSelect6(true, sp, byte(len(l))), uint32(len(l)), l)
	}
	// D_SENSE: the next error on the same nexus is in descriptor format;
	// the other nexus gets MODE PARAMETERS CHANGED, this one does not.
	ctl := get(0x0a)
	ctl[2] |= 0x04
	good(t, "set d_sense", sel(ctl, false))
	r := a.run(lun, cdb16(scsi.OpRead16, ^uint64(0), 1, 0), 512, nil)
	expect(t, "lba oob", r, scsi.SenseIllegalRequest, scsi.ASCLBAOutOfRange)
	if !r.desc {
		t.Fatalf("sense not descriptor format: % x", r.sense)
	}
	expect(t, "other nexus UA", b.run(lun, tur(), 0, nil), scsi.SenseUnitAttention, scsi.ASCModeParametersChanged)
	good(t, "own nexus no UA", a.run(lun, tur(), 0, nil))
	ctl[2] &^= 0x04
	good(t, "clear d_sense", sel(ctl, false))
	if r := a.run(lun, cdb16(scsi.OpRead16, ^uint64(0), 1, 0), 512, nil); r.desc {
		t.Fatal("still descriptor format")
	}
	// SWP write-protects the LUN; clearing it allows writes again.
	ctl[4] |= 0x08
	good(t, "set swp", sel(ctl, false))
	good(t, "read under swp", a.run(lun, cdb10(scsi.OpRead10, 0, 1, 0), 512, nil))
	expect(t, "write under swp", a.run(lun, cdb10(scsi.OpWrite10, 0, 1, 0), 512, make([]byte, 512)),
		scsi.SenseDataProtect, scsi.ASCWriteProtected)
	ctl[4] &^= 0x08
	good(t, "clear swp", sel(ctl, false))
	good(t, "write", a.run(lun, cdb10(scsi.OpWrite10, 0, 1, 0), 512, make([]byte, 512)))
	// WCE off, saved: persists and shows as saved values.
	cache := get(0x08)
	cache[2] &^= 0x04
	good(t, "wce off saved", sel(cache, true))
	if get(0x08)[2]&0x04 != 0 || !h.m.diskFUA(t, "d") {
		t.Fatal("WCE still on")
	}
	rs := a.run(lun, modeSense6(3, 0x08, 0, true, 255), 255, nil)
	good(t, "saved values", rs)
	if modeSensePage(rs.data, 0x08)[2]&0x04 != 0 {
		t.Fatal("saved WCE not cleared")
	}
	// Errors: unchangeable bit, wrong length, unknown page, short list, PF=0.
	bad := get(0x0a)
	bad[3] ^= 0x10 // queue algorithm modifier is not changeable
	r = sel(bad, false)
	expect(t, "unchangeable", r, scsi.SenseIllegalRequest, scsi.ASCInvalidFieldInParameterList)
	if r.fieldPtr != 4+3 {
		t.Fatalf("field pointer %d", r.fieldPtr)
	}
	short := get(0x0a)
	short[1] = 4
	expect(t, "page length", sel(short[:6], false), scsi.SenseIllegalRequest, scsi.ASCInvalidFieldInParameterList)
	expect(t, "unknown page", sel([]byte{0x05, 0x02, 0, 0}, false), scsi.SenseIllegalRequest, scsi.ASCInvalidFieldInParameterList)
	expect(t, "list longer than data", a.run(lun, modeSelect6(true, false, 20), 4, make([]byte, 4)),
		scsi.SenseIllegalRequest, scsi.ASCParameterListLengthError)
	expect(t, "header only short", a.run(lun, modeSelect6(true, false, 2), 2, make([]byte, 2)),
		scsi.SenseIllegalRequest, scsi.ASCParameterListLengthError)
	expect(t, "pf=0", a.run(lun, modeSelect6(false, false, 4), 4, make([]byte, 4)), scsi.SenseIllegalRequest, scsi.ASCInvalidFieldInCDB)
	good(t, "empty list", a.run(lun, modeSelect6(true, false, 0), 0, nil))
	// A block descriptor with our block size is accepted, another is not.
	bd := []byte{0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 2, 0}
	good(t, "block descriptor", a.run(lun, modeSelect6(true, false, 12), 12, bd))
	bd[10] = 4
	expect(t, "block size change", a.run(lun, modeSelect6(true, false, 12), 12, bd), scsi.SenseIllegalRequest, scsi.ASCInvalidFieldInParameterList)

	// The saved WCE=0 comes back when the device is reopened.
	if err := h.m.Close("d"); err != nil {
		t.Fatal(err)
	}
	if err := h.m.Open("d", h.dir+"/d.img", 512, Flags{}); err != nil {
		t.Fatal(err)
	}
	if !h.m.diskFUA(t, "d") {
		t.Fatal("saved WCE=0 not restored")
	}
}

// diskFUA reports whether plain writes of the named disk are forced durable.
func (m *Manager) diskFUA(t *testing.T, name string) bool {
	v, err := m.lookup(name, scsi.TypeDisk)
	if err != nil {
		t.Fatal(err)
	}
	return v.fua(false)
}

func TestStartStopRemovable(t *testing.T) {
	h := newHarness(t, ManagerOptions{})
	lun, _ := h.disk("rm", 64*512, 512, Flags{Removable: true})
	s := h.session("iqn.init")
	s.clearUA(lun)
	ssu := func(immed bool, pc, b4 byte) []byte {
		c := []byte{scsi.OpStartStopUnit, 0, 0, 0, pc<<4 | b4, 0}
		if immed {
			c[1] = 1
		}
		return c
	}
	for _, b4 := range []byte{0x00, 0x01, 0x04, 0x05} { // LOEJ=0: no eject
		good(t, "no loej", s.run(lun, ssu(true, 0, b4), 0, nil))
		good(t, "tur", s.run(lun, tur(), 0, nil))
	}
	for pc := byte(1); pc < 16; pc++ { // power conditions never eject
		good(t, "pc", s.run(lun, ssu(true, pc, 0x02), 0, nil))
		good(t, "tur", s.run(lun, tur(), 0, nil))
	}
	good(t, "eject", s.run(lun, ssu(true, 0, 0x02), 0, nil))
	expect(t, "tur ejected", s.run(lun, tur(), 0, nil), scsi.SenseNotReady, scsi.ASCMediumNotPresent)
	expect(t, "read ejected", s.run(lun, cdb10(scsi.OpRead10, 0, 1, 0), 512, nil), scsi.SenseNotReady, scsi.ASCMediumNotPresent)
	good(t, "inquiry ejected", s.run(lun, inquiry(false, 0, 36), 36, nil))
	good(t, "load", s.run(lun, ssu(false, 0, 0x03), 0, nil))
	good(t, "tur loaded", s.run(lun, tur(), 0, nil))
	// PREVENT blocks the eject until ALLOW.
	good(t, "prevent", s.run(lun, []byte{scsi.OpPreventAllowMediumRemoval, 0, 0, 0, 1, 0}, 0, nil))
	expect(t, "eject prevented", s.run(lun, ssu(false, 0, 0x02), 0, nil), scsi.SenseIllegalRequest, scsi.ASCMediumRemovalPrevented)
	good(t, "allow", s.run(lun, []byte{scsi.OpPreventAllowMediumRemoval, 0, 0, 0, 0, 0}, 0, nil))
	good(t, "eject allowed", s.run(lun, ssu(false, 0, 0x02), 0, nil))
	good(t, "prevent while ejected", s.run(lun, []byte{scsi.OpPreventAllowMediumRemoval, 0, 0, 0, 1, 0}, 0, nil))
	expect(t, "load prevented", s.run(lun, ssu(false, 0, 0x03), 0, nil), scsi.SenseIllegalRequest, scsi.ASCMediumRemovalPrevented)
	good(t, "allow", s.run(lun, []byte{scsi.OpPreventAllowMediumRemoval, 0, 0, 0, 0, 0}, 0, nil))
	good(t, "load", s.run(lun, ssu(false, 0, 0x03), 0, nil))
	// Prevention is per I_T nexus: another nexus's ALLOW does not lift
	// it, the loss of the preventing nexus does.
	other := h.session("iqn.other")
	other.clearUA(lun)
	good(t, "prevent", s.run(lun, []byte{scsi.OpPreventAllowMediumRemoval, 0, 0, 0, 1, 0}, 0, nil))
	good(t, "allow other", other.run(lun, []byte{scsi.OpPreventAllowMediumRemoval, 0, 0, 0, 0, 0}, 0, nil))
	expect(t, "still prevented", other.run(lun, ssu(false, 0, 0x02), 0, nil), scsi.SenseIllegalRequest, scsi.ASCMediumRemovalPrevented)
	v, _ := h.m.lookup("rm", scsi.TypeDisk)
	v.NexusLost(s.s)
	good(t, "allowed after nexus loss", other.run(lun, ssu(false, 0, 0x03), 0, nil))
	// A LOGICAL UNIT RESET ends the prevention.
	good(t, "prevent again", s.run(lun, []byte{scsi.OpPreventAllowMediumRemoval, 0, 0, 0, 1, 0}, 0, nil))
	if resp := s.s.TaskMgmt(target.TMFLUNReset, lunField(lun), 0); resp != target.TMFComplete {
		t.Fatalf("LUN reset: %d", resp)
	}
	s.clearUA(lun)
	good(t, "eject after reset", s.run(lun, ssu(false, 0, 0x02), 0, nil))
}

// TestReportSupportedOpcodes checks RSOC against the opcode table: every
// listed command dispatches, usage data starts with its opcode, and the
// one-command forms agree with the list.
func TestReportSupportedOpcodes(t *testing.T) {
	for _, rm := range []bool{false, true} {
		h := newHarness(t, ManagerOptions{})
		lun, _ := h.disk("d", 64*512, 512, Flags{Removable: rm})
		s := h.session("iqn.init")
		s.clearUA(lun)
		for _, rctd := range []bool{false, true} {
			r := s.run(lun, rsoc(rctd, 0, 0, 0, 65535), 65535, nil)
			good(t, "rsoc all", r)
			total := int(binary.BigEndian.Uint32(r.data))
			if total+4 != len(r.data) {
				t.Fatalf("length %d vs %d", total+4, len(r.data))
			}
			per := 8
			if rctd {
				per = 20
			}
			seen := map[[2]int]bool{}
			for p := 4; p < len(r.data); p += per {
				desc := r.data[p : p+per]
				op, sa := desc[0], binary.BigEndian.Uint16(desc[2:])
				servactv := desc[5]&1 != 0
				if !servactv && sa != 0 {
					t.Fatalf("op %#x: SA without SERVACTV", op)
				}
				if rctd != (desc[5]&2 != 0) || (rctd && binary.BigEndian.Uint16(desc[8:]) != 0x0a) {
					t.Fatalf("op %#x: CTDP/timeout descriptor wrong", op)
				}
				seen[[2]int{int(op), int(sa)}] = true
				opts := byte(1)
				if servactv {
					opts = 2
					expect(t, "opts 1 on SA command", s.run(lun, rsoc(false, 1, op, sa, 512), 512, nil),
						scsi.SenseIllegalRequest, scsi.ASCInvalidFieldInCDB)
				} else {
					expect(t, "opts 2 on plain command", s.run(lun, rsoc(false, 2, op, sa, 512), 512, nil),
						scsi.SenseIllegalRequest, scsi.ASCInvalidFieldInCDB)
				}
				one := s.run(lun, rsoc(rctd, opts, op, sa, 512), 512, nil)
				good(t, "rsoc one", one)
				cdbLen := int(binary.BigEndian.Uint16(one.data[2:]))
				if one.data[1]&7 != 3 || cdbLen != int(binary.BigEndian.Uint16(desc[6:])) || one.data[4] != op {
					t.Fatalf("op %#x one-command % x", op, one.data)
				}
				if servactv && one.data[5]&0x1f != byte(sa) {
					t.Fatalf("op %#x usage lacks SA", op)
				}
				// Every listed command is really dispatched (not INVALID
				// OPCODE), except core-handled ones answered before Exec.
				cdb := make([]byte, cdbLen)
				cdb[0] = op
				if servactv {
					cdb[1] = byte(sa)
				}
				if op != scsi.OpStartStopUnit && op != scsi.OpModeSelect6 && op != scsi.OpModeSelect10 {
					res := s.run(lun, cdb, 0, nil)
					if res.status == scsi.StatusCheckCondition && res.asc == scsi.ASCInvalidCommandOperationCode {
						t.Fatalf("listed op %#x/%#x is rejected as invalid", op, sa)
					}
				}
			}
			// DPO/FUA usage bits for READ(10)/WRITE(10), DPO for VERIFY(10).
			for _, tc := range []struct {
				op   byte
				mask byte
			}{{scsi.OpRead10, 0x18}, {scsi.OpWrite10, 0x18}, {scsi.OpVerify10, 0x10}} {
				one := s.run(lun, rsoc(false, 1, tc.op, 0, 512), 512, nil)
				if one.data[5]&tc.mask != tc.mask {
					t.Fatalf("op %#x usage byte 1 %#x", tc.op, one.data[5])
				}
			}
			// Table consistency: every supported entry is listed, and
			// nothing else.
			v, _ := h.m.lookup("d", scsi.TypeDisk)
			n := 0
			v.table.each(func(e *opEntry) {
				if e.avail != nil && !e.avail(v) {
					if seen[[2]int{int(e.op), int(e.sa)}] {
						t.Fatalf("%s listed but unavailable", e.name)
					}
					return
				}
				n++
				if !seen[[2]int{int(e.op), int(e.sa)}] {
					t.Fatalf("%s missing from the list", e.name)
				}
			})
			if n != len(seen) {
				t.Fatalf("%d entries, %d listed", n, len(seen))
			}
		}
		// Unsupported opcode in the one-command form: SUPPORT = 001b.
		r := s.run(lun, rsoc(false, 1, scsi.OpFormatUnit, 0, 512), 512, nil)
		good(t, "unsupported one", r)
		if r.data[1]&7 != 1 {
			t.Fatalf("unsupported support field %#x", r.data[1])
		}
		expect(t, "bad reporting options", s.run(lun, rsoc(false, 5, 0, 0, 512), 512, nil), scsi.SenseIllegalRequest, scsi.ASCInvalidFieldInCDB)
	}
}

// A TARGET COLD RESET returns current mode parameters to their saved
// values (SAM-5 6.3.2 hard reset); a warm reset leaves them.
func TestColdResetRestoresSavedModeParameters(t *testing.T) {
	tests := []struct {
		fn      target.TMF
		reverts bool
	}{
		{target.TMFTargetWarmReset, false},
		{target.TMFTargetColdReset, true},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("tmf %d", tc.fn), func(t *testing.T) {
			h := newHarness(t, ManagerOptions{StateDir: t.TempDir()})
			lun, _ := h.disk("d", 4096*512, 512, Flags{})
			a := h.session("iqn.a")
			a.clearUA(lun)
			ctl := func(pc byte) []byte {
				r := a.run(lun, modeSense6(pc, 0x0a, 0, true, 255), 255, nil)
				good(t, "mode sense", r)
				return append([]byte(nil), modeSensePage(r.data, 0x0a)...)
			}
			// Saved: SWP off. Current: SWP and D_SENSE on, not saved.
			page := ctl(0)
			page[2] |= 0x04
			page[4] |= 0x08
			l := modeSelectList(page)
			good(t, "mode select", a.run(lun, modeSelect6(true, false, byte(len(l))), uint32(len(l)), l))
			if r := a.s.TaskMgmt(tc.fn, 0, 0); r != target.TMFComplete {
				t.Fatalf("TMF %d: %d", tc.fn, r)
			}
			a.clearUA(lun)
			cur := ctl(0)
			if got := cur[4]&0x08 == 0 && cur[2]&0x04 == 0; got != tc.reverts {
				t.Fatalf("after TMF %d: control page %x, reverted=%v want %v", tc.fn, cur, got, tc.reverts)
			}
			w := a.run(lun, cdb10(scsi.OpWrite10, 0, 1, 0), 512, make([]byte, 512))
			if tc.reverts {
				good(t, "write after cold reset", w)
				if r := a.run(lun, cdb16(scsi.OpRead16, ^uint64(0), 1, 0), 512, nil); r.desc {
					t.Fatal("sense still in descriptor format after cold reset")
				}
			} else {
				expect(t, "write after warm reset", w, scsi.SenseDataProtect, scsi.ASCWriteProtected)
			}
		})
	}
}
