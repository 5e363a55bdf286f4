//go:build rbd

package main

import (
	"fmt"

	"github.com/scstd/scstd/vdisk"
	"github.com/scstd/scstd/vdisk/rbd"
	"github.com/sirupsen/logrus"
)

// rbdSupport reports whether this build can serve RBD images.
const rbdSupport = true

// openCeph connects to the cluster of o.Conf; the returned function
// disconnects once every device is closed.
func openCeph(o cephOptions, log *logrus.Entry) (vdisk.StoreOpener, func(), error) {
	if o.Conf == "" {
		return nil, func() {}, nil
	}
	conn, err := rbd.Connect(rbd.Options{ConfFile: o.Conf, ID: o.ID})
	if err != nil {
		return nil, nil, fmt.Errorf("ceph: %w", err)
	}
	log.WithFields(logrus.Fields{"conf": o.Conf, "client": "client." + o.ID}).Info("connected to the Ceph cluster; RBD images open as " + rbd.PathPrefix + "POOL/IMAGE")
	return &rbd.Opener{Conn: conn}, func() {
		if err := conn.Close(); err != nil {
			log.WithError(err).Warn("ceph: disconnect")
		}
	}, nil
}
