package main

import (
	"errors"

	"github.com/urfave/cli/v2"
)

// cephOptions select the Ceph cluster whose RBD images vdisk opens as
// /rbd/POOL/IMAGE (daemon built with -tags rbd).
type cephOptions struct {
	Conf string // ceph.conf; "" = no RBD LUNs
	ID   string // client name without "client."
}

const defaultCephID = "admin"

func cephFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "ceph-conf", Usage: "serve Ceph RBD images as vdisk FILE /rbd/POOL/IMAGE, from the cluster of this ceph.conf `FILE` (needs a build with -tags rbd)"},
		&cli.StringFlag{Name: "ceph-id", Value: defaultCephID, Usage: "Ceph client `ID` (without \"client.\") for --ceph-conf"},
	}
}

// cephOptionsFrom reads the Ceph flags; asking for RBD from a daemon built
// without it is an error at start rather than at the first open.
func cephOptionsFrom(c *cli.Context) (cephOptions, error) {
	o := cephOptions{Conf: c.String("ceph-conf"), ID: c.String("ceph-id")}
	if o.Conf == "" {
		if c.IsSet("ceph-id") {
			return o, errors.New("--ceph-id needs --ceph-conf")
		}
		return o, nil
	}
	if o.ID == "" {
		return o, errors.New("--ceph-id: empty client id")
	}
	if !rbdSupport {
		return o, errors.New("--ceph-conf: this scstd was built without RBD support; rebuild with: go build -tags rbd ./cmd/scstd (needs cgo and librbd-dev)")
	}
	return o, nil
}
