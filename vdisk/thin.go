package vdisk

import (
	"encoding/binary"
	"errors"
	"io"
	"syscall"
	"unsafe"

	"github.com/scstd/scstd/target"
	"github.com/scstd/scstd/target/scsi"
	"golang.org/x/sys/unix"
)

// ThinMode selects logical block provisioning for a disk (SCST's
// thin_provisioned attribute).
type ThinMode uint8

const (
	// ThinAuto enables thin provisioning when the backing file can punch
	// holes (probed at open); block devices and read-only disks stay thick.
	ThinAuto ThinMode = iota
	// ThinOn forces it (block devices discard with BLKDISCARD).
	ThinOn
	// ThinOff reports a fully provisioned disk and refuses UNMAP.
	ThinOff
)

// Limits advertised in the Block Limits VPD page.
const (
	maxUnmapDescs = 4095 // what a 16-bit UNMAP parameter list can carry
	maxCAWBlocks  = 255
	// slowChunk is the buffer of WRITE SAME / SANITIZE fills.
	slowChunk = 1 << 20
)

// --- synchronous medium access (slow-pool workers only) ---

// readAt fills b from off; NULLIO and the part past the end of a short
// file read as zeros.
func (m *medium) readAt(b []byte, off int64) error {
	if m.ext != nil {
		return m.ext.ReadAt(b, off)
	}
	if m.file == nil {
		clear(b)
		return nil
	}
	n, err := m.file.ReadAt(b, off)
	if errors.Is(err, io.EOF) {
		clear(b[n:])
		return nil
	}
	return unwrapErrno(err)
}

// writeAt writes b at off, durable on return when sync is set.
func (m *medium) writeAt(b []byte, off int64, sync bool) error {
	if m.ext != nil {
		return m.ext.WriteAt(b, off, sync)
	}
	if m.file == nil {
		return nil
	}
	if _, err := m.file.WriteAt(b, off); err != nil {
		return unwrapErrno(err)
	}
	if sync {
		return m.sync()
	}
	return nil
}

func (m *medium) sync() error {
	if m.ext != nil {
		return m.ext.Flush()
	}
	if m.file == nil {
		return nil
	}
	return unix.Fdatasync(int(m.file.Fd()))
}

// unwrapErrno turns *os.PathError into its errno so ioSense can map it.
func unwrapErrno(err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return err
}

// discard deallocates [off, off+n): a hole in a file (reads return zeros),
// BLKDISCARD on a block device.
func (m *medium) discard(off, n int64) error {
	if m.ext != nil {
		return m.ext.Discard(off, n)
	}
	if m.file == nil || n == 0 {
		return nil
	}
	fd := int(m.file.Fd())
	if m.blockDev {
		r := [2]uint64{uint64(off), uint64(n)}
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.BLKDISCARD, uintptr(unsafe.Pointer(&r))); e != 0 {
			return e
		}
		return nil
	}
	for {
		err := unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
		if err != unix.EINTR {
			return err
		}
	}
}

// canPunch probes hole punching without touching data: a punch past the
// end of the file with KEEP_SIZE changes nothing where it is supported.
func canPunch(fd int, size int64) bool {
	err := unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, size, 4096)
	return err == nil
}

// --- UNMAP (SBC-3 5.28) ---

func invalidParam(byteOff uint16, bit uint8) scsi.Sense {
	return scsi.Sense{Key: scsi.SenseIllegalRequest, ASC: scsi.ASCInvalidFieldInParameterList,
		FieldPointer: byteOff, BitPointer: bit, FieldPointerValid: true}
}

// unmapList validates an UNMAP parameter list against the capacity and the
// Block Limits and returns its block descriptors (16 bytes each) and the
// number of blocks they cover. p is the data the initiator sent, at most
// the PARAMETER LIST LENGTH.
func unmapList(p []byte, nblocks uint64) (descs []byte, blocks uint64, s scsi.Sense, ok bool) {
	if len(p) == 0 {
		return nil, 0, scsi.Sense{}, true
	}
	if len(p) < 8 {
		return nil, 0, scsi.SenseParamListLength, false
	}
	bdl := int(binary.BigEndian.Uint16(p[2:]))
	if bdl > len(p)-8 {
		return nil, 0, scsi.SenseParamListLength, false
	}
	// A trailing partial descriptor is ignored (SBC-3 5.28.2: the length
	// should be a multiple of 16).
	n := bdl / 16
	if n > maxUnmapDescs {
		return nil, 0, invalidParam(2, 7), false
	}
	descs = p[8 : 8+16*n]
	for i := 0; i < n; i++ {
		d := descs[16*i:]
		lba := binary.BigEndian.Uint64(d)
		cnt := uint64(binary.BigEndian.Uint32(d[8:]))
		if lba > nblocks || cnt > nblocks-lba {
			return nil, 0, scsi.SenseLBAOutOfRange, false
		}
		blocks += cnt
	}
	if blocks > 0xffffffff {
		return nil, 0, invalidParam(uint16(8+16*(n-1)+8), 7), false
	}
	return descs, blocks, scsi.Sense{}, true
}

func execUnmap(d *vdev, c *target.Command) (outcome, scsi.Sense) {
	cdb := c.CDB
	if !d.thin.Load() {
		return check, scsi.SenseInvalidOpcode
	}
	if cdb[1]&0x01 != 0 {
		return invalidField(1, 0) // ANCHOR: ANC_SUP is 0
	}
	c.TransferLen = uint32(binary.BigEndian.Uint16(cdb[7:]))
	_, blocks, s, ok := unmapList(unmapParams(c), d.nblocks())
	if !ok {
		return check, s
	}
	if blocks == 0 {
		return done, scsi.Sense{}
	}
	return d.runSlow(c, false, unmapSlow)
}

// unmapParams returns the validated parameter list of an UNMAP command.
func unmapParams(c *target.Command) []byte {
	pll := int(binary.BigEndian.Uint16(c.CDB[7:]))
	if len(c.DataOut) > pll {
		return c.DataOut[:pll]
	}
	return c.DataOut
}

func unmapSlow(d *vdev, c *target.Command, m *medium) (outcome, scsi.Sense) {
	descs, _, s, ok := unmapList(unmapParams(c), m.nblocks.Load())
	if !ok {
		return check, s // the capacity shrank meanwhile
	}
	// Descriptors that continue the previous one are discarded together:
	// initiators often list a range block by block, and each discard is a
	// system call (a round trip to the cluster for an RBD image).
	var start, end uint64 // the pending run [start, end)
	for i := 0; i+16 <= len(descs); i += 16 {
		lba := binary.BigEndian.Uint64(descs[i:])
		n := uint64(binary.BigEndian.Uint32(descs[i+8:]))
		if n == 0 {
			continue
		}
		if lba == end && end > start {
			end += n
			continue
		}
		if err := discardRun(d, m, start, end); err != nil {
			return check, ioSense(err, true)
		}
		start, end = lba, lba+n
	}
	if err := discardRun(d, m, start, end); err != nil {
		return check, ioSense(err, true)
	}
	return done, scsi.Sense{}
}

// discardRun deallocates the blocks [start, end), if any.
func discardRun(d *vdev, m *medium, start, end uint64) error {
	if end <= start {
		return nil
	}
	err := m.discard(int64(start<<d.shift), int64((end-start)<<d.shift))
	if err != nil {
		d.log.WithError(err).Warn("UNMAP: deallocation failed")
	}
	return err
}

// --- WRITE SAME 10/16 (SBC-3 5.42, 5.43) ---

func maxWriteSame(d *vdev) uint64 { return maxXferBytes >> d.shift }

// wsArgs decodes WRITE SAME 10/16.
type wsArgs struct {
	lba, n              uint64
	ws16, anchor, unmap bool
	ndob                bool
	flags               byte
}

func parseWS(cdb []byte) wsArgs {
	a := wsArgs{ws16: cdb[0] == scsi.OpWriteSame16, flags: cdb[1]}
	if a.ws16 {
		a.lba, a.n = binary.BigEndian.Uint64(cdb[2:]), uint64(binary.BigEndian.Uint32(cdb[10:]))
		a.ndob = a.flags&0x01 != 0
	} else {
		a.lba, a.n = uint64(binary.BigEndian.Uint32(cdb[2:])), uint64(binary.BigEndian.Uint16(cdb[7:]))
	}
	a.anchor, a.unmap = a.flags&0x10 != 0, a.flags&0x08 != 0
	return a
}

// blocks resolves a zero NUMBER OF LOGICAL BLOCKS (WSNZ=0: to the end).
func (a wsArgs) blocks(nb uint64) uint64 {
	if a.n == 0 && a.lba <= nb {
		return nb - a.lba
	}
	return a.n
}

func execWriteSame(d *vdev, c *target.Command) (outcome, scsi.Sense) {
	a := parseWS(c.CDB)
	switch {
	case a.flags&0xe0 != 0:
		return invalidField(1, 7) // WRPROTECT
	case a.anchor:
		return invalidField(1, 4) // ANC_SUP is 0
	case a.unmap && !d.thin.Load():
		return invalidField(1, 3)
	case !a.ws16 && a.flags&0x06 != 0:
		return invalidField(1, 2) // obsolete PBDATA/LBDATA
	}
	nb := d.nblocks()
	n := a.blocks(nb)
	if a.lba > nb || n > nb-a.lba {
		return check, scsi.SenseLBAOutOfRange
	}
	if n > maxWriteSame(d) {
		if a.ws16 {
			return invalidField(10, 7)
		}
		return invalidField(7, 7)
	}
	if !a.ndob {
		c.TransferLen = d.blockSize
		if c.ExpectedLen != d.blockSize || uint32(len(c.DataOut)) != d.blockSize {
			return check, senseInvalidIU
		}
	}
	if n == 0 {
		return done, scsi.Sense{}
	}
	return d.runSlow(c, false, writeSameSlow)
}

func writeSameSlow(d *vdev, c *target.Command, m *medium) (outcome, scsi.Sense) {
	a := parseWS(c.CDB)
	n := a.blocks(m.nblocks.Load())
	var block []byte
	if !a.ndob {
		block = c.DataOut[:d.blockSize]
	}
	off, length := int64(a.lba<<d.shift), int64(n<<d.shift)
	// UNMAP asks for deallocation whatever the data (SBC-3 4.7.3.4: the
	// blocks then read as the provisioning rules say, zeros with LBPRZ).
	if a.unmap {
		if err := m.discard(off, length); err != nil {
			return check, ioSense(err, true)
		}
		return done, scsi.Sense{}
	}
	if m.ext != nil {
		return storeWriteSame(d, m, off, length, block)
	}
	if err := d.fill(m, off, length, block, d.fua(false)); err != nil {
		return check, ioSense(err, true)
	}
	return done, scsi.Sense{}
}

// fill writes block (zeros if nil) repeatedly over [off, off+length).
func (d *vdev) fill(m *medium, off, length int64, block []byte, sync bool) error {
	chunk := min(length, slowChunk)
	buf := d.bufs.Get(int(chunk))
	defer d.bufs.Put(buf)
	b := *buf
	if block == nil {
		clear(b)
	} else {
		for i := 0; i < len(b); i += copy(b[i:], block) {
		}
	}
	for length > 0 {
		w := min(length, int64(len(b)))
		if err := m.writeAt(b[:w], off, false); err != nil {
			return err
		}
		off += w
		length -= w
	}
	if sync {
		return m.sync()
	}
	return nil
}

// --- GET LBA STATUS (SBC-3 5.16) ---

const maxLBAStatusDescs = 64

func execGetLBAStatus(d *vdev, c *target.Command) (outcome, scsi.Sense) {
	cdb := c.CDB
	lba := binary.BigEndian.Uint64(cdb[2:])
	alloc := binary.BigEndian.Uint32(cdb[10:])
	if lba >= d.nblocks() {
		return check, scsi.SenseLBAOutOfRange
	}
	if alloc == 0 {
		return done, scsi.Sense{}
	}
	return d.runSlow(c, false, getLBAStatusSlow)
}

func getLBAStatusSlow(d *vdev, c *target.Command, m *medium) (outcome, scsi.Sense) {
	lba := binary.BigEndian.Uint64(c.CDB[2:])
	alloc := binary.BigEndian.Uint32(c.CDB[10:])
	var out [8 + 16*maxLBAStatusDescs]byte
	nb := m.nblocks.Load()
	want := min(int(max(alloc, 24)-8)/16, maxLBAStatusDescs)
	p := 8
	for i := 0; i < want && lba < nb; i++ {
		end, deallocated, err := d.extent(m, lba, nb)
		if err != nil {
			return check, ioSense(err, false)
		}
		cnt := min(end-lba, 0xffffffff)
		binary.BigEndian.PutUint64(out[p:], lba)
		binary.BigEndian.PutUint32(out[p+8:], uint32(cnt))
		if deallocated {
			out[p+12] = 0x01
		}
		p += 16
		lba += cnt
	}
	binary.BigEndian.PutUint32(out[0:], uint32(p-4))
	setDataIn(c, out[:p], alloc)
	return done, scsi.Sense{}
}

// extent returns the end (exclusive) of the run of blocks starting at lba
// that share its provisioning state, from the file's data and holes.
func (d *vdev) extent(m *medium, lba, nb uint64) (end uint64, deallocated bool, err error) {
	if m.ext != nil && d.thin.Load() {
		return d.storeExtent(m, lba, nb)
	}
	if !d.thin.Load() || m.file == nil || m.blockDev {
		return nb, false, nil
	}
	fd := int(m.file.Fd())
	off := int64(lba << d.shift)
	data, err := unix.Seek(fd, off, unix.SEEK_DATA)
	if err == unix.ENXIO {
		return nb, true, nil // only a hole up to the end of the file
	}
	if err != nil {
		return 0, false, err
	}
	bs := int64(d.blockSize)
	if data >= off+bs {
		// A hole covers at least this block: deallocated up to the block
		// in which data starts.
		return min(uint64(data/bs), nb), true, nil
	}
	// Data within this block makes it mapped; the run ends at the next
	// hole after that data (rounded up to a whole block).
	hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
	if err != nil {
		return 0, false, err
	}
	return min(max(uint64((hole+bs-1)/bs), lba+1), nb), false, nil
}
