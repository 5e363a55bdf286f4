package target

import "github.com/scstd/scstd/target/scsi"

// Opcodes not named in package scsi that the conflict tables classify.
const (
	opLogSense           byte = 0x4d
	opReadMediaSerial    byte = 0xab // SERVICE ACTION IN(12), SA 01h
	opSecurityProtocolIn byte = 0xa2
	opReadAttribute      byte = 0x8c
	opReadHeader         byte = 0x44 // MMC READ HEADER
)

// access classes of commands under reservations.
const (
	// accAllowed: never conflicts ("Allowed" in every column of the SPC-4
	// and SBC-3 tables of commands allowed under persistent reservations).
	accAllowed uint8 = iota
	// accRead: reads the medium or device state; conflicts for those
	// without access under Exclusive Access types only. This is the
	// behaviour REPORT CAPABILITIES announces with ALLOW COMMANDS 011b.
	accRead
	// accWrite: changes the medium or device state; conflicts for those
	// without access under every type.
	accWrite
)

// accessClass classifies cdb. Unknown opcodes are accWrite: a command the
// table does not know must not slip past an exclusive reservation.
func accessClass(cdb []byte) uint8 {
	switch cdb[0] {
	case scsi.OpInquiry, scsi.OpReportLuns, scsi.OpRequestSense, scsi.OpTestUnitReady,
		scsi.OpPersistentReserveIn, scsi.OpPersistentReserveOut,
		scsi.OpReadCapacity10, opLogSense, opReadMediaSerial, opSecurityProtocolIn:
		return accAllowed
	case scsi.OpServiceActionIn16:
		if len(cdb) > 1 && cdb[1]&0x1f == scsi.SAReadCapacity16 {
			return accAllowed
		}
		return accRead // GET LBA STATUS
	case scsi.OpMaintenanceIn:
		// REPORT TARGET PORT GROUPS, REPORT SUPPORTED OPERATION CODES /
		// TASK MANAGEMENT FUNCTIONS, REPORT IDENTIFYING INFORMATION, ...
		return accAllowed
	case scsi.OpPreventAllowMediumRemoval:
		if len(cdb) > 4 && cdb[4]&0x03 == 0 {
			return accAllowed
		}
		return accWrite
	case scsi.OpRead6, scsi.OpRead10, scsi.OpRead12, scsi.OpRead16,
		scsi.OpVerify10, scsi.OpVerify12, scsi.OpVerify16,
		scsi.OpPreFetch10, scsi.OpPreFetch16, scsi.OpSeek10,
		scsi.OpModeSense6, scsi.OpModeSense10, scsi.OpReadBuffer,
		scsi.OpReceiveDiagnostic, scsi.OpReadDefectData10, scsi.OpReadDefectData12,
		scsi.OpReceiveCopyResults, opReadAttribute,
		scsi.OpReadTOC, scsi.OpGetConfiguration, scsi.OpGetEventStatusNotification,
		scsi.OpReadDiscInformation, scsi.OpReadCD, scsi.OpMechanismStatus,
		scsi.OpReadFormatCapacities, opReadHeader:
		return accRead
	}
	return accWrite
}

// spc2Allowed reports whether cdb may run from an I_T nexus that does not
// hold the logical unit's SPC-2 reservation (SPC-2 5.5.1: commands that
// report state without touching the medium, and RELEASE, which completes
// GOOD without effect).
func spc2Allowed(cdb []byte) bool {
	switch cdb[0] {
	case scsi.OpInquiry, scsi.OpReportLuns, scsi.OpRequestSense, opLogSense,
		scsi.OpRelease6, scsi.OpRelease10:
		return true
	case scsi.OpPreventAllowMediumRemoval:
		return len(cdb) > 4 && cdb[4]&0x03 == 0
	case scsi.OpMaintenanceIn:
		// REPORT TARGET PORT GROUPS and REPORT SUPPORTED OPERATION CODES
		// describe the target, not the medium.
		return len(cdb) > 1 && (cdb[1]&0x1f == scsi.SAReportTargetPortGroups ||
			cdb[1]&0x1f == scsi.SAReportSupportedOpcodes || cdb[1]&0x1f == scsi.SAReportSupportedTMFs)
	}
	return false
}

// conflicts reports whether c must end with RESERVATION CONFLICT.
func (s *prSnap) conflicts(c *Command) bool {
	sess := c.core.sess
	if s.spc2 != nil && s.spc2 != sess && !spc2Allowed(c.CDB) {
		return true
	}
	if s.typ == 0 {
		return false
	}
	cls := accessClass(c.CDB)
	if cls == accAllowed || (cls == accRead && writeExclusiveType(s.typ)) {
		return false
	}
	id := sess.prID()
	for i := range s.regs {
		r := &s.regs[i]
		if !r.matches(id) {
			continue
		}
		// The holder has access under every type; other registrants under
		// the registrants-only and all-registrants types.
		return !(r.holder || registrantsType(s.typ))
	}
	return true
}
