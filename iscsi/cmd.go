package iscsi

import (
	"fmt"
	"runtime"

	"github.com/scstd/scstd/iscsi/pdu"
	"github.com/scstd/scstd/target"
	"github.com/scstd/scstd/target/scsi"
	"github.com/sirupsen/logrus"
)

// maxTransfer bounds the write buffer one command may ask for.
const maxTransfer = 64 << 20

// maxImmediate bounds the immediate SCSI commands a connection has
// outstanding (from arrival until the writer sent the response). They are
// outside the CmdSN window, so without it an initiator could make the
// target hold any number of write buffers and unread responses. Beyond it
// a command ends at once with TASK SET FULL, as SCST answers a session over
// its queue depth.
const maxImmediate = 16

// Sense codes for data-phase failures at ErrorRecoveryLevel 0.
const (
	ascDataPhaseError   scsi.ASC = 0x4b00
	ascTooMuchWriteData scsi.ASC = 0x4b02
	ascDataOffsetError  scsi.ASC = 0x4b05
	ascCRCError         scsi.ASC = 0x4703 // INFORMATION UNIT iuCRC ERROR DETECTED
)

// taskState is where a command is in its life.
type taskState uint8

const (
	stRecv      taskState = iota // waiting for write data
	stReady                      // all data in, waiting for its turn
	stFailed                     // failed locally, response pending
	stSubmitted                  // handed to the core
	stAborted                    // aborted before submission
)

// r2tSeq is one outstanding R2T.
type r2tSeq struct {
	ttt, off, length, recv, dataSN uint32
}

// task is the per-command state; it embeds the core's Command so that one
// pooled object carries a command from the reader through the core to the
// writer without further allocation.
type task struct {
	target.Command
	c *conn

	itt       uint32
	cmdSN     uint32
	immediate bool // I bit: not ordered, does not consume CmdSN
	immSlot   bool // holds one of the connection's maxImmediate slots
	inOrder   bool // reached ExpCmdSN (or immediate)
	state     taskState
	local     bool // completed without the core
	lun       uint64
	edtl      uint32
	bidiLen   uint32
	bidi      bool
	cdb       [16]byte
	cdbExt    []byte // CDB longer than 16 bytes
	buf       []byte // write buffer from Session.GetBuffer

	// Write data reception.
	received      uint32
	unsolExpected bool // unsolicited Data-Out PDUs still to come
	unsolEnd      uint32
	unsolNext     uint32
	unsolDataSN   uint32
	nextR2TOff    uint32
	r2tSN         uint32
	r2ts          []r2tSeq

	// Writer-owned.
	dataInSN uint32

	senseArr [scsi.FixedLen + 8]byte
	senseSeg [2 + 252]byte
	doneFn   func(*target.Command)
}

func newTask(c *conn) any {
	t := &task{c: c}
	t.doneFn = t.done // bound once per pooled task, not per command
	return t
}

// done is Command.Done: runs on a core goroutine. The CmdSN window reopens
// only when the writer takes the response (emitTask), so an initiator that
// does not read its responses cannot make completed commands pile up beyond
// QueuedCommands, however fast the backend completes them.
func (t *task) done(*target.Command) {
	c := t.c
	c.inflight.Add(-1)
	// A command that completes inside its own Submit is queued (see
	// sendInline).
	if c.submitting.Load() == t || !c.sendInline(t) {
		c.enqueueTaskWait(t, false)
	}
}

func (c *conn) getTask() *task {
	t := c.pool.Get().(*task)
	r2ts := t.r2ts[:0]
	*t = task{c: c, doneFn: t.doneFn, r2ts: r2ts}
	return t
}

func (c *conn) lookupTask(itt uint32) *task {
	c.tmu.Lock()
	t := c.tasks[itt]
	c.tmu.Unlock()
	return t
}

// releaseTask returns buffers and the task after its response went out.
func (c *conn) releaseTask(t *task) {
	if t.state == stSubmitted {
		t.Command.Release()
	} else if t.buf != nil && c.sess.core != nil {
		c.sess.core.PutBuffer(t.buf)
	}
	t.buf = nil
	if t.immSlot {
		c.immOut.Add(-1)
	}
	c.unregister(t)
	c.pool.Put(t)
}

// unregister removes the task from the ITT registry (a newer command may
// already use the tag).
func (c *conn) unregister(t *task) {
	c.tmu.Lock()
	if c.tasks[t.itt] == t {
		delete(c.tasks, t.itt)
	}
	c.tmu.Unlock()
}

// onSCSICmd receives a SCSI Command PDU with its immediate data.
func (c *conn) onSCSICmd(h *pdu.Header) error {
	s := c.sess
	if s.discovery {
		if err := c.rd.DiscardData(); err != nil {
			return err
		}
		c.reject(&h.BHS, rejectProtocol)
		return nil
	}
	itt := h.ITT()
	flags := h.Flags()
	write := flags&pdu.FlagWrite != 0
	read := flags&pdu.FlagRead != 0
	edtl := h.EDTL()
	dsl := h.DataSegmentLength()
	ext, err := h.ExtendedCDB()
	if err != nil {
		return err
	}
	bidiLen, bidi, err := h.BidiReadLength()
	if err != nil {
		return err
	}
	if dsl > 0 && (!write || dsl > edtl || !s.params.ImmediateData || dsl > s.params.FirstBurstLength) {
		return fmt.Errorf("immediate data of %d bytes not allowed (EDTL %d, W %v)", dsl, edtl, write)
	}
	// Malformed commands end the connection even outside the window.
	adm := c.admit(&h.BHS)
	if adm == admDrop {
		return c.rd.DiscardData()
	}
	if itt == pdu.ReservedTag || c.lookupTask(itt) != nil {
		// RFC 7143 §11.17.1: a new command with the tag of a running one.
		if err := c.rd.DiscardData(); err != nil {
			return err
		}
		c.reject(&h.BHS, rejectTaskInProgress)
		return c.sequence(adm, &h.BHS, heldPDU{noop: true})
	}
	t := c.getTask()
	t.itt = itt
	t.cmdSN = h.CmdSN()
	t.immediate = h.Immediate()
	t.lun = h.LUN()
	t.edtl = edtl
	t.bidi = bidi && read && write
	t.bidiLen = bidiLen
	copy(t.cdb[:], h.CDB())
	cmd := &t.Command
	cmd.CDB = t.cdb[:]
	if len(ext) > 0 {
		t.cdbExt = append(append(make([]byte, 0, 16+len(ext)), t.cdb[:]...), ext...)
		cmd.CDB = t.cdbExt
	}
	cmd.LUN = t.lun
	cmd.Attr = target.TaskAttr(h.Attr())
	cmd.Tag = itt
	cmd.Read = read
	cmd.Write = write
	cmd.ExpectedLen = edtl
	cmd.Done = t.doneFn
	c.tmu.Lock()
	c.tasks[itt] = t
	c.tmu.Unlock()

	if t.immediate {
		if c.immOut.Load() >= maxImmediate {
			if err := c.rd.DiscardData(); err != nil {
				return err
			}
			t.state = stFailed
			cmd.Status = scsi.StatusTaskSetFull
			return c.sequence(adm, &h.BHS, heldPDU{task: t})
		}
		c.immOut.Add(1)
		t.immSlot = true
	}
	if write && edtl > 0 {
		if edtl > maxTransfer {
			if err := c.rd.DiscardData(); err != nil {
				return err
			}
			c.failTask(t, scsi.Sense{Key: scsi.SenseIllegalRequest, ASC: scsi.ASCInvalidFieldInCDB})
			return c.sequence(adm, &h.BHS, heldPDU{task: t})
		}
		t.buf = s.core.GetBuffer(int(edtl))
		if err := c.rd.ReadData(t.buf[:dsl]); err != nil {
			return err // digest error in a command: ERL 0 drops the connection
		}
		if !s.params.DataPDUInOrder && dsl < edtl {
			// Out-of-order PDUs are only range-checked, so a misbehaving
			// initiator could leave holes: make them zeros rather than
			// whatever the pooled buffer held before.
			clear(t.buf[dsl:])
		}
		t.received = dsl
		t.unsolEnd = min(s.params.FirstBurstLength, edtl)
		t.unsolNext = dsl
		t.unsolExpected = flags&pdu.FlagFinal == 0 && !s.params.InitialR2T && dsl < t.unsolEnd
		t.nextR2TOff = dsl
	} else if err := c.rd.DiscardData(); err != nil {
		return err
	}
	if c.log.Logger.IsLevelEnabled(logrus.TraceLevel) {
		c.log.WithFields(logrus.Fields{"itt": itt, "cmdsn": t.cmdSN, "op": t.cdb[0], "edtl": edtl, "lun": t.lun}).Trace("scsi command")
	}
	return c.sequence(adm, &h.BHS, heldPDU{task: t})
}

// startTask runs when the command's CmdSN turn has come.
func (c *conn) startTask(t *task) {
	t.inOrder = true
	if !t.immediate {
		c.submitQ = append(c.submitQ, t)
	}
	if t.state == stRecv && !t.unsolExpected {
		c.issueR2Ts(t)
	}
	c.checkReady(t)
}

// checkReady moves a task whose data is complete on to submission.
func (c *conn) checkReady(t *task) {
	// Offsets are checked against the R2T and unsolicited windows, so the
	// byte count tells when the buffer is complete.
	if t.state == stRecv && (t.buf == nil || t.received == t.edtl) {
		t.state = stReady
	}
	if !t.inOrder {
		return
	}
	if t.immediate {
		if t.state == stReady || t.state == stFailed {
			c.submit(t)
		}
		return
	}
	c.pump()
}

// pump submits ready tasks in CmdSN order, as Session.Submit requires.
func (c *conn) pump() {
	n := 0
	for n < len(c.submitQ) {
		t := c.submitQ[n]
		if t.state != stReady && t.state != stFailed {
			break
		}
		c.submitQ[n] = nil
		n++
		c.submit(t)
	}
	if n > 0 {
		m := copy(c.submitQ, c.submitQ[n:])
		clear(c.submitQ[m:])
		c.submitQ = c.submitQ[:m]
	}
}

// submit hands the task to the core, or sends its local failure.
func (c *conn) submit(t *task) {
	if t.state == stFailed {
		t.local = true // the writer owns it from here
		// Non-immediate failures are bounded by the CmdSN window; immediate
		// ones only by the writer queue, so the reader waits for room.
		c.enqueueTaskWait(t, t.immediate)
		return
	}
	t.state = stSubmitted
	if t.buf != nil {
		t.Command.DataOut = t.buf[:t.edtl]
	}
	// Without a data digest the writer only hands DataIn to writev, so it
	// may point into a mapped backing file.
	t.Command.ZeroCopy = !c.sess.params.DataDigest
	c.inflight.Add(1)
	// The task may be finished and recycled before Submit returns.
	c.submitting.Store(t)
	c.sess.core.Submit(&t.Command)
	c.submitting.Store(nil)
}

// failTask completes a command with CHECK CONDITION without executing it.
func (c *conn) failTask(t *task, s scsi.Sense) {
	if t.state != stRecv && t.state != stReady {
		return
	}
	if c.log.Logger.IsLevelEnabled(logrus.DebugLevel) {
		c.log.WithFields(logrus.Fields{"itt": t.itt, "asc": fmt.Sprintf("%04x", uint16(s.ASC))}).Debug("command failed in data phase")
	}
	t.state = stFailed
	t.r2ts = t.r2ts[:0]
	t.unsolExpected = false
	t.Command.Status = scsi.StatusCheckCondition
	t.Command.Sense = s.Append(t.senseArr[:0], false)
	c.checkReady(t)
}

// issueR2Ts sends R2Ts up to MaxOutstandingR2T, each for at most
// MaxBurstLength bytes.
func (c *conn) issueR2Ts(t *task) {
	if t.buf == nil || t.state != stRecv {
		return
	}
	p := &c.sess.params
	maxOut := max(int(p.MaxOutstandingR2T), 1)
	burst := max(p.MaxBurstLength, 512)
	sent := false
	for len(t.r2ts) < maxOut && t.nextR2TOff < t.edtl {
		n := min(burst, t.edtl-t.nextR2TOff)
		r := r2tSeq{ttt: c.newTTT(), off: t.nextR2TOff, length: n}
		t.r2ts = append(t.r2ts, r)
		o := c.newOut()
		o.hdr.SetOpcode(pdu.OpR2T, false)
		o.hdr.SetFinal(true)
		o.hdr.SetLUN(t.lun)
		o.hdr.SetITT(t.itt)
		o.hdr.SetTTT(r.ttt)
		o.hdr.SetR2TSN(t.r2tSN)
		o.hdr.SetBufferOffset(r.off)
		o.hdr.SetDesiredLength(n)
		t.r2tSN++
		t.nextR2TOff += n
		c.enqueueOut(o, true)
		sent = true
	}
	if sent {
		// The writer was made ready on this goroutine's processor and would
		// run only once the reader blocks; while more Data-Out is buffered
		// the initiator would wait for this R2T meanwhile.
		runtime.Gosched()
	}
}

// onDataOut receives one Data-Out PDU straight into the command buffer.
func (c *conn) onDataOut(h *pdu.Header) error {
	t := c.lookupTask(h.ITT())
	if t == nil || t.state != stRecv || t.buf == nil {
		// Unknown tag, or data for a command that already failed or was
		// aborted: ERL 0 just drops it.
		return c.rd.DiscardData()
	}
	n := h.DataSegmentLength()
	off := h.BufferOffset()
	dsn := h.DataSN()
	final := h.Final()
	inOrder := c.sess.params.DataPDUInOrder
	if uint64(off)+uint64(n) > uint64(t.edtl) {
		c.failTask(t, scsi.Sense{Key: scsi.SenseAbortedCommand, ASC: ascTooMuchWriteData})
		return c.rd.DiscardData()
	}
	if h.TTT() == pdu.ReservedTag {
		if !t.unsolExpected || off+n > t.unsolEnd || inOrder && (dsn != t.unsolDataSN || off != t.unsolNext) {
			c.failTask(t, dataSense(dsn != t.unsolDataSN))
			return c.rd.DiscardData()
		}
		if err := c.readInto(h, t, off, n); err != nil {
			return err
		}
		if t.state != stRecv {
			return nil
		}
		t.unsolDataSN++
		t.unsolNext = off + n
		t.received += n
		if final || t.unsolNext == t.unsolEnd {
			t.unsolExpected = false
			t.nextR2TOff = t.unsolNext
			if t.inOrder {
				c.issueR2Ts(t)
			}
		}
		c.checkReady(t)
		return nil
	}
	i := t.findR2T(h.TTT())
	if i < 0 {
		c.failTask(t, scsi.Sense{Key: scsi.SenseAbortedCommand, ASC: ascDataPhaseError})
		return c.rd.DiscardData()
	}
	r := &t.r2ts[i]
	if off < r.off || off+n > r.off+r.length || inOrder && (dsn != r.dataSN || off != r.off+r.recv) {
		c.failTask(t, dataSense(dsn != r.dataSN))
		return c.rd.DiscardData()
	}
	if err := c.readInto(h, t, off, n); err != nil {
		return err
	}
	if t.state != stRecv {
		return nil
	}
	r.recv += n
	r.dataSN++
	t.received += n
	if final || r.recv == r.length {
		if r.recv != r.length {
			c.failTask(t, scsi.Sense{Key: scsi.SenseAbortedCommand, ASC: ascDataPhaseError})
			return nil
		}
		t.r2ts = append(t.r2ts[:i], t.r2ts[i+1:]...)
		c.issueR2Ts(t)
	}
	c.checkReady(t)
	return nil
}

func dataSense(badSN bool) scsi.Sense {
	if badSN {
		return scsi.Sense{Key: scsi.SenseAbortedCommand, ASC: ascDataPhaseError}
	}
	return scsi.Sense{Key: scsi.SenseAbortedCommand, ASC: ascDataOffsetError}
}

// readInto reads a Data-Out segment into the task buffer at off. A data
// digest error rejects the PDU and fails the command (ERL 0 cannot ask for
// the data again).
func (c *conn) readInto(h *pdu.Header, t *task, off, n uint32) error {
	err := c.rd.ReadData(t.buf[off : off+n])
	if err == pdu.ErrDataDigest {
		c.reject(&h.BHS, rejectDataDigest)
		c.failTask(t, scsi.Sense{Key: scsi.SenseAbortedCommand, ASC: ascCRCError})
		return nil
	}
	return err
}

func (t *task) findR2T(ttt uint32) int {
	for i := range t.r2ts {
		if t.r2ts[i].ttt == ttt {
			return i
		}
	}
	return -1
}

// --- writer side: Data-In and SCSI Response ---

// emitTask builds the Data-In PDUs and/or the SCSI Response of a finished
// task. Aborted commands get no response (RFC 7143 §4.2.3.3 via the TMF).
func (c *conn) emitTask(t *task) {
	// The tag is free once the response is on its way: an initiator may
	// reuse it as soon as it sees the response, possibly before this
	// writev returns.
	c.unregister(t)
	if !t.immediate {
		// The command's CmdSN slot is free once its response is on its
		// way; stamped below, the response itself announces it.
		c.sess.maxCmdSN.Add(1)
	}
	cmd := &t.Command
	if cmd.Aborted || t.state == stAborted {
		return
	}
	p := &c.sess.params
	var flags byte
	var resid uint32
	if !t.local {
		tl := cmd.TransferLen
		if tl == 0 && cmd.Read && len(cmd.DataIn) > 0 && !cmd.Write {
			tl = uint32(len(cmd.DataIn))
		}
		switch {
		case tl > cmd.ExpectedLen:
			flags, resid = pdu.FlagOver, tl-cmd.ExpectedLen
		case tl < cmd.ExpectedLen:
			flags, resid = pdu.FlagUnder, cmd.ExpectedLen-tl
		}
	}
	var send uint32
	if cmd.Read && !t.local {
		limit := cmd.ExpectedLen
		if t.bidi {
			limit = t.bidiLen
		}
		send = min(uint32(len(cmd.DataIn)), limit)
	}
	statusInData := send > 0 && cmd.Status == scsi.StatusGood && len(cmd.Sense) == 0 && !t.bidi
	mxdsl := max(c.mxdsl.Load(), 512)
	burst := max(p.MaxBurstLength, 512)
	var off uint32
	for off < send {
		burstEnd := min(off+burst, send)
		for off < burstEnd {
			n := min(mxdsl, burstEnd-off)
			var h pdu.BHS
			h.SetOpcode(pdu.OpDataIn, false)
			var f byte
			last := off+n == send
			if off+n == burstEnd {
				f = pdu.FlagFinal
			}
			if last && statusInData {
				f |= pdu.FlagStatus | flags
				h.SetStatus(cmd.Status)
				h.SetResidualCount(resid)
			}
			h.SetFlags(f)
			h.SetLUN(t.lun)
			h.SetITT(t.itt)
			h.SetTTT(pdu.ReservedTag)
			c.stamp(&h, last && statusInData)
			h.SetDataSN(t.dataInSN)
			h.SetBufferOffset(off)
			t.dataInSN++
			c.iov = c.enc.Append(c.iov, c.frame(), &h, cmd.DataIn[off:off+n])
			off += n
		}
	}
	if statusInData {
		return
	}
	var h pdu.BHS
	h.SetOpcode(pdu.OpSCSIResp, false)
	h.SetFlags(pdu.FlagFinal | flags)
	h.SetStatus(cmd.Status)
	h.SetITT(t.itt)
	c.stamp(&h, true)
	h.SetExpDataSN(t.dataInSN + t.r2tSN)
	h.SetResidualCount(resid)
	if t.bidi && uint32(len(cmd.DataIn)) < t.bidiLen {
		h.SetFlags(h.Flags() | pdu.FlagBiUnder)
		h.SetBidiResidualCount(t.bidiLen - uint32(len(cmd.DataIn)))
	}
	var data []byte
	if len(cmd.Sense) > 0 {
		n := copy(t.senseSeg[2:], cmd.Sense)
		t.senseSeg[0], t.senseSeg[1] = byte(n>>8), byte(n)
		data = t.senseSeg[:2+n]
	}
	c.iov = c.enc.Append(c.iov, c.frame(), &h, data)
}
