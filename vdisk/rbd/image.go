//go:build rbd

package rbd

/*
#include <errno.h>
#include <stdlib.h>
#include <sys/time.h>
#include <rados/librados.h>
#include <rbd/librbd.h>
*/
import "C"

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/scstd/scstd/vdisk/backend"
)

// ImageOptions configure an opened image.
type ImageOptions struct {
	ReadOnly bool
	// Depth is the number of requests the engine keeps in flight
	// (default 128); more wait in its queue.
	Depth int
}

// Image is an open RBD image. The synchronous methods are for slow-path
// commands; the data path goes through Engine.
type Image struct {
	conn  *Conn
	ioctx C.rados_ioctx_t
	img   C.rbd_image_t
	name  string // pool/image, for errors
	eng   *Engine
	// lockOID and cookie name the compare-and-write lock (the image
	// header object) and this opener's hold on it.
	lockOID, cookie string
	casMu           sync.Mutex
	// id names the image's own objects; peers is the watch of
	// WatchPeers, notifies counts NotifyPeersReset calls in flight.
	id       string
	peers    atomic.Pointer[peers]
	notifies sync.WaitGroup
}

// Open opens pool/image. Close the image's Engine to close it.
func (c *Conn) Open(pool, image string, o ImageOptions) (*Image, error) {
	if err := c.acquire(); err != nil {
		return nil, err
	}
	im := &Image{conn: c, name: pool + "/" + image}
	cpool := C.CString(pool)
	ret := C.rados_ioctx_create(c.cluster, cpool, &im.ioctx)
	C.free(unsafe.Pointer(cpool))
	if ret < 0 {
		c.release()
		return nil, errnoErr("pool "+pool, ret)
	}
	cimg := C.CString(image)
	if o.ReadOnly {
		ret = C.rbd_open_read_only(im.ioctx, cimg, &im.img, nil)
	} else {
		ret = C.rbd_open(im.ioctx, cimg, &im.img, nil)
	}
	C.free(unsafe.Pointer(cimg))
	if ret < 0 {
		C.rados_ioctx_destroy(im.ioctx)
		c.release()
		return nil, errnoErr("image "+im.name, ret)
	}
	var id [64]C.char
	if C.rbd_get_id(im.img, &id[0], C.size_t(len(id))) == 0 {
		im.id = C.GoString(&id[0])
		im.lockOID = "rbd_header." + im.id
	} else {
		im.id = image
		im.lockOID = image + ".rbd" // format 1 header
	}
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		C.rbd_close(im.img)
		C.rados_ioctx_destroy(im.ioctx)
		c.release()
		return nil, err
	}
	im.cookie = hex.EncodeToString(rnd[:])
	eng, err := newEngine(im, o.Depth)
	if err != nil {
		C.rbd_close(im.img)
		C.rados_ioctx_destroy(im.ioctx)
		c.release()
		return nil, err
	}
	im.eng = eng
	return im, nil
}

// closeImage releases librbd resources; the engine calls it once drained.
func (im *Image) closeImage() error {
	im.closeWatch()
	var err error
	if ret := C.rbd_flush(im.img); ret < 0 {
		err = errnoErr("flush "+im.name, ret)
	}
	if ret := C.rbd_close(im.img); ret < 0 && err == nil {
		err = errnoErr("close "+im.name, ret)
	}
	C.rados_ioctx_destroy(im.ioctx)
	im.conn.release()
	return err
}

// Engine is the image's asynchronous engine (vdisk.Store).
func (im *Image) Engine() backend.Engine { return im.eng }

// Size is the image size in bytes; librbd refreshes it after a resize
// made by another client.
func (im *Image) Size() (int64, error) {
	var size C.uint64_t
	if ret := C.rbd_get_size(im.img, &size); ret < 0 {
		return 0, errnoErr("size of "+im.name, ret)
	}
	return int64(size), nil
}

// bufPtr is the C view of a non-empty Go buffer. Synchronous calls only
// use it for their duration, which cgo allows without pinning.
func bufPtr(b []byte) *C.char { return (*C.char)(unsafe.Pointer(&b[0])) }

// ReadAt fills b from off.
func (im *Image) ReadAt(b []byte, off int64) error {
	if len(b) == 0 {
		return nil
	}
	ret := C.rbd_read(im.img, C.uint64_t(off), C.size_t(len(b)), bufPtr(b))
	if ret < 0 {
		return errnoErr("read "+im.name, C.int(ret))
	}
	if int(ret) < len(b) {
		clear(b[ret:]) // past the end of the image
	}
	return nil
}

// WriteAt writes b at off, flushed when fua is set.
func (im *Image) WriteAt(b []byte, off int64, fua bool) error {
	if len(b) == 0 {
		return nil
	}
	ret := C.rbd_write2(im.img, C.uint64_t(off), C.size_t(len(b)), bufPtr(b), writeFlags(fua))
	if ret < 0 {
		return errnoErr("write "+im.name, C.int(ret))
	}
	if fua {
		return im.Flush()
	}
	return nil
}

func writeFlags(fua bool) C.int {
	if fua {
		return C.LIBRADOS_OP_FLAG_FADVISE_FUA
	}
	return 0
}

// Flush makes completed writes durable (a no-op round trip with the cache off).
func (im *Image) Flush() error {
	if ret := C.rbd_flush(im.img); ret < 0 {
		return errnoErr("flush "+im.name, ret)
	}
	return nil
}

// Discard deallocates [off, off+n); with rbd_skip_partial_discard off the
// whole range reads as zeros afterwards.
func (im *Image) Discard(off, n int64) error {
	if n == 0 {
		return nil
	}
	if ret := C.rbd_discard(im.img, C.uint64_t(off), C.uint64_t(n)); ret < 0 {
		return errnoErr("discard "+im.name, ret)
	}
	return nil
}

// WriteSame writes block over [off, off+n) in one librbd operation
// (n a multiple of len(block)).
func (im *Image) WriteSame(off, n int64, block []byte, fua bool) error {
	if n == 0 {
		return nil
	}
	if len(block) == 0 || n%int64(len(block)) != 0 {
		return fmt.Errorf("writesame %s: length %d not a multiple of %d: %w", im.name, n, len(block), syscall.EINVAL)
	}
	ret := C.rbd_writesame(im.img, C.uint64_t(off), C.size_t(n), bufPtr(block), C.size_t(len(block)), writeFlags(fua))
	if ret < 0 {
		return errnoErr("writesame "+im.name, C.int(ret))
	}
	if fua {
		return im.Flush()
	}
	return nil
}

// CompareAndWrite compares [off, off+len(cmp)) with cmp and writes data
// there if they are equal, atomically against every client of the image.
// On a mismatch it reports the offset of the first differing byte.
//
// librbd (Pacific) evaluates a compare-and-write in the OSD, as one object
// operation, only within one 512-byte sector; that case (COMPARE AND WRITE
// of one 512-byte block, what VMware's ATS sends) uses it. Longer ranges
// are read, compared and written under a RADOS lock on the image header
// (casLockName), which every scstd node takes for them: atomic against the
// other nodes' compare-and-writes of more than one sector, not against
// their plain writes nor their single-sector ones (see BUGS.txt).
func (im *Image) CompareAndWrite(off int64, cmp, data []byte, fua bool) (int, bool, error) {
	if len(cmp) == 0 {
		return 0, false, nil
	}
	if len(cmp) != len(data) {
		return 0, false, fmt.Errorf("compare-and-write %s: %w", im.name, syscall.EINVAL)
	}
	if off%sector+int64(len(cmp)) > sector {
		return im.compareAndWriteLocked(off, cmp, data, fua)
	}
	var mismatch C.uint64_t
	ret := C.rbd_compare_and_write(im.img, C.uint64_t(off), C.size_t(len(cmp)), bufPtr(cmp), bufPtr(data), &mismatch, writeFlags(fua))
	switch {
	case ret == -C.EILSEQ:
		// Pacific reports the offset of the first difference within the
		// range; should a release report the image offset, convert it.
		m := int64(mismatch)
		if m >= int64(len(cmp)) {
			m -= off
		}
		if m < 0 || m >= int64(len(cmp)) {
			return 0, true, nil
		}
		return int(m), true, nil
	case ret < 0:
		return 0, false, errnoErr("compare-and-write "+im.name, C.int(ret))
	}
	if fua {
		return 0, false, im.Flush()
	}
	return 0, false, nil
}

// sector is the largest range librbd compares and writes in the OSD.
const sector = 512

const (
	casLockName = "scstd_compare_and_write"
	// casLockTTL frees the lock of a node that died holding it.
	casLockTTL = 30
	// casLockWait bounds waiting for another node's compare-and-write.
	casLockWait = 60 * time.Second
)

func (im *Image) compareAndWriteLocked(off int64, cmp, data []byte, fua bool) (int, bool, error) {
	im.casMu.Lock()
	defer im.casMu.Unlock()
	if err := im.lockCAS(); err != nil {
		return 0, false, err
	}
	defer im.unlockCAS()
	cur := make([]byte, len(cmp))
	if err := im.ReadAt(cur, off); err != nil {
		return 0, false, err
	}
	for i := range cur {
		if cur[i] != cmp[i] {
			return i, true, nil
		}
	}
	return 0, false, im.WriteAt(data, off, fua)
}

// lockCAS takes the image's compare-and-write lock, waiting for other nodes.
func (im *Image) lockCAS() error {
	oid, name, cookie := C.CString(im.lockOID), C.CString(casLockName), C.CString(im.cookie)
	desc := C.CString("scstd COMPARE AND WRITE")
	defer func() {
		for _, p := range []*C.char{oid, name, cookie, desc} {
			C.free(unsafe.Pointer(p))
		}
	}()
	tv := C.struct_timeval{tv_sec: casLockTTL}
	deadline := time.Now().Add(casLockWait)
	backoff := 200 * time.Microsecond
	for {
		ret := C.rados_lock_exclusive(im.ioctx, oid, name, cookie, desc, &tv, 0)
		switch {
		case ret == 0:
			return nil
		case ret != -C.EBUSY && ret != -C.EEXIST:
			return errnoErr("compare-and-write lock on "+im.name, ret)
		case time.Now().After(deadline):
			return fmt.Errorf("compare-and-write lock on %s held by another node for %v: %w", im.name, casLockWait, syscall.ETIMEDOUT)
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, 10*time.Millisecond)
	}
}

func (im *Image) unlockCAS() {
	oid, name, cookie := C.CString(im.lockOID), C.CString(casLockName), C.CString(im.cookie)
	C.rados_unlock(im.ioctx, oid, name, cookie)
	C.free(unsafe.Pointer(oid))
	C.free(unsafe.Pointer(name))
	C.free(unsafe.Pointer(cookie))
}

// Close closes the image (through its engine, as a vdisk medium does).
func (im *Image) Close() error { return im.eng.Close() }
