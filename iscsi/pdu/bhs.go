// Package pdu is the iSCSI PDU codec of RFC 7143 §11: the 48-byte Basic
// Header Segment with typed accessors, Additional Header Segments, padding,
// CRC32C header and data digests, a Reader that reads data segments straight
// into caller buffers and an Encoder that lays PDUs out as iovecs for writev.
package pdu

import "encoding/binary"

// Opcode is an iSCSI opcode (the low six bits of BHS byte 0).
type Opcode uint8

// Initiator opcodes.
const (
	OpNOPOut      Opcode = 0x00
	OpSCSICmd     Opcode = 0x01
	OpTMFReq      Opcode = 0x02
	OpLoginReq    Opcode = 0x03
	OpTextReq     Opcode = 0x04
	OpDataOut     Opcode = 0x05
	OpLogoutReq   Opcode = 0x06
	OpSNACKReq    Opcode = 0x10
	OpVendorReq1C Opcode = 0x1c
)

// Target opcodes.
const (
	OpNOPIn      Opcode = 0x20
	OpSCSIResp   Opcode = 0x21
	OpTMFResp    Opcode = 0x22
	OpLoginResp  Opcode = 0x23
	OpTextResp   Opcode = 0x24
	OpDataIn     Opcode = 0x25
	OpLogoutResp Opcode = 0x26
	OpR2T        Opcode = 0x31
	OpAsyncMsg   Opcode = 0x32
	OpReject     Opcode = 0x3f
)

// String names the opcode for logs.
func (o Opcode) String() string {
	switch o {
	case OpNOPOut:
		return "NOP-Out"
	case OpSCSICmd:
		return "SCSI-Command"
	case OpTMFReq:
		return "TMF-Request"
	case OpLoginReq:
		return "Login-Request"
	case OpTextReq:
		return "Text-Request"
	case OpDataOut:
		return "Data-Out"
	case OpLogoutReq:
		return "Logout-Request"
	case OpSNACKReq:
		return "SNACK"
	case OpNOPIn:
		return "NOP-In"
	case OpSCSIResp:
		return "SCSI-Response"
	case OpTMFResp:
		return "TMF-Response"
	case OpLoginResp:
		return "Login-Response"
	case OpTextResp:
		return "Text-Response"
	case OpDataIn:
		return "Data-In"
	case OpLogoutResp:
		return "Logout-Response"
	case OpR2T:
		return "R2T"
	case OpAsyncMsg:
		return "Async-Message"
	case OpReject:
		return "Reject"
	}
	return "opcode-" + hex8(byte(o))
}

func hex8(b byte) string {
	const digits = "0123456789abcdef"
	return "0x" + string([]byte{digits[b>>4], digits[b&15]})
}

// Sizes and limits of RFC 7143 §11.2.
const (
	BHSLen        = 48
	DigestLen     = 4
	MaxDataSegLen = 1<<24 - 1
	MaxAHSLen     = 255 * 4
	// ReservedTag is the all-ones ITT/TTT value.
	ReservedTag = 0xffffffff
)

// Byte 1 flag bits.
const (
	FlagFinal    = 0x80 // F: final PDU of a sequence
	FlagContinue = 0x40 // C in Login/Text
	FlagTransit  = 0x80 // T in Login
	FlagRead     = 0x40 // R in SCSI Command
	FlagWrite    = 0x20 // W in SCSI Command
	FlagAck      = 0x40 // A in Data-In
	FlagBiOver   = 0x10 // o in SCSI Response
	FlagBiUnder  = 0x08 // u in SCSI Response
	FlagOver     = 0x04 // O in SCSI Response and Data-In
	FlagUnder    = 0x02 // U in SCSI Response and Data-In
	FlagStatus   = 0x01 // S in Data-In
	immediateBit = 0x40
)

// Login stages (CSG/NSG values).
const (
	StageSecurity    = 0
	StageOperational = 1
	StageFullFeature = 3
)

// BHS is the Basic Header Segment. Accessors are named after the field they
// read; fields that share an offset in different opcodes (CmdSN/StatSN at 24)
// have one accessor per name so that call sites read like the RFC.
type BHS [BHSLen]byte

func (h *BHS) u32(off int) uint32      { return binary.BigEndian.Uint32(h[off:]) }
func (h *BHS) put32(off int, v uint32) { binary.BigEndian.PutUint32(h[off:], v) }
func (h *BHS) u16(off int) uint16      { return binary.BigEndian.Uint16(h[off:]) }
func (h *BHS) put16(off int, v uint16) { binary.BigEndian.PutUint16(h[off:], v) }
func (h *BHS) setBit(i int, m byte, on bool) {
	if on {
		h[i] |= m
	} else {
		h[i] &^= m
	}
}

// Opcode returns the opcode.
func (h *BHS) Opcode() Opcode { return Opcode(h[0] & 0x3f) }

// Immediate reports the I bit.
func (h *BHS) Immediate() bool { return h[0]&immediateBit != 0 }

// SetOpcode sets the opcode and the I bit.
func (h *BHS) SetOpcode(op Opcode, immediate bool) {
	h[0] = byte(op) & 0x3f
	if immediate {
		h[0] |= immediateBit
	}
}

// Flags returns byte 1 (F bit and the opcode-specific flags).
func (h *BHS) Flags() byte { return h[1] }

// SetFlags sets byte 1.
func (h *BHS) SetFlags(f byte) { h[1] = f }

// Final reports the F bit (T bit in Login PDUs).
func (h *BHS) Final() bool { return h[1]&FlagFinal != 0 }

// SetFinal sets or clears the F bit.
func (h *BHS) SetFinal(on bool) { h.setBit(1, FlagFinal, on) }

// TotalAHSLength is the AHS length in bytes (byte 4 counts 4-byte words).
func (h *BHS) TotalAHSLength() int { return int(h[4]) * 4 }

// SetTotalAHSLength sets the AHS length; n must be a multiple of 4 <= 1020.
func (h *BHS) SetTotalAHSLength(n int) { h[4] = byte(n / 4) }

// DataSegmentLength is the data segment length without padding.
func (h *BHS) DataSegmentLength() uint32 {
	return uint32(h[5])<<16 | uint32(h[6])<<8 | uint32(h[7])
}

// SetDataSegmentLength sets the 24-bit data segment length.
func (h *BHS) SetDataSegmentLength(n uint32) {
	h[5], h[6], h[7] = byte(n>>16), byte(n>>8), byte(n)
}

// LUN returns bytes 8..15 (LUN, or ISID+TSIH in Login PDUs).
func (h *BHS) LUN() uint64 { return binary.BigEndian.Uint64(h[8:]) }

// SetLUN sets bytes 8..15.
func (h *BHS) SetLUN(l uint64) { binary.BigEndian.PutUint64(h[8:], l) }

// ITT is the Initiator Task Tag.
func (h *BHS) ITT() uint32 { return h.u32(16) }

// SetITT sets the Initiator Task Tag.
func (h *BHS) SetITT(v uint32) { h.put32(16, v) }

// --- fields at offset 20 ---

// TTT is the Target Transfer Tag (NOP, Text, Data, R2T).
func (h *BHS) TTT() uint32        { return h.u32(20) }
func (h *BHS) SetTTT(v uint32)    { h.put32(20, v) }
func (h *BHS) EDTL() uint32       { return h.u32(20) } // SCSI Command expected data transfer length
func (h *BHS) SetEDTL(v uint32)   { h.put32(20, v) }
func (h *BHS) RefTaskTag() uint32 { return h.u32(20) } // TMF Request
func (h *BHS) SetRefTaskTag(v uint32) {
	h.put32(20, v)
}
func (h *BHS) SNACKTag() uint32 { return h.u32(20) } // SCSI Response
func (h *BHS) CID() uint16      { return h.u16(20) } // Login and Logout Request
func (h *BHS) SetCID(v uint16)  { h.put16(20, v) }

// --- fields at offsets 24..47 ---

func (h *BHS) CmdSN() uint32                 { return h.u32(24) }
func (h *BHS) SetCmdSN(v uint32)             { h.put32(24, v) }
func (h *BHS) StatSN() uint32                { return h.u32(24) }
func (h *BHS) SetStatSN(v uint32)            { h.put32(24, v) }
func (h *BHS) ExpStatSN() uint32             { return h.u32(28) }
func (h *BHS) SetExpStatSN(v uint32)         { h.put32(28, v) }
func (h *BHS) ExpCmdSN() uint32              { return h.u32(28) }
func (h *BHS) SetExpCmdSN(v uint32)          { h.put32(28, v) }
func (h *BHS) MaxCmdSN() uint32              { return h.u32(32) }
func (h *BHS) SetMaxCmdSN(v uint32)          { h.put32(32, v) }
func (h *BHS) RefCmdSN() uint32              { return h.u32(32) } // TMF Request
func (h *BHS) SetRefCmdSN(v uint32)          { h.put32(32, v) }
func (h *BHS) DataSN() uint32                { return h.u32(36) } // Data-In, Data-Out, Reject
func (h *BHS) SetDataSN(v uint32)            { h.put32(36, v) }
func (h *BHS) R2TSN() uint32                 { return h.u32(36) }
func (h *BHS) SetR2TSN(v uint32)             { h.put32(36, v) }
func (h *BHS) ExpDataSN() uint32             { return h.u32(36) } // SCSI Response, TMF Request
func (h *BHS) SetExpDataSN(v uint32)         { h.put32(36, v) }
func (h *BHS) BufferOffset() uint32          { return h.u32(40) }
func (h *BHS) SetBufferOffset(v uint32)      { h.put32(40, v) }
func (h *BHS) BidiResidualCount() uint32     { return h.u32(40) }
func (h *BHS) SetBidiResidualCount(v uint32) { h.put32(40, v) }
func (h *BHS) BegRun() uint32                { return h.u32(40) } // SNACK
func (h *BHS) DesiredLength() uint32         { return h.u32(44) } // R2T
func (h *BHS) SetDesiredLength(v uint32)     { h.put32(44, v) }
func (h *BHS) ResidualCount() uint32         { return h.u32(44) }
func (h *BHS) SetResidualCount(v uint32)     { h.put32(44, v) }
func (h *BHS) RunLength() uint32             { return h.u32(44) } // SNACK

// CDB returns the 16-byte CDB field of a SCSI Command.
func (h *BHS) CDB() []byte { return h[32:48] }

// --- SCSI Command / Response ---

// Attr is the task attribute of a SCSI Command.
func (h *BHS) Attr() uint8 { return h[1] & 0x07 }

// Response is byte 2 of SCSI, TMF and Logout Responses.
func (h *BHS) Response() byte     { return h[2] }
func (h *BHS) SetResponse(v byte) { h[2] = v }

// Status is byte 3 of SCSI Response and Data-In.
func (h *BHS) Status() byte     { return h[3] }
func (h *BHS) SetStatus(v byte) { h[3] = v }

// --- TMF ---

// Function is the TMF function code (byte 1 without the F bit).
func (h *BHS) Function() uint8 { return h[1] & 0x7f }

// --- Logout ---

// ReasonCode is the Logout Request reason (byte 1 without the F bit).
func (h *BHS) ReasonCode() uint8 { return h[1] & 0x7f }

func (h *BHS) Time2Wait() uint16       { return h.u16(40) }
func (h *BHS) SetTime2Wait(v uint16)   { h.put16(40, v) }
func (h *BHS) Time2Retain() uint16     { return h.u16(42) }
func (h *BHS) SetTime2Retain(v uint16) { h.put16(42, v) }

// --- Reject ---

// Reason is the Reject reason code (byte 2).
func (h *BHS) Reason() byte     { return h[2] }
func (h *BHS) SetReason(v byte) { h[2] = v }

// --- Async Message ---

func (h *BHS) AsyncEvent() byte       { return h[36] }
func (h *BHS) SetAsyncEvent(v byte)   { h[36] = v }
func (h *BHS) AsyncVCode() byte       { return h[37] }
func (h *BHS) Parameter1() uint16     { return h.u16(38) }
func (h *BHS) SetParameter1(v uint16) { h.put16(38, v) }
func (h *BHS) Parameter2() uint16     { return h.u16(40) }
func (h *BHS) SetParameter2(v uint16) { h.put16(40, v) }
func (h *BHS) Parameter3() uint16     { return h.u16(42) }
func (h *BHS) SetParameter3(v uint16) { h.put16(42, v) }

// --- Login ---

// Transit reports the T bit of Login PDUs.
func (h *BHS) Transit() bool { return h[1]&FlagTransit != 0 }

// Continue reports the C bit of Login and Text PDUs.
func (h *BHS) Continue() bool { return h[1]&FlagContinue != 0 }

// SetContinue sets or clears the C bit.
func (h *BHS) SetContinue(on bool) { h.setBit(1, FlagContinue, on) }

// CSG and NSG are the current and next login stages.
func (h *BHS) CSG() uint8 { return h[1] >> 2 & 3 }
func (h *BHS) NSG() uint8 { return h[1] & 3 }

// SetLoginFlags sets T, C, CSG and NSG.
func (h *BHS) SetLoginFlags(transit, cont bool, csg, nsg uint8) {
	f := csg&3<<2 | nsg&3
	if transit {
		f |= FlagTransit
	}
	if cont {
		f |= FlagContinue
	}
	h[1] = f
}

// VersionMax and VersionMin (VersionActive in responses) are bytes 2 and 3.
func (h *BHS) VersionMax() byte        { return h[2] }
func (h *BHS) VersionMin() byte        { return h[3] }
func (h *BHS) SetVersions(max, b byte) { h[2], h[3] = max, b }

// ISID is the 6-byte initiator session id as an integer.
func (h *BHS) ISID() uint64 {
	return uint64(h[8])<<40 | uint64(h[9])<<32 | uint64(h[10])<<24 |
		uint64(h[11])<<16 | uint64(h[12])<<8 | uint64(h[13])
}

// SetISID sets the 6-byte ISID.
func (h *BHS) SetISID(v uint64) {
	for i := 0; i < 6; i++ {
		h[8+i] = byte(v >> (40 - 8*i))
	}
}

func (h *BHS) TSIH() uint16     { return h.u16(14) }
func (h *BHS) SetTSIH(v uint16) { h.put16(14, v) }

// StatusClass and StatusDetail are bytes 36 and 37 of a Login Response.
func (h *BHS) StatusClass() byte  { return h[36] }
func (h *BHS) StatusDetail() byte { return h[37] }

// SetLoginStatus sets the status class and detail from one code
// (class<<8 | detail, e.g. 0x0201).
func (h *BHS) SetLoginStatus(code uint16) { h[36], h[37] = byte(code>>8), byte(code) }

// Pad returns the number of pad bytes after a data segment of n bytes.
func Pad(n uint32) uint32 { return -n & 3 }
