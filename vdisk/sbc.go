package vdisk

import (
	"bytes"
	"encoding/binary"

	"github.com/scstd/scstd/target"
	"github.com/scstd/scstd/target/scsi"
	"github.com/scstd/scstd/vdisk/backend"
	"github.com/sirupsen/logrus"
)

// rwArgs are the fields shared by the READ/WRITE/VERIFY/PRE-FETCH/SYNC CACHE
// CDB layouts.
type rwArgs struct {
	lba uint64
	n   uint32 // blocks
	// tlOff is the CDB byte of the transfer length (for field pointers).
	tlOff uint16
	flags byte // CDB byte 1 (protect bits, DPO, FUA, BYTCHK, IMMED)
}

// parseRW decodes the LBA and length of the 6/10/12/16-byte block CDBs. The
// dispatcher has checked len(cdb) against the entry's CDB length.
func parseRW(cdb []byte) rwArgs {
	switch {
	case cdb[0] == scsi.OpRead6 || cdb[0] == scsi.OpWrite6:
		a := rwArgs{
			lba:   uint64(cdb[1]&0x1f)<<16 | uint64(cdb[2])<<8 | uint64(cdb[3]),
			n:     uint32(cdb[4]),
			tlOff: 4,
		}
		if a.n == 0 {
			a.n = 256 // SBC-3: zero means 256 blocks for the 6-byte CDBs
		}
		return a
	case cdb[0] < 0x80 && cdb[0] >= 0x20: // 10-byte group
		return rwArgs{lba: uint64(binary.BigEndian.Uint32(cdb[2:])), n: uint32(binary.BigEndian.Uint16(cdb[7:])), tlOff: 7, flags: cdb[1]}
	case cdb[0] >= 0xa0: // 12-byte group
		return rwArgs{lba: uint64(binary.BigEndian.Uint32(cdb[2:])), n: binary.BigEndian.Uint32(cdb[6:]), tlOff: 6, flags: cdb[1]}
	default: // 16-byte group
		return rwArgs{lba: binary.BigEndian.Uint64(cdb[2:]), n: binary.BigEndian.Uint32(cdb[10:]), tlOff: 10, flags: cdb[1]}
	}
}

// checkRange validates LBA+length against the capacity and, when xfer is
// set, the length against MAXIMUM TRANSFER LENGTH.
func (d *vdev) checkRange(a rwArgs, xfer bool) (outcome, scsi.Sense, bool) {
	nb := d.nblocks()
	if a.lba > nb || uint64(a.n) > nb-a.lba {
		return check, scsi.SenseLBAOutOfRange, false
	}
	if xfer && uint64(a.n)<<d.shift > maxXferBytes {
		st, s := invalidField(a.tlOff, 7)
		return st, s, false
	}
	return done, scsi.Sense{}, true
}

func roundUp(n, a uint32) uint32 { return (n + a - 1) / a * a }

// ioStage is where an ioTask's state machine is.
type ioStage uint8

const (
	stRead ioStage = iota
	stWrite
	stVerifyRead // read back for VERIFY / WRITE AND VERIFY
	stFlush
	stSlow // a slowFn on the slow pool
)

// ioTask carries one command through its backend I/O. Tasks are pooled per
// device; the Request is embedded so a command costs no allocation.
type ioTask struct {
	d     *vdev
	c     *target.Command // nil once the command completed (IMMED)
	m     *medium
	req   backend.Request
	stage ioStage
	// data is the initiator's data to compare against (VERIFY BYTCHK,
	// WRITE AND VERIFY), or nil for a medium check only.
	data []byte
	// blockCmp is VERIFY BYTCHK=3: data is one block compared with each.
	blockCmp bool
	verify   bool // WRITE AND VERIFY: read back after the write
	scratch  *[]byte
	// gated: the task holds a shared ioGate hold, dropped in finish.
	gated bool
	// fn and exclusive describe a slow-pool command (stSlow).
	fn        slowFn
	exclusive bool
}

func (d *vdev) newTask(c *target.Command, m *medium, st ioStage) *ioTask {
	t := d.tasks.Get().(*ioTask)
	t.c, t.m, t.stage = c, m, st
	return t
}

// gatedTask is newTask for medium accesses that must not interleave with
// an exclusive operation (COMPARE AND WRITE and friends). It returns nil
// when c was parked behind one; c then runs again later.
func (d *vdev) gatedTask(c *target.Command, m *medium, st ioStage) *ioTask {
	if !d.gate.enter(c) {
		m.release()
		return nil
	}
	t := d.newTask(c, m, st)
	t.gated = true
	return t
}

func (d *vdev) initTasks() {
	d.tasks.New = func() any {
		t := &ioTask{d: d}
		t.req.Done = t.onIO
		return t
	}
}

func (t *ioTask) onIO(r *backend.Request) {
	if r.Err != nil {
		// Backend errors are rare and worth an operator's attention.
		t.d.log.WithError(r.Err).WithFields(logrus.Fields{"op": r.Op.String(), "offset": r.Off, "len": len(r.Buf)}).
			Warn("backing store I/O failed")
	}
	switch t.stage {
	case stRead:
		if r.Err != nil {
			t.finish(check, ioSense(r.Err, false))
			return
		}
	case stWrite:
		if r.Err != nil {
			t.finish(check, ioSense(r.Err, true))
			return
		}
		if t.verify {
			t.readBack(len(r.Buf))
			return
		}
	case stVerifyRead:
		if r.Err != nil {
			t.finish(check, ioSense(r.Err, false))
			return
		}
		if t.data != nil {
			if off, ok := t.compare(*t.scratch); !ok {
				t.finish(check, scsi.Sense{Key: scsi.SenseMiscompare, ASC: scsi.ASCMiscompareDuringVerify,
					Info: uint64(off), InfoValid: true})
				return
			}
		}
	case stFlush:
		if r.Err != nil {
			t.finish(check, ioSense(r.Err, true))
			return
		}
	}
	t.finish(done, scsi.Sense{})
}

// readBack submits the verification read of n bytes at the request offset.
func (t *ioTask) readBack(n int) {
	t.stage = stVerifyRead
	t.scratch = t.d.bufs.Get(n)
	t.req.Op = backend.OpRead
	t.req.Buf = *t.scratch
	t.req.FUA = false
	t.m.eng.Submit(&t.req)
}

// compare returns the byte offset of the first difference between the
// medium data got and the initiator's data.
func (t *ioTask) compare(got []byte) (int, bool) {
	if !t.blockCmp {
		if bytes.Equal(got, t.data) {
			return 0, true
		}
		return firstDiff(got, t.data), false
	}
	bs := len(t.data)
	for off := 0; off < len(got); off += bs {
		if !bytes.Equal(got[off:off+bs], t.data) {
			return off + firstDiff(got[off:off+bs], t.data), false
		}
	}
	return 0, true
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if i >= len(b) || a[i] != b[i] {
			return i
		}
	}
	return len(a)
}

// finish recycles the task, then completes the command (after which c may
// be reused by its transport, so nothing touches it afterwards).
func (t *ioTask) finish(st outcome, s scsi.Sense) {
	c, d := t.c, t.d
	if t.gated {
		d.gate.leave()
	}
	t.m.release()
	if t.scratch != nil {
		d.bufs.Put(t.scratch)
	}
	t.c, t.m, t.data, t.scratch = nil, nil, nil, nil
	t.blockCmp, t.verify, t.gated, t.exclusive, t.fn = false, false, false, false, nil
	t.req.Buf, t.req.Err, t.req.N, t.req.FUA = nil, nil, 0, false
	d.tasks.Put(t)
	if c == nil {
		return
	}
	if st == check {
		c.CheckCondition(s)
	}
	c.Complete()
}

// submit starts t's request on its medium.
func (t *ioTask) submit(op backend.Op, buf []byte, off int64, fua bool) {
	t.req.Op, t.req.Buf, t.req.Off, t.req.FUA = op, buf, off, fua
	t.m.eng.Submit(&t.req)
}

// --- READ 6/10/12/16 ---

func execRead(d *vdev, c *target.Command) (outcome, scsi.Sense) {
	a := parseRW(c.CDB)
	if a.flags&0xe0 != 0 && c.CDB[0] != scsi.OpRead6 {
		return invalidField(1, 7) // RDPROTECT: no protection information
	}
	if st, s, ok := d.checkRange(a, true); !ok {
		return st, s
	}
	tl := a.n << d.shift
	c.TransferLen = tl
	// Read only what the initiator will receive (whole blocks).
	want := min(tl, c.ExpectedLen)
	want = roundUp(want, d.blockSize)
	if want == 0 {
		return done, scsi.Sense{}
	}
	m := d.acquire()
	if m == nil {
		return check, d.notReady()
	}
	t := d.gatedTask(c, m, stRead)
	if t == nil {
		return pending, scsi.Sense{}
	}
	off := int64(a.lba << d.shift)
	if c.ZeroCopy {
		if b := m.residentRange(off, int(want)); b != nil {
			// The gate hold and the medium reference stay with the
			// command until its data has been sent (ReleaseDataIn).
			c.SetDataInHeld(b, t)
			return done, scsi.Sense{}
		}
	}
	buf := c.AllocDataInUninit(int(want))
	t.submit(backend.OpRead, buf, off, false)
	return pending, scsi.Sense{}
}

// ReleaseDataIn implements target.DataInHolder for a READ served from the
// medium's mapping: the transport has sent the data.
func (t *ioTask) ReleaseDataIn() {
	t.c = nil // completed long ago
	t.finish(done, scsi.Sense{})
}

// dataOut returns the whole blocks of write data the command carries, or
// INVALID FIELD IN INFORMATION UNIT when the initiator sent less than the CDB
// asks for and not a whole number of blocks (FCP-4 / iSCSI residual rules).
func (d *vdev) dataOut(c *target.Command, tl uint32) ([]byte, bool) {
	data := c.DataOut
	if uint32(len(data)) >= tl {
		return data[:tl], true
	}
	if uint32(len(data))%d.blockSize != 0 {
		return nil, false
	}
	return data, true
}

var senseInvalidIU = scsi.Sense{Key: scsi.SenseIllegalRequest, ASC: scsi.ASCInvalidFieldInInformationUnit}

// fua decides whether a write must be durable on completion: FUA in the
// CDB or write cache disabled (WCE=0, e.g. WRITE_THROUGH); NV_CACHE makes
// the cache non-volatile so nothing needs forcing.
func (d *vdev) fua(cdbFUA bool) bool {
	if d.flags.NVCache || d.flags.NullIO {
		return false
	}
	return cdbFUA || !d.mode.wce()
}

// --- WRITE 6/10/12/16 ---

func execWrite(d *vdev, c *target.Command) (outcome, scsi.Sense) {
	a := parseRW(c.CDB)
	if a.flags&0xe0 != 0 && c.CDB[0] != scsi.OpWrite6 {
		return invalidField(1, 7) // WRPROTECT
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
	m := d.acquire()
	if m == nil {
		return check, d.notReady()
	}
	fua := d.fua(a.flags&0x08 != 0 && c.CDB[0] != scsi.OpWrite6)
	t := d.gatedTask(c, m, stWrite)
	if t == nil {
		return pending, scsi.Sense{}
	}
	t.submit(backend.OpWrite, data, int64(a.lba<<d.shift), fua)
	return pending, scsi.Sense{}
}

// --- VERIFY 10/12/16 ---

func execVerify(d *vdev, c *target.Command) (outcome, scsi.Sense) {
	a := parseRW(c.CDB)
	if a.flags&0xe0 != 0 {
		return invalidField(1, 7) // VRPROTECT
	}
	bytchk := (a.flags >> 1) & 3
	if bytchk == 2 {
		return invalidField(1, 2)
	}
	if st, s, ok := d.checkRange(a, true); !ok {
		return st, s
	}
	var data []byte
	switch bytchk {
	case 1:
		tl := a.n << d.shift
		c.TransferLen = tl
		var ok bool
		if data, ok = d.dataOut(c, tl); !ok {
			return check, senseInvalidIU
		}
		if len(data) == 0 {
			return done, scsi.Sense{}
		}
	case 3:
		if a.n == 0 {
			return done, scsi.Sense{}
		}
		c.TransferLen = d.blockSize
		if uint32(len(c.DataOut)) < d.blockSize {
			return check, senseInvalidIU
		}
		data = c.DataOut[:d.blockSize]
	}
	n := int(a.n << d.shift)
	if bytchk == 1 {
		n = len(data)
	}
	if n == 0 {
		return done, scsi.Sense{}
	}
	m := d.acquire()
	if m == nil {
		return check, d.notReady()
	}
	t := d.gatedTask(c, m, stVerifyRead)
	if t == nil {
		return pending, scsi.Sense{}
	}
	t.data = data
	t.blockCmp = bytchk == 3
	t.req.Off = int64(a.lba << d.shift)
	t.readBack(n)
	return pending, scsi.Sense{}
}

// --- WRITE AND VERIFY 10/12/16 ---

func execWriteVerify(d *vdev, c *target.Command) (outcome, scsi.Sense) {
	a := parseRW(c.CDB)
	if a.flags&0xe0 != 0 {
		return invalidField(1, 7) // WRPROTECT
	}
	bytchk := (a.flags >> 1) & 3
	if bytchk > 1 {
		return invalidField(1, 2)
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
	m := d.acquire()
	if m == nil {
		return check, d.notReady()
	}
	t := d.gatedTask(c, m, stWrite)
	if t == nil {
		return pending, scsi.Sense{}
	}
	// NULLIO discards writes, so there is nothing to read back.
	t.verify = !d.flags.NullIO
	if bytchk == 1 {
		t.data = data
	}
	// The data must be on the medium before it is read back to verify.
	t.submit(backend.OpWrite, data, int64(a.lba<<d.shift), !d.flags.NullIO && !d.flags.NVCache)
	return pending, scsi.Sense{}
}

// --- SYNCHRONIZE CACHE 10/16 ---

func execSyncCache(d *vdev, c *target.Command) (outcome, scsi.Sense) {
	a := parseRW(c.CDB)
	if st, s, ok := d.checkRange(a, false); !ok {
		return st, s
	}
	if d.flags.NVCache || d.flags.NullIO {
		return done, scsi.Sense{}
	}
	m := d.acquire()
	if m == nil {
		return check, d.notReady()
	}
	immed := a.flags&0x02 != 0
	t := d.newTask(c, m, stFlush)
	if immed {
		// GOOD now; the flush completes on its own.
		t.c = nil
		t.submit(backend.OpFlush, nil, 0, false)
		return done, scsi.Sense{}
	}
	t.submit(backend.OpFlush, nil, 0, false)
	return pending, scsi.Sense{}
}

// --- PRE-FETCH 10/16 ---

// execPrefetch validates the range; the page cache (or the device) does its
// own read-ahead, so there is nothing to load and GOOD is the answer SBC-3
// gives when the blocks are not guaranteed to be cached.
func execPrefetch(d *vdev, c *target.Command) (outcome, scsi.Sense) {
	a := parseRW(c.CDB)
	if st, s, ok := d.checkRange(a, false); !ok {
		return st, s
	}
	return done, scsi.Sense{}
}

// --- READ CAPACITY 10/16 ---

func execReadCapacity10(d *vdev, c *target.Command) (outcome, scsi.Sense) {
	cdb := c.CDB
	if cdb[8]&0x01 == 0 && binary.BigEndian.Uint32(cdb[2:]) != 0 {
		return invalidField(2, 7) // LBA without PMI
	}
	var b [8]byte
	last := d.nblocks() - 1
	if d.nblocks() == 0 {
		last = 0
	}
	if last > 0xffffffff {
		last = 0xffffffff // the initiator must use READ CAPACITY 16
	}
	binary.BigEndian.PutUint32(b[0:], uint32(last))
	binary.BigEndian.PutUint32(b[4:], d.blockSize)
	setDataIn(c, b[:], 8)
	return done, scsi.Sense{}
}

func execReadCapacity16(d *vdev, c *target.Command) (outcome, scsi.Sense) {
	alloc := binary.BigEndian.Uint32(c.CDB[10:])
	var b [32]byte
	nb := d.nblocks()
	if nb > 0 {
		binary.BigEndian.PutUint64(b[0:], nb-1)
	}
	binary.BigEndian.PutUint32(b[8:], d.blockSize)
	// LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT: report 4 KiB physical
	// blocks so initiators align I/O to the page cache.
	if d.blockSize < 4096 {
		exp := byte(0)
		for bs := d.blockSize; bs < 4096; bs <<= 1 {
			exp++
		}
		b[13] = exp
	}
	if d.thin.Load() {
		b[14] = 0x80 // LBPME
		if d.lbprz.Load() {
			b[14] |= 0x40 // LBPRZ
		}
	}
	setDataIn(c, b[:], alloc)
	return done, scsi.Sense{}
}
