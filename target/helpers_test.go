package target

import (
	"encoding/binary"
	"sync"
	"testing"
	"unsafe"

	"github.com/scstd/scstd/target/scsi"
)

// fakeHandler is an in-memory device handler. With block set, Exec parks
// commands until release is called; otherwise it completes synchronously.
type fakeHandler struct {
	mu      sync.Mutex
	block   bool
	parked  []*Command
	execLog []uint32 // tags in Exec order
	closed  int
	resets  int
	started chan *Command // optional: receives every command Exec sees
}

func (h *fakeHandler) Exec(c *Command) {
	h.mu.Lock()
	h.execLog = append(h.execLog, c.Tag)
	if h.block {
		h.parked = append(h.parked, c)
		h.mu.Unlock()
		if h.started != nil {
			h.started <- c
		}
		return
	}
	h.mu.Unlock()
	if h.started != nil {
		h.started <- c
	}
	c.Complete()
}

func (h *fakeHandler) HandlerName() string { return "vdisk_nullio" }
func (h *fakeHandler) Type() byte          { return 0 }
func (h *fakeHandler) Close() error {
	h.mu.Lock()
	h.closed++
	h.mu.Unlock()
	return nil
}

func (h *fakeHandler) Reset() {
	h.mu.Lock()
	h.resets++
	h.mu.Unlock()
}

// release completes the parked command with tag.
func (h *fakeHandler) release(t *testing.T, tag uint32) {
	t.Helper()
	h.take(t, tag).Complete()
}

// take removes the parked command with tag and returns it.
func (h *fakeHandler) take(t *testing.T, tag uint32) *Command {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, c := range h.parked {
		if c.Tag == tag {
			h.parked = append(h.parked[:i], h.parked[i+1:]...)
			return c
		}
	}
	t.Fatalf("tag %d not parked", tag)
	return nil
}

func (h *fakeHandler) execOrder() []uint32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]uint32(nil), h.execLog...)
}

func (h *fakeHandler) parkedTags() []uint32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []uint32
	for _, c := range h.parked {
		out = append(out, c.Tag)
	}
	return out
}

// result records what Done saw.
type result struct {
	done    chan struct{}
	status  byte
	sense   []byte
	data    []byte
	xfer    uint32
	aborted bool
}

func newCmd(lun uint64, tag uint32, attr TaskAttr, cdb ...byte) (*Command, *result) {
	r := &result{done: make(chan struct{})}
	c := &Command{LUN: rawLUN(lun), Tag: tag, Attr: attr, CDB: cdb}
	c.Done = func(c *Command) {
		r.status = c.Status
		r.sense = append([]byte(nil), c.Sense...)
		r.data = append([]byte(nil), c.DataIn...)
		r.xfer = c.TransferLen
		r.aborted = c.Aborted
		c.Release()
		close(r.done)
	}
	return c, r
}

// rawLUN is the peripheral-method encoding of a small LUN.
func rawLUN(lun uint64) uint64 { return encodeLUN(lun, AddrPeripheral) }

func (r *result) isDone() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// senseKeyASC extracts key and ASC from fixed or descriptor sense.
func senseKeyASC(t *testing.T, s []byte) (byte, scsi.ASC) {
	t.Helper()
	if len(s) < 8 {
		t.Fatalf("short sense %x", s)
	}
	switch s[0] & 0x7f {
	case 0x70:
		return s[2] & 0xf, scsi.ASC(s[12])<<8 | scsi.ASC(s[13])
	case 0x72:
		return s[1] & 0xf, scsi.ASC(s[2])<<8 | scsi.ASC(s[3])
	}
	t.Fatalf("bad sense format %x", s)
	return 0, 0
}

func tur() []byte { return []byte{scsi.OpTestUnitReady, 0, 0, 0, 0, 0} }

func reportLUNsCDB(sel byte, alloc uint32) []byte {
	cdb := make([]byte, 12)
	cdb[0] = scsi.OpReportLuns
	cdb[2] = sel
	binary.BigEndian.PutUint32(cdb[6:], alloc)
	return cdb
}

// run submits a command and waits for Done.
func run(t *testing.T, s *Session, lun uint64, cdb ...byte) *result {
	t.Helper()
	c, r := newCmd(lun, 0, Simple, cdb...)
	s.Submit(c)
	<-r.done
	return r
}

// clearUAs consumes pending unit attentions on lun with TEST UNIT READY.
func clearUAs(t *testing.T, s *Session, lun uint64) {
	t.Helper()
	for i := 0; i < maxUA+1; i++ {
		r := run(t, s, lun, tur()...)
		if r.status == scsi.StatusGood {
			return
		}
	}
	t.Fatalf("unit attentions never cleared on lun %d", lun)
}

// setup returns a core with one fake device mapped at the given LUNs of Default.
func setup(t *testing.T, luns ...uint64) (*Core, *fakeHandler) {
	t.Helper()
	c := NewCore(Options{})
	h := &fakeHandler{}
	if err := c.AddDevice(&Device{Name: "disk1", Handler: h}); err != nil {
		t.Fatal(err)
	}
	for _, l := range luns {
		if err := c.AddLUN(DefaultGroup, "disk1", l, false); err != nil {
			t.Fatal(err)
		}
	}
	return c, h
}

func newSess(t *testing.T, c *Core, ini string) *Session {
	t.Helper()
	s, err := c.NewSession(SessionInfo{Initiator: ini, Target: "iqn.2026-01.test:t1", Transport: "iscsi"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func uintptrOf(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }
