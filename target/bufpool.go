package target

import (
	"math/bits"
	"sync"
	"unsafe"
)

// Buffer size classes are powers of two from 4 KiB to 16 MiB. Every pooled
// buffer starts on a page boundary so that O_DIRECT and AIO engines can use
// it without a bounce copy; larger requests are plain allocations.
const (
	pageSize      = 4096
	minClassShift = 12
	maxClassShift = 24
	numClasses    = maxClassShift - minClassShift + 1
)

// bufPool is the core's data-buffer cache. Each class pool stores the
// buffer's base address as an unsafe.Pointer, which fits in an interface
// without boxing, so Get/Put do not allocate.
type bufPool struct {
	classes [numClasses]sync.Pool
}

// classOf returns the class index for n bytes, or -1 if n is too large to pool.
func classOf(n int) int {
	if n <= 1<<minClassShift {
		return 0
	}
	shift := bits.Len(uint(n - 1))
	if shift > maxClassShift {
		return -1
	}
	return shift - minClassShift
}

// get returns a page-aligned buffer of length n (contents undefined).
func (p *bufPool) get(n int) []byte {
	if n <= 0 {
		return nil
	}
	k := classOf(n)
	if k < 0 {
		return alignedAlloc(n)[:n]
	}
	size := 1 << (k + minClassShift)
	if v := p.classes[k].Get(); v != nil {
		return unsafe.Slice((*byte)(v.(unsafe.Pointer)), size)[:n]
	}
	return alignedAlloc(size)[:n]
}

// put recycles b if it looks like a buffer handed out by get: a page-aligned
// start and a capacity equal to a class size. It reports whether b was taken.
func (p *bufPool) put(b []byte) bool {
	c := cap(b)
	if c < 1<<minClassShift || c&(c-1) != 0 {
		return false
	}
	k := bits.Len(uint(c)) - 1 - minClassShift
	if k < 0 || k >= numClasses {
		return false
	}
	ptr := unsafe.Pointer(unsafe.SliceData(b[:c]))
	if uintptr(ptr)&(pageSize-1) != 0 {
		return false
	}
	p.classes[k].Put(ptr)
	return true
}

// alignedAlloc returns a page-aligned buffer whose capacity is exactly n.
// Go's allocator already page-aligns power-of-two objects of 4 KiB and up;
// the over-allocation path covers any allocator that does not.
func alignedAlloc(n int) []byte {
	b := make([]byte, n)
	if uintptr(unsafe.Pointer(unsafe.SliceData(b)))&(pageSize-1) == 0 {
		return b
	}
	raw := make([]byte, n+pageSize)
	off := int(-uintptr(unsafe.Pointer(unsafe.SliceData(raw))) & (pageSize - 1))
	return raw[off : off+n : off+n]
}
