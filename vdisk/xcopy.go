package vdisk

import (
	"bytes"
	"encoding/binary"
	"sync"

	"github.com/scstd/scstd/target"
	"github.com/scstd/scstd/target/scsi"
)

// EXTENDED COPY (LID1) and RECEIVE COPY RESULTS (SPC-4 6.4, 6.18): the copy
// manager copies block ranges between LUNs of this daemon, named by the
// NAA designator of their Device Identification VPD page.

// Copy manager limits (RECEIVE COPY RESULTS operating parameters).
const (
	xcMaxCSCDs      = 16
	xcMaxSegments   = 64
	xcMaxDescList   = 4096
	xcCSCDLen       = 32
	xcB2BLen        = 28 // block device to block device segment (02h)
	xcHeaderLen     = 16
	xcHeldEntries   = 32 // copy status entries kept per device
	xcCSCDIdent     = 0xe4
	xcSegBlockBlock = 0x02
)

// Additional sense codes of the copy manager.
const (
	ascTooManyCSCDs        scsi.ASC = 0x2606
	ascUnsupportedCSCDType scsi.ASC = 0x2607
	ascTooManySegments     scsi.ASC = 0x2608
	ascUnsupportedSegType  scsi.ASC = 0x2609
	ascCopyTargetNotReach  scsi.ASC = 0x0d02
	ascOperationInProgress scsi.ASC = 0x0016
)

// xcList is a parsed EXTENDED COPY parameter list; its slices alias the
// initiator's data.
type xcList struct {
	listID    byte
	usage     byte   // LIST ID USAGE
	cscds     []byte // CSCD descriptors, xcCSCDLen each
	segs      []byte // segment descriptors, xcB2BLen each
	numCSCDs  int
	numSegs   int
	holdState bool // the copy status is kept for RECEIVE COPY RESULTS
}

func senseParam(asc scsi.ASC, byteOff int) scsi.Sense {
	return scsi.Sense{Key: scsi.SenseIllegalRequest, ASC: asc, FieldPointer: uint16(byteOff), BitPointer: 7, FieldPointerValid: true}
}

// parseXCopy checks the structure of a LID1 parameter list: lengths,
// descriptor counts and types. Targets are resolved by the caller.
func parseXCopy(p []byte) (l xcList, s scsi.Sense, ok bool) {
	if len(p) < xcHeaderLen {
		return l, scsi.SenseParamListLength, false
	}
	l.listID = p[0]
	l.usage = (p[1] >> 3) & 3
	cscdLen := int(binary.BigEndian.Uint16(p[2:]))
	segLen := binary.BigEndian.Uint32(p[8:])
	inline := binary.BigEndian.Uint32(p[12:])
	if uint64(cscdLen)+uint64(segLen) > xcMaxDescList {
		return l, scsi.SenseParamListLength, false
	}
	if uint64(xcHeaderLen)+uint64(cscdLen)+uint64(segLen)+uint64(inline) > uint64(len(p)) {
		return l, scsi.SenseParamListLength, false
	}
	if inline != 0 {
		return l, invalidParam(12, 7), false // no inline data segments
	}
	if l.usage == 3 && l.listID != 0 {
		return l, invalidParam(0, 7), false
	}
	l.holdState = l.usage == 0
	cscds := p[xcHeaderLen : xcHeaderLen+cscdLen]
	segs := p[xcHeaderLen+cscdLen : xcHeaderLen+cscdLen+int(segLen)]
	// CSCD descriptors are 32 bytes but for the IPv6 and IP copy service
	// ones (SPC-4 6.4.5); count them before judging their types.
	for off := 0; off < len(cscds); {
		n := xcCSCDLen
		if t := cscds[off]; t == 0xea || t == 0xeb {
			n = 64
		}
		off += n
		l.numCSCDs++
	}
	if l.numCSCDs > xcMaxCSCDs {
		return l, senseParam(ascTooManyCSCDs, 2), false
	}
	for off := 0; off < len(segs); {
		if off+4 > len(segs) {
			return l, scsi.SenseParamListLength, false
		}
		off += 4 + int(binary.BigEndian.Uint16(segs[off+2:]))
		l.numSegs++
	}
	if l.numSegs > xcMaxSegments {
		return l, senseParam(ascTooManySegments, 8), false
	}
	for off := 0; off < len(cscds); off += xcCSCDLen {
		if cscds[off] != xcCSCDIdent || off+xcCSCDLen > len(cscds) {
			return l, senseParam(ascUnsupportedCSCDType, xcHeaderLen+off), false
		}
		if cscds[off+1]&0x1f != 0 {
			// Only block devices (peripheral type 0) can be copied.
			return l, invalidParam(uint16(xcHeaderLen+off+1), 4), false
		}
	}
	base := xcHeaderLen + cscdLen
	for off := 0; off < len(segs); off += xcB2BLen {
		if segs[off] != xcSegBlockBlock {
			return l, senseParam(ascUnsupportedSegType, base+off), false
		}
		if binary.BigEndian.Uint16(segs[off+2:]) != xcB2BLen-4 || off+xcB2BLen > len(segs) {
			return l, invalidParam(uint16(base+off+2), 7), false
		}
	}
	l.cscds, l.segs = cscds, segs
	return l, scsi.Sense{}, true
}

// naa is the 8-byte NAA designator of the device (VPD 0x83).
func (d *vdev) naa() [8]byte {
	var b [64]byte
	n := d.deviceIDs(b[:])
	var out [8]byte
	copy(out[:], b[n-8:n])
	return out
}

// findByDesignator returns the vdisk whose NAA designator is desig and
// that the session reaches through a LUN (read-only or not), or nil.
func (m *Manager) findByDesignator(s *target.Session, desig []byte) (v *vdev, readOnly bool) {
	if len(desig) != 8 {
		return nil, false
	}
	mapped := map[string]bool{}
	for _, g := range m.core.Groups() {
		if g.Name != s.Group() {
			continue
		}
		for _, l := range g.LUNs {
			mapped[l.Device] = mapped[l.Device] || !l.ReadOnly
		}
	}
	for _, dev := range m.core.Devices() {
		cand, ok := dev.Handler.(*vdev)
		if !ok || cand.devType != scsi.TypeDisk {
			continue
		}
		rw, visible := mapped[cand.name]
		if !visible {
			continue
		}
		if n := cand.naa(); bytes.Equal(n[:], desig) {
			return cand, !rw
		}
	}
	return nil, false
}

// xcopyState keeps the copy status of recent EXTENDED COPY commands for
// RECEIVE COPY RESULTS, per I_T nexus and list identifier.
type xcopyState struct {
	mu   sync.Mutex
	held []xcStatus // most recent last, at most xcHeldEntries
}

type xcStatus struct {
	sess     *target.Session
	listID   byte
	status   byte // 0 in progress, 1 done, 2 done with error
	segments uint16
	kib      uint32
}

func (x *xcopyState) put(st xcStatus) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for i := range x.held {
		if x.held[i].sess == st.sess && x.held[i].listID == st.listID {
			x.held = append(x.held[:i], x.held[i+1:]...)
			break
		}
	}
	if len(x.held) == xcHeldEntries {
		x.held = x.held[1:]
	}
	x.held = append(x.held, st)
}

func (x *xcopyState) get(s *target.Session, id byte) (xcStatus, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, st := range x.held {
		if st.sess == s && st.listID == id {
			return st, true
		}
	}
	return xcStatus{}, false
}

// forget drops the entries of a nexus that went away.
func (x *xcopyState) forget(s *target.Session) {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := x.held[:0]
	for _, st := range x.held {
		if st.sess != s {
			out = append(out, st)
		}
	}
	clear(x.held[len(out):])
	x.held = out
}

var senseCopyAborted = scsi.Sense{Key: scsi.SenseCopyAborted}

func xcParams(c *target.Command) []byte {
	pll := binary.BigEndian.Uint32(c.CDB[10:])
	if uint32(len(c.DataOut)) > pll {
		return c.DataOut[:pll]
	}
	return c.DataOut
}

func execExtendedCopy(d *vdev, c *target.Command) (outcome, scsi.Sense) {
	pll := binary.BigEndian.Uint32(c.CDB[10:])
	c.TransferLen = pll
	if pll == 0 {
		return done, scsi.Sense{}
	}
	l, s, ok := parseXCopy(xcParams(c))
	if !ok {
		return check, s
	}
	if l.holdState {
		if st, ok := d.xcopy.get(c.Session(), l.listID); ok && st.status == 0 {
			return check, scsi.Sense{Key: scsi.SenseIllegalRequest, ASC: ascOperationInProgress}
		}
	}
	return d.runSlow(c, false, extendedCopySlow)
}

// xcTarget is a resolved CSCD.
type xcTarget struct {
	v        *vdev
	readOnly bool
}

func extendedCopySlow(d *vdev, c *target.Command, _ *medium) (outcome, scsi.Sense) {
	l, _, _ := parseXCopy(xcParams(c))
	st := xcStatus{sess: c.Session(), listID: l.listID}
	if l.holdState {
		d.xcopy.put(st) // in progress
	}
	st.status = 1
	outc, sense := d.runCopy(c, l, &st)
	if outc == check {
		st.status = 2
	}
	if l.holdState {
		d.xcopy.put(st)
	}
	return outc, sense
}

func (d *vdev) runCopy(c *target.Command, l xcList, st *xcStatus) (outcome, scsi.Sense) {
	var tgts [xcMaxCSCDs]xcTarget
	for i := 0; i < l.numCSCDs; i++ {
		desc := l.cscds[i*xcCSCDLen:]
		dlen := int(desc[7])
		if desc[5]&0x0f != 3 || dlen != 8 { // designator type NAA
			continue
		}
		if v, ro := d.mgr.findByDesignator(c.Session(), desc[8:8+dlen]); v != nil {
			// The disk block length must be the device's.
			if bl := uint32(desc[29])<<16 | uint32(desc[30])<<8 | uint32(desc[31]); bl != v.blockSize {
				return check, invalidParam(uint16(xcHeaderLen+i*xcCSCDLen+29), 7)
			}
			tgts[i] = xcTarget{v: v, readOnly: ro || (v == d && c.ReadOnly())}
		}
	}
	buf := d.bufs.Get(slowChunk)
	defer d.bufs.Put(buf)
	for i := 0; i < l.numSegs; i++ {
		seg := l.segs[i*xcB2BLen:]
		si, di := int(binary.BigEndian.Uint16(seg[4:])), int(binary.BigEndian.Uint16(seg[6:]))
		if si >= l.numCSCDs || di >= l.numCSCDs || tgts[si].v == nil || tgts[di].v == nil {
			return check, scsi.Sense{Key: scsi.SenseCopyAborted, ASC: ascCopyTargetNotReach}
		}
		src, dst := tgts[si].v, tgts[di].v
		if tgts[di].readOnly || dst.flags.ReadOnly || dst.mode.swp() {
			return check, scsi.Sense{Key: scsi.SenseCopyAborted, ASC: scsi.ASCWriteProtected}
		}
		n := uint64(binary.BigEndian.Uint16(seg[10:]))
		if seg[1]&0x02 != 0 { // DC: the count is in destination blocks
			n = n << dst.shift >> src.shift
		}
		nbytes := n << src.shift
		if nbytes%uint64(dst.blockSize) != 0 {
			return check, senseCopyAborted
		}
		if s, ok := d.copyRange(src, dst, binary.BigEndian.Uint64(seg[12:]), binary.BigEndian.Uint64(seg[20:]), nbytes, *buf); !ok {
			return check, s
		}
		st.segments++
		st.kib += uint32(nbytes >> 10)
	}
	return done, scsi.Sense{}
}

// copyRange copies n bytes from block slba of src to block dlba of dst.
func (d *vdev) copyRange(src, dst *vdev, slba, dlba, n uint64, buf []byte) (scsi.Sense, bool) {
	sm, dm := src.acquire(), dst.acquire()
	defer func() {
		if sm != nil {
			sm.release()
		}
		if dm != nil {
			dm.release()
		}
	}()
	if sm == nil || dm == nil || !src.mediumPresent() || !dst.mediumPresent() {
		return scsi.Sense{Key: scsi.SenseCopyAborted, ASC: ascCopyTargetNotReach}, false
	}
	sb, db := sm.nblocks.Load(), dm.nblocks.Load()
	if slba > sb || n>>src.shift > sb-slba || dlba > db || n>>dst.shift > db-dlba {
		// The range check of a segment (SPC-4 6.4.6.1): the copy
		// manager aborts it; RECEIVE COPY RESULTS shows how far it got.
		return senseCopyAborted, false
	}
	soff, doff := int64(slba<<src.shift), int64(dlba<<dst.shift)
	for n > 0 {
		w := min(n, uint64(len(buf)))
		b := buf[:w]
		if err := sm.readAt(b, soff); err != nil {
			return scsi.Sense{Key: scsi.SenseCopyAborted, ASC: scsi.ASCUnrecoveredReadError}, false
		}
		if err := dm.writeAt(b, doff, false); err != nil {
			return scsi.Sense{Key: scsi.SenseCopyAborted, ASC: scsi.ASCWriteError}, false
		}
		soff += int64(w)
		doff += int64(w)
		n -= w
	}
	if dst.fua(false) {
		if err := dm.sync(); err != nil {
			return scsi.Sense{Key: scsi.SenseCopyAborted, ASC: scsi.ASCWriteError}, false
		}
	}
	return scsi.Sense{}, true
}

// --- RECEIVE COPY RESULTS ---

func execReceiveCopyResults(d *vdev, c *target.Command) (outcome, scsi.Sense) {
	cdb := c.CDB
	alloc := binary.BigEndian.Uint32(cdb[10:])
	switch cdb[1] & 0x1f {
	case 0x00: // COPY STATUS
		st, ok := d.xcopy.get(c.Session(), cdb[2])
		if !ok {
			return invalidField(2, 7)
		}
		var b [12]byte
		binary.BigEndian.PutUint32(b[0:], 8)
		b[4] = st.status
		binary.BigEndian.PutUint16(b[5:], st.segments)
		b[7] = 0xf1 // TRANSFER COUNT UNITS: kibibytes
		binary.BigEndian.PutUint32(b[8:], st.kib)
		setDataIn(c, b[:], alloc)
		return done, scsi.Sense{}
	case 0x03: // OPERATING PARAMETERS
		var b [46]byte
		binary.BigEndian.PutUint32(b[0:], uint32(len(b)-4))
		binary.BigEndian.PutUint16(b[8:], xcMaxCSCDs)
		binary.BigEndian.PutUint16(b[10:], xcMaxSegments)
		binary.BigEndian.PutUint32(b[12:], xcMaxDescList)
		binary.BigEndian.PutUint32(b[16:], 0xffff<<d.shift) // MAXIMUM SEGMENT LENGTH
		binary.BigEndian.PutUint16(b[34:], 1)               // TOTAL CONCURRENT COPIES
		b[36] = 1                                           // MAXIMUM CONCURRENT COPIES
		b[37] = byte(d.shift)                               // DATA SEGMENT GRANULARITY (log2)
		b[43] = 2
		b[44], b[45] = xcSegBlockBlock, xcCSCDIdent
		setDataIn(c, b[:], alloc)
		return done, scsi.Sense{}
	}
	return invalidField(1, 4)
}

// thirdPartyCopyVPD fills the Third-party Copy VPD page (SPC-4 7.8.17)
// body with its Supported Commands descriptor and returns its length.
func thirdPartyCopyVPD(b []byte) int {
	cmds := []byte{
		scsi.OpExtendedCopy, 1, 0x00, // EXTENDED COPY (LID1)
		scsi.OpReceiveCopyResults, 2, 0x00, 0x03, // COPY STATUS, OPERATING PARAMETERS
	}
	binary.BigEndian.PutUint16(b[0:], 0x0001) // Supported Commands
	body := 1 + len(cmds)
	pad := (4 - (4+body)%4) % 4
	binary.BigEndian.PutUint16(b[2:], uint16(body+pad))
	b[4] = byte(len(cmds))
	copy(b[5:], cmds)
	return 4 + body + pad
}
