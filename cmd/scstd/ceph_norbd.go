//go:build !rbd

package main

import (
	"github.com/scstd/scstd/vdisk"
	"github.com/sirupsen/logrus"
)

// rbdSupport reports whether this build can serve RBD images.
const rbdSupport = false

// openCeph is never reached with a conf file in this build
// (cephOptionsFrom refuses it); without one there is nothing to open.
func openCeph(o cephOptions, log *logrus.Entry) (vdisk.StoreOpener, func(), error) {
	return nil, func() {}, nil
}
