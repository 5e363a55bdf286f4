package vdisk

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/scstd/scstd/target"
	"github.com/scstd/scstd/target/scsi"
)

// harness runs commands through a real target.Core, one session, LUNs in
// the Default group.
type harness struct {
	t    testing.TB
	core *target.Core
	m    *Manager
	dir  string
	tag  atomic.Uint32
	next uint64 // next LUN number
}

func newHarness(t testing.TB, o ManagerOptions) *harness {
	t.Helper()
	core := target.NewCore(target.Options{})
	h := &harness{t: t, core: core, m: NewManager(core, o), dir: t.TempDir()}
	t.Cleanup(func() {
		for _, d := range core.Devices() {
			core.RemoveDevice(d.Name)
		}
	})
	return h
}

// file creates a backing file of size bytes filled with pattern bytes.
func (h *harness) file(name string, size int64, fill byte) string {
	h.t.Helper()
	p := filepath.Join(h.dir, name)
	f, err := os.Create(p)
	if err != nil {
		h.t.Fatal(err)
	}
	defer f.Close()
	if fill == 0 {
		if err := f.Truncate(size); err != nil {
			h.t.Fatal(err)
		}
		return p
	}
	if _, err := f.Write(bytes.Repeat([]byte{fill}, int(size))); err != nil {
		h.t.Fatal(err)
	}
	return p
}

// mapLUN maps device name at the next LUN and returns the LUN number.
func (h *harness) mapLUN(name string, readOnly bool) uint64 {
	h.t.Helper()
	lun := h.next
	h.next++
	if err := h.core.AddLUN(target.DefaultGroup, name, lun, readOnly); err != nil {
		h.t.Fatalf("AddLUN %s: %v", name, err)
	}
	return lun
}

// disk opens a disk on a new sparse file and maps it.
func (h *harness) disk(name string, size int64, bs uint32, f Flags) (lun uint64, path string) {
	h.t.Helper()
	path = "/dev/null-unused"
	if !f.NullIO {
		path = h.file(name+".img", size, 0)
	}
	if err := h.m.Open(name, path, bs, f); err != nil {
		h.t.Fatalf("Open %s: %v", name, err)
	}
	return h.mapLUN(name, false), path
}

// sess is one I_T nexus with the power-on unit attention consumed.
type sess struct {
	h *harness
	s *target.Session
}

func (h *harness) session(initiator string) *sess {
	h.t.Helper()
	s, err := h.core.NewSession(target.SessionInfo{Initiator: initiator, Target: "iqn.2026-11.test:tgt", Transport: "iscsi"})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(s.Close)
	return &sess{h: h, s: s}
}

// clearUA sends TEST UNIT READY until no unit attention is pending.
func (s *sess) clearUA(lun uint64) {
	for i := 0; i < 8; i++ {
		r := s.run(lun, tur(), 0, nil)
		if r.status != scsi.StatusCheckCondition || r.key != scsi.SenseUnitAttention {
			return
		}
	}
	s.h.t.Fatal("unit attentions do not clear")
}

// result is a completed command, copied out of the pooled Command.
type result struct {
	status   byte
	key      byte
	asc      scsi.ASC
	desc     bool
	info     uint64
	infoOK   bool
	fieldPtr int // -1 if no sense-key specific field pointer
	sense    []byte
	data     []byte // DataIn truncated to ExpectedLen, as a transport sends it
	xferLen  uint32
}

func parseSense(b []byte) (r result) {
	r.fieldPtr = -1
	if len(b) == 0 {
		return
	}
	switch b[0] & 0x7f {
	case 0x70, 0x71:
		r.key = b[2] & 0x0f
		r.asc = scsi.ASC(b[12])<<8 | scsi.ASC(b[13])
		if b[0]&0x80 != 0 {
			r.info, r.infoOK = uint64(binary.BigEndian.Uint32(b[3:])), true
		}
		if b[15]&0x80 != 0 {
			r.fieldPtr = int(binary.BigEndian.Uint16(b[16:]))
		}
	case 0x72, 0x73:
		r.desc = true
		r.key = b[1] & 0x0f
		r.asc = scsi.ASC(b[2])<<8 | scsi.ASC(b[3])
		for p := 8; p+1 < len(b); p += 2 + int(b[p+1]) {
			switch b[p] {
			case 0x00:
				r.info, r.infoOK = binary.BigEndian.Uint64(b[p+4:]), true
			case 0x02:
				if b[p+4]&0x80 != 0 {
					r.fieldPtr = int(binary.BigEndian.Uint16(b[p+5:]))
				}
			}
		}
	}
	return
}

func lunField(lun uint64) uint64 { return lun << 48 }

// run submits one command and waits for it.
func (s *sess) run(lun uint64, cdb []byte, edtl uint32, dataOut []byte) result {
	s.h.t.Helper()
	return s.runT(s.h.t, lun, cdb, edtl, dataOut)
}

// runT is run reporting failures to t (fuzz targets have their own T).
func (s *sess) runT(t testing.TB, lun uint64, cdb []byte, edtl uint32, dataOut []byte) result {
	t.Helper()
	c := &target.Command{
		LUN: lunField(lun), CDB: cdb, Attr: target.Simple, Tag: s.h.tag.Add(1),
		ExpectedLen: edtl, DataOut: dataOut, Read: dataOut == nil && edtl > 0, Write: dataOut != nil,
	}
	doneCh := make(chan struct{})
	var calls atomic.Int32
	c.Done = func(*target.Command) {
		if calls.Add(1) == 1 {
			close(doneCh)
		}
	}
	s.s.Submit(c)
	select {
	case <-doneCh:
	case <-time.After(10 * time.Second):
		t.Fatalf("command %x timed out", cdb)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("Done called %d times", n)
	}
	r := parseSense(c.Sense)
	r.status = c.Status
	r.sense = append([]byte(nil), c.Sense...)
	r.xferLen = c.TransferLen
	if c.Status == scsi.StatusGood {
		n := len(c.DataIn)
		if uint32(n) > edtl {
			n = int(edtl)
		}
		if uint32(n) > c.TransferLen {
			n = int(c.TransferLen)
		}
		r.data = append([]byte{}, c.DataIn[:n]...)
	}
	c.DataOut = nil // test-owned memory: keep it out of the core's pool
	c.Release()
	return r
}

// --- CDB builders ---

func tur() []byte { return make([]byte, 6) }

func inquiry(evpd bool, page byte, alloc uint16) []byte {
	c := []byte{scsi.OpInquiry, 0, page, 0, 0, 0}
	if evpd {
		c[1] = 1
	}
	binary.BigEndian.PutUint16(c[3:], alloc)
	return c
}

func cdb10(op byte, lba uint32, n uint16, flags byte) []byte {
	c := make([]byte, 10)
	c[0], c[1] = op, flags
	binary.BigEndian.PutUint32(c[2:], lba)
	binary.BigEndian.PutUint16(c[7:], n)
	return c
}

func cdb12(op byte, lba, n uint32, flags byte) []byte {
	c := make([]byte, 12)
	c[0], c[1] = op, flags
	binary.BigEndian.PutUint32(c[2:], lba)
	binary.BigEndian.PutUint32(c[6:], n)
	return c
}

func cdb16(op byte, lba uint64, n uint32, flags byte) []byte {
	c := make([]byte, 16)
	c[0], c[1] = op, flags
	binary.BigEndian.PutUint64(c[2:], lba)
	binary.BigEndian.PutUint32(c[10:], n)
	return c
}

func cdb6(op byte, lba uint32, n byte) []byte {
	return []byte{op, byte(lba>>16) & 0x1f, byte(lba >> 8), byte(lba), n, 0}
}

func modeSense6(pc, page, sub byte, dbd bool, alloc byte) []byte {
	c := []byte{scsi.OpModeSense6, 0, pc<<6 | page, sub, alloc, 0}
	if dbd {
		c[1] = 0x08
	}
	return c
}

func modeSense10(pc, page, sub byte, flags byte, alloc uint16) []byte {
	c := make([]byte, 10)
	c[0], c[1], c[2], c[3] = scsi.OpModeSense10, flags, pc<<6|page, sub
	binary.BigEndian.PutUint16(c[7:], alloc)
	return c
}

func modeSelect6(pf, sp bool, n byte) []byte {
	c := []byte{scsi.OpModeSelect6, 0, 0, 0, n, 0}
	if pf {
		c[1] |= 0x10
	}
	if sp {
		c[1] |= 0x01
	}
	return c
}

func rsoc(rctd bool, opts, op byte, sa uint16, alloc uint32) []byte {
	c := make([]byte, 12)
	c[0], c[1], c[2], c[3] = scsi.OpMaintenanceIn, scsi.SAReportSupportedOpcodes, opts, op
	if rctd {
		c[2] |= 0x80
	}
	binary.BigEndian.PutUint16(c[4:], sa)
	binary.BigEndian.PutUint32(c[6:], alloc)
	return c
}

func readCap16(alloc uint32) []byte {
	c := make([]byte, 16)
	c[0], c[1] = scsi.OpServiceActionIn16, scsi.SAReadCapacity16
	binary.BigEndian.PutUint32(c[10:], alloc)
	return c
}

// expect checks status and, for CHECK CONDITION, key and ASC.
func expect(t testing.TB, what string, r result, key byte, asc scsi.ASC) {
	t.Helper()
	if key == 0 && asc == 0 {
		if r.status != scsi.StatusGood {
			t.Fatalf("%s: status %#x sense key %#x asc %#04x, want GOOD", what, r.status, r.key, uint16(r.asc))
		}
		return
	}
	if r.status != scsi.StatusCheckCondition || r.key != key || r.asc != asc {
		t.Fatalf("%s: status %#x key %#x asc %#04x, want CHECK CONDITION %#x/%#04x", what, r.status, r.key, uint16(r.asc), key, uint16(asc))
	}
}

func good(t testing.TB, what string, r result) { t.Helper(); expect(t, what, r, 0, 0) }

var (
	errnoEIO    error = syscall.EIO
	errnoENOSPC error = syscall.ENOSPC
	errnoEROFS  error = syscall.EROFS
)
