package vdisk

import (
	"encoding/binary"
	"slices"

	"github.com/scstd/scstd/target"
	"github.com/scstd/scstd/target/scsi"
)

// PortGroup is one ALUA target port group: a node of a multi-node LU and
// the relative target port identifiers of its ports.
type PortGroup struct {
	ID       uint16
	RelPorts []uint16
}

// PortIdentity places this daemon among several scstd nodes exporting the
// same logical units (an RBD image): a multipath initiator sees one LU
// through one target port group per node, all active/optimized. The
// zero RelPort/Group values are not allowed (SPC-4 reserves 0).
type PortIdentity struct {
	// RelPort and Group are this node's relative target port identifier
	// and target port group (VPD 0x83 target port designators).
	RelPort, Group uint16
	// Peers are the other nodes' groups, listed by REPORT TARGET PORT
	// GROUPS together with this node's own.
	Peers []PortGroup
}

// groups is every target port group of the LU, this node's included,
// ordered by group id.
func (p *PortIdentity) groups() []PortGroup {
	gs := append([]PortGroup{{ID: p.Group, RelPorts: []uint16{p.RelPort}}}, p.Peers...)
	slices.SortFunc(gs, func(a, b PortGroup) int { return int(a.ID) - int(b.ID) })
	return gs
}

// ports is the daemon's ALUA identity, or nil for a single-node target.
func (d *vdev) ports() *PortIdentity {
	if d.mgr == nil {
		return nil
	}
	return d.mgr.opts.Ports
}

// tpgs is the TPGS field of standard INQUIRY data (byte 5): implicit
// asymmetric access (01b) when the daemon has a port identity.
func (d *vdev) tpgs() byte {
	if d.ports() == nil {
		return 0
	}
	return 0x10
}

// portDesignators appends the relative target port and target port group
// designators (SPC-4 7.8.6.6, 7.8.6.7) to VPD 0x83 and returns their
// length; nothing for a single-node target.
func (d *vdev) portDesignators(b []byte) int {
	p := d.ports()
	if p == nil {
		return 0
	}
	b[0] = 0x01 // binary
	b[1] = 0x14 // association: target port; type: relative target port
	b[3] = 4
	binary.BigEndian.PutUint16(b[6:], p.RelPort)
	b[8] = 0x01
	b[9] = 0x15 // association: target port; type: target port group
	b[11] = 4
	binary.BigEndian.PutUint16(b[14:], p.Group)
	return 16
}

// hasPortGroups gates REPORT TARGET PORT GROUPS.
func hasPortGroups(d *vdev) bool { return d.ports() != nil }

// execReportTargetPortGroups implements REPORT TARGET PORT GROUPS (SPC-4
// 6.36): every node's group, active/optimized, with its ports; parameter
// data format 000b (length only) or 001b (extended header).
func execReportTargetPortGroups(d *vdev, c *target.Command) (outcome, scsi.Sense) {
	cdb := c.CDB
	format := cdb[1] >> 5
	if format > 1 {
		return invalidField(1, 7)
	}
	alloc := binary.BigEndian.Uint32(cdb[6:])
	var buf [512]byte
	p := 4
	if format == 1 {
		buf[4] = 0x10 // FORMAT TYPE 001b
		buf[5] = 0    // IMPLICIT TRANSITION TIME: none
		p = 8
	}
	for _, g := range d.ports().groups() {
		if p+8+4*len(g.RelPorts) > len(buf) {
			break
		}
		desc := buf[p:]
		desc[0] = 0x00 // asymmetric access state 0h: active/optimized
		desc[1] = 0x01 // AO_SUP
		binary.BigEndian.PutUint16(desc[2:], g.ID)
		desc[7] = byte(len(g.RelPorts))
		for i, rp := range g.RelPorts {
			binary.BigEndian.PutUint16(desc[8+4*i+2:], rp)
		}
		p += 8 + 4*len(g.RelPorts)
	}
	binary.BigEndian.PutUint32(buf[0:], uint32(p-4))
	setDataIn(c, buf[:p], alloc)
	return done, scsi.Sense{}
}
