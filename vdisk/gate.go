package vdisk

import (
	"sync"
	"sync/atomic"

	"github.com/scstd/scstd/target"
	"github.com/scstd/scstd/target/scsi"
)

// ioGate gives COMPARE AND WRITE, ORWRITE, WRITE ATOMIC and SANITIZE
// exclusive use of a device: no other medium access of any I_T nexus runs
// while one of them reads, compares and writes. Ordinary commands pay one
// atomic add on entry and one on exit; while an exclusive operation waits
// or runs they are parked (not blocked: Exec must never wait for I/O) and
// dispatched again when it ends.
type ioGate struct {
	// state counts shared holders in the low bits; exclBit is set while an
	// exclusive operation waits for them to drain or runs.
	state atomic.Int64
	// drained is signalled by the shared holder whose exit leaves only
	// exclBit; the exclusive waiter re-checks state after each signal.
	drained chan struct{}
	// excl serializes exclusive operations (taken on slow-pool workers).
	excl sync.Mutex
	// mu guards parked; clearing exclBit happens under it so that a
	// command cannot park after the list was flushed.
	mu     sync.Mutex
	parked []*target.Command
}

const exclBit = int64(1) << 40

func (g *ioGate) init() { g.drained = make(chan struct{}, 1) }

// enter takes a shared hold for c. It returns false when an exclusive
// operation is pending; c is then parked and dispatched again later.
func (g *ioGate) enter(c *target.Command) bool {
	if g.state.Add(1)&exclBit == 0 {
		return true
	}
	g.leave()
	g.mu.Lock()
	defer g.mu.Unlock()
	for {
		if g.state.Load()&exclBit != 0 {
			g.parked = append(g.parked, c)
			return false
		}
		// The exclusive operation ended meanwhile: try again.
		if g.state.Add(1)&exclBit == 0 {
			return true
		}
		g.leave()
	}
}

// leave drops a shared hold.
func (g *ioGate) leave() {
	if g.state.Add(-1) == exclBit {
		select {
		case g.drained <- struct{}{}:
		default:
		}
	}
}

// lockExclusive waits (on a slow-pool worker) until no shared hold remains.
func (g *ioGate) lockExclusive() {
	g.excl.Lock()
	g.state.Add(exclBit)
	for g.state.Load() != exclBit {
		<-g.drained
	}
}

// unlockExclusive ends the exclusive section and returns the commands that
// parked meanwhile, for the caller to dispatch again.
func (g *ioGate) unlockExclusive() []*target.Command {
	g.mu.Lock()
	g.state.Add(-exclBit)
	p := g.parked
	g.parked = nil
	g.mu.Unlock()
	// Drop a stale signal so that the next exclusive waiter re-checks.
	select {
	case <-g.drained:
	default:
	}
	g.excl.Unlock()
	return p
}

// slowFn is a command body that runs synchronously on a slow-pool worker
// with the medium held; it may block on file I/O.
type slowFn func(d *vdev, c *target.Command, m *medium) (outcome, scsi.Sense)

// slowPool runs the commands that need synchronous file operations
// (fallocate, lseek, read-modify-write) on a bounded set of goroutines that
// exist only while there is work.
type slowPool struct {
	jobs    chan *ioTask
	workers atomic.Int32
	max     int32
}

func newSlowPool(workers, queue int) *slowPool {
	return &slowPool{jobs: make(chan *ioTask, queue), max: int32(workers)}
}

// submit queues t; it blocks only when the queue is full (back-pressure).
func (p *slowPool) submit(t *ioTask) {
	p.jobs <- t
	p.spawn()
}

func (p *slowPool) spawn() bool {
	for {
		n := p.workers.Load()
		if n >= p.max {
			return false
		}
		if p.workers.CompareAndSwap(n, n+1) {
			go p.run()
			return true
		}
	}
}

func (p *slowPool) run() {
	for {
		select {
		case t := <-p.jobs:
			t.runSlow()
		default:
			p.workers.Add(-1)
			// A job queued after the receive above found no free worker
			// slot only if every worker was still counted: recheck.
			if len(p.jobs) == 0 || !p.reacquire() {
				return
			}
		}
	}
}

func (p *slowPool) reacquire() bool {
	for {
		n := p.workers.Load()
		if n >= p.max {
			return false
		}
		if p.workers.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// runSlow executes a queued slow command.
func (t *ioTask) runSlow() {
	d, c, m := t.d, t.c, t.m
	var st outcome
	var s scsi.Sense
	if t.exclusive {
		d.gate.lockExclusive()
		st, s = t.fn(d, c, m)
		parked := d.gate.unlockExclusive()
		t.finish(st, s)
		for _, pc := range parked {
			d.Exec(pc)
		}
		return
	}
	if !d.gate.enter(c) {
		// Parked behind an exclusive operation; it dispatches c again.
		t.c = nil
		t.finish(done, scsi.Sense{})
		return
	}
	st, s = t.fn(d, c, m)
	d.gate.leave()
	t.finish(st, s)
}

// runSlow queues fn for c on the manager's slow pool.
func (d *vdev) runSlow(c *target.Command, exclusive bool, fn slowFn) (outcome, scsi.Sense) {
	m := d.acquire()
	if m == nil {
		return check, d.notReady()
	}
	t := d.newTask(c, m, stSlow)
	t.fn, t.exclusive = fn, exclusive
	d.slow.submit(t)
	return pending, scsi.Sense{}
}
