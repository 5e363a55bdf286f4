package iscsi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/scstd/scstd/iscsi/pdu"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

const (
	// loginTimeout bounds the whole login phase of a connection.
	loginTimeout = 30 * time.Second
	// maxCtrlData bounds the data segment of NOP-Out and Text PDUs we
	// buffer (they are copied; SCSI data goes into command buffers).
	maxCtrlData = 64 << 10
	// loginReadBuf and readBuf size a connection's read buffer before and
	// after login: login PDUs carry at most 8 KiB of data, and thousands of
	// connections that never log in must not cost 64 KiB each.
	loginReadBuf = 8 << 10
	readBuf      = 64 << 10
	// maxQueued is the writer backlog at which the reader stops reading.
	maxQueued = 4096
	// writerFrames is how many PDUs one writev carries at most.
	writerFrames = 128
	// drainTimeout bounds the wait for in-flight commands at logout.
	drainTimeout = 30 * time.Second
)

// Reject reasons (RFC 7143 §11.17.1).
const (
	rejectDataDigest     = 0x02
	rejectProtocol       = 0x04
	rejectNotSupported   = 0x05
	rejectTaskInProgress = 0x07
	rejectInvalidField   = 0x09
)

var (
	errLogout = errors.New("logout")
	errDrain  = errors.New("server shutdown")
)

// outPDU is a response that is not SCSI data: built by the reader (or a TMF
// goroutine) and sent by the writer, which fills StatSN/ExpCmdSN/MaxCmdSN.
type outPDU struct {
	hdr     pdu.BHS
	data    []byte
	advance bool // consumes a StatSN (status-bearing response)
	small   [pdu.BHSLen]byte
}

// qent is one writer queue entry: a control PDU or a completed task.
type qent struct {
	out  *outPDU
	task *task
}

// conn is one TCP connection. The reader goroutine (serve) owns login, the
// CmdSN window, task data reception and R2T issue; the writer goroutine
// sends what is queued; the core calls Command.Done from its own
// goroutines, which queue the response or, when nothing is queued before
// it, send it themselves without waiting (sendInline). StatSN and the
// socket's write side belong to whoever holds wmu.
type conn struct {
	srv  *Server
	nc   net.Conn
	log  *logrus.Entry
	rd   *pdu.Reader
	enc  *pdu.Encoder
	sess *session
	cid  uint16
	rip  net.IP

	// Writer queue.
	qmu     sync.Mutex
	qcond   sync.Cond // writer waits for work
	space   sync.Cond // reader waits for room
	queue   []qent
	spare   []qent
	qclosed bool
	// resume: an inline send left PDUs in iov for the writer to finish.
	resume  bool
	freeOut []*outPDU
	wdone   chan struct{}

	// wmu guards the fields below up to tmu: held by the writer while it
	// emits and flushes a batch, and by a core goroutine sending inline.
	wmu sync.Mutex
	// raw is the socket for non-blocking inline sends (nil: none).
	raw syscall.RawConn
	// unsent are tasks whose PDUs an inline send left in iov; the writer
	// releases them once it has sent those.
	unsent []*task
	// writev is tryFlush's call on the raw socket, bound once (a closure
	// made per call would be allocated); iovecs and the result fields are
	// its scratch: x/sys's Writev allocates its own vector on every call.
	writev func(fd uintptr) bool
	iovecs []unix.Iovec
	wn     int
	werr   error
	statSN uint32
	dead   bool
	// frames is allocated by the writer: connections that never log in
	// do not pay for it.
	frames  *[writerFrames]pdu.Frame
	nframes int
	iov     [][]byte
	wbuf    net.Buffers
	rspTO   time.Duration
	// wdeadline is the write deadline last set on the socket.
	wdeadline time.Time

	// Task registry by ITT; the writer removes finished tasks.
	tmu   sync.Mutex
	tasks map[uint32]*task
	pool  sync.Pool

	// Reader-owned.
	held     map[uint32]heldPDU
	submitQ  []*task
	text     textState
	hdr      pdu.Header
	inflight atomic.Int32 // submitted to the core, Done not yet called
	// submitting is the task the reader is handing to Session.Submit: if
	// it completes there, it is queued, not sent inline (see sendInline).
	submitting atomic.Pointer[task]
	immOut     atomic.Int32 // immediate SCSI commands holding a slot (maxImmediate)

	ttt   atomic.Uint32
	mxdsl atomic.Uint32 // max data per PDU we send (initiator's MRDSL)

	// NOP-In pings.
	pingMu       sync.Mutex
	pingTimer    *time.Timer
	pingTTT      uint32
	pingPending  bool
	pingDeadline time.Time
	lastPong     time.Time
	nopInterval  time.Duration
	nopTimeout   time.Duration

	closed    chan struct{}
	closeOnce sync.Once
	draining  atomic.Bool
	drainMu   sync.Mutex
	drainCtx  context.Context
	reading   atomic.Bool
}

// heldPDU is a command that arrived ahead of ExpCmdSN (or a placeholder for
// a CmdSN a TMF declared received).
type heldPDU struct {
	task *task
	ctrl *ctrlPDU
	noop bool
}

// ctrlPDU is a copied non-SCSI request kept while it waits for its CmdSN.
type ctrlPDU struct {
	hdr  pdu.BHS
	data []byte
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{
		srv:    s,
		nc:     nc,
		rip:    remoteIP(nc.RemoteAddr()),
		rd:     pdu.NewReader(nc, loginReadBuf),
		enc:    pdu.NewEncoder(),
		tasks:  map[uint32]*task{},
		held:   map[uint32]heldPDU{},
		wdone:  make(chan struct{}),
		closed: make(chan struct{}),
		rspTO:  90 * time.Second,
	}
	c.qcond.L = &c.qmu
	if sc, ok := nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
			c.writev = c.rawWritev
		}
	}
	c.space.L = &c.qmu
	c.pool.New = func() any { return newTask(c) }
	c.log = s.log.WithField("peer", nc.RemoteAddr().String())
	return c
}

// serve runs the connection: login, then the full feature phase.
func (c *conn) serve() {
	defer c.srv.removeConn(c)
	c.nc.SetReadDeadline(time.Now().Add(loginTimeout))
	sess, err := c.login()
	if err != nil {
		if !errors.Is(err, io.EOF) {
			c.log.WithError(err).Info("login failed")
		}
		c.nc.Close()
		close(c.wdone)
		return
	}
	c.nc.SetReadDeadline(time.Time{})
	c.rd.Grow(readBuf)
	if c.draining.Load() {
		c.nc.SetReadDeadline(time.Now())
	}
	c.log = c.log.WithFields(logrus.Fields{"session": fmt.Sprintf("%x", sess.sid()), "initiator": sess.initiator})
	if sess.discovery {
		c.log.Debug("discovery session")
	} else {
		c.log.WithFields(logrus.Fields{"target": sess.targetName, "hd": sess.params.HeaderDigest, "dd": sess.params.DataDigest}).Info("session established")
	}
	go c.writer()
	c.startPings()
	err = c.readLoop()
	c.teardown(err)
}

// readLoop reads and dispatches PDUs until the connection ends. A panic
// while handling one connection's input is turned into an error so that it
// only ends this connection (and is logged with its stack).
func (c *conn) readLoop() (err error) {
	defer func() {
		if r := recover(); r != nil {
			c.log.WithField("stack", string(debug.Stack())).Errorf("panic in connection reader: %v", r)
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	for {
		if err := c.rd.ReadHeader(&c.hdr); err != nil {
			if c.draining.Load() {
				return errDrain
			}
			return err
		}
		c.reading.Store(true)
		err := c.dispatch(&c.hdr)
		c.reading.Store(false)
		if err != nil {
			if c.draining.Load() && isTimeout(err) {
				return errDrain
			}
			return err
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded)
}

// dispatch handles one received PDU whose header is in h.
func (c *conn) dispatch(h *pdu.Header) error {
	if c.log.Logger.IsLevelEnabled(logrus.TraceLevel) {
		c.log.WithFields(logrus.Fields{"op": h.Opcode().String(), "itt": h.ITT(), "dsl": h.DataSegmentLength()}).Trace("rx")
	}
	switch h.Opcode() {
	case pdu.OpSCSICmd:
		return c.onSCSICmd(h)
	case pdu.OpDataOut:
		return c.onDataOut(h)
	case pdu.OpNOPOut, pdu.OpTextReq, pdu.OpTMFReq, pdu.OpLogoutReq:
		return c.onCtrl(h)
	case pdu.OpSNACKReq:
		// ErrorRecoveryLevel 0 has no SNACK support (RFC 7143 §11.16).
		if err := c.rd.DiscardData(); err != nil {
			return err
		}
		c.reject(&h.BHS, rejectProtocol)
		return nil
	case pdu.OpLoginReq:
		return fmt.Errorf("login request in full feature phase")
	default:
		if err := c.rd.DiscardData(); err != nil {
			return err
		}
		c.reject(&h.BHS, rejectNotSupported)
		return nil
	}
}

// admission is what the CmdSN window says about a PDU.
type admission uint8

const (
	admNow admission = iota
	admHold
	admDrop
)

func (c *conn) admit(h *pdu.BHS) admission {
	if h.Immediate() {
		return admNow
	}
	sn := h.CmdSN()
	exp := c.sess.expCmdSN.Load()
	// In the window iff ExpCmdSN <= CmdSN <= MaxCmdSN; a closed window
	// (MaxCmdSN = ExpCmdSN-1) admits nothing.
	if serialLE(exp, sn) && serialLE(sn, c.sess.maxCmdSN.Load()) {
		if sn == exp {
			return admNow
		}
		if _, dup := c.held[sn]; !dup {
			return admHold
		}
	}
	// Outside the window: RFC 7143 §4.2.2.1 says silently ignore.
	if c.log.Logger.IsLevelEnabled(logrus.DebugLevel) {
		c.log.WithFields(logrus.Fields{"cmdsn": sn, "expcmdsn": exp, "maxcmdsn": c.sess.maxCmdSN.Load()}).Debug("CmdSN outside window, dropped")
	}
	return admDrop
}

// sequence runs or parks a PDU according to its admission; after an
// in-order command it runs the parked ones that became in order.
func (c *conn) sequence(adm admission, h *pdu.BHS, p heldPDU) error {
	switch adm {
	case admHold:
		c.held[h.CmdSN()] = p
		return nil
	case admDrop:
		return nil
	}
	if h.Immediate() {
		return c.process(p, true)
	}
	c.sess.expCmdSN.Add(1)
	if err := c.process(p, false); err != nil {
		return err
	}
	return c.drainHeld()
}

// drainHeld runs parked commands that are now in order.
func (c *conn) drainHeld() error {
	for {
		exp := c.sess.expCmdSN.Load()
		q, ok := c.held[exp]
		if !ok {
			return nil
		}
		delete(c.held, exp)
		c.sess.expCmdSN.Add(1)
		if err := c.process(q, false); err != nil {
			return err
		}
	}
}

// process runs one in-order (or immediate) command.
func (c *conn) process(p heldPDU, immediate bool) error {
	switch {
	case p.task != nil:
		c.startTask(p.task)
		return nil
	case p.ctrl != nil:
		err := c.handleCtrl(&p.ctrl.hdr, p.ctrl.data)
		if !immediate {
			c.sess.maxCmdSN.Add(1)
		}
		return err
	default: // noop placeholder
		if !immediate {
			c.sess.maxCmdSN.Add(1)
		}
		return nil
	}
}

// onCtrl reads a NOP-Out/Text/TMF/Logout request and sequences it.
func (c *conn) onCtrl(h *pdu.Header) error {
	n := h.DataSegmentLength()
	if n > maxCtrlData {
		return fmt.Errorf("%v data segment of %d bytes", h.Opcode(), n)
	}
	if h.Opcode() == pdu.OpNOPOut && h.ITT() == pdu.ReservedTag {
		// A NOP-Out answering our ping, or an unacknowledged ping: no
		// response and no CmdSN consumed (it must be immediate).
		if err := c.rd.DiscardData(); err != nil {
			return err
		}
		c.pong(h.TTT())
		return nil
	}
	var data []byte
	if n > 0 {
		data = make([]byte, n)
		if err := c.rd.ReadData(data); err != nil {
			return err
		}
	}
	adm := c.admit(&h.BHS)
	if adm == admNow && h.Immediate() {
		return c.handleCtrl(&h.BHS, data)
	}
	return c.sequence(adm, &h.BHS, heldPDU{ctrl: &ctrlPDU{hdr: h.BHS, data: data}})
}

func (c *conn) handleCtrl(h *pdu.BHS, data []byte) error {
	switch h.Opcode() {
	case pdu.OpNOPOut:
		o := c.newOut()
		o.hdr.SetOpcode(pdu.OpNOPIn, false)
		o.hdr.SetFinal(true)
		o.hdr.SetLUN(h.LUN())
		o.hdr.SetITT(h.ITT())
		o.hdr.SetTTT(pdu.ReservedTag)
		o.data = data
		o.advance = true
		c.enqueueOut(o, true)
		return nil
	case pdu.OpTextReq:
		return c.onText(h, data)
	case pdu.OpTMFReq:
		c.onTMF(h)
		return nil
	case pdu.OpLogoutReq:
		return c.onLogout(h)
	}
	return nil
}

// reject queues a Reject carrying the offending header.
func (c *conn) reject(h *pdu.BHS, reason byte) {
	if c.log.Logger.IsLevelEnabled(logrus.DebugLevel) {
		c.log.WithFields(logrus.Fields{"op": h.Opcode().String(), "itt": h.ITT(), "reason": reason}).Debug("reject")
	}
	o := c.newOut()
	o.hdr.SetOpcode(pdu.OpReject, false)
	o.hdr.SetFinal(true)
	o.hdr.SetReason(reason)
	o.hdr.SetITT(pdu.ReservedTag)
	o.small = *h
	o.data = o.small[:]
	o.advance = true
	c.enqueueOut(o, true)
}

// --- writer queue ---

func (c *conn) newOut() *outPDU {
	c.qmu.Lock()
	var o *outPDU
	if n := len(c.freeOut); n > 0 {
		o = c.freeOut[n-1]
		c.freeOut = c.freeOut[:n-1]
	}
	c.qmu.Unlock()
	if o == nil {
		return &outPDU{}
	}
	*o = outPDU{}
	return o
}

// enqueueOut queues a control PDU; wait applies back-pressure to the
// reader when the peer does not read its responses.
func (c *conn) enqueueOut(o *outPDU, wait bool) {
	c.enqueue(qent{out: o}, wait)
}

// enqueueTaskWait queues a finished task. Core goroutines never wait (the
// CmdSN window and maxImmediate bound what they complete); the reader waits
// for room like enqueueOut.
func (c *conn) enqueueTaskWait(t *task, wait bool) {
	if !c.enqueue(qent{task: t}, wait) {
		c.releaseTask(t)
	}
}

// enqueue appends e to the writer's queue, first waiting for room when
// wait is set. It reports false when the queue is closed (e not queued).
func (c *conn) enqueue(e qent, wait bool) bool {
	c.qmu.Lock()
	for wait && len(c.queue) >= maxQueued && !c.qclosed {
		c.space.Wait()
	}
	if c.qclosed {
		c.qmu.Unlock()
		return false
	}
	c.queue = append(c.queue, e)
	c.qcond.Signal()
	c.qmu.Unlock()
	return true
}

// closeQueue stops the writer once it has sent what is queued.
func (c *conn) closeQueue() {
	c.qmu.Lock()
	c.qclosed = true
	c.qcond.Broadcast()
	c.space.Broadcast()
	c.qmu.Unlock()
}

// writer sends queued PDUs, coalescing everything queued into as few
// writev calls as possible, and finishes what inline sends left.
func (c *conn) writer() {
	defer close(c.wdone)
	c.wmu.Lock()
	c.frames = new([writerFrames]pdu.Frame)
	c.iov = make([][]byte, 0, 3*writerFrames)
	c.wmu.Unlock()
	var batch []qent
	var unsent []*task
	for {
		c.qmu.Lock()
		for len(c.queue) == 0 && !c.resume && !c.qclosed {
			c.qcond.Wait()
		}
		if len(c.queue) == 0 && !c.resume {
			c.qmu.Unlock()
			// Closed. An inline send that began before the close may
			// still leave PDUs for the writer: wait it out.
			c.wmu.Lock()
			c.qmu.Lock()
			more := c.resume
			c.qmu.Unlock()
			c.wmu.Unlock()
			if more {
				continue
			}
			return
		}
		c.qmu.Unlock()
		// The batch is taken with wmu held, so that no inline send can
		// overtake a PDU queued before it.
		c.wmu.Lock()
		c.qmu.Lock()
		batch, c.queue = c.queue, c.spare[:0]
		c.resume = false
		c.space.Broadcast()
		c.qmu.Unlock()

		for i := range batch {
			e := &batch[i]
			if e.task != nil {
				c.emitTask(e.task)
			} else {
				c.emitOut(e.out)
			}
		}
		c.flush()
		unsent, c.unsent = c.unsent, unsent[:0]
		c.wmu.Unlock()
		c.qmu.Lock()
		for i := range batch {
			if o := batch[i].out; o != nil {
				o.data = nil
				c.freeOut = append(c.freeOut, o)
			}
		}
		c.qmu.Unlock()
		for i := range batch {
			if t := batch[i].task; t != nil {
				c.releaseTask(t)
			}
		}
		for _, t := range unsent {
			c.releaseTask(t)
		}
		clear(unsent)
		clear(batch)
		c.qmu.Lock()
		c.spare = batch[:0]
		c.qmu.Unlock()
	}
}

// sendInline sends a finished task's response from the goroutine that
// completed it asynchronously (an engine's completion goroutine) when
// nothing is queued before it. Handing it to the writer costs a goroutine
// wake-up, and the scheduler wakes an idle thread for it (a file LUN's 4k
// writes: +25 % IOPS inline). Commands completed by the reader itself,
// inside Submit (reads of cached pages), are queued: the writer then sends
// them while the reader goes on parsing, in batches (four sessions of 4k
// random reads lost 20-25 % when the reader sent them inline). It never
// waits: the write does not block, and what the socket does not take is
// left in iov for the writer, with the task. It reports false when the
// task must be queued instead.
func (c *conn) sendInline(t *task) bool {
	if c.raw == nil || !c.wmu.TryLock() {
		return false
	}
	c.qmu.Lock()
	idle := len(c.queue) == 0 && !c.qclosed && !c.resume
	c.qmu.Unlock()
	if !idle || c.frames == nil || c.dead || len(c.iov) != 0 || !c.fitsInline(t) {
		c.wmu.Unlock()
		return false
	}
	c.emitTask(t)
	if c.tryFlush() {
		c.wmu.Unlock()
		c.releaseTask(t)
		return true
	}
	c.unsent = append(c.unsent, t)
	c.qmu.Lock()
	c.resume = true
	c.qcond.Signal()
	c.qmu.Unlock()
	c.wmu.Unlock()
	return true
}

// fitsInline reports whether t's response surely takes fewer PDUs than
// the frames of one flush, so that emitting it never flushes (which
// would block).
func (c *conn) fitsInline(t *task) bool {
	n := uint32(len(t.Command.DataIn))
	mx := max(c.mxdsl.Load(), 512)
	burst := max(c.sess.params.MaxBurstLength, 512)
	return n/mx+n/burst+3 <= writerFrames
}

// tryFlush writes iov without waiting for the socket and reports whether
// all of it went out; the rest stays in iov for flush.
func (c *conn) tryFlush() bool {
	if len(c.iov) == 0 || c.dead {
		c.resetIOV()
		return true
	}
	c.iovecs = c.iovecs[:0]
	for _, b := range c.iov {
		if len(b) > 0 {
			v := unix.Iovec{Base: &b[0]}
			v.SetLen(len(b))
			c.iovecs = append(c.iovecs, v)
		}
	}
	c.armWriteDeadline()
	err := c.raw.Write(c.writev)
	clear(c.iovecs)
	n := c.wn
	if err == nil {
		err = c.werr
	}
	c.werr = nil
	switch {
	case err == unix.EAGAIN || err == unix.EINTR:
		return false
	case err != nil:
		c.writeFailed(err)
		c.resetIOV()
		return true
	}
	c.consume(n)
	if len(c.iov) == 0 {
		c.resetIOV()
		return true
	}
	return false
}

// rawWritev is c.writev: one writev(2) of iovecs, never waiting for room.
func (c *conn) rawWritev(fd uintptr) bool {
	c.wn, c.werr = 0, nil
	if len(c.iovecs) == 0 {
		return true
	}
	r, _, e := unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&c.iovecs[0])), uintptr(len(c.iovecs)))
	if e != 0 {
		c.werr = e
		return true
	}
	c.wn = int(r)
	return true
}

// consume drops the first n bytes of iov.
func (c *conn) consume(n int) {
	k := 0
	for k < len(c.iov) && n >= len(c.iov[k]) {
		n -= len(c.iov[k])
		k++
	}
	if k < len(c.iov) {
		c.iov[k] = c.iov[k][n:]
	}
	m := copy(c.iov, c.iov[k:])
	clear(c.iov[m:])
	c.iov = c.iov[:m]
}

// frame returns storage for one more PDU header, flushing when full.
func (c *conn) frame() *pdu.Frame {
	if c.nframes == writerFrames {
		c.flush()
	}
	f := &c.frames[c.nframes]
	c.nframes++
	return f
}

// stamp fills the sequence numbers every target PDU carries.
func (c *conn) stamp(h *pdu.BHS, advance bool) {
	h.SetStatSN(c.statSN)
	if advance {
		c.statSN++
	}
	h.SetExpCmdSN(c.sess.expCmdSN.Load())
	h.SetMaxCmdSN(c.sess.maxCmdSN.Load())
}

func (c *conn) emitOut(o *outPDU) {
	c.stamp(&o.hdr, o.advance)
	c.iov = c.enc.Append(c.iov, c.frame(), &o.hdr, o.data)
}

func (c *conn) flush() {
	if len(c.iov) > 0 && !c.dead {
		c.armWriteDeadline()
		// WriteTo consumes the slice it is called on; a field (not a local,
		// which would escape) keeps the writev path allocation-free.
		c.wbuf = c.iov
		_, err := c.wbuf.WriteTo(c.nc)
		c.wbuf = nil
		if err != nil {
			c.writeFailed(err)
		}
	}
	c.resetIOV()
}

// armWriteDeadline keeps the socket's write deadline RspTimeout/2 to
// RspTimeout ahead: a flush must finish within it, and re-arming it (a
// runtime timer update) only when half of it is used keeps that off the
// per-batch path. Inline sends need it too, although they never wait:
// the runtime fails any write on a socket whose deadline has passed.
func (c *conn) armWriteDeadline() {
	if now := time.Now(); c.wdeadline.Sub(now) < c.rspTO/2 {
		c.wdeadline = now.Add(c.rspTO)
		c.nc.SetWriteDeadline(c.wdeadline)
	}
}

func (c *conn) resetIOV() {
	clear(c.iov)
	c.iov = c.iov[:0]
	c.nframes = 0
}

// writeFailed marks the connection dead after a failed send; what is
// still to be sent on it is dropped.
func (c *conn) writeFailed(err error) {
	c.dead = true
	if !c.isClosed() {
		c.log.WithError(err).Info("connection write failed")
	}
	c.nc.Close()
}

func (c *conn) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// --- NOP-In pings ---

func (c *conn) startPings() {
	if c.nopInterval <= 0 {
		return
	}
	c.pingMu.Lock()
	c.lastPong = time.Now()
	c.pingTimer = time.AfterFunc(c.nopInterval, c.pingTick)
	c.pingMu.Unlock()
}

// pingTick sends a NOP-In ping when the interval elapsed and closes the
// connection when a ping stays unanswered past NopInTimeout.
func (c *conn) pingTick() {
	c.pingMu.Lock()
	defer c.pingMu.Unlock()
	if c.isClosed() || c.pingTimer == nil {
		return
	}
	now := time.Now()
	if c.pingPending {
		if now.Before(c.pingDeadline) {
			c.pingTimer.Reset(c.pingDeadline.Sub(now))
			return
		}
		c.log.WithField("timeout", c.nopTimeout).Warn("NOP-In ping not answered, closing connection")
		c.abort()
		return
	}
	if next := c.lastPong.Add(c.nopInterval); now.Before(next) {
		c.pingTimer.Reset(next.Sub(now))
		return
	}
	c.pingPending = true
	c.pingTTT = c.newTTT()
	c.pingDeadline = now.Add(c.nopTimeout)
	o := c.newOut()
	o.hdr.SetOpcode(pdu.OpNOPIn, false)
	o.hdr.SetFinal(true)
	o.hdr.SetITT(pdu.ReservedTag)
	o.hdr.SetTTT(c.pingTTT)
	c.enqueueOut(o, false)
	c.pingTimer.Reset(c.nopTimeout)
}

func (c *conn) pong(ttt uint32) {
	c.pingMu.Lock()
	if c.pingPending && ttt == c.pingTTT {
		c.pingPending = false
		c.lastPong = time.Now()
	}
	c.pingMu.Unlock()
}

func (c *conn) stopPings() {
	c.pingMu.Lock()
	if c.pingTimer != nil {
		c.pingTimer.Stop()
		c.pingTimer = nil
	}
	c.pingMu.Unlock()
}

// newTTT returns a target transfer tag, never the reserved value.
func (c *conn) newTTT() uint32 {
	for {
		if v := c.ttt.Add(1); v != pdu.ReservedTag {
			return v
		}
	}
}

// --- teardown ---

// abort forces the connection down (bad peer, shutdown timeout).
func (c *conn) abort() {
	c.closeOnce.Do(func() { close(c.closed) })
	c.nc.Close()
}

// beginShutdown makes the reader stop at the next PDU boundary and drain.
func (c *conn) beginShutdown(ctx context.Context) {
	c.drainMu.Lock()
	c.drainCtx = ctx
	c.drainMu.Unlock()
	c.draining.Store(true)
	c.nc.SetReadDeadline(time.Now())
}

// waitInflight waits until the core finished every submitted command.
func (c *conn) waitInflight(ctx context.Context) bool {
	for c.inflight.Load() > 0 {
		select {
		case <-ctx.Done():
			return false
		case <-c.closed:
			return false
		case <-time.After(2 * time.Millisecond):
		}
	}
	return true
}

// teardown ends the connection and its session.
func (c *conn) teardown(reason error) {
	c.stopPings()
	graceful := false
	switch {
	case errors.Is(reason, errLogout):
		graceful = true
	case errors.Is(reason, errDrain):
		c.drainMu.Lock()
		ctx := c.drainCtx
		c.drainMu.Unlock()
		graceful = c.waitInflight(ctx)
		if graceful {
			c.asyncDrop()
		}
	case errors.Is(reason, io.EOF), c.isClosed():
		c.log.Debug("connection closed by peer")
	default:
		c.log.WithError(reason).Info("closing connection")
	}
	if !graceful {
		c.closeOnce.Do(func() { close(c.closed) })
		c.nc.Close()
	}
	c.dropLocalTasks()
	if c.sess.core != nil {
		// Aborts what is still running; their Done calls release them.
		c.sess.core.Close()
	}
	c.closeQueue()
	<-c.wdone
	c.closeOnce.Do(func() { close(c.closed) })
	c.nc.Close()
	c.srv.removeSession(c.sess)
	close(c.sess.ended)
	if !c.sess.discovery {
		c.log.Info("session closed")
	}
}

// asyncDrop tells the initiator the target drops the session (shutdown).
func (c *conn) asyncDrop() {
	o := c.newOut()
	o.hdr.SetOpcode(pdu.OpAsyncMsg, false)
	o.hdr.SetFinal(true)
	o.hdr.SetITT(pdu.ReservedTag)
	o.hdr.SetAsyncEvent(3) // target will drop all connections of the session
	c.enqueueOut(o, false)
}

// stat renders the connection for iscsi/session.
func (c *conn) stat(s *session) ConnStat {
	st := ConnStat{CID: c.cid, RemoteIP: c.rip}
	st.HeaderDigest = digestName(s.params.HeaderDigest)
	st.DataDigest = digestName(s.params.DataDigest)
	if c.isClosed() {
		st.State = "closing"
		return st
	}
	if c.reading.Load() {
		st.State += "read_processing "
	}
	c.qmu.Lock()
	if len(c.queue) > 0 {
		st.State += "in_write_list "
	}
	c.qmu.Unlock()
	if s.reinstating.Load() {
		st.State += "reinstating "
	}
	if st.State == "" {
		st.State = "established idle "
	}
	return st
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
