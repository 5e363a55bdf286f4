package target

import (
	"github.com/scstd/scstd/target/scsi"
)

// SPC-2 RESERVE and RELEASE (6 and 10) reserve the whole logical unit for
// one I_T nexus, here the session. Third-party and extent reservations are
// not supported. The reservation ends with RELEASE, LOGICAL UNIT RESET,
// target reset and I_T nexus loss (Session.Close).

// checkSPC2CDB validates the fields of RESERVE/RELEASE (6/10) this target
// does not implement.
func checkSPC2CDB(cdb []byte) error {
	switch cdb[0] {
	case scsi.OpReserve6, scsi.OpRelease6:
		if len(cdb) < 6 {
			return checkErr(scsi.SenseInvalidOpcode)
		}
		if cdb[1]&0x01 != 0 { // extent reservation (SPC-1)
			return invalidCDB(1, 0)
		}
		if cdb[1]&0x10 != 0 { // third party (SPC-1)
			return invalidCDB(1, 4)
		}
	default:
		if len(cdb) < 10 {
			return checkErr(scsi.SenseInvalidOpcode)
		}
		if cdb[1]&0x10 != 0 { // 3RDPTY
			return invalidCDB(1, 4)
		}
		if cdb[1]&0x02 != 0 { // LONGID: only with 3RDPTY
			return invalidCDB(1, 1)
		}
	}
	return nil
}

// prCompatible applies SPC-4 5.13.3 when persistent reservation
// registrations exist: RESERVE and RELEASE from the holder (or from a
// registrant under a registrants-only or all-registrants reservation)
// complete GOOD without effect, from anyone else with RESERVATION CONFLICT.
// It reports whether it decided the command. Called with p.mu held.
func (p *prState) prCompatibleLocked(id nexusID) (bool, error) {
	if len(p.data.regs) == 0 {
		return false, nil
	}
	me := p.data.find(id)
	if me >= 0 && (p.data.isHolder(me) || registrantsType(p.data.typ)) && p.data.typ != 0 {
		return true, nil
	}
	return true, errConflict
}

// reserve executes RESERVE(6) and RESERVE(10).
func (nx *nexus) reserve(c *Command) error {
	if err := checkSPC2CDB(c.CDB); err != nil {
		return err
	}
	s := nx.sess
	p := &nx.dev.pr
	p.mu.Lock()
	defer p.mu.Unlock()
	if decided, err := p.prCompatibleLocked(s.prID()); decided {
		return err
	}
	if p.spc2 != nil && p.spc2 != s {
		return errConflict
	}
	if p.spc2 == nil {
		p.spc2 = s
		p.publishLocked()
	}
	return nil
}

// releaseSPC2 executes RELEASE(6) and RELEASE(10). Releasing a reservation
// held by another I_T nexus, or none, is not an error (SPC-2 7.17).
func (nx *nexus) releaseSPC2(c *Command) error {
	if err := checkSPC2CDB(c.CDB); err != nil {
		return err
	}
	s := nx.sess
	p := &nx.dev.pr
	p.mu.Lock()
	defer p.mu.Unlock()
	if decided, err := p.prCompatibleLocked(s.prID()); decided {
		return err
	}
	if p.spc2 == s {
		p.spc2 = nil
		p.publishLocked()
	}
	return nil
}
