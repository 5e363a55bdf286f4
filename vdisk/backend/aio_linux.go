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
	ptr [1]*iocb // the iocb pointer array io_submit reads
	req *Request
	buf []byte // memory the kernel reads or writes (req.Buf or bounce)
}

// AIO is a Linux native AIO engine (io_setup/io_submit/io_getevents). It is
// truly asynchronous only on O_DIRECT descriptors; one goroutine reaps
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
		loopDone: make(chan struct{}),
	}
	for i := range a.slots {
		s := &a.slots[i]
		s.ptr[0] = &s.cb
		a.free <- int32(i)
	}
	go a.loop()
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
	for {
		n, _, e := unix.Syscall(unix.SYS_IO_SUBMIT, a.ctx, 1, uintptr(unsafe.Pointer(&s.ptr[0])))
		if e == unix.EINTR || e == unix.EAGAIN {
			runtime.Gosched()
			continue
		}
		if e != 0 || n != 1 {
			a.inflight.Add(-1)
			if e == 0 {
				e = unix.EIO
			}
			a.finish(idx, -int64(e))
		}
		// Keep buffers reachable for the garbage collector while the
		// kernel holds their address only as an integer in the iocb.
		runtime.KeepAlive(s)
		return
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
	_, _, e := unix.Syscall(unix.SYS_IO_DESTROY, a.ctx, 0, 0)
	a.ev.Close()
	if e != 0 {
		return fmt.Errorf("io_destroy: %w", e)
	}
	return nil
}
