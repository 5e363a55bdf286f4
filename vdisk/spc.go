package vdisk

import (
	"encoding/binary"
	"hash/fnv"

	"github.com/scstd/scstd/target"
	"github.com/scstd/scstd/target/scsi"
)

// Version descriptors (SPC-4 table 29).
const (
	verSAM5  = 0x00a0
	verISCSI = 0x0960
	verSPC4  = 0x0460
	verSBC3  = 0x04c0
	verMMC4  = 0x03a0
)

func execTestUnitReady(d *vdev, c *target.Command) (outcome, scsi.Sense) {
	return done, scsi.Sense{}
}

// copyPadded writes s into b left-aligned and space-padded (SPC-4 4.4.1).
func copyPadded(b []byte, s string) {
	n := copy(b, s)
	for i := n; i < len(b); i++ {
		b[i] = ' '
	}
}

func execInquiry(d *vdev, c *target.Command) (outcome, scsi.Sense) {
	cdb := c.CDB
	if cdb[1]&0x02 != 0 {
		return invalidField(1, 1) // CMDDT is obsolete
	}
	alloc := uint32(binary.BigEndian.Uint16(cdb[3:]))
	var b [256]byte
	b[0] = d.devType // peripheral qualifier 0: connected
	var n int
	if cdb[1]&0x01 == 0 {
		if cdb[2] != 0 {
			return invalidField(2, 7)
		}
		n = d.stdInquiry(b[:])
	} else {
		var ok bool
		if n, ok = d.vpd(cdb[2], b[:]); !ok {
			return invalidField(2, 7)
		}
	}
	setDataIn(c, b[:n], alloc)
	return done, scsi.Sense{}
}

// stdInquiry builds the standard INQUIRY data (SPC-4 6.4.2).
func (d *vdev) stdInquiry(b []byte) int {
	const n = 74
	if d.removable() {
		b[1] = 0x80 // RMB
	}
	b[2] = 0x06 // SPC-4
	b[3] = 0x12 // HISUP, response data format 2
	b[5] |= d.tpgs()
	b[4] = n - 5
	b[7] = 0x02 // CMDQUE
	copyPadded(b[8:16], d.vendor)
	copyPadded(b[16:32], d.product)
	copyPadded(b[32:36], d.rev)
	vers := [...]uint16{verSAM5, verISCSI, verSPC4, verSBC3}
	if d.devType == scsi.TypeCDROM {
		vers[3] = verMMC4
	}
	for i, v := range vers {
		binary.BigEndian.PutUint16(b[58+2*i:], v)
	}
	return n
}

// vpdPages lists the VPD pages a device type supports, ascending.
func (d *vdev) vpdPages() []byte {
	if d.devType == scsi.TypeDisk {
		return []byte{0x00, 0x80, 0x83, 0x8f, 0xb0, 0xb1, 0xb2}
	}
	return []byte{0x00, 0x80, 0x83}
}

func (d *vdev) vpd(page byte, b []byte) (int, bool) {
	supported := false
	for _, p := range d.vpdPages() {
		if p == page {
			supported = true
		}
	}
	if !supported {
		return 0, false
	}
	b[1] = page
	var plen int
	switch page {
	case 0x00:
		plen = copy(b[4:], d.vpdPages())
	case 0x80:
		plen = copy(b[4:], d.usn)
	case 0x83:
		plen = d.deviceIDs(b[4:])
	case 0x8f:
		plen = thirdPartyCopyVPD(b[4:])
	case 0xb0:
		plen = 0x3c
		p := b[4:] // p[i] is page byte i+4 (SBC-3 6.6.4)
		gran := 4096 / d.blockSize
		if gran == 0 {
			gran = 1
		}
		p[1] = maxCAWBlocks                                           // MAXIMUM COMPARE AND WRITE LENGTH
		binary.BigEndian.PutUint16(p[2:], uint16(gran))               // OPTIMAL TRANSFER LENGTH GRANULARITY
		binary.BigEndian.PutUint32(p[4:], maxXferBytes>>d.shift)      // MAXIMUM TRANSFER LENGTH
		binary.BigEndian.PutUint32(p[8:], (maxXferBytes/16)>>d.shift) // OPTIMAL TRANSFER LENGTH
		if d.thin.Load() {
			binary.BigEndian.PutUint32(p[16:], 0xffffffff)    // MAXIMUM UNMAP LBA COUNT: no limit
			binary.BigEndian.PutUint32(p[20:], maxUnmapDescs) // MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT
			binary.BigEndian.PutUint32(p[24:], uint32(gran))  // OPTIMAL UNMAP GRANULARITY
			p[28] = 0x80                                      // UGAVALID, alignment 0
		}
		binary.BigEndian.PutUint64(p[32:], maxWriteSame(d)) // MAXIMUM WRITE SAME LENGTH
		binary.BigEndian.PutUint32(p[40:], maxAtomic(d))    // MAXIMUM ATOMIC TRANSFER LENGTH
	case 0xb1:
		plen = 0x3c
		rate := uint16(15000) // rotational, like SCST's default
		if d.flags.NullIO {
			rate = 1 // non-rotating medium
		}
		binary.BigEndian.PutUint16(b[4:], rate)
		// WABEREQ/WACEREQ 01b: reads after BLOCK/CRYPTO ERASE succeed
		// (and return zeros).
		b[7] = 0x50
	case 0xb2:
		// Logical Block Provisioning (SBC-3 6.6.5).
		plen = 4
		if d.thin.Load() {
			b[5] = 0xe0 // LBPU, LBPWS, LBPWS10
			if d.lbprz.Load() {
				b[5] |= 0x04 // LBPRZ
			}
			b[6] = 0x02 // PROVISIONING TYPE: thin
		}
	}
	binary.BigEndian.PutUint16(b[2:], uint16(plen))
	return 4 + plen, true
}

// deviceIDs fills the Device Identification designators (VPD 0x83) and
// returns their length.
func (d *vdev) deviceIDs(b []byte) int {
	t10 := *d.t10id.Load()
	// T10 vendor ID designator: vendor (8, padded) + T10 device id.
	b[0] = 0x02 // code set ASCII
	b[1] = 0x01 // association: logical unit; type: T10 vendor ID
	copyPadded(b[4:12], d.vendor)
	l := 8 + copy(b[12:], t10)
	b[3] = byte(l)
	n := 4 + l
	// NAA designator, locally assigned (NAA 3h): 60 bits derived from the
	// vendor and T10 id, so set_t10_dev_id changes both designators.
	h := fnv.New64a()
	h.Write([]byte(d.vendor))
	h.Write([]byte(t10))
	p := b[n:]
	p[0] = 0x01 // binary
	p[1] = 0x03 // association: logical unit; type: NAA
	p[3] = 8
	binary.BigEndian.PutUint64(p[4:], 3<<60|h.Sum64()&(1<<60-1))
	return n + 12 + d.portDesignators(b[n+12:])
}

// --- START STOP UNIT / PREVENT ALLOW MEDIUM REMOVAL ---

var senseRemovalPrevented = scsi.Sense{Key: scsi.SenseIllegalRequest, ASC: scsi.ASCMediumRemovalPrevented}

func execStartStop(d *vdev, c *target.Command) (outcome, scsi.Sense) {
	b4 := c.CDB[4]
	if b4>>4 != 0 {
		// A power condition: no medium state change (SBC-3 5.25).
		return done, scsi.Sense{}
	}
	loej, start := b4&0x02 != 0, b4&0x01 != 0
	if !loej {
		return done, scsi.Sense{}
	}
	if !d.removable() {
		return invalidField(4, 1)
	}
	// While removal is prevented the medium can be neither ejected nor
	// (re)loaded through the initiator interface.
	if d.prevent.Load() {
		return check, senseRemovalPrevented
	}
	d.ejected.Store(!start)
	return done, scsi.Sense{}
}

// execPreventAllow records the I_T nexus's PREVENT state (SPC-4 6.13):
// removal stays prevented while any nexus prevents it.
func execPreventAllow(d *vdev, c *target.Command) (outcome, scsi.Sense) {
	s := c.Session()
	d.mu.Lock()
	if c.CDB[4]&0x01 != 0 {
		if d.preventers == nil {
			d.preventers = make(map[*target.Session]struct{})
		}
		d.preventers[s] = struct{}{}
	} else {
		delete(d.preventers, s)
	}
	d.prevent.Store(len(d.preventers) != 0)
	d.mu.Unlock()
	return done, scsi.Sense{}
}

// NexusLost ends the PREVENT of an I_T nexus that logged out or dropped
// (SPC-4 6.13); the core calls it when a session closes.
func (d *vdev) NexusLost(s *target.Session) {
	d.mu.Lock()
	delete(d.preventers, s)
	d.prevent.Store(len(d.preventers) != 0)
	d.mu.Unlock()
	d.xcopy.forget(s)
}

func removableOnly(d *vdev) bool { return d.removable() }

// Reset implements target.ResetHandler: a LOGICAL UNIT RESET or target
// reset ends any PREVENT ALLOW MEDIUM REMOVAL (SPC-4 6.13).
func (d *vdev) Reset() {
	d.mu.Lock()
	clear(d.preventers)
	d.prevent.Store(false)
	d.mu.Unlock()
	d.notifyPeersReset()
}

// HardReset implements target.HardResetHandler: after a TARGET COLD RESET
// the mode parameters are back to their saved values, as after power on
// (SAM-5 6.3.2, SPC-4 7.5.1).
func (d *vdev) HardReset() {
	d.mu.Lock()
	old, bits := d.mode.cur.Load(), d.mode.saved.Load()
	d.mode.cur.Store(bits)
	d.mu.Unlock()
	if (bits^old)&mDSense != 0 {
		d.hooks.SetDescriptorSense(bits&mDSense != 0)
	}
}
