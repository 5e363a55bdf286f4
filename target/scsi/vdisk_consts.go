package scsi

// Additional vocabulary used by the vdisk handlers (this file is owned by
// the vdisk package; scsi.go is the core's).

// ASCInvalidFieldInInformationUnit answers a write whose data-out is shorter
// than the CDB asks for and not a whole number of blocks (FCP-4 9.4.2 b).
const ASCInvalidFieldInInformationUnit ASC = 0x0e03

// Peripheral device types.
const (
	TypeDisk  byte = 0x00
	TypeCDROM byte = 0x05
)

// ASCSanitizeInProgress answers media access while SANITIZE runs (SBC-4
// 4.11).
const ASCSanitizeInProgress ASC = 0x041b
