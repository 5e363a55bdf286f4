package target

// MaxLUN is the highest LUN number a mapping may use (SCST_MAX_LUN).
const MaxLUN = 16383

// decodeLUN turns the raw 8-byte SAM LUN field into the LUN number used in
// LUN maps. Supported: peripheral device addressing (00b, bus 0), flat space
// addressing (01b) and logical unit addressing (10b, whose 14 bits this core
// packs like flat space, see encodeLUN). Extended addressing (11b), a
// non-zero bus identifier and hierarchical (second-level) LUNs are not
// supported; ok is false for them so that the command gets LOGICAL UNIT NOT
// SUPPORTED.
func decodeLUN(raw uint64) (lun uint64, ok bool) {
	if raw&0x0000_ffff_ffff_ffff != 0 {
		return 0, false // a second or deeper addressing level
	}
	b0 := byte(raw >> 56)
	b1 := byte(raw >> 48)
	switch b0 >> 6 {
	case 0:
		if b0&0x3f != 0 {
			return 0, false // bus identifier other than 0
		}
		return uint64(b1), true
	case 1, 2:
		return uint64(b0&0x3f)<<8 | uint64(b1), true
	default:
		return 0, false
	}
}

// encodeLUN returns the 8-byte LUN field for lun under addressing method m,
// as a big-endian integer. Peripheral addressing can express only LUNs up to
// 255; larger LUNs of such groups are reported in flat space format, which
// every initiator decodes.
func encodeLUN(lun uint64, m AddrMethod) uint64 {
	lun &= 0x3fff
	var method uint64
	switch m {
	case AddrFlat:
		method = 1
	case AddrLUN:
		method = 2
	default:
		if lun > 255 {
			method = 1
		}
	}
	return (method<<14 | lun) << 48
}
