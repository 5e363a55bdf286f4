// Package e2e runs the scstd daemon on 127.0.0.1 and drives it with real
// initiators (libiscsi's tools, qemu, fio) as the "Done when" list of the
// foundation issue asks. Every test starts its own daemon on a free port and
// stops only that daemon, by PID. A missing tool is a test failure, not a
// skip: CI installs them all (.ci/run).
package e2e

import (
	"fmt"
	"os"
	"testing"

	"github.com/scstd/scstd/test/testenv"
)

// env is what TestMain prepares for every test.
type env struct {
	repoRoot string // the module root
	bin      string // the daemon, in a directory the unprivileged test can read
}

// testEnv is set once by TestMain before any test runs and read-only after.
var testEnv env

func TestMain(m *testing.M) {
	os.Exit(setupAndRun(m))
}

func setupAndRun(m *testing.M) int {
	root, err := testenv.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	var flags []string
	if os.Getenv("SCSTD_E2E_RACE") == "1" {
		// A race-detector daemon: slower, but it reports data races on
		// its stderr, which the tests show when they fail.
		flags = append(flags, "-race")
	}
	bin, remove, err := testenv.BuildDaemon(root, flags...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer remove()
	testEnv = env{repoRoot: root, bin: bin}
	return m.Run()
}
