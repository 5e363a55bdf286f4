package target

import (
	"sync"
	"sync/atomic"

	"github.com/scstd/scstd/target/scsi"
)

// maxUA bounds the unit attentions queued per I_T_L nexus. Duplicates are
// coalesced, so only a burst of distinct conditions can reach it.
const maxUA = 8

// Command states inside a task set.
const (
	stIdle    uint8 = iota // not in a task set
	stQueued               // waiting for its task attribute to allow it
	stRunning              // handed to the dispatcher / handler
	stHeld                 // completed, its DataIn not sent yet (SetDataInHeld)
)

// commandState is the core's bookkeeping embedded in every Command.
type commandState struct {
	sess       *Session
	nx         *nexus
	next, prev *Command // task set, arrival order
	runNext    *Command // dispatcher run queue
	state      uint8
	aborted    bool // a TMF aborted it; guarded by nx.mu
	// dataIn is the pooled buffer AllocDataIn handed out, released by Release
	// whatever the handler later did with Command.DataIn.
	dataIn []byte
	// holder keeps DataIn valid until Release (SetDataInHeld).
	holder DataInHolder
}

// nexus is one I_T_L nexus: a session's view of one mapped LUN, with its
// task set and unit attention queue. Its lock is private to the session and
// LUN, so sessions never contend with each other on the submit path.
type nexus struct {
	sess     *Session
	lun      uint64
	dev      *Device
	readOnly atomic.Bool

	mu       sync.Mutex
	cond     sync.Cond // signalled when commands leave; see waiters
	dead     bool      // retired from the session's view: refuse new commands
	head     *Command  // task set, arrival order (HEAD OF QUEUE at the front)
	tail     *Command
	n        int // commands in the task set
	nOrdered int // ORDERED commands in the task set
	nQueued  int // commands in the task set not started yet
	runHead  *Command
	runTail  *Command
	running  bool // a goroutine is draining the run queue
	ua       [maxUA]scsi.ASC
	nua      int
	// deferred is a deferred error (SPC-4 4.5.5) waiting to be reported.
	deferred    scsi.Sense
	hasDeferred bool
	// completing counts commands removed from the task set whose Done has
	// not returned yet; waiters counts goroutines blocked in cond.Wait.
	completing atomic.Int32
	waiters    atomic.Int32
	registered bool // in dev.nexus; guarded by dev.mu
}

func newNexus(s *Session, m lunMap) *nexus {
	nx := &nexus{sess: s, lun: m.lun, dev: m.dev}
	nx.cond.L = &nx.mu
	nx.readOnly.Store(m.readOnly)
	return nx
}

func (d *Device) addNexus(nx *nexus) {
	d.mu.Lock()
	d.nexus[nx] = struct{}{}
	nx.registered = true
	d.mu.Unlock()
}

// unregister drops a retired, drained nexus from its device.
func (nx *nexus) unregister() {
	d := nx.dev
	d.mu.Lock()
	if nx.registered {
		delete(d.nexus, nx)
		nx.registered = false
	}
	d.mu.Unlock()
}

// queueUA appends a unit attention unless the same one is already pending.
func (nx *nexus) queueUA(asc scsi.ASC) {
	nx.mu.Lock()
	nx.queueUALocked(asc)
	nx.mu.Unlock()
}

func (nx *nexus) queueUALocked(asc scsi.ASC) {
	for i := 0; i < nx.nua; i++ {
		if nx.ua[i] == asc {
			return
		}
	}
	if nx.nua == maxUA {
		nx.sess.log.WithField("lun", nx.lun).Debugf("unit attention queue full, dropping %04x", uint16(asc))
		return
	}
	nx.ua[nx.nua] = asc
	nx.nua++
}

// setDeferred records a deferred error unless one is already waiting: the
// first error is the one the initiator needs to know about.
func (nx *nexus) setDeferred(s scsi.Sense) {
	nx.mu.Lock()
	if !nx.hasDeferred {
		nx.deferred, nx.hasDeferred = s, true
	}
	nx.mu.Unlock()
}

// popUALocked removes and returns the oldest pending unit attention.
func (nx *nexus) popUALocked() (scsi.ASC, bool) {
	if nx.nua == 0 {
		return 0, false
	}
	asc := nx.ua[0]
	copy(nx.ua[:], nx.ua[1:nx.nua])
	nx.nua--
	return asc, true
}

// clearUA removes a pending unit attention with the given code.
func (nx *nexus) clearUA(asc scsi.ASC) {
	nx.mu.Lock()
	for i := 0; i < nx.nua; i++ {
		if nx.ua[i] == asc {
			copy(nx.ua[i:], nx.ua[i+1:nx.nua])
			nx.nua--
			break
		}
	}
	nx.mu.Unlock()
}

func (nx *nexus) active() int {
	nx.mu.Lock()
	defer nx.mu.Unlock()
	return nx.n
}

// retire takes the nexus out of service: commands that still reach it (from
// a view loaded before the change) get LOGICAL UNIT NOT SUPPORTED.
func (nx *nexus) retire() {
	nx.mu.Lock()
	nx.dead = true
	idle := nx.n == 0 && nx.completing.Load() == 0
	nx.mu.Unlock()
	if idle {
		nx.unregister()
	}
}

// uaExempt reports whether op is executed despite a pending unit attention
// (SAM-5: INQUIRY, REPORT LUNS and REQUEST SENSE).
func uaExempt(op byte) bool {
	return op == scsi.OpInquiry || op == scsi.OpReportLuns || op == scsi.OpRequestSense
}

// submit enters c into the task set, or completes it at once for a pending
// unit attention, a retired nexus or a core-handled opcode.
func (nx *nexus) submit(c *Command) {
	op := c.CDB[0]
	c.core.nx = nx
	nx.mu.Lock()
	if nx.dead {
		nx.mu.Unlock()
		c.checkCondition(scsi.SenseLUNNotSupported, false)
		c.finish()
		return
	}
	if op == scsi.OpRequestSense {
		// A pending unit attention is reported first, then a deferred error.
		sense, deferred := scsi.Sense{}, false
		if asc, ok := nx.popUALocked(); ok {
			sense = scsi.Sense{Key: scsi.SenseUnitAttention, ASC: asc}
		} else if nx.hasDeferred {
			sense, deferred = nx.deferred, true
			nx.hasDeferred = false
		}
		nx.mu.Unlock()
		requestSenseData(c, sense, deferred)
		c.finish()
		return
	}
	if !uaExempt(op) {
		if asc, ok := nx.popUALocked(); ok {
			nx.mu.Unlock()
			c.CheckCondition(scsi.Sense{Key: scsi.SenseUnitAttention, ASC: asc})
			c.finish()
			return
		}
		if nx.hasDeferred {
			s := nx.deferred
			nx.hasDeferred = false
			nx.mu.Unlock()
			c.CheckCondition(s)
			c.Sense[0] |= 0x01 // 70h/72h current -> 71h/73h deferred
			c.finish()
			return
		}
	}
	if c.Attr == ACA {
		// NACA is never set in the control byte we accept, so no ACA
		// condition can exist and an ACA task is an invalid request.
		nx.mu.Unlock()
		c.CheckCondition(scsi.Sense{Key: scsi.SenseIllegalRequest, ASC: scsi.ASCInvalidMessageError})
		c.finish()
		return
	}
	cs := &c.core
	var start bool
	switch c.Attr {
	case HeadOfQueue:
		start = true
		cs.next = nx.head
		if nx.head != nil {
			nx.head.core.prev = c
		} else {
			nx.tail = c
		}
		nx.head = c
	case Ordered:
		start = nx.n == 0
		nx.nOrdered++
		nx.appendLocked(c)
	default: // SIMPLE and untagged
		start = nx.nOrdered == 0
		nx.appendLocked(c)
	}
	nx.n++
	if start {
		cs.state = stRunning
		nx.pushRunLocked(c)
	} else {
		cs.state = stQueued
		nx.nQueued++
	}
	nx.runLocked()
}

func (nx *nexus) appendLocked(c *Command) {
	c.core.prev = nx.tail
	if nx.tail != nil {
		nx.tail.core.next = c
	} else {
		nx.head = c
	}
	nx.tail = c
}

func (nx *nexus) unlinkLocked(c *Command) {
	cs := &c.core
	if cs.prev != nil {
		cs.prev.core.next = cs.next
	} else {
		nx.head = cs.next
	}
	if cs.next != nil {
		cs.next.core.prev = cs.prev
	} else {
		nx.tail = cs.prev
	}
	cs.next, cs.prev = nil, nil
	nx.n--
	if cs.state == stQueued {
		nx.nQueued--
	}
	if c.Attr == Ordered {
		nx.nOrdered--
	}
	cs.state = stIdle
}

func (nx *nexus) pushRunLocked(c *Command) {
	c.core.runNext = nil
	if nx.runTail != nil {
		nx.runTail.core.runNext = c
	} else {
		nx.runHead = c
	}
	nx.runTail = c
}

// scheduleLocked starts queued commands that their attributes now allow:
// SIMPLE ones ahead of the first ORDERED, and that ORDERED one if it heads
// the task set. Without ORDERED commands nothing can be waiting.
func (nx *nexus) scheduleLocked() {
	if nx.nQueued == 0 {
		return
	}
	first := true
	for c := nx.head; c != nil; c = c.core.next {
		if c.core.state == stQueued && (c.Attr != Ordered || first) {
			c.core.state = stRunning
			nx.nQueued--
			nx.pushRunLocked(c)
		}
		if c.Attr == Ordered {
			return
		}
		first = false
	}
}

// runLocked executes the run queue unless another goroutine already does;
// it is entered with nx.mu held and returns with it released. Running the
// queue in a loop, rather than recursing from Complete into Exec, bounds the
// stack when handlers complete synchronously.
func (nx *nexus) runLocked() {
	if nx.running {
		nx.mu.Unlock()
		return
	}
	nx.running = true
	pre := nx.sess.core.opts.PreExec
	for nx.runHead != nil {
		c := nx.runHead
		nx.runHead = c.core.runNext
		if nx.runHead == nil {
			nx.runTail = nil
		}
		c.core.runNext = nil
		aborted := c.core.aborted
		nx.mu.Unlock()
		switch {
		case aborted:
			// Aborted between scheduling and execution: never started.
			nx.complete(c)
		case nx.reservation(c):
			// A reservation command, or one a reservation refuses:
			// completed by the core.
		case pre == nil || !pre(c):
			nx.dev.Handler.Exec(c)
		}
		nx.mu.Lock()
	}
	nx.running = false
	nx.mu.Unlock()
}

// complete is Command.Complete for commands in a task set. Done is called
// after c left the task set (the transport may reuse c from Done on) and
// before the commands c was blocking are executed.
func (nx *nexus) complete(c *Command) {
	nx.mu.Lock()
	if c.core.aborted {
		c.Aborted = true
	}
	kick := false
	if c.core.holder != nil {
		// Its data is read when the transport sends it: the command
		// leaves the task set in release.
		c.core.state = stHeld
	} else {
		kick = nx.leaveLocked(c)
	}
	nx.completing.Add(1)
	nx.mu.Unlock()

	c.finish()
	nx.doneOne()
	if kick {
		nx.mu.Lock()
		nx.runLocked()
	}
}

// leaveLocked takes c out of the task set, schedules what its attributes
// were holding back and reports whether the run queue needs a goroutine.
func (nx *nexus) leaveLocked(c *Command) bool {
	nx.unlinkLocked(c)
	nx.scheduleLocked()
	return nx.runHead != nil && !nx.running
}

// release takes a held command (SetDataInHeld) out of the task set once the
// transport sent its data, and starts what it was blocking.
func (nx *nexus) release(c *Command) {
	nx.mu.Lock()
	kick := nx.leaveLocked(c)
	nx.completing.Add(1)
	nx.mu.Unlock()
	nx.doneOne() // wakes drain and TMF waiters, unregisters a retired nexus
	if kick {
		// Release runs on the transport's sending goroutine, which must
		// not execute commands: their completions queue to it.
		go func() {
			nx.mu.Lock()
			nx.runLocked()
		}()
	}
}

// doneOne accounts for a command whose Done returned and wakes TMF/drain
// waiters when the last one leaves.
func (nx *nexus) doneOne() {
	if nx.completing.Add(-1) != 0 {
		return
	}
	if nx.waiters.Load() > 0 {
		nx.mu.Lock()
		nx.cond.Broadcast()
		nx.mu.Unlock()
	}
	nx.mu.Lock()
	idle := nx.dead && nx.n == 0
	nx.mu.Unlock()
	if idle {
		nx.unregister()
	}
}

// waitLocked blocks until cond returns true; callers hold nx.mu.
func (nx *nexus) waitLocked(cond func() bool) {
	nx.waiters.Add(1)
	for !cond() {
		nx.cond.Wait()
	}
	nx.waiters.Add(-1)
}

// drain waits until the task set is empty and every Done returned.
func (nx *nexus) drain() {
	nx.mu.Lock()
	nx.waitLocked(func() bool { return nx.n == 0 && nx.completing.Load() == 0 })
	nx.mu.Unlock()
	if nx.dead {
		nx.unregister()
	}
}

// abortAll aborts every command in the task set (or only those for which
// match returns true) and waits until they have completed: queued commands
// are completed at once with Aborted set, running ones are awaited and get
// Aborted set when they complete. It reports whether any command matched.
func (nx *nexus) abortAll(match func(*Command) bool) bool {
	found := nx.abortMark(match)
	if found {
		nx.awaitAborted()
	}
	return found
}

// abortMark is the first half of abortAll: it marks the matching commands,
// completes the queued ones and returns without waiting for running ones, so
// that a TMF touching many nexuses aborts everything before it waits.
func (nx *nexus) abortMark(match func(*Command) bool) bool {
	var victims, vtail *Command
	found := false
	nx.mu.Lock()
	for c := nx.head; c != nil; {
		next := c.core.next
		if match == nil || match(c) {
			found = true
			c.core.aborted = true
			if c.core.state == stQueued {
				nx.unlinkLocked(c)
				nx.completing.Add(1)
				c.Aborted = true
				if vtail != nil {
					vtail.core.runNext = c
				} else {
					victims = c
				}
				vtail = c
			}
		}
		c = next
	}
	if victims == nil {
		nx.mu.Unlock()
		return found
	}
	nx.scheduleLocked()
	nx.mu.Unlock()
	for c := victims; c != nil; {
		next := c.core.runNext
		c.core.runNext = nil
		c.finish()
		nx.doneOne()
		c = next
	}
	nx.mu.Lock()
	nx.runLocked()
	return found
}

// awaitAborted waits until no aborted command is left in the task set and
// every Done has returned.
func (nx *nexus) awaitAborted() {
	nx.mu.Lock()
	nx.waitLocked(func() bool {
		for c := nx.head; c != nil; c = c.core.next {
			if c.core.aborted {
				return false
			}
		}
		return nx.completing.Load() == 0
	})
	nx.mu.Unlock()
}
