//go:build rbd

// Package rbd serves virtual disks from Ceph RBD images through a small cgo
// binding over librados and librbd of the project's own (go-ceph is not
// available from the module proxy). It is built only with the build tag
// "rbd", so that the default build needs neither cgo nor librbd.
//
// An Image implements vdisk.Store: its Engine moves READ/WRITE/SYNCHRONIZE
// CACHE data with rbd_aio_* calls, many requests in flight, on buffers
// pinned with runtime.Pinner (librbd keeps them until the completion), and
// one goroutine per connection reaps the completions librbd signals
// through each image's eventfd. The librbd
// cache is off unless the caller asks for it, so that several scstd nodes
// serving one image see each other's writes.
package rbd

/*
#cgo LDFLAGS: -lrbd -lrados
#include <errno.h>
#include <stdlib.h>
#include <rados/librados.h>
#include <rbd/librbd.h>
*/
import "C"

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// Options configure a cluster connection.
type Options struct {
	// ConfFile is the ceph.conf to read (mon host, keyring, ...). No other
	// configuration file is consulted.
	ConfFile string
	// ID is the client name without "client." (default "admin").
	ID string
	// Config are extra settings applied after ConfFile, e.g. {"rbd_cache":
	// "true"} to turn the librbd cache back on for a single-node LUN.
	Config map[string]string
	// ConnectTimeout bounds connecting to the monitors (default 30 s).
	ConnectTimeout time.Duration
}

// defaults are applied before Options.Config, after the conf file: the
// librbd cache would make one node's acknowledged writes invisible to the
// others until a flush, and partial discards must zero what they cover so
// that discarded blocks read as zeros (LBPRZ).
func defaults() [][2]string {
	return [][2]string{
		{"rbd_cache", "false"},
		{"rbd_skip_partial_discard", "false"},
	}
}

// Conn is a connection to a Ceph cluster.
type Conn struct {
	cluster C.rados_t
	poller  *poller
	mu      sync.Mutex
	images  int // open images; Close refuses while any is open
	closed  bool
}

// errnoErr turns a negative librados/librbd return value into an error
// wrapping the syscall.Errno.
func errnoErr(what string, ret C.int) error {
	return fmt.Errorf("%s: %w", what, syscall.Errno(-ret))
}

// Connect reads o.ConfFile and connects as client.ID.
func Connect(o Options) (*Conn, error) {
	if o.ConfFile == "" {
		return nil, errors.New("rbd: no ceph.conf given")
	}
	id := o.ID
	if id == "" {
		id = "admin"
	}
	timeout := o.ConnectTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	cid := C.CString(id)
	defer C.free(unsafe.Pointer(cid))
	c := &Conn{}
	if ret := C.rados_create(&c.cluster, cid); ret < 0 {
		return nil, errnoErr("rados_create", ret)
	}
	fail := func(err error) (*Conn, error) {
		C.rados_shutdown(c.cluster)
		return nil, err
	}
	cconf := C.CString(o.ConfFile)
	ret := C.rados_conf_read_file(c.cluster, cconf)
	C.free(unsafe.Pointer(cconf))
	if ret < 0 {
		return fail(errnoErr("reading "+o.ConfFile, ret))
	}
	set := func(k, v string) error {
		ck, cv := C.CString(k), C.CString(v)
		defer C.free(unsafe.Pointer(ck))
		defer C.free(unsafe.Pointer(cv))
		if ret := C.rados_conf_set(c.cluster, ck, cv); ret < 0 {
			return errnoErr(fmt.Sprintf("ceph option %s=%s", k, v), ret)
		}
		return nil
	}
	for _, kv := range defaults() {
		if err := set(kv[0], kv[1]); err != nil {
			return fail(err)
		}
	}
	secs := strconv.Itoa(int((timeout + time.Second - 1) / time.Second))
	if err := set("client_mount_timeout", secs); err != nil {
		return fail(err)
	}
	for k, v := range o.Config {
		if err := set(k, v); err != nil {
			return fail(err)
		}
	}
	if ret := C.rados_connect(c.cluster); ret < 0 {
		return fail(errnoErr(fmt.Sprintf("connecting to the cluster of %s as client.%s", o.ConfFile, id), ret))
	}
	p, err := newPoller()
	if err != nil {
		return fail(err)
	}
	c.poller = p
	return c, nil
}

// Close disconnects. Every image must have been closed first.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	if c.images != 0 {
		return fmt.Errorf("rbd: %d images still open: %w", c.images, syscall.EBUSY)
	}
	c.closed = true
	c.poller.stop()
	C.rados_shutdown(c.cluster)
	return nil
}

// acquire counts an image being opened; it fails once Close ran.
func (c *Conn) acquire() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("rbd: connection closed: %w", syscall.ESHUTDOWN)
	}
	c.images++
	return nil
}

func (c *Conn) release() {
	c.mu.Lock()
	c.images--
	c.mu.Unlock()
}
