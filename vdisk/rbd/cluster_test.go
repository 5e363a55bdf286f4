//go:build rbd

package rbd

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/scstd/scstd/test/testenv"
)

// The tests need a Ceph cluster: SCSTD_CEPH_CONF names a running one
// (make ceph-up), otherwise TestMain starts a private one with
// scripts/ceph-up.sh in a temporary directory and stops it at the end.
// Each test works on images of its own.

// confPath is set by TestMain before any test runs and read-only after.
var confPath string

// imageSeq numbers the images the tests create.
var imageSeq atomic.Int64

func TestMain(m *testing.M) {
	os.Exit(runWithCluster(m))
}

func runWithCluster(m *testing.M) int {
	root, err := testenv.RepoRoot()
	if err == nil {
		var stop func()
		if confPath, stop, err = testenv.CephCluster(root); err == nil {
			defer stop()
			return m.Run()
		}
	}
	fmt.Fprintln(os.Stderr, "rbd tests:", err)
	return 1
}

// rbdCLI runs the rbd tool against the test cluster.
func rbdCLI(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("rbd", append([]string{"-c", confPath}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("rbd %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newImage creates a fresh image of size (rbd size syntax, e.g. 64M),
// removed when the test ends, and returns its name in pool rbd.
func newImage(t testing.TB, size string) string {
	t.Helper()
	name := fmt.Sprintf("t%d-%d", os.Getpid(), imageSeq.Add(1))
	rbdCLI(t, "create", "rbd/"+name, "--size", size, "--image-feature", "layering")
	t.Cleanup(func() { rbdCLI(t, "rm", "--no-progress", "rbd/"+name) })
	return name
}

// connect opens a connection closed when the test ends.
func connect(t testing.TB) *Conn {
	t.Helper()
	c, err := Connect(Options{ConfFile: confPath})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	return c
}

// open opens rbd/name, closed when the test ends (before the connection).
func open(t testing.TB, c *Conn, name string, o ImageOptions) *Image {
	t.Helper()
	im, err := c.Open("rbd", name, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := im.Close(); err != nil {
			t.Error(err)
		}
	})
	return im
}
