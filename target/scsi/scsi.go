// Package scsi holds the SCSI vocabulary shared by the core and the device
// handlers: operation codes, status codes, sense keys, additional sense codes
// and the sense-data builder. It has no state.
package scsi

// Status codes (SAM-5).
const (
	StatusGood                byte = 0x00
	StatusCheckCondition      byte = 0x02
	StatusConditionMet        byte = 0x04
	StatusBusy                byte = 0x08
	StatusReservationConflict byte = 0x18
	StatusTaskSetFull         byte = 0x28
	StatusACAActive           byte = 0x30
	StatusTaskAborted         byte = 0x40
)

// Operation codes used by scstd (SPC-4, SBC-3, MMC-6).
const (
	OpTestUnitReady              byte = 0x00
	OpRezeroUnit                 byte = 0x01
	OpRequestSense               byte = 0x03
	OpFormatUnit                 byte = 0x04
	OpRead6                      byte = 0x08
	OpWrite6                     byte = 0x0a
	OpInquiry                    byte = 0x12
	OpModeSelect6                byte = 0x15
	OpReserve6                   byte = 0x16
	OpRelease6                   byte = 0x17
	OpModeSense6                 byte = 0x1a
	OpStartStopUnit              byte = 0x1b
	OpReceiveDiagnostic          byte = 0x1c
	OpSendDiagnostic             byte = 0x1d
	OpPreventAllowMediumRemoval  byte = 0x1e
	OpReadFormatCapacities       byte = 0x23
	OpReadCapacity10             byte = 0x25
	OpRead10                     byte = 0x28
	OpWrite10                    byte = 0x2a
	OpSeek10                     byte = 0x2b
	OpWriteVerify10              byte = 0x2e
	OpVerify10                   byte = 0x2f
	OpPreFetch10                 byte = 0x34
	OpSynchronizeCache10         byte = 0x35
	OpReadDefectData10           byte = 0x37
	OpWriteBuffer                byte = 0x3b
	OpReadBuffer                 byte = 0x3c
	OpWriteSame10                byte = 0x41
	OpUnmap                      byte = 0x42
	OpReadTOC                    byte = 0x43
	OpGetConfiguration           byte = 0x46
	OpGetEventStatusNotification byte = 0x4a
	OpReadDiscInformation        byte = 0x51
	OpModeSelect10               byte = 0x55
	OpReserve10                  byte = 0x56
	OpRelease10                  byte = 0x57
	OpModeSense10                byte = 0x5a
	OpPersistentReserveIn        byte = 0x5e
	OpPersistentReserveOut       byte = 0x5f
	OpExtendedCopy               byte = 0x83
	OpReceiveCopyResults         byte = 0x84
	OpRead16                     byte = 0x88
	OpCompareAndWrite            byte = 0x89
	OpWrite16                    byte = 0x8a
	OpOrWrite                    byte = 0x8b
	OpWriteVerify16              byte = 0x8e
	OpVerify16                   byte = 0x8f
	OpPreFetch16                 byte = 0x90
	OpSynchronizeCache16         byte = 0x91
	OpWriteSame16                byte = 0x93
	OpWriteAtomic16              byte = 0x9c
	OpServiceActionIn16          byte = 0x9e // READ CAPACITY 16 (SA 0x10), GET LBA STATUS (SA 0x12)
	OpReportLuns                 byte = 0xa0
	OpSanitize                   byte = 0x48
	OpMaintenanceIn              byte = 0xa3 // REPORT SUPPORTED OPCODES (SA 0x0c), REPORT TARGET PORT GROUPS (SA 0x0a)
	OpMaintenanceOut             byte = 0xa4
	OpRead12                     byte = 0xa8
	OpWrite12                    byte = 0xaa
	OpWriteVerify12              byte = 0xae
	OpVerify12                   byte = 0xaf
	OpReadDefectData12           byte = 0xb7
	OpReadCD                     byte = 0xbe
	OpMechanismStatus            byte = 0xbd
)

// Service actions.
const (
	SAReadCapacity16         byte = 0x10
	SAGetLBAStatus           byte = 0x12
	SAReportTargetPortGroups byte = 0x0a
	SAReportSupportedOpcodes byte = 0x0c
	SAReportSupportedTMFs    byte = 0x0d
)

// Sense keys.
const (
	SenseNoSense        byte = 0x0
	SenseRecoveredError byte = 0x1
	SenseNotReady       byte = 0x2
	SenseMediumError    byte = 0x3
	SenseHardwareError  byte = 0x4
	SenseIllegalRequest byte = 0x5
	SenseUnitAttention  byte = 0x6
	SenseDataProtect    byte = 0x7
	SenseBlankCheck     byte = 0x8
	SenseCopyAborted    byte = 0xa
	SenseAbortedCommand byte = 0xb
	SenseVolumeOverflow byte = 0xd
	SenseMiscompare     byte = 0xe
)

// ASC is an additional sense code with its qualifier, as one value: ASC<<8 | ASCQ.
type ASC uint16

// Additional sense codes named by the standards (SPC-4 Annex F).
const (
	ASCNoAdditionalSense                     ASC = 0x0000
	ASCLogicalUnitNotReadyCause              ASC = 0x0400 // cause not reportable
	ASCLogicalUnitNotReadyManualInterv       ASC = 0x0403
	ASCLogicalUnitNotReadyFormat             ASC = 0x0404
	ASCLogicalUnitNotReadyStartUnit          ASC = 0x0402
	ASCWriteError                            ASC = 0x0c00
	ASCUnrecoveredReadError                  ASC = 0x1100
	ASCMiscompareDuringVerify                ASC = 0x1d00
	ASCParameterListLengthError              ASC = 0x1a00
	ASCInvalidCommandOperationCode           ASC = 0x2000
	ASCLBAOutOfRange                         ASC = 0x2100
	ASCInvalidFieldInCDB                     ASC = 0x2400
	ASCLogicalUnitNotSupported               ASC = 0x2500
	ASCInvalidFieldInParameterList           ASC = 0x2600
	ASCParameterNotSupported                 ASC = 0x2601
	ASCParameterValueInvalid                 ASC = 0x2602
	ASCWriteProtected                        ASC = 0x2700
	ASCNotReadyToReadyChange                 ASC = 0x2800 // medium may have changed
	ASCPowerOnResetOccurred                  ASC = 0x2900 // power on, reset, or bus device reset occurred
	ASCPowerOnOccurred                       ASC = 0x2901
	ASCBusResetOccurred                      ASC = 0x2902
	ASCBusDeviceResetFunctionOccurred        ASC = 0x2903
	ASCITNexusLossOccurred                   ASC = 0x2907
	ASCParametersChanged                     ASC = 0x2a00
	ASCModeParametersChanged                 ASC = 0x2a01
	ASCReservationsPreempted                 ASC = 0x2a03
	ASCReservationsReleased                  ASC = 0x2a04
	ASCRegistrationsPreempted                ASC = 0x2a05
	ASCCapacityDataHasChanged                ASC = 0x2a09
	ASCCommandsClearedByAnotherInit          ASC = 0x2f00
	ASCSavingParametersNotSupported          ASC = 0x3900
	ASCMediumNotPresent                      ASC = 0x3a00
	ASCMediumNotPresentTrayClosed            ASC = 0x3a01
	ASCMediumNotPresentTrayOpen              ASC = 0x3a02
	ASCInquiryDataHasChanged                 ASC = 0x3f03
	ASCReportedLunsDataHasChanged            ASC = 0x3f0e
	ASCInternalTargetFailure                 ASC = 0x4400
	ASCInvalidMessageError                   ASC = 0x4900
	ASCCommandPhaseError                     ASC = 0x4a00
	ASCDataPhaseError                        ASC = 0x4b00
	ASCMediumRemovalPrevented                ASC = 0x5302
	ASCInsufficientRegistrationResources     ASC = 0x5504
	ASCUnreachableCopyTarget                 ASC = 0x0800
	ASCNoSpace                               ASC = 0x2707 // SPACE ALLOCATION FAILED WRITE PROTECT
	ASCInvalidReleaseOfPersistentReservation ASC = 0x2604
)

// Sense describes a CHECK CONDITION: key, additional sense code and, when
// Info is valid, the INFORMATION field (e.g. the miscompare offset).
type Sense struct {
	Key       byte
	ASC       ASC
	Info      uint64
	InfoValid bool
	// SKSV/field pointer (sense-key specific) for INVALID FIELD IN CDB.
	FieldPointer      uint16
	BitPointer        uint8
	FieldPointerValid bool
	FieldInCDB        bool
}

// Error makes Sense usable as an error by handlers that return early.
func (s Sense) Error() string { return "scsi check condition" }

// FixedLen and DescLen are the sizes of the sense data built by Bytes.
const (
	FixedLen = 18
	DescLen  = 8
)

// Append appends the sense data to dst in fixed format (0x70) or, if desc is
// true, descriptor format (0x72), and returns the extended slice.
func (s Sense) Append(dst []byte, desc bool) []byte {
	if desc {
		n := 8
		var b [8 + 12 + 8]byte
		b[0] = 0x72
		b[1] = s.Key & 0x0f
		b[2] = byte(s.ASC >> 8)
		b[3] = byte(s.ASC)
		if s.InfoValid {
			d := b[n:]
			d[0], d[1], d[2] = 0x00, 0x0a, 0x80
			putUint64(d[4:], s.Info)
			n += 12
		}
		if s.FieldPointerValid {
			d := b[n:]
			d[0], d[1] = 0x02, 0x06
			d[4] = 0x80 | (s.BitPointer & 7)
			if s.FieldInCDB {
				d[4] |= 0x40
			}
			if s.BitPointer != 0 {
				d[4] |= 0x08
			}
			d[5], d[6] = byte(s.FieldPointer>>8), byte(s.FieldPointer)
			n += 8
		}
		b[7] = byte(n - 8)
		return append(dst, b[:n]...)
	}
	var b [FixedLen]byte
	b[0] = 0x70
	if s.InfoValid {
		b[0] |= 0x80
		b[3], b[4], b[5], b[6] = byte(s.Info>>24), byte(s.Info>>16), byte(s.Info>>8), byte(s.Info)
	}
	b[2] = s.Key & 0x0f
	b[7] = FixedLen - 8
	b[12] = byte(s.ASC >> 8)
	b[13] = byte(s.ASC)
	if s.FieldPointerValid {
		b[15] = 0x80 | (s.BitPointer & 7)
		if s.FieldInCDB {
			b[15] |= 0x40
		}
		if s.BitPointer != 0 {
			b[15] |= 0x08
		}
		b[16], b[17] = byte(s.FieldPointer>>8), byte(s.FieldPointer)
	}
	return append(dst, b[:]...)
}

func putUint64(b []byte, v uint64) {
	_ = b[7]
	for i := 0; i < 8; i++ {
		b[i] = byte(v >> (56 - 8*i))
	}
}

// Convenience constructors for the common conditions.
var (
	SenseInvalidOpcode    = Sense{Key: SenseIllegalRequest, ASC: ASCInvalidCommandOperationCode}
	SenseInvalidField     = Sense{Key: SenseIllegalRequest, ASC: ASCInvalidFieldInCDB}
	SenseLBAOutOfRange    = Sense{Key: SenseIllegalRequest, ASC: ASCLBAOutOfRange}
	SenseLUNNotSupported  = Sense{Key: SenseIllegalRequest, ASC: ASCLogicalUnitNotSupported}
	SenseWriteProtected   = Sense{Key: SenseDataProtect, ASC: ASCWriteProtected}
	SenseParamListLength  = Sense{Key: SenseIllegalRequest, ASC: ASCParameterListLengthError}
	SenseInvalidParamList = Sense{Key: SenseIllegalRequest, ASC: ASCInvalidFieldInParameterList}
	SenseMediumNotPresent = Sense{Key: SenseNotReady, ASC: ASCMediumNotPresent}
	SenseReadError        = Sense{Key: SenseMediumError, ASC: ASCUnrecoveredReadError}
	SenseWriteError       = Sense{Key: SenseMediumError, ASC: ASCWriteError}
	SenseInternalFailure  = Sense{Key: SenseHardwareError, ASC: ASCInternalTargetFailure}
)

// InvalidFieldInCDB returns INVALID FIELD IN CDB pointing at byte (and bit) of the CDB.
func InvalidFieldInCDB(byteOff uint16, bit uint8) Sense {
	return Sense{Key: SenseIllegalRequest, ASC: ASCInvalidFieldInCDB,
		FieldPointer: byteOff, BitPointer: bit, FieldPointerValid: true, FieldInCDB: true}
}
