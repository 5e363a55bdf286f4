package backend

import (
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// PoolOptions configures a Pool.
type PoolOptions struct {
	// Workers is the number of blocking pread/pwrite goroutines (each holds
	// an OS thread while in a syscall). 0 means 8.
	Workers int
	// Depth is the queue length before Submit blocks. 0 means 256.
	Depth int
	// Direct is set when the file was opened with O_DIRECT: unaligned
	// buffers then go through an aligned bounce buffer from Bufs.
	Direct bool
	Bufs   *BufPool
}

// Pool is the default engine: a bounded pool of goroutines running
// pread/pwrite/fdatasync on one file descriptor.
type Pool struct {
	fd     int
	direct bool
	bufs   *BufPool
	queue  chan *Request
	wg     sync.WaitGroup
	// users counts Submit calls in progress so Close can close the queue
	// without racing a send.
	users  atomic.Int64
	closed atomic.Bool
	noRWF  atomic.Bool // pwritev2(RWF_DSYNC) unsupported: pwrite+fdatasync
	// noNowait: preadv2(RWF_NOWAIT) unsupported, so every read goes to a worker.
	noNowait atomic.Bool
	// memBacked: the file lives in memory (tmpfs), where I/O never waits
	// for a device.
	memBacked bool
	closeMu   sync.Mutex
	over      overflow
}

// NewPool starts a pool on fd. The caller keeps the file open until Close
// returned.
func NewPool(fd int, o PoolOptions) *Pool {
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.Depth <= 0 {
		o.Depth = 256
	}
	if o.Bufs == nil {
		o.Bufs = NewBufPool(0)
	}
	p := &Pool{fd: fd, direct: o.Direct, bufs: o.Bufs, queue: make(chan *Request, o.Depth)}
	var st unix.Statfs_t
	if unix.Fstatfs(fd, &st) == nil && (st.Type == unix.TMPFS_MAGIC || st.Type == unix.RAMFS_MAGIC) {
		p.memBacked = true
	}
	p.wg.Add(o.Workers)
	for i := 0; i < o.Workers; i++ {
		go p.worker()
	}
	return p
}

// Name implements Engine.
func (p *Pool) Name() string { return "pool" }

// Submit implements Engine.
func (p *Pool) Submit(r *Request) {
	p.users.Add(1)
	if p.closed.Load() {
		p.users.Add(-1)
		r.N, r.Err = 0, ErrClosed
		r.Done(r)
		return
	}
	if p.tryInline(r) {
		p.users.Add(-1)
		return
	}
	// Submit runs on completion paths too (a finished command lets the
	// core start the next one), so it must never wait for a worker: when
	// the queue is full the request goes to the overflow list.
	select {
	case p.queue <- r:
	default:
		p.over.push(r)
		p.drain()
	}
	p.users.Add(-1)
}

// inlineMax bounds the reads Submit tries to serve itself. A page-cache hit
// of this size costs a few microseconds, less than handing the request to a
// worker goroutine and waking the completion side from there.
const inlineMax = 64 << 10

// tryInline completes a small buffered read at once when its data is in the
// page cache: preadv2(RWF_NOWAIT) fails with EAGAIN instead of blocking on
// the disk, so the submitting goroutine (the connection reader) never waits
// for I/O. On a memory file system (tmpfs) small reads and writes are always
// done inline. It reports whether r was completed.
func (p *Pool) tryInline(r *Request) bool {
	if r.Op == OpFlush || p.direct || len(r.Buf) == 0 || len(r.Buf) > inlineMax {
		return false
	}
	var iov unix.Iovec
	if p.memBacked {
		// tmpfs has no RWF_NOWAIT, but it has no disk either: its reads
		// and writes are memory copies.
		p.do(r, &iov)
		r.Done(r)
		return true
	}
	if r.Op != OpRead || p.noNowait.Load() {
		return false
	}
	iov.Base = &r.Buf[0]
	iov.SetLen(len(r.Buf))
	n, _, e := unix.Syscall6(unix.SYS_PREADV2, uintptr(p.fd), uintptr(unsafe.Pointer(&iov)), 1,
		uintptr(r.Off), 0, unix.RWF_NOWAIT)
	switch {
	case e == 0 && int(n) == len(r.Buf):
		r.N, r.Err = int(n), nil
		r.Done(r)
		return true
	case e == unix.EOPNOTSUPP || e == unix.EINVAL || e == unix.ENOSYS:
		p.noNowait.Store(true)
	}
	// EAGAIN (not cached), a short read (end of file, partly cached) or an
	// error: a worker does the whole read the usual way.
	return false
}

// drain moves overflow requests into the queue while it has room.
func (p *Pool) drain() {
	p.over.mu.Lock()
	for p.over.head != nil {
		select {
		case p.queue <- p.over.head:
			p.over.popLocked()
		default:
			p.over.mu.Unlock()
			return
		}
	}
	p.over.mu.Unlock()
}

// Close implements Engine: queued requests still run.
func (p *Pool) Close() error {
	p.closeMu.Lock()
	defer p.closeMu.Unlock()
	if p.closed.Swap(true) {
		return nil
	}
	for p.users.Load() != 0 {
		runtime.Gosched()
	}
	// Requests parked in the overflow list still run before the workers
	// see the closed queue.
	for p.over.n.Load() != 0 {
		p.drain()
		runtime.Gosched()
	}
	close(p.queue)
	p.wg.Wait()
	return nil
}

func (p *Pool) worker() {
	defer p.wg.Done()
	// One iovec per worker keeps pwritev2 allocation-free.
	var iov unix.Iovec
	for r := range p.queue {
		p.do(r, &iov)
		r.Done(r)
		if p.over.n.Load() != 0 {
			p.drain()
		}
	}
}

func (p *Pool) do(r *Request, iov *unix.Iovec) {
	r.N, r.Err = 0, nil
	if r.Op == OpFlush {
		r.Err = retryEINTR(func() error { return unix.Fdatasync(p.fd) })
		return
	}
	buf := r.Buf
	if p.direct && !IsAligned(buf, p.bufs.Align()) {
		r.bounce = p.bufs.Get(len(buf))
		if r.Op == OpWrite {
			copy(*r.bounce, buf)
		}
		buf = *r.bounce
		defer func() {
			if r.Op == OpRead {
				copy(r.Buf, *r.bounce)
			}
			p.bufs.Put(r.bounce)
			r.bounce = nil
		}()
	}
	switch r.Op {
	case OpRead:
		r.N, r.Err = preadFull(p.fd, buf, r.Off)
	case OpWrite:
		r.N, r.Err = p.write(buf, r.Off, r.FUA, iov)
	}
}

func (p *Pool) write(b []byte, off int64, fua bool, iov *unix.Iovec) (int, error) {
	if fua && !p.noRWF.Load() {
		n, err := pwritev2DSync(p.fd, b, off, iov)
		switch err {
		case nil:
			if n == len(b) {
				return n, nil
			}
			// Short write: finish the rest below and sync explicitly.
			m, err := pwriteFull(p.fd, b[n:], off+int64(n))
			if err != nil {
				return n + m, err
			}
			return n + m, retryEINTR(func() error { return unix.Fdatasync(p.fd) })
		case unix.ENOSYS, unix.EOPNOTSUPP, unix.EINVAL:
			p.noRWF.Store(true)
		default:
			return n, err
		}
	}
	n, err := pwriteFull(p.fd, b, off)
	if err == nil && fua {
		err = retryEINTR(func() error { return unix.Fdatasync(p.fd) })
	}
	return n, err
}

// pwritev2DSync issues one pwritev2(RWF_DSYNC) with a caller-owned iovec so
// that no slice of iovecs is allocated per call.
func pwritev2DSync(fd int, b []byte, off int64, iov *unix.Iovec) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	iov.Base = &b[0]
	iov.SetLen(len(b))
	for {
		n, _, e := unix.Syscall6(unix.SYS_PWRITEV2, uintptr(fd), uintptr(unsafe.Pointer(iov)), 1,
			uintptr(off), 0, unix.RWF_DSYNC)
		if e == unix.EINTR {
			continue
		}
		iov.Base = nil
		if e != 0 {
			return 0, e
		}
		return int(n), nil
	}
}

// preadFull reads len(b) bytes at off; bytes past end of file read as zeros
// (a file can shrink under a LUN until resync_size).
func preadFull(fd int, b []byte, off int64) (int, error) {
	n := 0
	for n < len(b) {
		m, err := unix.Pread(fd, b[n:], off+int64(n))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		if m == 0 {
			clear(b[n:])
			return len(b), nil
		}
		n += m
	}
	return n, nil
}

func pwriteFull(fd int, b []byte, off int64) (int, error) {
	n := 0
	for n < len(b) {
		m, err := unix.Pwrite(fd, b[n:], off+int64(n))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		if m == 0 {
			return n, syscall.EIO
		}
		n += m
	}
	return n, nil
}

func retryEINTR(f func() error) error {
	for {
		if err := f(); err != unix.EINTR {
			return err
		}
	}
}
