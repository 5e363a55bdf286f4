//go:build rbd

// Package rbd runs scstd daemons built with -tags rbd against a private
// Ceph cluster and drives RBD LUNs with real initiators: the checks a
// file LUN passes in test/e2e, two daemons serving one image, and the
// IOPS ratio of scstd against a direct librbd client.
//
// The cluster is the one SCSTD_CEPH_CONF names (make ceph-up), or one
// TestMain starts with scripts/ceph-up.sh in a temporary directory and
// stops at the end. A missing tool is a test failure, not a skip: CI
// installs them all (.ci/run).
package rbd

import (
	"fmt"
	"os"
	"testing"

	"github.com/scstd/scstd/test/testenv"
)

// env is what TestMain prepares for every test; set once, read-only after.
type env struct {
	repoRoot string
	bin      string // scstd built with -tags rbd
	conf     string // ceph.conf of the test cluster
}

var testEnv env

func TestMain(m *testing.M) {
	os.Exit(setupAndRun(m))
}

func setupAndRun(m *testing.M) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "test/rbd:", err)
		return 1
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		return fail(err)
	}
	bin, remove, err := testenv.BuildDaemon(root, "-tags", "rbd")
	if err != nil {
		return fail(err)
	}
	defer remove()
	conf, stop, err := testenv.CephCluster(root)
	if err != nil {
		return fail(err)
	}
	defer stop()
	testEnv = env{repoRoot: root, bin: bin, conf: conf}
	return m.Run()
}
