//go:build linux

package backend

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Linux native AIO ABI (include/uapi/linux/aio_abi.h), little-endian layout.
const (
	iocbCmdPread  = 0
	iocbCmdPwrite = 1
	iocbCmdFdsync = 3
	iocbFlagResfd = 1 << 0
)

// iocb is struct iocb: 64 bytes.
type iocb struct {
	data      uint64
	key       uint32
	rwFlags   int32
	opcode    uint16
	reqPrio   int16
	fd        uint32
	buf       uint64
	nbytes    uint64
	offset    int64
	reserved2 uint64
	flags     uint32
	resFd     uint32
}

// ioEvent is struct io_event: 32 bytes.
type ioEvent struct {
	data uint64
	obj  uint64
	res  int64
	res2 int64
}

var _ [64]byte = [unsafe.Sizeof(iocb{})]byte{}
var _ [32]byte = [unsafe.Sizeof(ioEvent{})]byte{}

// AIOOptions configures an AIO engine.
type AIOOptions struct {
	// Depth is the number of requests in flight in the kernel; more wait in
	// an overflow list. 0 means 128.
	Depth int
	// Bufs provides aligned bounce buffers for unaligned command buffers.
	Bufs *BufPool
}

type aioSlot struct {
	cb  iocb
	ptr [1]*iocb // the iocb pointer array of an inline io_submit
	req *Request
	buf []byte // memory the kernel reads or writes (req.Buf or bounce)
}

// AIO is a Linux native AIO engine (io_setup/io_submit/io_getevents). It is
// truly asynchronous only on O_DIRECT descriptors. Reads are submitted by
// the caller. Writes go through one submitter goroutine: those queued while
// it is inside io_submit (or waiting to run) go to the kernel together in
// the next call, under one block-layer plug, so that the adjacent writes of
// a sequential stream merge into larger device requests and the device is
// kicked once per batch (a VM exit on virtio). Another goroutine reaps
// completions.
type AIO struct {
	fd  int
	ctx uintptr
	// ev is an eventfd the kernel signals on every completion
	// (IOCB_FLAG_RESFD). Waiting on it through the runtime's netpoller
	// parks only a goroutine, not an OS thread in io_getevents, which
	// keeps completion latency at goroutine-wakeup cost.
	evfd  int
	ev    *os.File
	bufs  *BufPool
	slots []aioSlot
	free  chan int32
	over  overflow

	// Submission queue: slots whose iocb is ready, and the submitter's
	// wake-up (capacity 1: one pending signal covers any number of slots).
	subMu   sync.Mutex
	pending []int32
	kick    chan struct{}
	subDone chan struct{}

	users    atomic.Int64
	inflight atomic.Int64
	closed   atomic.Bool
	closeMu  sync.Mutex
	loopDone chan struct{}
}

// NewAIO creates an AIO context for fd. It fails (typically with ENOSYS,
// EAGAIN or EPERM) when the kernel refuses io_setup; callers then fall back
// to a Pool.
func NewAIO(fd int, o AIOOptions) (*AIO, error) {
	if o.Depth <= 0 {
		o.Depth = 128
	}
	if o.Bufs == nil {
		o.Bufs = NewBufPool(0)
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	var ctx uintptr
	if _, _, e := unix.Syscall(unix.SYS_IO_SETUP, uintptr(o.Depth), uintptr(unsafe.Pointer(&ctx)), 0); e != 0 {
		unix.Close(efd)
		return nil, fmt.Errorf("io_setup: %w", e)
	}
	a := &AIO{
		fd:       fd,
		ctx:      ctx,
		evfd:     efd,
		ev:       os.NewFile(uintptr(efd), "aio-eventfd"),
		bufs:     o.Bufs,
		slots:    make([]aioSlot, o.Depth),
		free:     make(chan int32, o.Depth),
		pending:  make([]int32, 0, o.Depth),
		kick:     make(chan struct{}, 1),
		subDone:  make(chan struct{}),
		loopDone: make(chan struct{}),
	}
	for i := range a.slots {
		s := &a.slots[i]
		s.ptr[0] = &s.cb
		a.free <- int32(i)
	}
	go a.loop()
	go a.submitter()
	return a, nil
}

// Name implements Engine.
func (a *AIO) Name() string { return "aio" }

// Submit implements Engine. It never waits for a completion: without a free
// slot the request is parked and submitted by the reaper.
func (a *AIO) Submit(r *Request) {
	a.users.Add(1)
	defer a.users.Add(-1)
	if a.closed.Load() {
		r.N, r.Err = 0, ErrClosed
		r.Done(r)
		return
	}
	select {
	case idx := <-a.free:
		a.start(idx, r)
	default:
		a.over.push(r)
		a.drain()
	}
}

// drain starts parked requests while slots are free.
func (a *AIO) drain() {
	a.over.mu.Lock()
	for a.over.head != nil {
		select {
		case idx := <-a.free:
			r := a.over.popLocked()
			a.over.mu.Unlock()
			a.start(idx, r)
			a.over.mu.Lock()
		default:
			a.over.mu.Unlock()
			return
		}
	}
	a.over.mu.Unlock()
}

func (a *AIO) start(idx int32, r *Request) {
	s := &a.slots[idx]
	s.req = r
	s.buf = r.Buf
	r.N, r.Err = 0, nil
	if r.Op != OpFlush && !IsAligned(r.Buf, a.bufs.Align()) {
		r.bounce = a.bufs.Get(len(r.Buf))
		s.buf = *r.bounce
		if r.Op == OpWrite {
			copy(s.buf, r.Buf)
		}
	}
	s.cb = iocb{data: uint64(idx), fd: uint32(a.fd), flags: iocbFlagResfd, resFd: uint32(a.evfd)}
	switch r.Op {
	case OpRead:
		s.cb.opcode = iocbCmdPread
	case OpWrite:
		s.cb.opcode = iocbCmdPwrite
		if r.FUA {
			s.cb.rwFlags = unix.RWF_DSYNC
		}
	case OpFlush:
		s.cb.opcode = iocbCmdFdsync
	}
	if r.Op != OpFlush && len(s.buf) > 0 {
		s.cb.buf = uint64(uintptr(unsafe.Pointer(&s.buf[0])))
		s.cb.nbytes = uint64(len(s.buf))
		s.cb.offset = r.Off
	}
	if r.Op != OpFlush && len(s.buf) == 0 {
		a.finish(idx, 0)
		return
	}
	a.inflight.Add(1)
	if r.Op == OpRead {
		// Reads go in at once: a random read gains nothing from a batch and
		// would wait for the goroutine switch.
		one := [1]int32{idx}
		a.submit(one[:], s.ptr[:])
		return
	}
	a.subMu.Lock()
	a.pending = append(a.pending, idx)
	a.subMu.Unlock()
	select {
	case a.kick <- struct{}{}:
	default: // the submitter is already signalled
	}
}

// submitter hands queued iocbs to the kernel, as many per io_submit as have
// accumulated, until Close closes kick.
func (a *AIO) submitter() {
	defer close(a.subDone)
	batch := make([]int32, 0, len(a.slots))
	ptrs := make([]*iocb, 0, len(a.slots))
	for range a.kick {
		for {
			a.subMu.Lock()
			batch, a.pending = a.pending, batch[:0]
			a.subMu.Unlock()
			if len(batch) == 0 {
				break
			}
			ptrs = ptrs[:0]
			for _, idx := range batch {
				ptrs = append(ptrs, &a.slots[idx].cb)
			}
			a.submit(batch, ptrs)
			// The slots (and the buffers their iocbs point to as integers)
			// stay reachable through a until the reaper finishes them.
			clear(ptrs)
		}
	}
}

// submit passes the iocbs of batch to io_submit until all are in the
// kernel; one the kernel refuses completes with its error.
func (a *AIO) submit(batch []int32, ptrs []*iocb) {
	for off := 0; off < len(ptrs); {
		n, _, e := unix.Syscall(unix.SYS_IO_SUBMIT, a.ctx, uintptr(len(ptrs)-off), uintptr(unsafe.Pointer(&ptrs[off])))
		switch {
		case e == unix.EINTR || e == unix.EAGAIN:
			runtime.Gosched()
		case e != 0 || n == 0:
			// io_submit reports an error only for the first iocb.
			if e == 0 {
				e = unix.EIO
			}
			a.inflight.Add(-1)
			a.finish(batch[off], -int64(e))
			off++
		default:
			off += int(n)
		}
	}
}

// finish completes the request in slot idx with the kernel result res.
func (a *AIO) finish(idx int32, res int64) {
	s := &a.slots[idx]
	r := s.req
	buf := s.buf
	s.req, s.buf = nil, nil
	if res < 0 {
		r.Err = syscall.Errno(-res)
	} else {
		r.N = int(res)
		switch r.Op {
		case OpRead:
			if r.N < len(buf) {
				// O_DIRECT read crossing end of file.
				m, err := preadFull(a.fd, buf[r.N:], r.Off+int64(r.N))
				r.N += m
				r.Err = err
			}
		case OpWrite:
			if r.N < len(buf) {
				m, err := pwriteFull(a.fd, buf[r.N:], r.Off+int64(r.N))
				r.N += m
				r.Err = err
				if err == nil && r.FUA {
					r.Err = retryEINTR(func() error { return unix.Fdatasync(a.fd) })
				}
			}
		}
	}
	if r.bounce != nil {
		if r.Op == OpRead {
			copy(r.Buf, *r.bounce)
		}
		a.bufs.Put(r.bounce)
		r.bounce = nil
	}
	a.free <- idx
	r.Done(r)
}

func (a *AIO) loop() {
	defer close(a.loopDone)
	events := make([]ioEvent, len(a.slots))
	var zero unix.Timespec
	var cnt [8]byte
	for {
		// Harvest without blocking; then sleep on the eventfd.
		n, _, e := unix.RawSyscall6(unix.SYS_IO_GETEVENTS, a.ctx, 0, uintptr(len(events)),
			uintptr(unsafe.Pointer(&events[0])), uintptr(unsafe.Pointer(&zero)), 0)
		if e != 0 && e != unix.EINTR {
			// Only a broken context gets here; nothing can complete.
			return
		}
		for i := 0; i < int(n); i++ {
			ev := &events[i]
			a.inflight.Add(-1)
			a.finish(int32(ev.data), ev.res)
		}
		if a.over.n.Load() != 0 {
			a.drain()
		}
		if n > 0 {
			continue
		}
		if a.closed.Load() && a.inflight.Load() == 0 && a.over.n.Load() == 0 {
			return
		}
		if _, err := a.ev.Read(cnt[:]); err != nil {
			return
		}
	}
}

// Close implements Engine: it waits for every submitted request.
func (a *AIO) Close() error {
	a.closeMu.Lock()
	defer a.closeMu.Unlock()
	if a.closed.Swap(true) {
		return nil
	}
	for a.users.Load() != 0 {
		runtime.Gosched()
	}
	// Wake the reaper so it sees the close once the last request is done.
	one := [8]byte{1}
	if _, err := unix.Write(a.evfd, one[:]); err != nil {
		return fmt.Errorf("aio close: %w", err)
	}
	<-a.loopDone
	// Nothing is queued any more: every request completed.
	close(a.kick)
	<-a.subDone
	_, _, e := unix.Syscall(unix.SYS_IO_DESTROY, a.ctx, 0, 0)
	a.ev.Close()
	if e != 0 {
		return fmt.Errorf("io_destroy: %w", e)
	}
	return nil
}
