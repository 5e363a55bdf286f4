package target

import (
	"testing"

	"github.com/scstd/scstd/target/scsi"
)

// nopHandler completes every command synchronously with GOOD.
type nopHandler struct{}

func (nopHandler) Exec(c *Command)     { c.Complete() }
func (nopHandler) HandlerName() string { return "vdisk_nullio" }
func (nopHandler) Type() byte          { return 0 }
func (nopHandler) Close() error        { return nil }

// readHandler returns a pooled data buffer, like a read would.
type readHandler struct{}

func (readHandler) Exec(c *Command) {
	c.AllocDataInUninit(int(c.ExpectedLen))
	c.TransferLen = c.ExpectedLen
	c.Complete()
}
func (readHandler) HandlerName() string { return "vdisk_nullio" }
func (readHandler) Type() byte          { return 0 }
func (readHandler) Close() error        { return nil }

func benchSession(b *testing.B, h Handler) *Session {
	c := NewCore(Options{})
	if err := c.AddDevice(&Device{Name: "d", Handler: h}); err != nil {
		b.Fatal(err)
	}
	if err := c.AddLUN(DefaultGroup, "d", 0, false); err != nil {
		b.Fatal(err)
	}
	s, err := c.NewSession(SessionInfo{Initiator: "i", Target: "t"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	return s
}

func benchSubmit(b *testing.B, h Handler, expected uint32) {
	s := benchSession(b, h)
	cdb := []byte{scsi.OpRead10, 0, 0, 0, 0, 0, 0, 0, 8, 0}
	bad := 0
	cmd := &Command{LUN: 0, CDB: cdb, Attr: Simple, Read: true, ExpectedLen: expected}
	cmd.Done = func(c *Command) {
		if c.Status != scsi.StatusGood {
			bad++
		}
		c.Release()
	}
	s.Submit(cmd) // consume the POWER ON unit attention
	bad = 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cmd.Tag = uint32(i)
		s.Submit(cmd)
	}
	b.StopTimer()
	if bad != 0 {
		b.Fatalf("%d commands failed", bad)
	}
}

// BenchmarkSubmitComplete measures the core's per-command cost with a no-op
// handler; steady state must not allocate.
func BenchmarkSubmitComplete(b *testing.B) { benchSubmit(b, nopHandler{}, 0) }

// BenchmarkSubmitRead4K adds a pooled 4 KiB DataIn buffer per command.
func BenchmarkSubmitRead4K(b *testing.B) { benchSubmit(b, readHandler{}, 4096) }

// BenchmarkSubmitParallel runs one session per goroutine, as connections do.
func BenchmarkSubmitParallel(b *testing.B) {
	c := NewCore(Options{})
	if err := c.AddDevice(&Device{Name: "d", Handler: nopHandler{}}); err != nil {
		b.Fatal(err)
	}
	if err := c.AddLUN(DefaultGroup, "d", 0, false); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		s, err := c.NewSession(SessionInfo{Initiator: "i", Target: "t"})
		if err != nil {
			b.Error(err)
			return
		}
		defer s.Close()
		cmd := &Command{CDB: []byte{scsi.OpTestUnitReady, 0, 0, 0, 0, 0}, Attr: Simple}
		cmd.Done = func(c *Command) { c.Release() }
		for pb.Next() {
			s.Submit(cmd)
		}
	})
}

func TestSubmitDoesNotAllocate(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation count")
	}
	for name, h := range map[string]Handler{"nop": nopHandler{}, "read": readHandler{}} {
		c := NewCore(Options{})
		if err := c.AddDevice(&Device{Name: "d", Handler: h}); err != nil {
			t.Fatal(err)
		}
		if err := c.AddLUN(DefaultGroup, "d", 0, false); err != nil {
			t.Fatal(err)
		}
		s := newSess(t, c, "i")
		cmd := &Command{CDB: []byte{scsi.OpRead10, 0, 0, 0, 0, 0, 0, 0, 8, 0}, Attr: Simple, ExpectedLen: 4096}
		cmd.Done = func(c *Command) { c.Release() }
		s.Submit(cmd)
		s.Submit(cmd)
		if n := testing.AllocsPerRun(1000, func() { s.Submit(cmd) }); n != 0 {
			t.Errorf("%s: %v allocations per command", name, n)
		}
	}
}
