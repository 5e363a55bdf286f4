package target

import (
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scstd/scstd/target/scsi"
)

// countingHolder counts ReleaseDataIn calls.
type countingHolder struct{ n atomic.Int32 }

func (h *countingHolder) ReleaseDataIn() { h.n.Add(1) }

// completeHeld completes the parked command tag with DataIn held by hd.
func (h *fakeHandler) completeHeld(t *testing.T, tag uint32, data []byte, hd DataInHolder) {
	t.Helper()
	c := h.take(t, tag)
	c.SetDataInHeld(data, hd)
	c.Complete()
}

// newUnreleasedCmd is newCmd whose Done leaves Release to the test, as a
// transport does until it has sent the data.
func newUnreleasedCmd(tag uint32, attr TaskAttr) (*Command, *result) {
	r := &result{done: make(chan struct{})}
	c := &Command{LUN: rawLUN(0), Tag: tag, Attr: attr, CDB: tur()}
	c.Done = func(c *Command) {
		r.status = c.Status
		r.data = append([]byte(nil), c.DataIn...)
		r.aborted = c.Aborted
		close(r.done)
	}
	return c, r
}

// waitRunning waits until the parked tags are want.
func waitRunning(t *testing.T, h *fakeHandler, want []uint32) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !reflect.DeepEqual(h.parkedTags(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("running %v, want %v", h.parkedTags(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

// A command whose DataIn is held (read by the transport when it sends)
// stays in the task set until Release: the ORDERED command behind it, which
// may overwrite that data, starts only then.
func TestHeldDataInKeepsTaskSetOrder(t *testing.T) {
	_, h, s := blockedSetup(t)
	c1, r1 := newUnreleasedCmd(1, Simple)
	c2, r2 := newCmd(0, 2, Ordered, tur()...)
	c3, r3 := newCmd(0, 3, Simple, tur()...)
	s.Submit(c1)
	s.Submit(c2)
	s.Submit(c3)
	waitRunning(t, h, []uint32{1})

	data := []byte("mapped file pages")
	hd := &countingHolder{}
	h.completeHeld(t, 1, data, hd)
	<-r1.done
	if r1.status != scsi.StatusGood || string(r1.data) != string(data) {
		t.Fatalf("Done saw status %#x data %q", r1.status, r1.data)
	}
	time.Sleep(20 * time.Millisecond)
	if got := h.parkedTags(); len(got) != 0 {
		t.Fatalf("running %v before the held command was released", got)
	}
	if hd.n.Load() != 0 {
		t.Fatal("data released before the transport released the command")
	}

	c1.Release()
	if hd.n.Load() != 1 {
		t.Fatalf("ReleaseDataIn called %d times, want 1", hd.n.Load())
	}
	if c1.DataIn != nil {
		t.Fatal("DataIn still set after Release")
	}
	waitRunning(t, h, []uint32{2})
	h.release(t, 2)
	<-r2.done
	waitRunning(t, h, []uint32{3})
	h.release(t, 3)
	<-r3.done
	if got := h.execOrder(); !reflect.DeepEqual(got, []uint32{1, 2, 3}) {
		t.Fatalf("exec order %v", got)
	}
}

// Task management and device removal wait for a held command like for a
// running one.
func TestHeldDataInAwaitedByTMFAndRemoval(t *testing.T) {
	for _, tc := range []struct {
		name string
		wait func(c *Core, s *Session) func() error
	}{
		{"abort task set", func(_ *Core, s *Session) func() error {
			return func() error {
				if r := s.TaskMgmt(TMFAbortTaskSet, rawLUN(0), 0); r != TMFComplete {
					t.Errorf("TMF response %d", r)
				}
				return nil
			}
		}},
		{"remove device", func(c *Core, _ *Session) func() error {
			return func() error {
				return c.RemoveDevice("disk1")
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, h, s := blockedSetup(t)
			c1, r1 := newUnreleasedCmd(1, Simple)
			s.Submit(c1)
			waitRunning(t, h, []uint32{1})
			hd := &countingHolder{}
			h.completeHeld(t, 1, []byte{1, 2, 3}, hd)
			<-r1.done

			errc := make(chan error, 1)
			fn := tc.wait(c, s)
			go func() { errc <- fn() }()
			select {
			case err := <-errc:
				t.Fatalf("returned (%v) while the held command's data was unsent", err)
			case <-time.After(50 * time.Millisecond):
			}
			c1.Release()
			select {
			case err := <-errc:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("still waiting after Release")
			}
			if hd.n.Load() != 1 {
				t.Fatalf("ReleaseDataIn called %d times", hd.n.Load())
			}
		})
	}
}
