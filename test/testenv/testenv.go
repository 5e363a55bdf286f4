// Package testenv decides what a test does when a prerequisite (a tool, root,
// a file system feature) is missing: on a developer machine it skips, in CI
// (the CI environment variable is set by .ci/run's caller) it fails, because
// .ci/run installs everything the tests need and a skip there would hide a
// missing install step.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// Missing skips t, or fails it in CI, naming the missing prerequisite.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("prerequisite missing in CI: "+format, args...)
	}
	t.Skipf(format, args...)
}

// NeedTools calls Missing for the first tool not found in PATH.
func NeedTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			Missing(t, "%s not installed", tool)
		}
	}
}

// NeedRoot calls Missing unless the test runs as root.
func NeedRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "%s needs root", why)
	}
}
