package target

import (
	"sync"
	"testing"
	"time"
)

// abortingHandler is a blocking fakeHandler that implements Aborter the
// way the contract asks: it detaches the command under its own lock and
// completes it from another goroutine.
type abortingHandler struct {
	*fakeHandler
	amu        sync.Mutex
	aborts     []uint32 // tags Abort was called for, running ones only
	hardResets int
	wg         sync.WaitGroup
}

func (h *abortingHandler) Abort(c *Command) {
	h.mu.Lock()
	found := false
	for i, p := range h.parked {
		if p == c {
			h.parked = append(h.parked[:i], h.parked[i+1:]...)
			found = true
			break
		}
	}
	h.mu.Unlock()
	if !found {
		return
	}
	h.amu.Lock()
	h.aborts = append(h.aborts, c.Tag)
	h.amu.Unlock()
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		c.Complete()
	}()
}

func (h *abortingHandler) HardReset() {
	h.amu.Lock()
	h.hardResets++
	h.amu.Unlock()
}

// A running command of an Aborter handler is completed as aborted through
// Abort, so the TMF (or the session close) does not wait for the handler
// to finish it by itself; commands still queued never reach Abort.
func TestAborterEndsRunningCommands(t *testing.T) {
	tests := []struct {
		name string
		do   func(s *Session) TMFResponse
		hard int
	}{
		{"abort task", func(s *Session) TMFResponse { return s.TaskMgmt(TMFAbortTask, rawLUN(0), 1) }, 0},
		{"abort task set", func(s *Session) TMFResponse { return s.TaskMgmt(TMFAbortTaskSet, rawLUN(0), 0) }, 0},
		{"lun reset", func(s *Session) TMFResponse { return s.TaskMgmt(TMFLUNReset, rawLUN(0), 0) }, 0},
		{"target warm reset", func(s *Session) TMFResponse { return s.TaskMgmt(TMFTargetWarmReset, 0, 0) }, 0},
		{"target cold reset", func(s *Session) TMFResponse { return s.TaskMgmt(TMFTargetColdReset, 0, 0) }, 1},
		{"session close", func(s *Session) TMFResponse { s.Close(); return TMFComplete }, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := NewCore(Options{})
			h := &abortingHandler{fakeHandler: &fakeHandler{}}
			t.Cleanup(h.wg.Wait)
			if err := c.AddDevice(&Device{Name: "disk1", Handler: h}); err != nil {
				t.Fatal(err)
			}
			wantErrno(t, c.AddLUN(DefaultGroup, "disk1", 0, false), 0)
			s := newSess(t, c, "i")
			clearUAs(t, s, 0)
			h.mu.Lock()
			h.block = true
			h.mu.Unlock()
			a, ra := newCmd(0, 1, Simple, tur()...)
			s.Submit(a)
			waitParked(t, h.fakeHandler, 1)

			done := make(chan TMFResponse, 1)
			go func() { done <- tc.do(s) }()
			select {
			case r := <-done:
				if r != TMFComplete {
					t.Fatalf("response %d", r)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("TMF waited for the running command instead of aborting it")
			}
			<-ra.done
			if !ra.aborted {
				t.Fatal("command not reported aborted")
			}
			h.wg.Wait()
			h.amu.Lock()
			defer h.amu.Unlock()
			if len(h.aborts) != 1 || h.aborts[0] != 1 {
				t.Fatalf("Abort called for %v, want [1]", h.aborts)
			}
			if h.hardResets != tc.hard {
				t.Fatalf("HardReset called %d times, want %d", h.hardResets, tc.hard)
			}
		})
	}
}

// A handler without Aborter still has its running command awaited.
func TestNoAborterWaits(t *testing.T) {
	_, h, s := blockedSetup(t)
	a, ra := newCmd(0, 1, Simple, tur()...)
	s.Submit(a)
	waitParked(t, h, 1)
	done := make(chan TMFResponse, 1)
	go func() { done <- s.TaskMgmt(TMFAbortTask, rawLUN(0), 1) }()
	select {
	case <-done:
		t.Fatal("ABORT TASK returned while the command runs")
	case <-time.After(30 * time.Millisecond):
	}
	h.release(t, 1)
	if r := <-done; r != TMFComplete {
		t.Fatalf("response %d", r)
	}
	<-ra.done
	if !ra.aborted {
		t.Fatal("command not reported aborted")
	}
}

// AbortRequested turns true for a running command once a TMF aborted it.
func TestAbortRequested(t *testing.T) {
	_, h, s := blockedSetup(t)
	a, ra := newCmd(0, 1, Simple, tur()...)
	s.Submit(a)
	waitParked(t, h, 1)
	if a.AbortRequested() {
		t.Fatal("abort requested before any TMF")
	}
	done := make(chan TMFResponse, 1)
	go func() { done <- s.TaskMgmt(TMFAbortTaskSet, rawLUN(0), 0) }()
	deadline := time.Now().Add(5 * time.Second)
	for !a.AbortRequested() {
		if time.Now().After(deadline) {
			t.Fatal("AbortRequested still false after ABORT TASK SET")
		}
		time.Sleep(time.Millisecond)
	}
	h.release(t, 1)
	if r := <-done; r != TMFComplete {
		t.Fatalf("response %d", r)
	}
	<-ra.done
	if !ra.aborted {
		t.Fatal("not reported aborted")
	}
}
