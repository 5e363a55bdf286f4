package vdisk

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// residentChunk is how many pages one mincore call checks.
const residentChunk = 512

// residentRange returns the mapped bytes [off, off+n) when every page of
// them is in the page cache, or nil. A READ then needs no pread: the
// kernel copies the pages straight into the socket, once. Pages not
// cached (or beyond the mapped size, or a hole) go through the engine,
// which may block on the disk; the sending goroutine must not.
func (m *medium) residentRange(off int64, n int) []byte {
	if m.mapped == nil || off < 0 || n <= 0 || off+int64(n) > int64(len(m.mapped)) {
		return nil
	}
	const page = 4096
	start := off &^ (page - 1)
	end := (off + int64(n) + page - 1) &^ (page - 1)
	var vec [residentChunk]byte
	for p := start; p < end; {
		l := min(end-p, residentChunk*page)
		// The last page of a file whose size is not a page multiple is
		// only partly mapped; mincore rounds the length up.
		seg := m.mapped[p:min(p+l, int64(len(m.mapped)))]
		// x/sys has no mincore wrapper; the vector is on the stack.
		if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&seg[0])), uintptr(len(seg)),
			uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
			return nil
		}
		for _, v := range vec[:l/page] {
			if v&1 == 0 {
				return nil
			}
		}
		p += l
	}
	return m.mapped[off : off+int64(n) : off+int64(n)]
}
