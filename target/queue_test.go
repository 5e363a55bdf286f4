package target

import (
	"reflect"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/scstd/scstd/target/scsi"
)

// blockedSetup returns a session on LUN 0 of a blocking fake device with the
// initial unit attention already consumed.
func blockedSetup(t *testing.T) (*Core, *fakeHandler, *Session) {
	t.Helper()
	c, h := setup(t, 0)
	s := newSess(t, c, "i")
	clearUAs(t, s, 0)
	h.mu.Lock()
	h.block = true
	h.execLog = nil
	h.mu.Unlock()
	return c, h, s
}

type step struct {
	submit  uint32   // tag to submit (0: none)
	attr    TaskAttr // its attribute
	release uint32   // tag to complete (0: none)
	running []uint32 // parked (executing) tags after the step, in Exec order
}

func TestTaskAttributes(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
		order []uint32
	}{
		{"simple run concurrently", []step{
			{submit: 1, attr: Simple, running: []uint32{1}},
			{submit: 2, attr: Simple, running: []uint32{1, 2}},
			{submit: 3, attr: Untagged, running: []uint32{1, 2, 3}},
			{release: 2, running: []uint32{1, 3}},
		}, []uint32{1, 2, 3}},
		{"ordered waits for earlier and blocks later", []step{
			{submit: 1, attr: Simple, running: []uint32{1}},
			{submit: 2, attr: Simple, running: []uint32{1, 2}},
			{submit: 3, attr: Ordered, running: []uint32{1, 2}},
			{submit: 4, attr: Simple, running: []uint32{1, 2}},
			{submit: 5, attr: Untagged, running: []uint32{1, 2}},
			{release: 1, running: []uint32{2}},
			{release: 2, running: []uint32{3}},
			{release: 3, running: []uint32{4, 5}},
		}, []uint32{1, 2, 3, 4, 5}},
		{"ordered on idle LUN starts at once", []step{
			{submit: 1, attr: Ordered, running: []uint32{1}},
			{submit: 2, attr: Simple, running: []uint32{1}},
			{submit: 3, attr: Ordered, running: []uint32{1}},
			{release: 1, running: []uint32{2}},
			{release: 2, running: []uint32{3}},
		}, []uint32{1, 2, 3}},
		{"consecutive ordered", []step{
			{submit: 1, attr: Ordered, running: []uint32{1}},
			{submit: 2, attr: Ordered, running: []uint32{1}},
			{submit: 3, attr: Ordered, running: []uint32{1}},
			{release: 1, running: []uint32{2}},
			{release: 2, running: []uint32{3}},
		}, []uint32{1, 2, 3}},
		{"head of queue bypasses ordered", []step{
			{submit: 1, attr: Simple, running: []uint32{1}},
			{submit: 2, attr: Ordered, running: []uint32{1}},
			{submit: 3, attr: HeadOfQueue, running: []uint32{1, 3}},
			{release: 1, running: []uint32{3}}, // the ORDERED also waits for the HEAD OF QUEUE
			{release: 3, running: []uint32{2}},
		}, []uint32{1, 3, 2}},
		{"head of queue while ordered runs", []step{
			{submit: 1, attr: Ordered, running: []uint32{1}},
			{submit: 2, attr: HeadOfQueue, running: []uint32{1, 2}},
			{submit: 3, attr: Simple, running: []uint32{1, 2}},
			{release: 1, running: []uint32{2, 3}},
		}, []uint32{1, 2, 3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, h, s := blockedSetup(t)
			results := map[uint32]*result{}
			for i, st := range tc.steps {
				if st.submit != 0 {
					c, r := newCmd(0, st.submit, st.attr, tur()...)
					results[st.submit] = r
					s.Submit(c)
				}
				if st.release != 0 {
					h.release(t, st.release)
					<-results[st.release].done
				}
				if got := h.parkedTags(); !reflect.DeepEqual(got, st.running) {
					t.Fatalf("step %d: running %v, want %v", i, got, st.running)
				}
			}
			for _, tag := range h.parkedTags() {
				h.release(t, tag)
			}
			for tag, r := range results {
				<-r.done
				if r.status != scsi.StatusGood || r.aborted {
					t.Fatalf("tag %d: status %#x aborted %v", tag, r.status, r.aborted)
				}
			}
			if got := h.execOrder(); !reflect.DeepEqual(got, tc.order) {
				t.Fatalf("exec order %v, want %v", got, tc.order)
			}
		})
	}
}

func TestACAAttributeRejected(t *testing.T) {
	_, h, s := blockedSetup(t)
	c, r := newCmd(0, 1, ACA, tur()...)
	s.Submit(c)
	<-r.done
	if _, asc := senseKeyASC(t, r.sense); r.status != scsi.StatusCheckCondition || asc != scsi.ASCInvalidMessageError {
		t.Fatalf("status %#x sense %x", r.status, r.sense)
	}
	if len(h.execOrder()) != 0 {
		t.Fatal("ACA task reached the handler")
	}
}

// waitParked waits until the handler holds n commands.
func waitParked(t *testing.T, h *fakeHandler, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(h.parkedTags()) != n {
		if time.Now().After(deadline) {
			t.Fatalf("parked %v, want %d commands", h.parkedTags(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestAbortTask(t *testing.T) {
	_, h, s := blockedSetup(t)
	c1, r1 := newCmd(0, 1, Simple, tur()...)
	c2, r2 := newCmd(0, 2, Ordered, tur()...)
	c3, r3 := newCmd(0, 3, Simple, tur()...)
	s.Submit(c1)
	s.Submit(c2)
	s.Submit(c3)

	// A queued task is aborted at once; Done has been called when TaskMgmt returns.
	if resp := s.TaskMgmt(TMFAbortTask, rawLUN(0), 2); resp != TMFComplete {
		t.Fatalf("abort queued: %d", resp)
	}
	if !r2.isDone() || !r2.aborted {
		t.Fatal("queued task not completed as aborted")
	}
	// Unknown tag.
	if resp := s.TaskMgmt(TMFAbortTask, rawLUN(0), 99); resp != TMFNoTask {
		t.Fatalf("abort unknown: %d", resp)
	}
	// A running task is awaited.
	done := make(chan TMFResponse)
	go func() { done <- s.TaskMgmt(TMFAbortTask, rawLUN(0), 1) }()
	select {
	case <-done:
		t.Fatal("ABORT TASK returned before the running task completed")
	case <-time.After(20 * time.Millisecond):
	}
	h.release(t, 1)
	if resp := <-done; resp != TMFComplete {
		t.Fatalf("abort running: %d", resp)
	}
	if !r1.isDone() || !r1.aborted {
		t.Fatal("running task not marked aborted")
	}
	// With the ORDERED gone and task 1 finished, task 3 runs and completes normally.
	waitParked(t, h, 1)
	h.release(t, 3)
	<-r3.done
	if r3.aborted || r3.status != scsi.StatusGood {
		t.Fatalf("task 3: aborted %v status %#x", r3.aborted, r3.status)
	}
	// A completed task is not found.
	if resp := s.TaskMgmt(TMFAbortTask, rawLUN(0), 3); resp != TMFNoTask {
		t.Fatalf("abort completed: %d", resp)
	}
}

func TestAbortTaskSetAndLUNReset(t *testing.T) {
	for _, fn := range []TMF{TMFAbortTaskSet, TMFClearTaskSet, TMFLUNReset, TMFTargetWarmReset} {
		t.Run(map[TMF]string{TMFAbortTaskSet: "abort task set", TMFClearTaskSet: "clear task set",
			TMFLUNReset: "lun reset", TMFTargetWarmReset: "target warm reset"}[fn], func(t *testing.T) {
			c, h := setup(t, 0)
			wantErrno(t, c.AddDevice(&Device{Name: "disk2", Handler: h}), 0)
			wantErrno(t, c.AddLUN(DefaultGroup, "disk2", 1, false), 0)
			s1 := newSess(t, c, "i1")
			s2 := newSess(t, c, "i2")
			for _, s := range []*Session{s1, s2} {
				clearUAs(t, s, 0)
				clearUAs(t, s, 1)
			}
			h.mu.Lock()
			h.block = true
			h.mu.Unlock()
			a1, ra1 := newCmd(0, 1, Simple, tur()...)  // s1 LUN 0, running
			a2, ra2 := newCmd(0, 2, Ordered, tur()...) // s1 LUN 0, queued
			a3, ra3 := newCmd(1, 3, Simple, tur()...)  // s1 LUN 1, running
			b1, rb1 := newCmd(0, 1, Simple, tur()...)  // s2 LUN 0, running
			s1.Submit(a1)
			s1.Submit(a2)
			s1.Submit(a3)
			s2.Submit(b1)
			waitParked(t, h, 3)

			done := make(chan TMFResponse)
			go func() { done <- s1.TaskMgmt(fn, rawLUN(0), 0) }()
			// The queued ORDERED task is aborted without waiting.
			<-ra2.done
			if !ra2.aborted {
				t.Fatal("queued task not aborted")
			}
			select {
			case <-done:
				t.Fatal("TMF returned while an affected task runs")
			case <-time.After(20 * time.Millisecond):
			}
			h.release(t, 1) // a1 (tags are per session; the fake matches the first)
			waitParked(t, h, 2)
			affectsS2 := fn != TMFAbortTaskSet
			affectsLUN1 := fn == TMFTargetWarmReset
			h.release(t, 1) // b1
			if affectsLUN1 {
				h.release(t, 3)
			}
			if resp := <-done; resp != TMFComplete {
				t.Fatalf("response %d", resp)
			}
			<-ra1.done
			<-rb1.done
			if !ra1.aborted {
				t.Fatal("running task of the requester not aborted")
			}
			if rb1.aborted != affectsS2 {
				t.Fatalf("other session's task aborted=%v want %v", rb1.aborted, affectsS2)
			}
			if !affectsLUN1 {
				if ra3.isDone() {
					t.Fatal("task on another LUN completed by the TMF")
				}
				h.release(t, 3)
			}
			<-ra3.done
			if ra3.aborted != affectsLUN1 {
				t.Fatalf("LUN 1 task aborted=%v", ra3.aborted)
			}

			h.mu.Lock()
			h.block = false
			h.mu.Unlock()
			var wantUA []scsi.ASC
			switch fn {
			case TMFClearTaskSet:
				wantUA = []scsi.ASC{scsi.ASCCommandsClearedByAnotherInit}
			case TMFLUNReset:
				wantUA = []scsi.ASC{scsi.ASCBusDeviceResetFunctionOccurred}
			case TMFTargetWarmReset:
				wantUA = []scsi.ASC{scsi.ASCPowerOnResetOccurred}
			}
			if got := pendingUAs(t, s2, 0); !reflect.DeepEqual(got, wantUA) {
				t.Fatalf("other session UAs %04x, want %04x", got, wantUA)
			}
			var wantOwn []scsi.ASC
			if fn == TMFLUNReset || fn == TMFTargetWarmReset {
				wantOwn = wantUA // resets reach every I_T nexus
			}
			if got := pendingUAs(t, s1, 0); !reflect.DeepEqual(got, wantOwn) {
				t.Fatalf("requester got UAs %04x, want %04x", got, wantOwn)
			}
			h.mu.Lock()
			resets := h.resets
			h.mu.Unlock()
			if want := map[TMF]int{TMFLUNReset: 1, TMFTargetWarmReset: 2}[fn]; resets != want {
				t.Fatalf("handler Reset called %d times, want %d", resets, want)
			}
		})
	}
}

func TestTMFNoLUNAndUnsupported(t *testing.T) {
	c, _ := setup(t, 0)
	s := newSess(t, c, "i")
	for _, fn := range []TMF{TMFAbortTaskSet, TMFClearTaskSet, TMFLUNReset} {
		if resp := s.TaskMgmt(fn, rawLUN(9), 0); resp != TMFNoLUN {
			t.Fatalf("fn %d on unmapped LUN: %d", fn, resp)
		}
	}
	for _, fn := range []TMF{TMFClearACA, TMFTaskReassign, 42} {
		if resp := s.TaskMgmt(fn, rawLUN(0), 0); resp != TMFNotSupported {
			t.Fatalf("fn %d: %d", fn, resp)
		}
	}
}

func TestSessionClose(t *testing.T) {
	c, h, s := blockedSetup(t)
	c1, r1 := newCmd(0, 1, Simple, tur()...)
	c2, r2 := newCmd(0, 2, Ordered, tur()...)
	s.Submit(c1)
	s.Submit(c2)
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	<-r2.done
	if !r2.aborted {
		t.Fatal("queued command not aborted by Close")
	}
	select {
	case <-closed:
		t.Fatal("Close returned with a command running")
	case <-time.After(20 * time.Millisecond):
	}
	h.release(t, 1)
	<-closed
	if !r1.aborted {
		t.Fatal("running command not marked aborted")
	}
	if len(c.Sessions()) != 0 {
		t.Fatalf("session still listed: %+v", c.Sessions())
	}
	// Commands after Close see no LUN.
	c3, r3 := newCmd(0, 3, Simple, tur()...)
	s.Submit(c3)
	<-r3.done
	if _, asc := senseKeyASC(t, r3.sense); asc != scsi.ASCLogicalUnitNotSupported {
		t.Fatalf("after close: %x", r3.sense)
	}
	s.Close() // idempotent
}

func TestRemoveDeviceWaitsForInflight(t *testing.T) {
	c := NewCore(Options{})
	h := &fakeHandler{}
	keep := &fakeHandler{}
	wantErrno(t, c.AddDevice(&Device{Name: "gone", Handler: h}), 0)
	wantErrno(t, c.AddDevice(&Device{Name: "keep", Handler: keep}), 0)
	wantErrno(t, c.AddLUN(DefaultGroup, "keep", 0, false), 0)
	wantErrno(t, c.AddLUN(DefaultGroup, "gone", 1, false), 0)
	wantErrno(t, c.AddGroup("g", AddrPeripheral), 0)
	wantErrno(t, c.AddLUN("g", "gone", 5, false), 0)
	s := newSess(t, c, "i")
	clearUAs(t, s, 0)
	clearUAs(t, s, 1)
	h.mu.Lock()
	h.block = true
	h.mu.Unlock()
	c1, r1 := newCmd(1, 1, Simple, tur()...)
	c2, r2 := newCmd(1, 2, Ordered, tur()...)
	s.Submit(c1)
	s.Submit(c2)

	removed := make(chan error)
	go func() { removed <- c.RemoveDevice("gone") }()
	// Wait for the unmapping to be visible, then check new commands are refused.
	deadline := time.Now().Add(5 * time.Second)
	for c.Device("gone") != nil {
		if time.Now().After(deadline) {
			t.Fatal("device never unregistered")
		}
		time.Sleep(time.Millisecond)
	}
	r := run(t, s, 1, tur()...)
	if _, asc := senseKeyASC(t, r.sense); asc != scsi.ASCLogicalUnitNotSupported {
		t.Fatalf("new command to removed device: %x", r.sense)
	}
	select {
	case <-removed:
		t.Fatal("RemoveDevice returned with commands in flight")
	case <-time.After(20 * time.Millisecond):
	}
	wantErrno(t, c.AddDevice(&Device{Name: "gone", Handler: &fakeHandler{}}), syscall.EEXIST)
	h.release(t, 1)
	waitParked(t, h, 1)
	h.release(t, 2)
	if err := <-removed; err != nil {
		t.Fatal(err)
	}
	<-r1.done
	<-r2.done
	if r1.aborted || r2.aborted || r1.status != scsi.StatusGood || r2.status != scsi.StatusGood {
		t.Fatal("in-flight commands did not finish normally")
	}
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed != 1 {
		t.Fatalf("Close called %d times", closed)
	}
	for _, g := range c.Groups() {
		for _, l := range g.LUNs {
			if l.Device == "gone" {
				t.Fatalf("mapping left in %s", g.Name)
			}
		}
	}
	if got := pendingUAs(t, s, 0); !reflect.DeepEqual(got, []scsi.ASC{scsi.ASCReportedLunsDataHasChanged}) {
		t.Fatalf("UAs on remaining LUN %04x", got)
	}
	wantErrno(t, c.AddDevice(&Device{Name: "gone", Handler: &fakeHandler{}}), 0)
}

// TestConcurrentSubmitAndReconfigure hammers the data path while the
// configuration changes underneath; run with -race.
func TestConcurrentSubmitAndReconfigure(t *testing.T) {
	c := NewCore(Options{})
	h := &asyncHandler{}
	wantErrno(t, c.AddDevice(&Device{Name: "d", Handler: h}), 0)
	wantErrno(t, c.AddLUN(DefaultGroup, "d", 0, false), 0)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := 0; i < 4; i++ {
		s := newSess(t, c, "i")
		wg.Add(1)
		go func(s *Session) {
			defer wg.Done()
			attrs := []TaskAttr{Simple, Simple, Ordered, HeadOfQueue, Untagged}
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				var batch []*result
				for k := 0; k < 8; k++ {
					cmd, r := newCmd(uint64(n%3), uint32(k+1), attrs[(n+k)%len(attrs)], tur()...)
					s.Submit(cmd)
					batch = append(batch, r)
				}
				if n%5 == 0 {
					s.TaskMgmt(TMFAbortTaskSet, rawLUN(0), 0)
				}
				for _, r := range batch {
					<-r.done
				}
			}
		}(s)
	}
	for i := 0; i < 200; i++ {
		_ = c.AddLUN(DefaultGroup, "d", 1, i%2 == 0)
		_ = c.ReplaceLUN(DefaultGroup, "d", 2, false)
		c.Device("d").RaiseUA(scsi.ASCCapacityDataHasChanged)
		_ = c.DelLUN(DefaultGroup, "d")
		_ = c.AddLUN(DefaultGroup, "d", 0, false)
		_ = c.Sessions()
	}
	close(stop)
	wg.Wait()
}

// asyncHandler completes every command from another goroutine.
type asyncHandler struct{}

func (asyncHandler) Exec(c *Command)     { go c.Complete() }
func (asyncHandler) HandlerName() string { return "vdisk_fileio" }
func (asyncHandler) Type() byte          { return 0 }
func (asyncHandler) Close() error        { return nil }

func TestNexusRegistryDoesNotGrow(t *testing.T) {
	c, _ := setup(t, 0, 1)
	d := c.Device("disk1")
	for i := 0; i < 50; i++ {
		s, err := c.NewSession(SessionInfo{Initiator: "i", Target: "t"})
		if err != nil {
			t.Fatal(err)
		}
		run(t, s, 0, tur()...)
		wantErrno(t, c.ReplaceLUN(DefaultGroup, "disk1", 1, i%2 == 0), 0)
		wantErrno(t, c.DelLUN(DefaultGroup, "disk1"), 0)
		wantErrno(t, c.ClearLUNs(DefaultGroup), 0)
		wantErrno(t, c.AddLUN(DefaultGroup, "disk1", 0, false), 0)
		wantErrno(t, c.AddLUN(DefaultGroup, "disk1", 1, false), 0)
		s.Close()
	}
	if n := len(d.nexuses()); n != 0 {
		t.Fatalf("%d nexuses left registered", n)
	}
}

// TestAbortBeforeExec aborts a command that was scheduled but not yet
// handed to the handler (the runner goroutine is busy): it must complete as
// aborted without reaching Exec.
func TestAbortBeforeExec(t *testing.T) {
	c := NewCore(Options{})
	gate := make(chan struct{})
	entered := make(chan struct{})
	var mu sync.Mutex
	var seen []uint32
	h := &funcHandler{exec: func(cmd *Command) {
		mu.Lock()
		seen = append(seen, cmd.Tag)
		mu.Unlock()
		if cmd.Tag == 1 {
			close(entered)
			<-gate
		}
		cmd.Complete()
	}}
	wantErrno(t, c.AddDevice(&Device{Name: "d", Handler: h}), 0)
	wantErrno(t, c.AddLUN(DefaultGroup, "d", 0, false), 0)
	s := newSess(t, c, "i")
	clearUAs(t, s, 0)
	mu.Lock()
	seen = nil
	mu.Unlock()

	c1, r1 := newCmd(0, 1, Simple, tur()...)
	go s.Submit(c1) // this goroutine becomes the runner and blocks in Exec
	<-entered
	c2, r2 := newCmd(0, 2, Simple, tur()...)
	s.Submit(c2) // queued behind the busy runner, already "running"
	if r2.isDone() {
		t.Fatal("command 2 completed while the runner is blocked")
	}
	resp := make(chan TMFResponse)
	go func() { resp <- s.TaskMgmt(TMFAbortTask, rawLUN(0), 2) }()
	nx := s.view.Load().luns[0]
	for deadline := time.Now().Add(5 * time.Second); ; {
		nx.mu.Lock()
		marked := c2.core.aborted
		nx.mu.Unlock()
		if marked {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("ABORT TASK never marked the command")
		}
		time.Sleep(time.Millisecond)
	}
	close(gate)
	if got := <-resp; got != TMFComplete {
		t.Fatalf("response %d", got)
	}
	<-r1.done
	<-r2.done
	if !r2.aborted || r1.aborted {
		t.Fatalf("aborted: 1=%v 2=%v", r1.aborted, r2.aborted)
	}
	mu.Lock()
	defer mu.Unlock()
	if !reflect.DeepEqual(seen, []uint32{1}) {
		t.Fatalf("handler saw %v", seen)
	}
}
