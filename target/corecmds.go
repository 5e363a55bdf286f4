package target

import (
	"encoding/binary"

	"github.com/scstd/scstd/target/scsi"
)

// Standard INQUIRY data returned for a LUN that is not mapped.
const (
	inquiryLen        = 36
	unmappedVendor    = "SCST    "
	unmappedProduct   = "Unmapped LUN    "
	unmappedRevision  = " 330"
	pqNotConnectedAny = 0x7f // peripheral qualifier 011b, device type 1Fh
)

// unmappedLUN answers a command addressed to a LUN the session does not
// see: INQUIRY gets qualifier 011b data, REQUEST SENSE reports LOGICAL UNIT
// NOT SUPPORTED as sense data with GOOD status (SPC-4 6.39), everything else
// gets CHECK CONDITION, LOGICAL UNIT NOT SUPPORTED.
func unmappedLUN(c *Command) {
	switch c.CDB[0] {
	case scsi.OpInquiry:
		inquiryUnmapped(c)
	case scsi.OpRequestSense:
		requestSense(c, scsi.SenseLUNNotSupported)
	default:
		c.checkCondition(scsi.SenseLUNNotSupported, false)
	}
}

func inquiryUnmapped(c *Command) {
	cdb := c.CDB
	if len(cdb) < 6 {
		c.checkCondition(scsi.SenseInvalidOpcode, false)
		return
	}
	if cdb[1]&0x01 != 0 {
		// Vital product data describes a logical unit; there is none here.
		c.checkCondition(scsi.SenseLUNNotSupported, false)
		return
	}
	if cdb[1]&0xfe != 0 {
		c.checkCondition(scsi.InvalidFieldInCDB(1, 1), false)
		return
	}
	if cdb[2] != 0 {
		c.checkCondition(scsi.InvalidFieldInCDB(2, 0), false)
		return
	}
	alloc := int(binary.BigEndian.Uint16(cdb[3:5]))
	n := min(alloc, inquiryLen)
	c.TransferLen = uint32(n)
	if n == 0 {
		return
	}
	var d [inquiryLen]byte
	d[0] = pqNotConnectedAny
	d[2] = 0x06 // SPC-4
	d[3] = 0x12 // HISUP, response data format 2
	d[4] = inquiryLen - 5
	d[7] = 0x02 // CMDQUE
	copy(d[8:16], unmappedVendor)
	copy(d[16:32], unmappedProduct)
	copy(d[32:36], unmappedRevision)
	copy(c.AllocDataIn(n), d[:n])
}

// requestSense answers REQUEST SENSE with sense s (NO SENSE when zero) in
// the format the DESC bit asks for, and GOOD status.
func requestSense(c *Command, s scsi.Sense) { requestSenseData(c, s, false) }

// requestSenseData is requestSense; deferred selects the deferred-error
// response codes (71h/73h).
func requestSenseData(c *Command, s scsi.Sense, deferred bool) {
	cdb := c.CDB
	if len(cdb) < 6 {
		c.checkCondition(scsi.SenseInvalidOpcode, false)
		return
	}
	if cdb[1]&0xfe != 0 {
		c.checkCondition(scsi.InvalidFieldInCDB(1, 1), false)
		return
	}
	var buf [scsi.FixedLen + 32]byte
	data := s.Append(buf[:0], cdb[1]&0x01 != 0)
	if deferred {
		data[0] |= 0x01
	}
	n := min(int(cdb[4]), len(data))
	c.TransferLen = uint32(n)
	if n > 0 {
		copy(c.AllocDataIn(n), data[:n])
	}
}

// REPORT LUNS SELECT REPORT values (SPC-4 table 284).
const (
	selectAllLUs     = 0x00
	selectWellKnown  = 0x01
	selectAllLUNs    = 0x02
	reportLUNsMinLen = 16
)

// reportLUNs answers REPORT LUNS with the LUNs of the session's group,
// ascending, encoded by the group's addressing method. It also clears the
// REPORTED LUNS DATA HAS CHANGED unit attention on the session's LUNs.
func (s *Session) reportLUNs(c *Command, v *sessView) {
	cdb := c.CDB
	if len(cdb) < 12 {
		c.CheckCondition(scsi.SenseInvalidOpcode)
		return
	}
	alloc := binary.BigEndian.Uint32(cdb[6:10])
	if alloc < reportLUNsMinLen {
		c.CheckCondition(scsi.InvalidFieldInCDB(6, 0))
		return
	}
	var luns []*nexus
	switch cdb[2] {
	case selectAllLUs, selectAllLUNs:
		luns = v.order
	case selectWellKnown:
		// No well-known logical units exist: an empty list.
	default:
		c.CheckCondition(scsi.InvalidFieldInCDB(2, 0))
		return
	}
	count := len(luns)
	if count == 0 && cdb[2] != selectWellKnown {
		// With nothing mapped, report LUN 0 so that the initiator probes it
		// and learns from INQUIRY that no logical unit is connected there.
		count = 1
	}
	total := 8 + 8*count
	n := min(total, int(min(alloc, 1<<24)))
	buf := c.AllocDataIn(total)
	binary.BigEndian.PutUint32(buf[0:4], uint32(8*count))
	addr := AddrPeripheral
	if v.group != nil {
		addr = v.group.addr
	}
	for i, nx := range luns {
		binary.BigEndian.PutUint64(buf[8+8*i:], encodeLUN(nx.lun, addr))
	}
	c.DataIn = buf[:n]
	c.TransferLen = uint32(n)
	for _, nx := range v.order {
		nx.clearUA(scsi.ASCReportedLunsDataHasChanged)
	}
}
