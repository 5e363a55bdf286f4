// Package conformance is the CI conformance run: it builds scstd, starts it
// on 127.0.0.1 with one LUN per need of libiscsi's iscsi-test-cu suites,
// runs ../shared/conformance/run-libiscsi-suite.sh over them and compares
// every verdict with expected.tsv (see docs/conformance.md). It also checks
// that a persistent reservation survives a daemon restart.
//
// The run is destructive only to its own temporary images. A missing tool or
// harness script is a failure, not a skip: CI installs them.
package conformance

import (
	"fmt"
	"os"
	"testing"

	"github.com/scstd/scstd/test/testenv"
)

// env is what TestMain prepares; read-only once tests run.
type env struct {
	repoRoot string
	bin      string // the daemon binary
}

var testEnv env

func TestMain(m *testing.M) {
	os.Exit(setupAndRun(m))
}

func setupAndRun(m *testing.M) int {
	root, err := testenv.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		return 1
	}
	bin, remove, err := testenv.BuildDaemon(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		return 1
	}
	defer remove()
	testEnv = env{repoRoot: root, bin: bin}
	return m.Run()
}
