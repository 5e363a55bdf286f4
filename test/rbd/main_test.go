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
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return fail(err)
	}
	dir, err := os.MkdirTemp("", "scstd-rbd-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "scstd")
	build := exec.Command("go", "build", "-tags", "rbd", "-o", bin, "./cmd/scstd")
	build.Dir = root
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fail(fmt.Errorf("building the daemon with -tags rbd: %w", err))
	}
	conf := os.Getenv("SCSTD_CEPH_CONF")
	if conf == "" {
		cdir := filepath.Join(dir, "ceph")
		down := exec.Command(filepath.Join(root, "scripts", "ceph-down.sh"), "-d", cdir)
		down.Stdout, down.Stderr = os.Stderr, os.Stderr
		defer down.Run()
		up := exec.Command(filepath.Join(root, "scripts", "ceph-up.sh"), "-d", cdir)
		up.Stderr = os.Stderr
		out, err := up.Output()
		if err != nil {
			return fail(fmt.Errorf("starting the Ceph cluster: %w", err))
		}
		conf = strings.TrimPrefix(strings.TrimSpace(string(out)), "CEPH_CONF=")
	}
	testEnv = env{repoRoot: root, bin: bin, conf: conf}
	return m.Run()
}
