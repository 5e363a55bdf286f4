package vdisk

import (
	"bytes"
	"encoding/binary"

	"github.com/scstd/scstd/target"
	"github.com/scstd/scstd/target/scsi"
)

// The read-modify-write commands run exclusively on their device (ioGate),
// so no other command of any initiator observes or interleaves with them.

// --- COMPARE AND WRITE (SBC-3 5.2) ---

func execCompareAndWrite(d *vdev, c *target.Command) (outcome, scsi.Sense) {
	cdb := c.CDB
	if cdb[1]&0xe0 != 0 {
		return invalidField(1, 7) // WRPROTECT
	}
	lba, n := binary.BigEndian.Uint64(cdb[2:]), uint64(cdb[13])
	if n > maxCAWBlocks {
		return invalidField(13, 7)
	}
	if st, s, ok := d.checkRange(rwArgs{lba: lba, n: uint32(n)}, false); !ok {
		return st, s
	}
	tl := uint32(2 * n << d.shift)
	c.TransferLen = tl
	// The data-out buffer holds the verify and the write data, exactly
	// twice NUMBER OF LOGICAL BLOCKS (SBC-3 5.2). A mismatch means the
	// length field is not what the initiator meant (e.g. a block count of
	// 256 that does not fit the one-byte field).
	if c.ExpectedLen != tl || uint32(len(c.DataOut)) != tl {
		return invalidField(13, 7)
	}
	if n == 0 {
		return done, scsi.Sense{}
	}
	return d.runSlow(c, true, compareAndWriteSlow)
}

func compareAndWriteSlow(d *vdev, c *target.Command, m *medium) (outcome, scsi.Sense) {
	if m.ext != nil {
		return storeCompareAndWrite(d, c, m)
	}
	lba, n := binary.BigEndian.Uint64(c.CDB[2:]), int(c.CDB[13])<<d.shift
	off := int64(lba << d.shift)
	buf := d.bufs.Get(n)
	defer d.bufs.Put(buf)
	cur := *buf
	if err := m.readAt(cur, off); err != nil {
		return check, ioSense(err, false)
	}
	if want := c.DataOut[:n]; !bytes.Equal(cur, want) {
		return check, scsi.Sense{Key: scsi.SenseMiscompare, ASC: scsi.ASCMiscompareDuringVerify,
			Info: uint64(firstDiff(cur, want)), InfoValid: true}
	}
	if err := d.writeAligned(m, c.DataOut[n:2*n], off, d.fua(c.CDB[1]&0x08 != 0), cur); err != nil {
		return check, ioSense(err, true)
	}
	return done, scsi.Sense{}
}

// writeAligned writes data at off through scratch (len(scratch) >=
// len(data), aligned) when the medium needs aligned buffers (O_DIRECT).
func (d *vdev) writeAligned(m *medium, data []byte, off int64, sync bool, scratch []byte) error {
	if m.direct {
		copy(scratch, data)
		data = scratch[:len(data)]
	}
	return m.writeAt(data, off, sync)
}

// --- ORWRITE 16 (SBC-3 5.10) ---

func execOrWrite(d *vdev, c *target.Command) (outcome, scsi.Sense) {
	a := parseRW(c.CDB)
	if a.flags&0xe0 != 0 {
		return invalidField(1, 7) // ORPROTECT
	}
	if st, s, ok := d.checkRange(a, true); !ok {
		return st, s
	}
	tl := a.n << d.shift
	c.TransferLen = tl
	data, ok := d.dataOut(c, tl)
	if !ok {
		return check, senseInvalidIU
	}
	if len(data) == 0 {
		return done, scsi.Sense{}
	}
	return d.runSlow(c, true, orWriteSlow)
}

func orWriteSlow(d *vdev, c *target.Command, m *medium) (outcome, scsi.Sense) {
	a := parseRW(c.CDB)
	data, _ := d.dataOut(c, a.n<<d.shift)
	off := int64(a.lba << d.shift)
	buf := d.bufs.Get(len(data))
	defer d.bufs.Put(buf)
	cur := *buf
	if err := m.readAt(cur, off); err != nil {
		return check, ioSense(err, false)
	}
	for i, b := range data {
		cur[i] |= b
	}
	if err := m.writeAt(cur, off, d.fua(a.flags&0x08 != 0)); err != nil {
		return check, ioSense(err, true)
	}
	return done, scsi.Sense{}
}

// --- WRITE ATOMIC 16 (SBC-4 5.48) ---

func maxAtomic(d *vdev) uint32 { return maxXferBytes >> d.shift }

func execWriteAtomic(d *vdev, c *target.Command) (outcome, scsi.Sense) {
	cdb := c.CDB
	if cdb[1]&0xe0 != 0 {
		return invalidField(1, 7) // WRPROTECT
	}
	if binary.BigEndian.Uint16(cdb[10:]) != 0 {
		return invalidField(10, 7) // ATOMIC BOUNDARY: no boundary support
	}
	a := rwArgs{lba: binary.BigEndian.Uint64(cdb[2:]), n: uint32(binary.BigEndian.Uint16(cdb[12:])), tlOff: 12}
	if st, s, ok := d.checkRange(a, false); !ok {
		return st, s
	}
	if a.n > maxAtomic(d) {
		return invalidField(12, 7)
	}
	tl := a.n << d.shift
	c.TransferLen = tl
	if a.n == 0 {
		return done, scsi.Sense{}
	}
	// All or nothing: a short data-out cannot be written atomically.
	if uint32(len(c.DataOut)) < tl {
		return check, senseInvalidIU
	}
	return d.runSlow(c, true, writeAtomicSlow)
}

func writeAtomicSlow(d *vdev, c *target.Command, m *medium) (outcome, scsi.Sense) {
	lba, n := binary.BigEndian.Uint64(c.CDB[2:]), int(binary.BigEndian.Uint16(c.CDB[12:]))<<d.shift
	var scratch []byte
	if m.direct {
		buf := d.bufs.Get(n)
		defer d.bufs.Put(buf)
		scratch = *buf
	}
	if err := d.writeAligned(m, c.DataOut[:n], int64(lba<<d.shift), d.fua(c.CDB[1]&0x08 != 0), scratch); err != nil {
		return check, ioSense(err, true)
	}
	return done, scsi.Sense{}
}

// --- READ DEFECT DATA 10/12 (SBC-3 5.13, 5.14) ---

// A file has no defects: both lists are valid and empty, in the format
// the initiator asked for.
func execReadDefectData(d *vdev, c *target.Command) (outcome, scsi.Sense) {
	cdb := c.CDB
	var b [8]byte
	if cdb[0] == scsi.OpReadDefectData10 {
		req := cdb[2]
		b[1] = req & 0x1f // PLISTV, GLISTV, list format
		setDataIn(c, b[:4], uint32(binary.BigEndian.Uint16(cdb[7:])))
		return done, scsi.Sense{}
	}
	b[1] = cdb[1] & 0x1f
	setDataIn(c, b[:8], binary.BigEndian.Uint32(cdb[6:]))
	return done, scsi.Sense{}
}
