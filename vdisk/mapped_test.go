package vdisk

import (
	"bytes"
	"testing"
	"time"
	"unsafe"

	"github.com/scstd/scstd/target"
	"github.com/scstd/scstd/target/scsi"
)

// startRead submits a READ(10) and waits for Done, leaving Release (the
// transport's "data sent") to the caller.
func (s *sess) startRead(t *testing.T, lun uint64, lba uint32, n uint16, zeroCopy bool) *target.Command {
	t.Helper()
	bs := uint32(512)
	c := &target.Command{
		LUN: lunField(lun), CDB: cdb10(scsi.OpRead10, lba, n, 0), Attr: target.Simple, Tag: s.h.tag.Add(1),
		ExpectedLen: uint32(n) * bs, Read: true, ZeroCopy: zeroCopy,
	}
	done := make(chan struct{})
	c.Done = func(*target.Command) { close(done) }
	s.s.Submit(c)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("READ timed out")
	}
	if c.Status != scsi.StatusGood {
		t.Fatalf("READ status %#x sense %x", c.Status, c.Sense)
	}
	return c
}

// inside reports whether b lies in m.
func inside(b, m []byte) bool {
	if len(b) == 0 || len(m) == 0 {
		return false
	}
	p, lo := uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&m[0]))
	return p >= lo && p+uintptr(len(b)) <= lo+uintptr(len(m))
}

// TestZeroCopyRead checks which READs are answered from the mapping of the
// backing file: cached pages when the transport allows it, never holes,
// digests or O_DIRECT LUNs, and always with the file's bytes.
func TestZeroCopyRead(t *testing.T) {
	const blocks = 256
	tests := []struct {
		name     string
		flags    Flags
		write    bool // write the range first (its pages are then cached)
		zeroCopy bool
		mapped   bool // DataIn must point into the mapping
	}{
		{"cached pages", Flags{}, true, true, true},
		{"write-through", Flags{WriteThrough: true}, true, true, true},
		{"hole", Flags{}, false, true, false},
		{"data digest", Flags{}, true, false, false},
		{"O_DIRECT", Flags{ODirect: true}, true, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, ManagerOptions{})
			lun, _ := h.disk("d", blocks*512, 512, tc.flags)
			s := h.session("iqn.init")
			s.clearUA(lun)
			want := make([]byte, 64*512)
			if tc.write {
				want = pattern(len(want), 7)
				good(t, "write", s.run(lun, cdb10(scsi.OpWrite10, 8, 64, 0), uint32(len(want)), want))
			}
			c := s.startRead(t, lun, 8, 64, tc.zeroCopy)
			if !bytes.Equal(c.DataIn, want) {
				t.Fatal("READ returned other data than written")
			}
			v, _ := h.m.lookup("d", scsi.TypeDisk)
			m := v.med.Load()
			if got := inside(c.DataIn, m.mapped); got != tc.mapped {
				t.Fatalf("DataIn in the mapping: %v, want %v", got, tc.mapped)
			}
			c.Release()
		})
	}
}

// TestZeroCopyReadHoldsMedium: closing the device waits until the READs
// pointing into the mapping were sent, and only then unmaps it.
func TestZeroCopyReadHoldsMedium(t *testing.T) {
	h := newHarness(t, ManagerOptions{})
	lun, _ := h.disk("d", 64*512, 512, Flags{})
	s := h.session("iqn.init")
	s.clearUA(lun)
	data := pattern(8*512, 3)
	good(t, "write", s.run(lun, cdb10(scsi.OpWrite10, 0, 8, 0), uint32(len(data)), data))
	v, _ := h.m.lookup("d", scsi.TypeDisk)
	m := v.med.Load()
	c := s.startRead(t, lun, 0, 8, true)
	if !inside(c.DataIn, m.mapped) {
		t.Fatal("READ not served from the mapping")
	}
	errc := make(chan error, 1)
	go func() { errc <- h.core.RemoveDevice("d") }()
	select {
	case err := <-errc:
		t.Fatalf("device removed (%v) while a READ's data was unsent", err)
	case <-time.After(50 * time.Millisecond):
	}
	if !bytes.Equal(c.DataIn, data) {
		t.Fatal("data changed while held")
	}
	c.Release()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("removal still waiting after Release")
	}
	if m.mapped != nil {
		t.Fatal("mapping left after close")
	}
}

// TestZeroCopyReadAllocs: a READ served from the mapping costs no heap
// object in the core and the handler (issue 5's steady-state bound).
func TestZeroCopyReadAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation count")
	}
	h := newHarness(t, ManagerOptions{})
	lun, _ := h.disk("d", 1<<20, 512, Flags{})
	s := h.session("iqn.init")
	s.clearUA(lun)
	good(t, "prefill", s.run(lun, cdb10(scsi.OpWrite10, 0, 2048, 0), 1<<20, make([]byte, 1<<20)))
	v, _ := h.m.lookup("d", scsi.TypeDisk)
	m := v.med.Load()
	done := make(chan struct{}, 1)
	cdb := cdb10(scsi.OpRead10, 0, 8, 0)
	c := &target.Command{LUN: lunField(lun), CDB: cdb, Attr: target.Simple, ExpectedLen: 4096, Read: true, ZeroCopy: true}
	c.Done = func(*target.Command) { done <- struct{}{} }
	i := 0
	read := func() {
		cdb[5] = byte(i) // walk the LBA
		i++
		s.s.Submit(c)
		<-done
		if c.Status != scsi.StatusGood || !inside(c.DataIn, m.mapped) {
			t.Fatalf("status %#x, mapped %v", c.Status, inside(c.DataIn, m.mapped))
		}
		c.Release()
	}
	for range 100 {
		read()
	}
	if n := testing.AllocsPerRun(1000, read); n != 0 {
		t.Errorf("%.2f allocations per mapped READ, want 0", n)
	}
}
