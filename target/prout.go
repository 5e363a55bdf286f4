package target

import (
	"encoding/binary"
	"strings"
	"sync"

	"github.com/scstd/scstd/target/scsi"
	"github.com/sirupsen/logrus"
)

// PERSISTENT RESERVE OUT service actions (SPC-4 6.17.2).
const (
	proutRegister       = 0x00
	proutReserve        = 0x01
	proutRelease        = 0x02
	proutClear          = 0x03
	proutPreempt        = 0x04
	proutPreemptAbort   = 0x05
	proutRegisterIgnore = 0x06
	proutRegisterMove   = 0x07
)

// proutBasicLen is the length of the basic parameter list (SPC-4 6.17.3).
const proutBasicLen = 24

// maxProutParamLen bounds the parameter lists that carry TransportIDs
// (SPEC_I_PT, REGISTER AND MOVE); longer ones get PARAMETER LIST LENGTH
// ERROR, as SPC-4 6.17.3 allows for lists the device server cannot
// process. 64 KiB holds far more TransportIDs than maxRegistrants.
const maxProutParamLen = 1 << 16

// tidPort is an initiator port named by a TransportID.
type tidPort struct {
	name string
	isid uint64 // 0: format 00b, every port of the initiator
}

// proutReq is a decoded PERSISTENT RESERVE OUT command.
type proutReq struct {
	sa, scope, typ byte
	key, sark      uint64
	allTgPt, aptpl bool
	specIPT        bool      // REGISTER with SPEC_I_PT
	ports          []tidPort // SPEC_I_PT: the specified initiator ports
	unreg          bool      // REGISTER AND MOVE
	relPort        uint16    // REGISTER AND MOVE
	dst            tidPort   // REGISTER AND MOVE destination
	paramLen       uint32
}

var senseParamLen = scsi.SenseParamListLength

// parsePROUT decodes and checks the CDB and parameter list of PERSISTENT
// RESERVE OUT (SPC-4 6.17). data holds the parameter list as received.
func parsePROUT(cdb, data []byte) (proutReq, error) {
	var r proutReq
	if len(cdb) < 10 {
		return r, checkErr(scsi.SenseInvalidOpcode)
	}
	r.sa = cdb[1] & 0x1f
	r.scope = cdb[2] >> 4
	r.typ = cdb[2] & 0x0f
	r.paramLen = binary.BigEndian.Uint32(cdb[5:9])
	if r.sa > proutRegisterMove {
		return r, invalidCDB(1, 4)
	}
	switch r.sa {
	case proutReserve, proutRelease, proutPreempt, proutPreemptAbort:
		// The scope and type matter: LU_SCOPE only, a defined type.
		if r.scope != 0 {
			return r, invalidCDB(2, 7)
		}
		if !validPRType(r.typ) {
			return r, invalidCDB(2, 3)
		}
	}
	// Every parameter list has the 24-byte basic part; only SPEC_I_PT and
	// REGISTER AND MOVE lists are longer (SPC-4 6.17.3).
	if r.paramLen < proutBasicLen || r.paramLen > maxProutParamLen || uint32(len(data)) < r.paramLen {
		return r, checkErr(senseParamLen)
	}
	p := data[:r.paramLen]
	r.key = binary.BigEndian.Uint64(p[0:8])
	r.sark = binary.BigEndian.Uint64(p[8:16])
	if r.sa == proutRegisterMove {
		r.unreg = p[17]&0x02 != 0
		r.aptpl = p[17]&0x01 != 0
		r.relPort = binary.BigEndian.Uint16(p[18:20])
		tlen := binary.BigEndian.Uint32(p[20:24])
		if uint64(tlen)+proutBasicLen != uint64(r.paramLen) {
			return r, checkErr(senseParamLen)
		}
		name, isid, n, err := parseTransportID(p[24:])
		if err != nil || n != int(tlen) {
			return r, invalidParam(24, 0)
		}
		r.dst = tidPort{name, isid}
		return r, nil
	}
	r.specIPT = p[20]&0x08 != 0
	if !r.specIPT {
		if r.paramLen != proutBasicLen {
			return r, checkErr(senseParamLen)
		}
	} else {
		if r.sa != proutRegister {
			return r, invalidParam(20, 3)
		}
		if r.paramLen < proutBasicLen+4 {
			return r, checkErr(senseParamLen)
		}
		tlen := binary.BigEndian.Uint32(p[24:28])
		if uint64(tlen)+proutBasicLen+4 != uint64(r.paramLen) {
			return r, checkErr(senseParamLen)
		}
		for off := proutBasicLen + 4; off < len(p); {
			name, isid, n, err := parseTransportID(p[off:])
			if err != nil {
				return r, invalidParam(uint16(min(off, 0xffff)), 0)
			}
			r.ports = append(r.ports, tidPort{name, isid})
			off += n
		}
	}
	if r.sa == proutRegister || r.sa == proutRegisterIgnore {
		r.allTgPt = p[20]&0x04 != 0
		r.aptpl = p[20]&0x01 != 0
	}
	return r, nil
}

// prEffects are what a state change does to other I_T nexuses once it has
// been committed.
type prEffects struct {
	regsPreempted []registrant // REGISTRATIONS PREEMPTED
	resvReleased  []registrant // RESERVATIONS RELEASED
	resvPreempted []registrant // RESERVATIONS PREEMPTED
	abort         []registrant // PREEMPT AND ABORT: abort their tasks
}

// others returns the registrations in regs that do not name id.
func others(regs []registrant, id nexusID) []registrant {
	var out []registrant
	for i := range regs {
		if !regs[i].matches(id) {
			out = append(out, regs[i])
		}
	}
	return out
}

// applyPROUT performs r for the I_T nexus id on d (a clone of the state),
// following SPC-4 5.13.5 to 5.13.11. ports resolves REGISTER AND MOVE's
// relative target port identifier. It returns the effects on other I_T
// nexuses; the caller commits d only when err is nil.
func applyPROUT(d *prData, r *proutReq, id nexusID, ports *portTable, canPersist bool) (prEffects, error) {
	var fx prEffects
	if r.aptpl && !canPersist {
		if r.sa == proutRegisterMove {
			return fx, invalidParam(17, 0)
		}
		return fx, invalidParam(20, 0)
	}
	me := d.find(id)
	switch r.sa {
	case proutRegister, proutRegisterIgnore:
		if me < 0 {
			if r.sa == proutRegister && r.key != 0 {
				return fx, errConflict
			}
			if r.sark == 0 {
				// Unregistering what is not registered: nothing
				// changes, so neither does the generation.
				return fx, nil
			}
			if err := registerPorts(d, r, id); err != nil {
				return fx, err
			}
			d.aptpl = r.aptpl
			d.gen++
			return fx, nil
		}
		if r.sa == proutRegister && r.key != d.regs[me].key {
			return fx, errConflict
		}
		if r.specIPT {
			// SPC-4 table 50: SPEC_I_PT only registers new I_T nexuses.
			return fx, checkErr(scsi.SenseInvalidField)
		}
		if r.sark == 0 {
			typ := d.typ
			if d.remove(me) && registrantsType(typ) && !allRegistrantsType(typ) {
				// The holder of a registrants-only reservation left
				// (SPC-4 5.13.11.2.3).
				fx.resvReleased = others(d.regs, id)
			}
		} else {
			d.regs[me].key = r.sark
			d.aptpl = r.aptpl
		}
		d.gen++
		return fx, nil
	}
	// Every other service action needs a registered I_T nexus with its key.
	if me < 0 || r.key != d.regs[me].key {
		return fx, errConflict
	}
	switch r.sa {
	case proutReserve:
		if d.typ != 0 {
			if d.isHolder(me) && d.typ == r.typ {
				return fx, nil
			}
			return fx, errConflict
		}
		d.typ = r.typ
		if !allRegistrantsType(r.typ) {
			d.regs[me].holder = true
		}
	case proutRelease:
		if d.typ == 0 || !d.isHolder(me) {
			return fx, nil
		}
		if d.typ != r.typ {
			return fx, checkErr(scsi.Sense{Key: scsi.SenseIllegalRequest, ASC: scsi.ASCInvalidReleaseOfPersistentReservation})
		}
		typ := d.typ
		d.release()
		if typ != prWriteExclusive && typ != prExclusiveAccess {
			fx.resvReleased = others(d.regs, id)
		}
	case proutClear:
		fx.resvPreempted = others(d.regs, id)
		d.regs = d.regs[:0]
		d.typ = 0
		d.gen++
	case proutPreempt, proutPreemptAbort:
		if err := preempt(d, r, id, &fx); err != nil {
			return fx, err
		}
		if r.sa == proutPreemptAbort {
			fx.abort = fx.regsPreempted
		}
		d.gen++
	case proutRegisterMove:
		if err := registerAndMove(d, r, me, id, ports); err != nil {
			return fx, err
		}
		d.gen++
	}
	return fx, nil
}

// registerPorts registers the I_T nexus id and, with SPEC_I_PT, the I_T
// nexuses of the specified initiator ports through the same target port (or
// all of them with ALL_TG_PT), all with the service action reservation key.
// Either every registration is made or none (SPC-4 6.17.3).
func registerPorts(d *prData, r *proutReq, id nexusID) error {
	add := []registrant{{key: r.sark, name: id.name, isid: id.isid, target: id.target, allTgPt: r.allTgPt}}
	for _, p := range r.ports {
		if strings.EqualFold(p.name, id.name) && p.isid == id.isid {
			continue // the I_T nexus of the command itself
		}
		add = append(add, registrant{key: r.sark, name: p.name, isid: p.isid, target: id.target, allTgPt: r.allTgPt})
	}
	for i := range add {
		// A port named twice, or one already registered, is an error:
		// one I_T nexus cannot hold two registrations.
		for j := range add[:i] {
			if overlap(&add[i], &add[j]) {
				return invalidParam(24, 0)
			}
		}
		for j := range d.regs {
			if overlap(&add[i], &d.regs[j]) {
				return invalidParam(24, 0)
			}
		}
	}
	if len(d.regs)+len(add) > maxRegistrants {
		return checkErr(scsi.Sense{Key: scsi.SenseIllegalRequest, ASC: scsi.ASCInsufficientRegistrationResources})
	}
	d.regs = append(d.regs, add...)
	return nil
}

// overlap reports whether some I_T nexus would match both registrations.
func overlap(a, b *registrant) bool {
	return strings.EqualFold(a.name, b.name) &&
		(a.isid == 0 || b.isid == 0 || a.isid == b.isid) &&
		(a.allTgPt || b.allTgPt || a.target == b.target)
}

// preempt implements PREEMPT and the state part of PREEMPT AND ABORT
// (SPC-4 5.13.11.4).
func preempt(d *prData, r *proutReq, id nexusID, fx *prEffects) error {
	// removeKey drops every registration with key sark, except the
	// preempting I_T nexus' own when keepSelf.
	removeKey := func(sark uint64, keepSelf bool) bool {
		found := false
		kept := d.regs[:0]
		for _, reg := range d.regs {
			if reg.key == sark && !(keepSelf && reg.matches(id)) {
				found = true
				if !reg.matches(id) {
					fx.regsPreempted = append(fx.regsPreempted, reg)
				}
				continue
			}
			if reg.key == sark {
				found = true
			}
			kept = append(kept, reg)
		}
		d.regs = kept
		return found
	}
	reserveSelf := func() {
		d.typ = r.typ
		for i := range d.regs {
			d.regs[i].holder = !allRegistrantsType(r.typ) && d.regs[i].matches(id)
		}
	}
	switch {
	case d.typ == 0:
		// No reservation: only registrations are removed.
		if r.sark == 0 {
			return invalidParam(8, 0)
		}
		if !removeKey(r.sark, false) {
			return errConflict
		}
	case allRegistrantsType(d.typ):
		if r.sark != 0 {
			if !removeKey(r.sark, false) {
				return errConflict
			}
			if len(d.regs) == 0 {
				d.release()
			}
			return nil
		}
		// A zero key preempts every other registration and the
		// reservation (SPC-4 5.13.11.4.4).
		kept := d.regs[:0]
		for _, reg := range d.regs {
			if reg.matches(id) {
				kept = append(kept, reg)
			} else {
				fx.regsPreempted = append(fx.regsPreempted, reg)
			}
		}
		d.regs = kept
		reserveSelf()
	default:
		holderKey := d.holderKey()
		if r.sark != holderKey {
			if r.sark == 0 {
				return invalidParam(8, 0)
			}
			if !removeKey(r.sark, false) {
				return errConflict
			}
			return nil
		}
		// Preempt the reservation: the holder's key names the
		// registrations to remove; the preempting I_T nexus keeps its own.
		oldTyp := d.typ
		removeKey(r.sark, true)
		reserveSelf()
		if oldTyp != r.typ {
			fx.resvReleased = others(d.regs, id)
		}
	}
	return nil
}

// registerAndMove implements REGISTER AND MOVE (SPC-4 5.13.9).
func registerAndMove(d *prData, r *proutReq, me int, id nexusID, ports *portTable) error {
	if d.typ == 0 || allRegistrantsType(d.typ) || !d.regs[me].holder {
		return errConflict
	}
	if r.sark == 0 {
		return invalidParam(8, 0)
	}
	target, ok := ports.name(r.relPort)
	if !ok {
		return invalidParam(18, 0)
	}
	dst := nexusID{name: r.dst.name, isid: r.dst.isid, target: target}
	if d.regs[me].matches(dst) || (strings.EqualFold(dst.name, id.name) && dst.isid == id.isid && dst.target == id.target) {
		return invalidParam(24, 0)
	}
	j := -1
	for i := range d.regs {
		reg := &d.regs[i]
		if strings.EqualFold(reg.name, dst.name) && reg.isid == dst.isid && !reg.allTgPt && reg.target == dst.target {
			j = i
			break
		}
	}
	if j < 0 {
		if len(d.regs) >= maxRegistrants {
			return checkErr(scsi.Sense{Key: scsi.SenseIllegalRequest, ASC: scsi.ASCInsufficientRegistrationResources})
		}
		d.regs = append(d.regs, registrant{name: dst.name, isid: dst.isid, target: dst.target})
		j = len(d.regs) - 1
	}
	d.regs[j].key = r.sark
	d.regs[j].holder = true
	d.regs[me].holder = false
	if r.unreg {
		d.regs = append(d.regs[:me], d.regs[me+1:]...)
	}
	d.aptpl = r.aptpl
	return nil
}

// prout executes PERSISTENT RESERVE OUT.
func (nx *nexus) prout(c *Command) error {
	r, err := parsePROUT(c.CDB, c.DataOut)
	if len(c.CDB) >= 10 {
		c.TransferLen = r.paramLen
	}
	if err != nil {
		return err
	}
	dev := nx.dev
	core := nx.sess.core
	id := nx.sess.prID()
	p := &dev.pr
	p.mu.Lock()
	nd := p.data.clone()
	fx, err := applyPROUT(&nd, &r, id, &core.ports, core.opts.StateDir != "")
	if err == nil && (nd.aptpl || p.data.aptpl) {
		// Persist what APTPL asks to keep; when APTPL went off, remove
		// the file so that a restart does not bring back stale state.
		err = savePR(core.opts.StateDir, dev.Name, &nd)
		if err != nil {
			nx.sess.log.WithField("lun", nx.lun).WithError(err).Error("persistent reservation state not saved")
			err = checkErr(scsi.SenseInternalFailure)
		}
	}
	if err != nil {
		p.mu.Unlock()
		return err
	}
	p.data = nd
	p.publishLocked()
	p.mu.Unlock()
	if log := nx.sess.log; log.Logger.IsLevelEnabled(logrus.DebugLevel) {
		log.WithFields(logrus.Fields{"lun": nx.lun, "action": r.sa, "type": nd.typ,
			"registrations": len(nd.regs), "generation": nd.gen}).Debug("persistent reservation out")
	}
	if len(fx.regsPreempted) > 0 {
		nx.sess.log.WithFields(logrus.Fields{"lun": nx.lun, "preempted": len(fx.regsPreempted),
			"abort": r.sa == proutPreemptAbort}).Info("registrations preempted")
	}

	s := nx.sess
	dev.prUA(scsi.ASCRegistrationsPreempted, fx.regsPreempted, s)
	dev.prUA(scsi.ASCReservationsReleased, fx.resvReleased, s)
	dev.prUA(scsi.ASCReservationsPreempted, fx.resvPreempted, s)
	if len(fx.abort) > 0 {
		dev.abortPreempted(fx.abort)
	}
	return nil
}

// abortPreempted aborts every task of the I_T nexuses that PREEMPT AND
// ABORT preempted (SPC-4 5.13.11.4.5) and waits for them. PERSISTENT
// RESERVE OUT commands are spared: one of them may itself be a PREEMPT AND
// ABORT waiting for tasks of other nexuses, and waiting for it could close
// a cycle of waits. Spared ones run against the new state (the preempted
// I_T nexus is no longer registered, so most get RESERVATION CONFLICT).
func (d *Device) abortPreempted(regs []registrant) {
	var victims []*nexus
	for _, nx := range d.nexuses() {
		id := nx.sess.prID()
		for i := range regs {
			if regs[i].matches(id) {
				victims = append(victims, nx)
				break
			}
		}
	}
	victim := func(c *Command) bool { return c.CDB[0] != scsi.OpPersistentReserveOut }
	marked := make([]bool, len(victims))
	for i, nx := range victims {
		marked[i] = nx.abortMark(victim)
	}
	for i, nx := range victims {
		if marked[i] {
			nx.notifyAborter()
		}
	}
	for i, nx := range victims {
		if marked[i] {
			nx.awaitAborted()
		}
	}
}

// portTable numbers target ports (targets) for READ FULL STATUS and
// REGISTER AND MOVE's RELATIVE TARGET PORT IDENTIFIER, in order of first
// use, from 1.
type portTable struct {
	mu    sync.Mutex
	ids   map[string]uint16
	names []string
}

func (t *portTable) id(name string) uint16 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if id, ok := t.ids[name]; ok {
		return id
	}
	if len(t.names) == 0xffff {
		return 0
	}
	if t.ids == nil {
		t.ids = make(map[string]uint16)
	}
	t.names = append(t.names, name)
	id := uint16(len(t.names))
	t.ids[name] = id
	return id
}

func (t *portTable) name(id uint16) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if id == 0 || int(id) > len(t.names) {
		return "", false
	}
	return t.names[id-1], true
}
