package target

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/scstd/scstd/target/scsi"
)

// Persistent reservation types (SPC-4 table 212).
const (
	prWriteExclusive         byte = 0x1
	prExclusiveAccess        byte = 0x3
	prWriteExclusiveRegsOnly byte = 0x5
	prExclusiveAccessRegOnly byte = 0x6
	prWriteExclusiveAllRegs  byte = 0x7
	prExclusiveAccessAllRegs byte = 0x8
)

// maxRegistrants bounds the registrations of one device; beyond it REGISTER
// fails with INSUFFICIENT REGISTRATION RESOURCES rather than growing without
// limit on an initiator's request.
const maxRegistrants = 1024

func validPRType(t byte) bool {
	switch t {
	case prWriteExclusive, prExclusiveAccess, prWriteExclusiveRegsOnly,
		prExclusiveAccessRegOnly, prWriteExclusiveAllRegs, prExclusiveAccessAllRegs:
		return true
	}
	return false
}

// allRegistrantsType: every registered I_T nexus is a reservation holder.
func allRegistrantsType(t byte) bool {
	return t == prWriteExclusiveAllRegs || t == prExclusiveAccessAllRegs
}

// registrantsType: registered I_T nexuses have the holder's access.
func registrantsType(t byte) bool {
	return t == prWriteExclusiveRegsOnly || t == prExclusiveAccessRegOnly || allRegistrantsType(t)
}

// writeExclusiveType: only writes conflict for those without access.
func writeExclusiveType(t byte) bool {
	return t == prWriteExclusive || t == prWriteExclusiveRegsOnly || t == prWriteExclusiveAllRegs
}

// nexusID names an I_T nexus the way persistent reservations do: the
// initiator port (iSCSI name plus ISID) and the target port (target name).
// It survives the session, so registrations still match after a reconnect.
type nexusID struct {
	name   string
	isid   uint64 // 0: the transport did not report one
	target string
}

// prID returns the session's I_T nexus identity. The group-matching name
// may be "chapuser@InitiatorName"; iSCSI names cannot contain '@', so the
// initiator port name is what follows the last one.
func (s *Session) prID() nexusID {
	name := s.info.Initiator
	if i := strings.LastIndexByte(name, '@'); i >= 0 {
		name = name[i+1:]
	}
	return nexusID{name: name, isid: s.info.ISID & isidMask, target: s.info.Target}
}

const isidMask = 1<<48 - 1

// registrant is one registration (SPC-4 5.13.7).
type registrant struct {
	key  uint64
	name string // iSCSI initiator name
	// isid is the initiator port's ISID; 0 matches any ISID of name (the
	// transport did not report ISIDs, or a TransportID named only the
	// initiator device).
	isid    uint64
	target  string // target port; ignored when allTgPt
	allTgPt bool
	// holder marks the reservation holder of a non-all-registrants
	// reservation.
	holder bool
}

func (r *registrant) matches(id nexusID) bool {
	return strings.EqualFold(r.name, id.name) &&
		(r.isid == 0 || r.isid == id.isid) &&
		(r.allTgPt || r.target == id.target)
}

// prData is the persistent reservation state of a logical unit. Values are
// copied before a change (clone) so that a change that cannot be persisted
// is dropped whole.
type prData struct {
	gen   uint32
	aptpl bool
	regs  []registrant // registration order
	typ   byte         // reservation type; 0: not reserved (scope is always LU_SCOPE)
}

func (d *prData) clone() prData {
	n := *d
	n.regs = append([]registrant(nil), d.regs...)
	return n
}

// find returns the index of id's registration or -1.
func (d *prData) find(id nexusID) int {
	for i := range d.regs {
		if d.regs[i].matches(id) {
			return i
		}
	}
	return -1
}

// isHolder reports whether registration i holds the reservation.
func (d *prData) isHolder(i int) bool {
	if i < 0 || d.typ == 0 {
		return false
	}
	return allRegistrantsType(d.typ) || d.regs[i].holder
}

// holderKey is the RESERVATION KEY that READ RESERVATION reports.
func (d *prData) holderKey() uint64 {
	if allRegistrantsType(d.typ) {
		return 0
	}
	for i := range d.regs {
		if d.regs[i].holder {
			return d.regs[i].key
		}
	}
	return 0
}

func (d *prData) release() {
	d.typ = 0
	for i := range d.regs {
		d.regs[i].holder = false
	}
}

// remove drops registration i, releasing the reservation if that leaves it
// without a holder (SPC-4 5.13.11.2). It reports whether it did.
func (d *prData) remove(i int) (released bool) {
	wasHolder := d.regs[i].holder
	d.regs = append(d.regs[:i], d.regs[i+1:]...)
	if d.typ != 0 && (wasHolder || (allRegistrantsType(d.typ) && len(d.regs) == 0)) {
		d.release()
		return true
	}
	return false
}

// prSnap is what the data path reads: the reservations in force. It is nil
// while the logical unit has neither a persistent nor an SPC-2 reservation,
// so an unreserved device costs one atomic load per command.
type prSnap struct {
	typ  byte         // persistent reservation type, 0: none
	regs []registrant // registrations, with holder flags, when typ != 0
	spc2 *Session     // SPC-2 RESERVE holder, nil: none
}

// prState is a device's reservation state, shared by all its sessions.
type prState struct {
	mu   sync.Mutex
	data prData   // under mu
	spc2 *Session // under mu
	// loaded is set once restore ran, so AddDevice of a device object
	// removed and added again keeps its in-memory state.
	loaded bool
	snap   atomic.Pointer[prSnap]
}

// publishLocked refreshes the data-path snapshot after a change.
func (p *prState) publishLocked() {
	if p.data.typ == 0 && p.spc2 == nil {
		p.snap.Store(nil)
		return
	}
	s := &prSnap{typ: p.data.typ, spc2: p.spc2}
	if p.data.typ != 0 {
		s.regs = append([]registrant(nil), p.data.regs...)
	}
	p.snap.Store(s)
}

// prErr is how the reservation code reports a command that does not
// complete with GOOD: RESERVATION CONFLICT or CHECK CONDITION with sense.
type prErr struct {
	conflict bool
	sense    scsi.Sense
}

func (e *prErr) Error() string {
	if e.conflict {
		return "reservation conflict"
	}
	return "check condition"
}

var errConflict = &prErr{conflict: true}

func checkErr(s scsi.Sense) error { return &prErr{sense: s} }

func invalidParam(byteOff uint16, bit uint8) error {
	return checkErr(scsi.Sense{Key: scsi.SenseIllegalRequest, ASC: scsi.ASCInvalidFieldInParameterList,
		FieldPointer: byteOff, BitPointer: bit, FieldPointerValid: true})
}

func invalidCDB(byteOff uint16, bit uint8) error {
	return checkErr(scsi.InvalidFieldInCDB(byteOff, bit))
}

// completeWith finishes c from a reservation-code result.
// ReservationRefuser is implemented by handlers whose logical unit other
// nodes also serve (a shared Ceph RBD image): reservations kept in this
// process would not be enforced there, so the core refuses them (INVALID
// COMMAND OPERATION CODE) rather than ignore them silently.
type ReservationRefuser interface {
	RefuseReservations() bool
}

func completeWith(c *Command, err error) {
	var pe *prErr
	switch {
	case err == nil:
	case errors.As(err, &pe) && pe.conflict:
		c.Status = scsi.StatusReservationConflict
		c.Sense = nil
		c.DataIn = nil
	case errors.As(err, &pe):
		c.CheckCondition(pe.sense)
		c.DataIn = nil
	default:
		c.CheckCondition(scsi.SenseInternalFailure)
		c.DataIn = nil
	}
	c.Complete()
}

// reservation runs in the dispatcher just before PreExec and Handler.Exec:
// it executes the reservation commands and refuses commands a reservation
// forbids. It reports whether it completed c.
func (nx *nexus) reservation(c *Command) bool {
	p := &nx.dev.pr
	switch c.CDB[0] {
	case scsi.OpPersistentReserveIn, scsi.OpPersistentReserveOut,
		scsi.OpReserve6, scsi.OpReserve10, scsi.OpRelease6, scsi.OpRelease10:
		if r, ok := nx.dev.Handler.(ReservationRefuser); ok && r.RefuseReservations() {
			completeWith(c, &prErr{sense: scsi.SenseInvalidOpcode})
			return true
		}
	}
	switch c.CDB[0] {
	case scsi.OpPersistentReserveIn, scsi.OpPersistentReserveOut:
		if s := p.snap.Load(); s != nil && s.spc2 != nil && s.spc2 != c.core.sess {
			// SPC-2 7.11/7.12: refused while another I_T nexus holds an
			// SPC-2 reservation.
			completeWith(c, errConflict)
			return true
		}
		if c.CDB[0] == scsi.OpPersistentReserveIn {
			completeWith(c, nx.prin(c))
		} else {
			completeWith(c, nx.prout(c))
		}
		return true
	case scsi.OpReserve6, scsi.OpReserve10:
		completeWith(c, nx.reserve(c))
		return true
	case scsi.OpRelease6, scsi.OpRelease10:
		completeWith(c, nx.releaseSPC2(c))
		return true
	}
	s := p.snap.Load()
	if s == nil || !s.conflicts(c) {
		return false
	}
	completeWith(c, errConflict)
	return true
}

// prUA queues asc on every I_T_L nexus of d whose I_T nexus one of regs
// names, except those of the session that caused it.
func (d *Device) prUA(asc scsi.ASC, regs []registrant, except *Session) {
	if len(regs) == 0 {
		return
	}
	for _, nx := range d.nexuses() {
		if nx.sess == except {
			continue
		}
		id := nx.sess.prID()
		for i := range regs {
			if regs[i].matches(id) {
				nx.queueUA(asc)
				break
			}
		}
	}
}

// restorePR loads the device's persisted reservation state, if any.
func (c *Core) restorePR(d *Device) {
	p := &d.pr
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.loaded {
		return
	}
	p.loaded = true
	if c.opts.StateDir == "" {
		return
	}
	data, ok, err := loadPR(c.opts.StateDir, d.Name)
	if err != nil {
		c.log.WithField("device", d.Name).WithError(err).Error("persistent reservations not restored")
		return
	}
	if ok {
		p.data = data
		p.publishLocked()
		c.log.WithField("device", d.Name).Infof("restored %d persistent reservation registrations", len(data.regs))
	}
}

// nexusLost ends the SPC-2 reservation of a closed session (I_T nexus loss).
// Persistent reservations are kept (SPC-4 5.13.4).
func (p *prState) nexusLost(s *Session) {
	p.mu.Lock()
	if p.spc2 == s {
		p.spc2 = nil
		p.publishLocked()
	}
	p.mu.Unlock()
}

// resetSPC2 ends an SPC-2 reservation on LOGICAL UNIT RESET or target reset.
func (p *prState) resetSPC2() {
	p.mu.Lock()
	if p.spc2 != nil {
		p.spc2 = nil
		p.publishLocked()
	}
	p.mu.Unlock()
}

// releaseSessionReservations releases the SPC-2 reservations s holds on
// every device; Session.Close calls it.
func (c *Core) releaseSessionReservations(s *Session) {
	for _, d := range c.cfg.Load().devices {
		d.pr.nexusLost(s)
	}
}

// reaches reports whether the view maps device d at some LUN.
func (v *sessView) reaches(d *Device) bool {
	for _, nx := range v.luns {
		if nx.dev == d {
			return true
		}
	}
	return false
}
