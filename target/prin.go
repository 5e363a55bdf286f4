package target

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/scstd/scstd/target/scsi"
)

// PERSISTENT RESERVE IN service actions (SPC-4 6.16.1).
const (
	prinReadKeys           = 0x00
	prinReadReservation    = 0x01
	prinReportCapabilities = 0x02
	prinReadFullStatus     = 0x03
)

// Protocol identifier of iSCSI TransportIDs (SPC-4 table 444).
const protoISCSI = 0x5

// TransportID format codes of iSCSI (SPC-4 7.6.4.6).
const (
	tidFormatName     = 0x0 // iSCSI name
	tidFormatNameISID = 0x1 // iSCSI name, ",i,0x", ISID
)

// maxTransportIDName bounds the iSCSI name in a TransportID (RFC 7143: 223
// bytes); longer names cannot come from a valid initiator.
const maxTransportIDName = 223

// prin executes PERSISTENT RESERVE IN.
func (nx *nexus) prin(c *Command) error {
	cdb := c.CDB
	if len(cdb) < 10 {
		return checkErr(scsi.SenseInvalidOpcode)
	}
	sa := cdb[1] & 0x1f
	if sa > prinReadFullStatus {
		return invalidCDB(1, 4)
	}
	alloc := int(binary.BigEndian.Uint16(cdb[7:9]))
	p := &nx.dev.pr
	p.mu.Lock()
	var out []byte
	switch sa {
	case prinReadKeys:
		out = make([]byte, 8, 8+8*len(p.data.regs))
		binary.BigEndian.PutUint32(out[0:], p.data.gen)
		binary.BigEndian.PutUint32(out[4:], uint32(8*len(p.data.regs)))
		for _, r := range p.data.regs {
			out = binary.BigEndian.AppendUint64(out, r.key)
		}
	case prinReadReservation:
		out = make([]byte, 8, 24)
		binary.BigEndian.PutUint32(out[0:], p.data.gen)
		if p.data.typ != 0 {
			binary.BigEndian.PutUint32(out[4:], 16)
			out = out[:24]
			binary.BigEndian.PutUint64(out[8:], p.data.holderKey())
			out[21] = p.data.typ // scope LU_SCOPE (0) in the high nibble
		}
	case prinReportCapabilities:
		out = nx.sess.core.reportCapabilities(p.data.aptpl)
	case prinReadFullStatus:
		out = nx.sess.core.readFullStatus(&p.data)
	}
	p.mu.Unlock()
	n := min(alloc, len(out))
	c.TransferLen = uint32(n)
	if n > 0 {
		copy(c.AllocDataIn(n), out[:n])
	}
	return nil
}

// reportCapabilities builds the REPORT CAPABILITIES parameter data (SPC-4
// 6.16.4).
func (c *Core) reportCapabilities(aptpl bool) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint16(b[0:], 8)
	b[2] = 0x10 | 0x08 | 0x04 // CRH: SPC-4 5.13.3 exceptions; SIP_C; ATP_C
	if c.opts.StateDir != "" {
		b[2] |= 0x01 // PTPL_C
	}
	b[3] = 0x80 | 0x03<<4 // TMV; ALLOW COMMANDS 011b (see accRead)
	if aptpl {
		b[3] |= 0x01 // PTPL_A
	}
	// Type mask: WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX; EX_AC_AR.
	b[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02
	b[5] = 0x01
	return b
}

// readFullStatus builds the READ FULL STATUS parameter data (SPC-4 6.16.5).
func (c *Core) readFullStatus(d *prData) []byte {
	b := make([]byte, 8, 8+len(d.regs)*(24+32))
	binary.BigEndian.PutUint32(b[0:], d.gen)
	for i := range d.regs {
		r := &d.regs[i]
		var desc [24]byte
		binary.BigEndian.PutUint64(desc[0:], r.key)
		if r.allTgPt {
			desc[12] |= 0x02
		} else {
			binary.BigEndian.PutUint16(desc[18:], c.ports.id(r.target))
		}
		if d.isHolder(i) {
			desc[12] |= 0x01
			desc[13] = d.typ
		}
		tid := appendTransportID(nil, r.name, r.isid)
		binary.BigEndian.PutUint32(desc[20:], uint32(len(tid)))
		b = append(b, desc[:]...)
		b = append(b, tid...)
	}
	binary.BigEndian.PutUint32(b[4:], uint32(len(b)-8))
	return b
}

// appendTransportID appends the iSCSI TransportID of an initiator port:
// format 01b with the ISID when it is known, else format 00b (name only).
// The name is NUL-terminated and padded to a multiple of four bytes, 20 at
// least.
func appendTransportID(dst []byte, name string, isid uint64) []byte {
	start := len(dst)
	format := byte(tidFormatName)
	if isid != 0 {
		format = tidFormatNameISID
	}
	dst = append(dst, format<<6|protoISCSI, 0, 0, 0)
	dst = append(dst, name...)
	if isid != 0 {
		dst = append(dst, ",i,0x"...)
		dst = fmt.Appendf(dst, "%012x", isid&isidMask)
	}
	dst = append(dst, 0)
	for len(dst)-start < 24 || (len(dst)-start)%4 != 0 {
		dst = append(dst, 0)
	}
	binary.BigEndian.PutUint16(dst[start+2:], uint16(len(dst)-start-4))
	return dst
}

var errTransportID = errors.New("invalid TransportID")

// parseTransportID decodes an iSCSI TransportID at the start of b and
// returns the initiator name, the ISID (0 for format 00b) and the
// TransportID's length.
func parseTransportID(b []byte) (name string, isid uint64, n int, err error) {
	if len(b) < 4 {
		return "", 0, 0, errTransportID
	}
	if b[0]&0x0f != protoISCSI {
		return "", 0, 0, fmt.Errorf("%w: protocol %d is not iSCSI", errTransportID, b[0]&0x0f)
	}
	format := b[0] >> 6
	alen := int(binary.BigEndian.Uint16(b[2:4]))
	n = 4 + alen
	if alen%4 != 0 || alen < 4 || n > len(b) {
		return "", 0, 0, fmt.Errorf("%w: additional length %d", errTransportID, alen)
	}
	body := b[4:n]
	if i := strings.IndexByte(string(body), 0); i >= 0 {
		body = body[:i]
	} else {
		return "", 0, 0, fmt.Errorf("%w: name not NUL-terminated", errTransportID)
	}
	s := string(body)
	switch format {
	case tidFormatName:
		name = s
	case tidFormatNameISID:
		i := indexISIDSeparator(s)
		if i < 0 {
			return "", 0, 0, fmt.Errorf("%w: no ISID separator", errTransportID)
		}
		name = s[:i]
		hex := s[i+5:]
		if len(hex) == 0 || len(hex) > 12 {
			return "", 0, 0, fmt.Errorf("%w: ISID %q", errTransportID, hex)
		}
		v, perr := strconv.ParseUint(hex, 16, 64)
		if perr != nil {
			return "", 0, 0, fmt.Errorf("%w: ISID %q", errTransportID, hex)
		}
		isid = v
	default:
		return "", 0, 0, fmt.Errorf("%w: format %d", errTransportID, format)
	}
	if name == "" || len(name) > maxTransportIDName || strings.ContainsAny(name, " \t\r\n,@") {
		return "", 0, 0, fmt.Errorf("%w: name %q", errTransportID, name)
	}
	return name, isid, n, nil
}

// indexISIDSeparator finds ",i,0x" in s, the letters in either case. It
// folds ASCII only: lowering the whole string could change its length
// (invalid UTF-8 becomes U+FFFD) and misplace the index.
func indexISIDSeparator(s string) int {
	const sep = ",i,0x"
	for i := 0; i+len(sep) <= len(s); i++ {
		match := true
		for j := 0; j < len(sep); j++ {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != sep[j] {
				match = false
				break
			}
		}
		if match {
			return i
		}
	}
	return -1
}
