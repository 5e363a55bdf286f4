// Package reliability runs the scstd daemon binary on 127.0.0.1 and attacks
// it with faults, bad input and load (issue 6): network fuzz, initiator and
// backing-store faults, SIGKILL durability, CHAP and ACL security, and 64
// concurrent verifying sessions. Every test starts its own daemon on a free
// port and stops only that daemon, by PID. A missing tool is a test failure,
// not a skip.
//
// The bounded variants run in `go test ./test/reliability/...`; setting
// SCSTD_SOAK=1 lengthens the load and fuzz phases (SCSTD_SOAK_SECS, default
// 600 s each). SCSTD_TEST_BIN names a prebuilt daemon binary to test
// instead of building ./cmd/scstd.
package reliability

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/scstd/scstd/test/testenv"
)

// env is what TestMain prepares for every test; read-only afterwards.
type env struct {
	repoRoot string
	bin      string // the daemon binary, in a world-readable directory
	// race: the binary was built with -race, whose runtime's memory makes
	// RSS bounds meaningless (they are logged, not checked).
	race bool
}

var testEnv env

func TestMain(m *testing.M) {
	os.Exit(setupAndRun(m))
}

func setupAndRun(m *testing.M) int {
	root, err := testenv.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "reliability:", err)
		return 1
	}
	if prebuilt := os.Getenv("SCSTD_TEST_BIN"); prebuilt != "" {
		// A binary built elsewhere (for example from a clean checkout, or
		// with -race).
		out, err := exec.Command("go", "version", "-m", prebuilt).Output()
		if err != nil {
			fmt.Fprintln(os.Stderr, "reliability: go version -m", prebuilt+":", err)
			return 1
		}
		testEnv = env{repoRoot: root, bin: prebuilt, race: strings.Contains(string(out), "-race=true")}
		return m.Run()
	}
	bin, remove, err := testenv.BuildDaemon(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "reliability:", err)
		return 1
	}
	defer remove()
	testEnv = env{repoRoot: root, bin: bin}
	return m.Run()
}
