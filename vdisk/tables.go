package vdisk

import (
	"github.com/scstd/scstd/target"
	"github.com/scstd/scstd/target/scsi"
)

// Nominal command timeouts (seconds) reported with RCTD.
const (
	toFast = 5
	toIO   = 30
	toSync = 60
	// toSanitize: a whole-medium overwrite.
	toSanitize = 3600
)

// CDB usage data of the shared layouts (SPC-4 6.35.3: a bit set for every
// CDB bit the device server examines). Byte 1 of the block commands holds
// the protect field (examined: non-zero is rejected), DPO and FUA.

func rw6(op byte) []byte { return usage(op, 0x1f, 0xff, 0xff, 0xff, 0) }
func rw10(op, b1 byte) []byte {
	return usage(op, b1, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0)
}
func rw12(op, b1 byte) []byte {
	return usage(op, b1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0)
}
func rw16(op, b1 byte) []byte {
	return usage(op, b1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0)
}

// addSPC adds the primary commands every vdisk device type shares.
func (t *opTable) addSPC() {
	t.add(&opEntry{name: "TEST UNIT READY", op: scsi.OpTestUnitReady, cdbLen: 6, usage: usage(0x00, 0, 0, 0, 0, 0),
		flags: fMedium, timeout: toFast, exec: execTestUnitReady})
	t.add(&opEntry{name: "INQUIRY", op: scsi.OpInquiry, cdbLen: 6, usage: usage(0x12, 0x03, 0xff, 0xff, 0xff, 0),
		timeout: toFast, exec: execInquiry})
	t.add(&opEntry{name: "MODE SELECT(6)", op: scsi.OpModeSelect6, cdbLen: 6, usage: usage(0x15, 0x11, 0, 0, 0xff, 0),
		timeout: toFast, exec: execModeSelect})
	t.add(&opEntry{name: "MODE SENSE(6)", op: scsi.OpModeSense6, cdbLen: 6, usage: usage(0x1a, 0x08, 0xff, 0xff, 0xff, 0),
		timeout: toFast, exec: execModeSense})
	t.add(&opEntry{name: "START STOP UNIT", op: scsi.OpStartStopUnit, cdbLen: 6, usage: usage(0x1b, 0x01, 0, 0x0f, 0xf7, 0),
		timeout: toSync, exec: execStartStop})
	t.add(&opEntry{name: "PREVENT ALLOW MEDIUM REMOVAL", op: scsi.OpPreventAllowMediumRemoval, cdbLen: 6,
		usage: usage(0x1e, 0, 0, 0, 0x03, 0), timeout: toFast, exec: execPreventAllow, avail: removableOnly})
	t.add(&opEntry{name: "MODE SELECT(10)", op: scsi.OpModeSelect10, cdbLen: 10,
		usage: usage(0x55, 0x11, 0, 0, 0, 0, 0, 0xff, 0xff, 0), timeout: toFast, exec: execModeSelect})
	t.add(&opEntry{name: "MODE SENSE(10)", op: scsi.OpModeSense10, cdbLen: 10,
		usage: usage(0x5a, 0x18, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0), timeout: toFast, exec: execModeSense})
	t.add(&opEntry{name: "REPORT SUPPORTED OPERATION CODES", op: scsi.OpMaintenanceIn, sa: scsi.SAReportSupportedOpcodes,
		hasSA: true, cdbLen: 12, usage: usage(0xa3, 0x0c, 0x87, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0),
		timeout: toFast, exec: execReportOpcodes})
	t.add(&opEntry{name: "REPORT TARGET PORT GROUPS", op: scsi.OpMaintenanceIn, sa: scsi.SAReportTargetPortGroups,
		hasSA: true, cdbLen: 12, usage: usage(0xa3, 0xea, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0),
		timeout: toFast, exec: execReportTargetPortGroups, avail: hasPortGroups})
	// Commands the core executes before a handler sees them (REQUEST
	// SENSE, REPORT LUNS, reservations) are listed from the core's own
	// description so that the two cannot drift apart.
	for _, co := range target.CoreOpcodes() {
		if co.HasSA {
			// SPC-4 6.35.3: the SERVICE ACTION field of the usage data
			// holds the service action itself, not a mask.
			co.Usage[1] = co.Usage[1]&^0x1f | co.ServiceAction&0x1f
		}
		e := &opEntry{name: co.Name, op: co.Opcode, sa: co.ServiceAction, hasSA: co.HasSA, cdbLen: co.CDBLen,
			usage: co.Usage, flags: fCore, timeout: toFast}
		switch co.Opcode {
		case scsi.OpPersistentReserveIn, scsi.OpPersistentReserveOut,
			scsi.OpReserve6, scsi.OpReserve10, scsi.OpRelease6, scsi.OpRelease10:
			e.avail = reservationsAllowed
		}
		t.add(e)
	}
}

// newDiskTable builds the SBC command set of vdisk_fileio/blockio/nullio.
// Thin provisioning (UNMAP, WRITE SAME, GET LBA STATUS), COMPARE AND WRITE
// and persistent reservations are each one more entry here.
func newDiskTable() *opTable {
	t := &opTable{pages: diskModePages()}
	t.addSPC()
	const (
		rdFlags  = 0xf8 // RDPROTECT, DPO, FUA
		wrFlags  = 0xf8 // WRPROTECT, DPO, FUA
		vrFlags  = 0xf6 // VRPROTECT, DPO, BYTCHK
		wvFlags  = 0xf2 // WRPROTECT, DPO, BYTCHK
		immFlags = 0x02 // IMMED
	)
	for _, e := range []*opEntry{
		{name: "READ(6)", op: scsi.OpRead6, cdbLen: 6, usage: rw6(scsi.OpRead6), flags: fMedium, exec: execRead},
		{name: "WRITE(6)", op: scsi.OpWrite6, cdbLen: 6, usage: rw6(scsi.OpWrite6), flags: fMedium | fWrite, exec: execWrite},
		{name: "READ CAPACITY(10)", op: scsi.OpReadCapacity10, cdbLen: 10,
			usage: usage(0x25, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0x01, 0), flags: fMedium, exec: execReadCapacity10},
		{name: "READ(10)", op: scsi.OpRead10, cdbLen: 10, usage: rw10(scsi.OpRead10, rdFlags), flags: fMedium, exec: execRead},
		{name: "WRITE(10)", op: scsi.OpWrite10, cdbLen: 10, usage: rw10(scsi.OpWrite10, wrFlags), flags: fMedium | fWrite, exec: execWrite},
		{name: "WRITE AND VERIFY(10)", op: scsi.OpWriteVerify10, cdbLen: 10, usage: rw10(scsi.OpWriteVerify10, wvFlags),
			flags: fMedium | fWrite, exec: execWriteVerify},
		{name: "VERIFY(10)", op: scsi.OpVerify10, cdbLen: 10, usage: rw10(scsi.OpVerify10, vrFlags), flags: fMedium, exec: execVerify},
		{name: "PRE-FETCH(10)", op: scsi.OpPreFetch10, cdbLen: 10, usage: rw10(scsi.OpPreFetch10, immFlags), flags: fMedium, exec: execPrefetch},
		{name: "SYNCHRONIZE CACHE(10)", op: scsi.OpSynchronizeCache10, cdbLen: 10, usage: rw10(scsi.OpSynchronizeCache10, immFlags),
			flags: fMedium, timeout: toSync, exec: execSyncCache},
		{name: "READ(16)", op: scsi.OpRead16, cdbLen: 16, usage: rw16(scsi.OpRead16, rdFlags), flags: fMedium, exec: execRead},
		{name: "WRITE(16)", op: scsi.OpWrite16, cdbLen: 16, usage: rw16(scsi.OpWrite16, wrFlags), flags: fMedium | fWrite, exec: execWrite},
		{name: "WRITE AND VERIFY(16)", op: scsi.OpWriteVerify16, cdbLen: 16, usage: rw16(scsi.OpWriteVerify16, wvFlags),
			flags: fMedium | fWrite, exec: execWriteVerify},
		{name: "VERIFY(16)", op: scsi.OpVerify16, cdbLen: 16, usage: rw16(scsi.OpVerify16, vrFlags), flags: fMedium, exec: execVerify},
		{name: "PRE-FETCH(16)", op: scsi.OpPreFetch16, cdbLen: 16, usage: rw16(scsi.OpPreFetch16, immFlags), flags: fMedium, exec: execPrefetch},
		{name: "SYNCHRONIZE CACHE(16)", op: scsi.OpSynchronizeCache16, cdbLen: 16, usage: rw16(scsi.OpSynchronizeCache16, immFlags),
			flags: fMedium, timeout: toSync, exec: execSyncCache},
		{name: "READ CAPACITY(16)", op: scsi.OpServiceActionIn16, sa: scsi.SAReadCapacity16, hasSA: true, cdbLen: 16,
			usage: usage(0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0), flags: fMedium, exec: execReadCapacity16},
		{name: "READ(12)", op: scsi.OpRead12, cdbLen: 12, usage: rw12(scsi.OpRead12, rdFlags), flags: fMedium, exec: execRead},
		{name: "WRITE(12)", op: scsi.OpWrite12, cdbLen: 12, usage: rw12(scsi.OpWrite12, wrFlags), flags: fMedium | fWrite, exec: execWrite},
		{name: "WRITE AND VERIFY(12)", op: scsi.OpWriteVerify12, cdbLen: 12, usage: rw12(scsi.OpWriteVerify12, wvFlags),
			flags: fMedium | fWrite, exec: execWriteVerify},
		{name: "VERIFY(12)", op: scsi.OpVerify12, cdbLen: 12, usage: rw12(scsi.OpVerify12, vrFlags), flags: fMedium, exec: execVerify},
		// Thin provisioning.
		{name: "WRITE SAME(10)", op: scsi.OpWriteSame10, cdbLen: 10,
			usage: usage(0x41, 0xfe, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0), flags: fMedium | fWrite, exec: execWriteSame},
		{name: "WRITE SAME(16)", op: scsi.OpWriteSame16, cdbLen: 16,
			usage: usage(0x93, 0xf9, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0),
			flags: fMedium | fWrite, exec: execWriteSame},
		{name: "UNMAP", op: scsi.OpUnmap, cdbLen: 10, usage: usage(0x42, 0x01, 0, 0, 0, 0, 0, 0xff, 0xff, 0),
			flags: fMedium | fWrite, exec: execUnmap, avail: unmapAvail},
		{name: "GET LBA STATUS", op: scsi.OpServiceActionIn16, sa: scsi.SAGetLBAStatus, hasSA: true, cdbLen: 16,
			usage: usage(0x9e, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0),
			flags: fMedium, exec: execGetLBAStatus},
		// Atomic read-modify-write commands.
		{name: "COMPARE AND WRITE", op: scsi.OpCompareAndWrite, cdbLen: 16,
			usage: usage(0x89, wrFlags, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0xff, 0, 0),
			flags: fMedium | fWrite, exec: execCompareAndWrite},
		{name: "ORWRITE(16)", op: scsi.OpOrWrite, cdbLen: 16, usage: rw16(scsi.OpOrWrite, wrFlags),
			flags: fMedium | fWrite, exec: execOrWrite},
		{name: "WRITE ATOMIC(16)", op: scsi.OpWriteAtomic16, cdbLen: 16,
			usage: usage(0x9c, wrFlags, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0),
			flags: fMedium | fWrite, exec: execWriteAtomic},
		// SANITIZE; the reserved CDB bits are examined (and refused).
		{name: "SANITIZE OVERWRITE", op: scsi.OpSanitize, sa: saOverwrite, hasSA: true, cdbLen: 10,
			usage: usage(0x48, 0xc0|saOverwrite, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0), flags: fMedium | fWrite, timeout: toSanitize, exec: execSanitize},
		{name: "SANITIZE BLOCK ERASE", op: scsi.OpSanitize, sa: saBlockErase, hasSA: true, cdbLen: 10,
			usage: usage(0x48, 0xc0|saBlockErase, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0), flags: fMedium | fWrite, timeout: toSanitize,
			exec: execSanitize, avail: blockEraseAvail},
		{name: "SANITIZE CRYPTOGRAPHIC ERASE", op: scsi.OpSanitize, sa: saCryptoErase, hasSA: true, cdbLen: 10,
			usage: usage(0x48, 0xc0|saCryptoErase, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0), flags: fMedium | fWrite, timeout: toSanitize, exec: execSanitize},
		{name: "SANITIZE EXIT FAILURE MODE", op: scsi.OpSanitize, sa: saExitFailureMode, hasSA: true, cdbLen: 10,
			usage: usage(0x48, 0xc0|saExitFailureMode, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0), flags: fMedium | fWrite, exec: execSanitize},
		// Third-party copy.
		{name: "EXTENDED COPY(LID1)", op: scsi.OpExtendedCopy, sa: 0x00, hasSA: true, cdbLen: 16,
			usage: usage(0x83, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0), flags: fMedium, exec: execExtendedCopy},
		{name: "RECEIVE COPY RESULTS COPY STATUS", op: scsi.OpReceiveCopyResults, sa: 0x00, hasSA: true, cdbLen: 16,
			usage: usage(0x84, 0x00, 0xff, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0), exec: execReceiveCopyResults},
		{name: "RECEIVE COPY RESULTS OPERATING PARAMETERS", op: scsi.OpReceiveCopyResults, sa: 0x03, hasSA: true, cdbLen: 16,
			usage: usage(0x84, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0), exec: execReceiveCopyResults},
		{name: "READ DEFECT DATA(10)", op: scsi.OpReadDefectData10, cdbLen: 10,
			usage: usage(0x37, 0, 0x1f, 0, 0, 0, 0, 0xff, 0xff, 0), flags: fMedium, exec: execReadDefectData},
		{name: "READ DEFECT DATA(12)", op: scsi.OpReadDefectData12, cdbLen: 12,
			usage: usage(0xb7, 0x1f, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0), flags: fMedium, exec: execReadDefectData},
	} {
		if e.timeout == 0 {
			e.timeout = toIO
		}
		t.add(e)
	}
	return t
}

// unmapAvail: UNMAP exists on thin disks, and on read-only ones so that it
// is refused as a write (DATA PROTECT) rather than as an unknown command.
func unmapAvail(d *vdev) bool { return d.thin.Load() || d.flags.ReadOnly }
