//go:build rbd

package rbd

/*
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <rados/librados.h>

void scstd_watch_cb(void *arg, uint64_t notify_id, uint64_t cookie, uint64_t notifier_id, void *data, size_t len);
void scstd_watch_err(void *arg, uint64_t cookie, int err);
*/
import "C"

import (
	"bytes"
	"fmt"
	"runtime/cgo"
	"time"
	"unsafe"
)

// Nodes serving the same image tell each other about LUN resets through
// RADOS watch/notify on a small object beside the image (eventsPrefix +
// image id): a reset on one node raises a unit attention on the others, as
// it does for every other I_T nexus of a single-node LU.

const (
	eventsPrefix = "scstd_events."
	resetMsg     = "lun-reset "
	// notifyTimeout bounds waiting for the other nodes' acknowledgements
	// (a dead node's watch lingers until the OSD times it out).
	notifyTimeout = 5 * time.Second
)

// peers is an image's watch on its events object.
type peers struct {
	oid     *C.char
	cookie  C.uint64_t
	arg     *C.uintptr_t // C memory holding handle, the callback argument
	handle  cgo.Handle
	onReset func()
	// errFn reports a broken watch (the node may have missed notifies).
	errFn func(error)
}

// WatchPeers starts receiving the other nodes' LUN resets: onReset is
// called (on a librados thread) for each; onError when the watch broke.
func (im *Image) WatchPeers(onReset func(), onError func(error)) error {
	if im.peers.Load() != nil {
		return fmt.Errorf("rbd: %s is already watched", im.name)
	}
	p := &peers{oid: C.CString(eventsPrefix + im.id), onReset: onReset, errFn: onError}
	// The events object must exist to be watched.
	op := C.rados_create_write_op()
	C.rados_write_op_create(op, C.LIBRADOS_CREATE_IDEMPOTENT, nil)
	ret := C.rados_write_op_operate(op, im.ioctx, p.oid, nil, 0)
	C.rados_release_write_op(op)
	if ret < 0 {
		C.free(unsafe.Pointer(p.oid))
		return errnoErr("creating "+eventsPrefix+im.id, ret)
	}
	p.handle = cgo.NewHandle(im)
	p.arg = (*C.uintptr_t)(C.malloc(C.size_t(unsafe.Sizeof(C.uintptr_t(0)))))
	*p.arg = C.uintptr_t(p.handle)
	// Published before the watch exists: a notify may arrive at once.
	im.peers.Store(p)
	ret = C.rados_watch3(im.ioctx, p.oid, &p.cookie, C.rados_watchcb2_t(C.scstd_watch_cb),
		C.rados_watcherrcb_t(C.scstd_watch_err), 30, unsafe.Pointer(p.arg))
	if ret < 0 {
		im.peers.Store(nil)
		p.handle.Delete()
		C.free(unsafe.Pointer(p.arg))
		C.free(unsafe.Pointer(p.oid))
		return errnoErr("watching "+eventsPrefix+im.id, ret)
	}
	return nil
}

// NotifyPeersReset tells the other nodes that this node reset the LU and
// returns once every node has raised its unit attention (each acknowledges
// after that), so that the initiator sees the attention on every path once
// the reset completed; a node that does not answer is waited for at most
// notifyTimeout.
func (im *Image) NotifyPeersReset() {
	p := im.peers.Load()
	if p == nil {
		return
	}
	// closeWatch waits for the notify before the ioctx goes away.
	im.notifies.Add(1)
	defer im.notifies.Done()
	cmsg := C.CString(resetMsg + im.cookie)
	defer C.free(unsafe.Pointer(cmsg))
	var reply *C.char
	var n C.size_t
	C.rados_notify2(im.ioctx, p.oid, cmsg, C.int(C.strlen(cmsg)), C.uint64_t(notifyTimeout/time.Millisecond), &reply, &n)
	if reply != nil {
		C.rados_buffer_free(reply)
	}
}

// closeWatch ends the watch before the image's ioctx goes away.
func (im *Image) closeWatch() {
	p := im.peers.Load()
	if p == nil {
		return
	}
	im.notifies.Wait()
	C.rados_unwatch2(im.ioctx, p.cookie)
	// No callback runs after the flush, so the handle can go.
	C.rados_watch_flush(im.conn.cluster)
	p.handle.Delete()
	C.free(unsafe.Pointer(p.arg))
	C.free(unsafe.Pointer(p.oid))
	im.peers.Store(nil)
}

//export scstdWatchNotify
func scstdWatchNotify(arg unsafe.Pointer, notifyID, cookie C.uint64_t, data unsafe.Pointer, n C.size_t) {
	im := cgo.Handle(*(*C.uintptr_t)(arg)).Value().(*Image)
	p := im.peers.Load()
	if p == nil {
		return
	}
	// The notifier waits for every acknowledgement: raise the attention
	// first, so that it is in place when the reset completes.
	msg := C.GoBytes(data, C.int(n))
	if from, ok := bytes.CutPrefix(msg, []byte(resetMsg)); ok && string(from) != im.cookie {
		p.onReset()
	}
	C.rados_notify_ack(im.ioctx, p.oid, notifyID, cookie, nil, 0)
}

//export scstdWatchError
func scstdWatchError(arg unsafe.Pointer, err C.int) {
	im := cgo.Handle(*(*C.uintptr_t)(arg)).Value().(*Image)
	if p := im.peers.Load(); p != nil && p.errFn != nil {
		p.errFn(errnoErr("watch on "+eventsPrefix+im.id, err))
	}
}
