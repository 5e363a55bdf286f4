//go:build rbd

package rbd

import (
	"fmt"
	"strings"
	"syscall"

	"github.com/scstd/scstd/vdisk"
)

// PathPrefix starts the FILE argument of an RBD LUN: /rbd/POOL/IMAGE.
const PathPrefix = "/rbd/"

// ParsePath splits /rbd/POOL/IMAGE. ok is false for paths outside
// PathPrefix (files); a malformed RBD path is an EINVAL error.
func ParsePath(path string) (pool, image string, ok bool, err error) {
	rest, ok := strings.CutPrefix(path, PathPrefix)
	if !ok {
		return "", "", false, nil
	}
	pool, image, found := strings.Cut(rest, "/")
	if !found || pool == "" || image == "" || strings.Contains(image, "/") {
		return "", "", true, fmt.Errorf("%q: RBD images are named %sPOOL/IMAGE: %w", path, PathPrefix, syscall.EINVAL)
	}
	return pool, image, true, nil
}

// Opener opens /rbd/POOL/IMAGE paths on one cluster connection for the
// vdisk manager (vdisk.ManagerOptions.Stores).
type Opener struct {
	Conn *Conn
	// Depth is the engine depth of each image (0: the default).
	Depth int
}

// OpenStore implements vdisk.StoreOpener.
func (o *Opener) OpenStore(path string, readOnly bool) (vdisk.Store, bool, error) {
	pool, image, ok, err := ParsePath(path)
	if !ok || err != nil {
		return nil, ok, err
	}
	im, err := o.Conn.Open(pool, image, ImageOptions{ReadOnly: readOnly, Depth: o.Depth})
	if err != nil {
		return nil, true, err
	}
	return im, true, nil
}

var _ vdisk.Store = (*Image)(nil)
