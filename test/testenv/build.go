package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// RepoRoot is the module root: the nearest directory above the working
// directory (a package directory under go test) that holds go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// BuildDaemon builds ./cmd/scstd of the module at root with extra go build
// flags into a new temporary directory that other users can read (tests run
// the binary as an unprivileged user too). remove deletes the directory.
func BuildDaemon(root string, flags ...string) (bin string, remove func(), err error) {
	dir, err := os.MkdirTemp("", "scstd-test-bin-")
	if err != nil {
		return "", nil, err
	}
	remove = func() { os.RemoveAll(dir) }
	if err := os.Chmod(dir, 0o755); err != nil {
		remove()
		return "", nil, err
	}
	bin = filepath.Join(dir, "scstd")
	args := append(append([]string{"build"}, flags...), "-o", bin, "./cmd/scstd")
	build := exec.Command("go", args...)
	build.Dir = root
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		remove()
		return "", nil, fmt.Errorf("building the daemon (go %s): %w", strings.Join(args, " "), err)
	}
	return bin, remove, nil
}

// CephCluster returns the ceph.conf of the test cluster: the one
// SCSTD_CEPH_CONF names (make ceph-up), or a private one that
// scripts/ceph-up.sh starts in a temporary directory; stop tears that one
// down (and does nothing for a named one).
func CephCluster(root string) (conf string, stop func(), err error) {
	if c := os.Getenv("SCSTD_CEPH_CONF"); c != "" {
		return c, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "scstd-ceph-")
	if err != nil {
		return "", nil, err
	}
	stop = func() {
		down := exec.Command(filepath.Join(root, "scripts", "ceph-down.sh"), "-d", dir)
		down.Stdout, down.Stderr = os.Stderr, os.Stderr
		_ = down.Run()
		os.RemoveAll(dir)
	}
	up := exec.Command(filepath.Join(root, "scripts", "ceph-up.sh"), "-d", dir)
	up.Stderr = os.Stderr
	out, err := up.Output()
	if err != nil {
		stop()
		return "", nil, fmt.Errorf("starting the Ceph cluster: %w", err)
	}
	return strings.TrimPrefix(strings.TrimSpace(string(out)), "CEPH_CONF="), stop, nil
}

// SharedConformance is the path of a file of ../shared/conformance beside
// the repository at root; a missing one fails the test.
func SharedConformance(t testing.TB, root, name string) string {
	t.Helper()
	p := filepath.Join(root, "..", "shared", "conformance", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is missing: the shared conformance material must be checked out at ../shared beside the repository (%v)", p, err)
	}
	return p
}
