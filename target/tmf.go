package target

import (
	"github.com/scstd/scstd/target/scsi"
)

// TMF is a task management function.
type TMF uint8

// Task management functions (numbered as iSCSI Function codes).
const (
	TMFAbortTask       TMF = 1
	TMFAbortTaskSet    TMF = 2
	TMFClearACA        TMF = 3
	TMFClearTaskSet    TMF = 4
	TMFLUNReset        TMF = 5
	TMFTargetWarmReset TMF = 6
	TMFTargetColdReset TMF = 7
	TMFTaskReassign    TMF = 8
)

// TMFResponse codes (numbered as iSCSI Response codes).
type TMFResponse uint8

// TMF responses.
const (
	TMFComplete     TMFResponse = 0
	TMFNoTask       TMFResponse = 1
	TMFNoLUN        TMFResponse = 2
	TMFNotSupported TMFResponse = 5
	TMFRejected     TMFResponse = 255
)

// TaskMgmt performs fn and returns after every affected command completed
// (aborted commands get Aborted=true and Done is still called for them).
// lun is the raw SAM LUN field, as in Command.LUN.
//
// ABORT TASK answers TMFNoTask when no command with refTag is in the task
// sets, which is what initiators expect for a task that already completed
// (libiscsi's iSCSITMF tests: a completed WRITE plus "Task does not exist").
// RFC 7143 §11.6.1 b) wants "Function complete" for a RefCmdSN inside the
// window that was never received; only the transport knows CmdSNs, so it
// applies that rule.
func (s *Session) TaskMgmt(fn TMF, lun uint64, refTag uint32) TMFResponse {
	v := s.view.Load()
	lookup := func() *nexus {
		if l, ok := decodeLUN(lun); ok {
			return v.luns[l]
		}
		return nil
	}
	switch fn {
	case TMFAbortTask:
		match := func(c *Command) bool { return c.Tag == refTag }
		// Tags are unique in the session: look on the addressed LUN first,
		// then anywhere, since initiators are not all careful with the LUN.
		if nx := lookup(); nx != nil && nx.abortTasks(match) {
			return TMFComplete
		}
		for _, nx := range v.order {
			if nx.abortTasks(match) {
				return TMFComplete
			}
		}
		return TMFNoTask
	case TMFAbortTaskSet:
		nx := lookup()
		if nx == nil {
			return TMFNoLUN
		}
		nx.abortTasks(nil)
		return TMFComplete
	case TMFClearTaskSet:
		nx := lookup()
		if nx == nil {
			return TMFNoLUN
		}
		s.core.clearLU(nx, scsi.ASCCommandsClearedByAnotherInit, false)
		return TMFComplete
	case TMFLUNReset:
		nx := lookup()
		if nx == nil {
			return TMFNoLUN
		}
		s.core.clearLU(nx, scsi.ASCBusDeviceResetFunctionOccurred, true)
		s.log.WithField("lun", nx.lun).Info("logical unit reset")
		return TMFComplete
	case TMFTargetWarmReset:
		s.core.targetReset(s, false)
		s.log.Info("target warm reset")
		return TMFComplete
	case TMFTargetColdReset:
		// The transport then ends every session of the target (RFC 7143
		// §11.5.1); the core's part is a hard reset of the logical units.
		s.core.targetReset(s, true)
		s.log.Info("target cold reset")
		return TMFComplete
	default:
		return TMFNotSupported
	}
}

// nexuses returns the nexuses of d.
func (d *Device) nexuses() []*nexus {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]*nexus, 0, len(d.nexus))
	for nx := range d.nexus {
		out = append(out, nx)
	}
	return out
}

// Aborter is implemented by handlers that can end a running command early
// when a task management function aborts it. Without it the core waits
// until the command completes by itself, which for a long operation that
// must outlive its task (SANITIZE, SBC-4 4.11: a reset does not stop it)
// would hold the TMF response for the whole operation.
type Aborter interface {
	// Abort is called for each command handed (or about to be handed) to
	// the handler once a TMF, a PREEMPT AND ABORT or the loss of the I_T
	// nexus aborted it; commands it does not know must be ignored. It is
	// called with the core's lock of the command's I_T_L nexus held, so
	// that c cannot complete (and be reused) meanwhile: it must not block,
	// must not call back into the core, and must not complete c itself.
	// It may arrange for c to complete soon from another goroutine (Done
	// then reports it as aborted); or ignore the call, and the core waits.
	Abort(c *Command)
}

// AbortRequested reports whether c, which the handler is executing, has
// been aborted. An Aborter that registers a command for Abort only after
// Exec started checks it once registered: an abort that came before found
// nothing to end.
func (c *Command) AbortRequested() bool {
	nx := c.core.nx
	if nx == nil {
		return false
	}
	nx.mu.Lock()
	defer nx.mu.Unlock()
	return c.core.aborted
}

// abortTasks is abortAll with the handler told about the running victims.
func (nx *nexus) abortTasks(match func(*Command) bool) bool {
	found := nx.abortMark(match)
	if found {
		nx.notifyAborter()
		nx.awaitAborted()
	}
	return found
}

// notifyAborter calls the handler's Abort for every aborted command it is
// executing (abortMark completed the ones that had not started).
func (nx *nexus) notifyAborter() {
	a, ok := nx.dev.Handler.(Aborter)
	if !ok {
		return
	}
	nx.mu.Lock()
	for c := nx.head; c != nil; c = c.core.next {
		if c.core.aborted && c.core.state == stRunning {
			a.Abort(c)
		}
	}
	nx.mu.Unlock()
}

// abortNexuses aborts every task of nxs (marking all before waiting for
// any) and reports which nexuses lost tasks.
func abortNexuses(nxs []*nexus) []bool {
	lost := make([]bool, len(nxs))
	for i, nx := range nxs {
		lost[i] = nx.abortMark(nil)
	}
	for i, nx := range nxs {
		if lost[i] {
			nx.notifyAborter()
		}
	}
	for i, nx := range nxs {
		if lost[i] {
			nx.awaitAborted()
		}
	}
	return lost
}

// clearLU aborts every task of the logical unit (device) behind from, in all
// sessions: the task set is shared by all I_T nexuses (TST=000b). A reset
// establishes asc on every nexus of the logical unit, the requester's
// included (SAM-5 6.3.3: "every I_T nexus"); a clear only on the other
// nexuses that lost commands (COMMANDS CLEARED BY ANOTHER INITIATOR).
func (c *Core) clearLU(from *nexus, asc scsi.ASC, reset bool) {
	nxs := from.dev.nexuses()
	lost := abortNexuses(nxs)
	for i, nx := range nxs {
		if reset || (nx != from && lost[i]) {
			nx.queueUA(asc)
		}
	}
	if reset {
		from.dev.reset()
	}
}

// targetReset aborts all tasks of every session on the same target and
// establishes POWER ON, RESET, OR BUS DEVICE RESET OCCURRED on every LUN of
// those sessions, as a target reset does (SAM-5 6.3.2). A cold reset is a
// hard reset: the logical units also return to their power-on state
// (HardResetHandler).
func (c *Core) targetReset(from *Session, hard bool) {
	c.mu.Lock()
	var nxs []*nexus
	for _, s := range c.sess {
		if s.info.Target == from.info.Target {
			nxs = append(nxs, s.view.Load().order...)
		}
	}
	c.mu.Unlock()
	abortNexuses(nxs)
	devs := make(map[*Device]struct{})
	for _, nx := range nxs {
		nx.queueUA(scsi.ASCPowerOnResetOccurred)
		devs[nx.dev] = struct{}{}
	}
	for d := range devs {
		d.reset()
		if h, ok := d.Handler.(HardResetHandler); hard && ok {
			h.HardReset()
		}
	}
}

// HardResetHandler is implemented by handlers with state that a hard reset
// (TARGET COLD RESET) returns to its power-on condition beyond what Reset
// clears, such as mode parameters changed by MODE SELECT (SAM-5 6.3.2).
type HardResetHandler interface {
	// HardReset is called after Reset, for a TARGET COLD RESET.
	HardReset()
}

// ResetHandler is implemented by handlers that keep logical unit state a
// reset clears (PREVENT ALLOW MEDIUM REMOVAL, reservations, ...).
type ResetHandler interface {
	// Reset is called after a LOGICAL UNIT RESET or TARGET WARM RESET
	// aborted the device's tasks.
	Reset()
}

// NexusLossHandler is implemented by handlers that keep per-I_T-nexus state
// (PREVENT ALLOW MEDIUM REMOVAL): NexusLost is called after the session's
// commands on the device finished, when the session logs out or drops.
type NexusLossHandler interface {
	NexusLost(s *Session)
}

func (d *Device) reset() {
	d.pr.resetSPC2()
	if r, ok := d.Handler.(ResetHandler); ok {
		r.Reset()
	}
}
