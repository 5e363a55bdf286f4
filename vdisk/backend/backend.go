// Package backend moves blocks between command buffers and the backing store
// of a virtual disk. Every engine implements the same small asynchronous
// interface: the caller fills a Request, Submit queues it and the engine calls
// Request.Done exactly once when the I/O finished. Engines never copy data
// except through an aligned bounce buffer when O_DIRECT needs one.
package backend

import (
	"errors"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Op is the operation of a Request.
type Op uint8

// Operations.
const (
	OpRead Op = iota
	OpWrite
	// OpFlush makes previously completed writes durable (fdatasync).
	OpFlush
)

func (o Op) String() string {
	switch o {
	case OpRead:
		return "read"
	case OpWrite:
		return "write"
	case OpFlush:
		return "flush"
	}
	return "op?"
}

// Request is one I/O. Callers usually embed or pool it; the engine does not
// retain it after calling Done.
type Request struct {
	Op  Op
	Buf []byte // read destination / write source; unused by OpFlush
	Off int64  // byte offset in the backing store
	// FUA asks for the write to be durable when it completes (RWF_DSYNC).
	FUA bool
	// Done is called exactly once, from an engine goroutine or, for engines
	// that complete inline (NULLIO), from Submit's caller. Set it once when
	// the request is allocated so that submitting does not allocate.
	Done func(*Request)

	// Results, valid in Done.
	N   int   // bytes transferred
	Err error // nil, a syscall.Errno from the kernel, or ErrClosed

	bounce *[]byte  // aligned copy used by O_DIRECT engines
	next   *Request // overflow list link
}

// overflow is an intrusive FIFO of requests that found the engine's queue
// full; it lets Submit stay non-blocking without allocating.
type overflow struct {
	mu         sync.Mutex
	head, tail *Request
	n          atomic.Int64
}

func (o *overflow) push(r *Request) {
	o.mu.Lock()
	r.next = nil
	if o.tail == nil {
		o.head = r
	} else {
		o.tail.next = r
	}
	o.tail = r
	o.n.Add(1)
	o.mu.Unlock()
}

// popLocked removes the head; o.mu must be held and the list non-empty.
func (o *overflow) popLocked() *Request {
	r := o.head
	o.head = r.next
	if o.head == nil {
		o.tail = nil
	}
	r.next = nil
	o.n.Add(-1)
	return r
}

// ErrClosed is the error of requests submitted after Close.
var ErrClosed = errors.New("backend: engine closed")

// Engine is an asynchronous block I/O engine.
type Engine interface {
	// Submit queues r. It may block briefly when the engine's queue is
	// full (back-pressure), never for the duration of an I/O.
	Submit(r *Request)
	// Close waits for queued requests to complete and releases the
	// engine's resources; it does not close the file.
	Close() error
	// Name identifies the engine in logs ("pool", "aio", "null").
	Name() string
}

// BufPool hands out buffers aligned to Align bytes, in power-of-two size
// classes, for O_DIRECT bounce buffers and scratch reads (VERIFY).
type BufPool struct {
	align int
	// classes[i] holds buffers of minClass<<i bytes.
	classes [numClasses]sync.Pool
}

const (
	minClassShift = 12 // 4 KiB
	numClasses    = 12 // up to 8 MiB
)

// NewBufPool returns a pool of buffers aligned to align (a power of two;
// 0 means 4096).
func NewBufPool(align int) *BufPool {
	if align <= 0 {
		align = 4096
	}
	return &BufPool{align: align}
}

// Align reports the pool's alignment.
func (p *BufPool) Align() int { return p.align }

func classOf(n int) int {
	c := 0
	for (1 << (minClassShift + c)) < n {
		c++
	}
	return c
}

// Get returns a buffer of at least n bytes (len == n) that is aligned. Put it
// back with Put.
func (p *BufPool) Get(n int) *[]byte {
	c := classOf(n)
	if c < numClasses {
		if v := p.classes[c].Get(); v != nil {
			b := v.(*[]byte)
			*b = (*b)[:n]
			return b
		}
		b := alignedAlloc(1<<(minClassShift+c), p.align)
		b = b[:n]
		return &b
	}
	b := alignedAlloc(n, p.align)
	return &b
}

// Put returns a buffer obtained from Get. Oversized buffers are dropped so
// the pool never pins huge allocations.
func (p *BufPool) Put(b *[]byte) {
	if b == nil {
		return
	}
	c := classOf(cap(*b))
	if c < numClasses && cap(*b) == 1<<(minClassShift+c) {
		p.classes[c].Put(b)
	}
}

// alignedAlloc returns n bytes whose first byte is aligned to align.
func alignedAlloc(n, align int) []byte {
	raw := make([]byte, n+align)
	off := 0
	if r := int(uintptr(unsafe.Pointer(&raw[0])) & uintptr(align-1)); r != 0 {
		off = align - r
	}
	return raw[off : off+n : off+n]
}

// IsAligned reports whether b starts at a multiple of align. Lengths and
// offsets are multiples of the LUN block size, which the opener checked
// against the file's O_DIRECT granularity.
func IsAligned(b []byte, align int) bool {
	if len(b) == 0 {
		return true
	}
	return uintptr(unsafe.Pointer(&b[0]))&uintptr(align-1) == 0
}
