// Package e2e runs the scstd daemon on 127.0.0.1 and drives it with real
// initiators (libiscsi's tools, qemu, fio) as the "Done when" list of the
// foundation issue asks. Every test starts its own daemon on a free port and
// stops only that daemon, by PID. A missing tool is a test failure, not a
// skip: CI installs them all (.ci/run).
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// env is what TestMain prepares for every test.
type env struct {
	repoRoot string // the module root
	binDir   string // holds the daemon binary; world-readable for the unprivileged test
	bin      string
}

// testEnv is set once by TestMain before any test runs and read-only after.
var testEnv env

func TestMain(m *testing.M) {
	os.Exit(setupAndRun(m))
}

func setupAndRun(m *testing.M) int {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "scstd-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	// The unprivileged test runs the binary as another user.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	bin := filepath.Join(dir, "scstd")
	args := []string{"build", "-o", bin}
	if os.Getenv("SCSTD_E2E_RACE") == "1" {
		// A race-detector daemon: slower, but it reports data races on
		// its stderr, which the tests show when they fail.
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "./cmd/scstd")...)
	build.Dir = root
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building the daemon failed:", err)
		return 1
	}
	testEnv = env{repoRoot: root, binDir: dir, bin: bin}
	return m.Run()
}
