package scsi

// Additional vocabulary used by the vdisk handlers (this file is owned by
// the vdisk package; scsi.go is the core's).

// Additional sense codes.
const (
	ASCInvalidFieldInInformationUnit ASC = 0x0e03
	ASCIncompatibleMediumInstalled   ASC = 0x3000
	ASCOperatorMediumRemovalRequest  ASC = 0x5a01
)

// MMC operation codes not in scsi.go.
const (
	OpReadTrackInformation byte = 0x52
	OpReadDiscStructure    byte = 0xad
	OpGetPerformance       byte = 0xac
	OpSetCDSpeed           byte = 0xbb
)

// Peripheral device types.
const (
	TypeDisk  byte = 0x00
	TypeCDROM byte = 0x05
)
