//go:build rbd

package rbd

/*
#cgo nocallback scstd_aio
#cgo nocallback scstd_reap
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/types.h>
#include <rados/librados.h>
#include <rbd/librbd.h>

enum { scstd_op_read, scstd_op_write, scstd_op_flush };

// scstd_aio creates a completion carrying arg and starts one request on
// it: one cgo crossing per request instead of two. On failure nothing is
// left behind.
static int scstd_aio(rbd_image_t img, int op, uint64_t off, size_t len, char *buf, int wflags, void *arg) {
	rbd_completion_t c;
	int r = rbd_aio_create_completion(arg, NULL, &c);
	if (r < 0)
		return r;
	switch (op) {
	case scstd_op_read:
		r = rbd_aio_read(img, off, len, buf, c);
		break;
	case scstd_op_write:
		r = rbd_aio_write2(img, off, len, buf, c, wflags);
		break;
	default:
		r = rbd_aio_flush(img, c);
	}
	if (r < 0)
		rbd_aio_release(c);
	return r;
}

// scstd_reap takes up to n finished completions off the image's event
// list, stores each one's argument and return value and releases it: one
// cgo crossing per batch instead of three per request plus the poll.
static int scstd_reap(rbd_image_t img, rbd_completion_t *comps, void **args, ssize_t *rets, int n) {
	int got = rbd_poll_io_events(img, comps, n);
	for (int i = 0; i < got; i++) {
		args[i] = rbd_aio_get_arg(comps[i]);
		rets[i] = rbd_aio_get_return_value(comps[i]);
		rbd_aio_release(comps[i]);
	}
	return got;
}
*/
import "C"

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/scstd/scstd/vdisk/backend"
	"golang.org/x/sys/unix"
)

const defaultDepth = 128

// slot is one request in flight, owned by whoever took its index off
// Engine.free until the completion hands it back.
type slot struct {
	req *backend.Request
	// pin keeps req.Buf where librbd saw it until the completion.
	pin runtime.Pinner
	// flushing: a FUA write's data is written and its flush is running.
	flushing bool
}

// Engine implements backend.Engine over one image with rbd_aio_* calls.
// Completions are queued by librbd on the image's event list and signalled
// on an eventfd, which the connection's poller waits for.
type Engine struct {
	im    *Image
	slots []slot
	// args is C memory with one byte per slot: a completion's callback
	// argument points at its slot's byte, so the reaper finds the slot
	// without handing librbd a Go pointer.
	args unsafe.Pointer
	// Reap buffers in C memory, len(slots) entries each, filled by
	// scstd_reap: the completions polled, their arguments and results.
	comps   *C.rbd_completion_t
	reapArg *unsafe.Pointer
	reapRet *C.ssize_t
	efd     int
	poller  *poller

	// mu guards free and waiting. Requests beyond the depth wait in a
	// FIFO; it needs no bound of its own because every request in it is
	// a command its transport already admitted within its own window.
	mu      sync.Mutex
	free    []int32
	waiting []*backend.Request
	head    int // waiting[head:] are still queued

	// outstanding counts requests between Submit and the return of their
	// Done; Close waits for it to reach zero.
	outstanding atomic.Int64
	closed      atomic.Bool
	closeOnce   sync.Once
	closeErr    error
}

func newEngine(im *Image, depth int) (*Engine, error) {
	if depth <= 0 {
		depth = defaultDepth
	}
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	if ret := C.rbd_set_image_notification(im.img, C.int(fd), C.EVENT_TYPE_EVENTFD); ret < 0 {
		unix.Close(fd)
		return nil, errnoErr("image notification for "+im.name, ret)
	}
	n := C.size_t(depth)
	e := &Engine{
		im:      im,
		slots:   make([]slot, depth),
		args:    C.malloc(n),
		comps:   (*C.rbd_completion_t)(C.malloc(n * C.size_t(unsafe.Sizeof(C.rbd_completion_t(nil))))),
		reapArg: (*unsafe.Pointer)(C.malloc(n * C.size_t(unsafe.Sizeof(unsafe.Pointer(nil))))),
		reapRet: (*C.ssize_t)(C.malloc(n * C.size_t(unsafe.Sizeof(C.ssize_t(0))))),
		efd:     fd,
		poller:  im.conn.poller,
		free:    make([]int32, 0, depth),
	}
	for i := depth - 1; i >= 0; i-- {
		e.free = append(e.free, int32(i))
	}
	if err := e.poller.register(e); err != nil {
		e.freeC()
		unix.Close(fd)
		return nil, err
	}
	return e, nil
}

// Name implements backend.Engine.
func (e *Engine) Name() string { return "rbd" }

// Submit implements backend.Engine. It never waits: without a free slot
// the request is queued and started by the completion that frees one.
func (e *Engine) Submit(r *backend.Request) {
	e.outstanding.Add(1)
	if e.closed.Load() {
		r.N, r.Err = 0, backend.ErrClosed
		r.Done(r)
		e.outstanding.Add(-1)
		return
	}
	e.mu.Lock()
	if n := len(e.free); n > 0 {
		i := e.free[n-1]
		e.free = e.free[:n-1]
		e.mu.Unlock()
		e.start(i, r)
		return
	}
	e.waiting = append(e.waiting, r)
	e.mu.Unlock()
}

// release hands slot i to the oldest waiting request, or back to the free
// list; it returns the request to start on i, if any.
func (e *Engine) release(i int32) *backend.Request {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.head == len(e.waiting) {
		e.free = append(e.free, i)
		return nil
	}
	r := e.waiting[e.head]
	e.waiting[e.head] = nil
	e.head++
	switch {
	case e.head == len(e.waiting):
		// Drained: reuse the backing array from its start.
		e.waiting, e.head = e.waiting[:0], 0
	case e.head >= 64 && 2*e.head >= len(e.waiting):
		// Never drained under sustained overload: drop the consumed
		// prefix so that the array does not grow without bound.
		k := copy(e.waiting, e.waiting[e.head:])
		clear(e.waiting[k:])
		e.waiting, e.head = e.waiting[:k], 0
	}
	return r
}

// arg is slot i's completion argument.
func (e *Engine) arg(i int32) unsafe.Pointer { return unsafe.Add(e.args, int(i)) }

// start issues r on slot i.
func (e *Engine) start(i int32, r *backend.Request) {
	s := &e.slots[i]
	s.req = r
	op, n, p := C.int(C.scstd_op_flush), C.size_t(0), (*C.char)(nil)
	switch r.Op {
	case backend.OpRead, backend.OpWrite:
		// An empty write or read is a flush, as for the file engines.
		if len(r.Buf) > 0 {
			op = C.scstd_op_read
			if r.Op == backend.OpWrite {
				op = C.scstd_op_write
			}
			s.pin.Pin(&r.Buf[0])
			n, p = C.size_t(len(r.Buf)), (*C.char)(unsafe.Pointer(&r.Buf[0]))
		}
	case backend.OpFlush:
	default:
		e.finish(i, errnoErr(fmt.Sprintf("rbd aio %s %s", r.Op, e.im.name), -C.EINVAL))
		return
	}
	if ret := C.scstd_aio(e.im.img, op, C.uint64_t(r.Off), n, p, writeFlags(r.FUA), e.arg(i)); ret < 0 {
		e.finish(i, errnoErr(fmt.Sprintf("rbd aio %s %s", r.Op, e.im.name), ret))
	}
}

// finish completes slot i's request with err (nil: the whole buffer moved),
// passes the slot on, and calls Done.
func (e *Engine) finish(i int32, err error) {
	s := &e.slots[i]
	r := s.req
	s.pin.Unpin()
	s.req, s.flushing = nil, false
	if next := e.release(i); next != nil {
		e.start(i, next)
	}
	if err != nil {
		r.N, r.Err = 0, err
	} else {
		r.N, r.Err = len(r.Buf), nil
	}
	r.Done(r)
	e.outstanding.Add(-1)
}

// drain handles the image's completed requests; the poller calls it when
// the eventfd fired.
func (e *Engine) drain() {
	var b [8]byte
	// Resetting the counter first: anything completed after the polls
	// below fires the eventfd again.
	unix.Read(e.efd, b[:])
	n := C.int(len(e.slots))
	args := unsafe.Slice(e.reapArg, len(e.slots))
	rets := unsafe.Slice(e.reapRet, len(e.slots))
	for {
		got := C.scstd_reap(e.im.img, e.comps, e.reapArg, e.reapRet, n)
		for k := range int(max(got, 0)) {
			e.completed(int32(uintptr(args[k])-uintptr(e.args)), int64(rets[k]))
		}
		// A short batch emptied the list.
		if got < n {
			return
		}
	}
}

// completed handles slot i's finished librbd request, whose result is ret.
func (e *Engine) completed(i int32, ret int64) {
	s := &e.slots[i]
	r := s.req
	if ret < 0 {
		e.finish(i, fmt.Errorf("rbd aio %s %s: %w", r.Op, e.im.name, syscall.Errno(-ret)))
		return
	}
	if r.Op == backend.OpWrite && r.FUA && !s.flushing && len(r.Buf) > 0 {
		// FUA: the data is acknowledged; make it durable before the
		// command completes.
		s.flushing = true
		if ret := C.scstd_aio(e.im.img, C.scstd_op_flush, 0, 0, nil, 0, e.arg(i)); ret < 0 {
			e.finish(i, errnoErr("rbd aio flush "+e.im.name, ret))
		}
		return
	}
	if r.Op == backend.OpRead && int(ret) < len(r.Buf) {
		clear(r.Buf[ret:]) // past the end of a shrunk image
	}
	e.finish(i, nil)
}

// Close implements backend.Engine: it fails new requests, waits for the
// submitted ones, flushes and closes the image.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() {
		e.closed.Store(true)
		// In-flight requests finish on the reaper; those still queued are
		// started by their predecessors' completions.
		for e.outstanding.Load() != 0 {
			time.Sleep(time.Millisecond)
		}
		// No drain may run on the image once it is closed.
		e.poller.unregister(e)
		e.closeErr = e.im.closeImage()
		unix.Close(e.efd)
		e.freeC()
	})
	return e.closeErr
}

func (e *Engine) freeC() {
	C.free(e.args)
	C.free(unsafe.Pointer(e.comps))
	C.free(unsafe.Pointer(e.reapArg))
	C.free(unsafe.Pointer(e.reapRet))
}
