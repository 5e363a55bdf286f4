//go:build rbd

package rbd

/*
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <rados/librados.h>
#include <rbd/librbd.h>
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/scstd/scstd/vdisk/backend"
	"golang.org/x/sys/unix"
)

const (
	defaultDepth = 128
	// queueLen bounds requests waiting for a free slot; beyond it Submit
	// blocks (back-pressure). The iSCSI layer bounds commands per session
	// far below this.
	queueLen = 4096
)

// slot is one request in flight. Slots are owned by whoever took their
// index from Engine.free.
type slot struct {
	req  *backend.Request
	comp C.rbd_completion_t
	// pin keeps req.Buf where librbd saw it until the completion.
	pin runtime.Pinner
	// flushing: a FUA write's data is written and its flush is running.
	flushing bool
}

// Engine implements backend.Engine over one image with rbd_aio_* calls.
// Completions are queued by librbd on the image's event list and signalled
// on an eventfd, which one reaper goroutine reads through the netpoller.
type Engine struct {
	im    *Image
	slots []slot
	// args is C memory with one byte per slot: a completion's callback
	// argument points at its slot's byte, so the reaper finds the slot
	// without handing librbd a Go pointer.
	args  unsafe.Pointer
	comps *C.rbd_completion_t // poll buffer, len(slots) entries
	free  chan int32
	queue chan *backend.Request
	efd   *os.File

	// outstanding counts requests between Submit and the return of their
	// Done; Close waits for it to reach zero.
	outstanding atomic.Int64
	closed      atomic.Bool
	closeOnce   sync.Once
	closeErr    error
	reaped      chan struct{}
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
	e := &Engine{
		im:     im,
		slots:  make([]slot, depth),
		args:   C.malloc(C.size_t(depth)),
		comps:  (*C.rbd_completion_t)(C.malloc(C.size_t(depth) * C.size_t(unsafe.Sizeof(C.rbd_completion_t(nil))))),
		free:   make(chan int32, depth),
		queue:  make(chan *backend.Request, queueLen),
		efd:    os.NewFile(uintptr(fd), "rbd-eventfd"),
		reaped: make(chan struct{}),
	}
	for i := range depth {
		e.free <- int32(i)
	}
	go e.reap()
	return e, nil
}

// Name implements backend.Engine.
func (e *Engine) Name() string { return "rbd" }

// Submit implements backend.Engine. It never waits for I/O; it blocks
// only while queueLen requests already wait for a slot.
func (e *Engine) Submit(r *backend.Request) {
	e.outstanding.Add(1)
	if e.closed.Load() {
		r.N, r.Err = 0, backend.ErrClosed
		r.Done(r)
		e.outstanding.Add(-1)
		return
	}
	e.queue <- r
	e.kick()
}

// kick starts queued requests while slots are free. A slot taken for an
// empty queue is handed back, then the queue is checked again: a request
// queued meanwhile by a Submit that found no slot (this one held it) is
// started here rather than left behind.
func (e *Engine) kick() {
	for {
		var i int32
		select {
		case i = <-e.free:
		default:
			return
		}
		select {
		case r := <-e.queue:
			e.start(i, r)
		default:
			e.free <- i
			if len(e.queue) == 0 {
				return
			}
		}
	}
}

// arg is slot i's completion argument.
func (e *Engine) arg(i int32) unsafe.Pointer { return unsafe.Add(e.args, int(i)) }

// start issues r on slot i.
func (e *Engine) start(i int32, r *backend.Request) {
	s := &e.slots[i]
	s.req = r
	if ret := C.rbd_aio_create_completion(e.arg(i), nil, &s.comp); ret < 0 {
		e.finish(i, errnoErr("rbd_aio_create_completion", ret))
		return
	}
	var ret C.int
	off := C.uint64_t(r.Off)
	switch r.Op {
	case backend.OpRead, backend.OpWrite:
		if len(r.Buf) == 0 {
			ret = C.rbd_aio_flush(e.im.img, s.comp)
			break
		}
		s.pin.Pin(&r.Buf[0])
		p, n := (*C.char)(unsafe.Pointer(&r.Buf[0])), C.size_t(len(r.Buf))
		if r.Op == backend.OpRead {
			ret = C.rbd_aio_read(e.im.img, off, n, p, s.comp)
		} else {
			ret = C.rbd_aio_write2(e.im.img, off, n, p, s.comp, writeFlags(r.FUA))
		}
	case backend.OpFlush:
		ret = C.rbd_aio_flush(e.im.img, s.comp)
	default:
		ret = -C.EINVAL
	}
	if ret < 0 {
		C.rbd_aio_release(s.comp)
		e.finish(i, errnoErr(fmt.Sprintf("rbd aio %s %s", r.Op, e.im.name), ret))
	}
}

// finish completes slot i's request with err (nil: the whole buffer moved),
// frees the slot, starts waiting requests and calls Done.
func (e *Engine) finish(i int32, err error) {
	s := &e.slots[i]
	r := s.req
	s.pin.Unpin()
	s.req, s.comp, s.flushing = nil, nil, false
	e.free <- i
	e.kick()
	if err != nil {
		r.N, r.Err = 0, err
	} else {
		r.N, r.Err = len(r.Buf), nil
	}
	r.Done(r)
	e.outstanding.Add(-1)
}

// reap runs until Close closes the eventfd: each wakeup drains the image's
// completed requests.
func (e *Engine) reap() {
	defer close(e.reaped)
	var b [8]byte
	n := C.int(len(e.slots))
	comps := unsafe.Slice(e.comps, len(e.slots))
	for {
		if _, err := e.efd.Read(b[:]); err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			// Not expected from an eventfd the netpoller waits on; keep
			// the image served by polling rather than stall its requests.
			time.Sleep(time.Millisecond)
		}
		for {
			got := C.rbd_poll_io_events(e.im.img, e.comps, n)
			if got <= 0 {
				break
			}
			for _, c := range comps[:got] {
				e.completed(c)
			}
		}
	}
}

// completed handles one finished librbd completion.
func (e *Engine) completed(c C.rbd_completion_t) {
	i := int32(uintptr(C.rbd_aio_get_arg(c)) - uintptr(e.args))
	ret := C.rbd_aio_get_return_value(c)
	C.rbd_aio_release(c)
	s := &e.slots[i]
	r := s.req
	if ret < 0 {
		e.finish(i, fmt.Errorf("rbd aio %s %s: %w", r.Op, e.im.name, syscall.Errno(-ret)))
		return
	}
	if r.Op == backend.OpWrite && r.FUA && !s.flushing {
		// FUA: the data is acknowledged; make it durable before the
		// command completes.
		s.flushing = true
		s.comp = nil
		if ret := C.rbd_aio_create_completion(e.arg(i), nil, &s.comp); ret < 0 {
			e.finish(i, errnoErr("rbd_aio_create_completion", ret))
			return
		}
		if ret := C.rbd_aio_flush(e.im.img, s.comp); ret < 0 {
			C.rbd_aio_release(s.comp)
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
		// started by their completions' kicks.
		for e.outstanding.Load() != 0 {
			time.Sleep(time.Millisecond)
		}
		e.closeErr = e.im.closeImage()
		e.efd.Close()
		<-e.reaped
		C.free(e.args)
		C.free(unsafe.Pointer(e.comps))
	})
	return e.closeErr
}
