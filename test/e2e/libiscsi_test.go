package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/scstd/scstd/test/testenv"
)

// run-libiscsi-suite.sh passes every test of the foundation suites; the
// per-suite counts must match the committed expectations exactly.
func TestLibiscsiSuites(t *testing.T) {
	requireTools(t, "iscsi-test-cu", "iscsi-inq", "bash", "bc")
	script := sharedConformance(t, "run-libiscsi-suite.sh")
	exps, err := testenv.ReadSuiteExpectations(filepath.Join(testEnv.repoRoot, "test", "libiscsi-expected.tsv"))
	if err != nil {
		t.Fatal(err)
	}

	// The expected totals are libiscsi's own inventory.
	list := mustRun(t, time.Minute, "iscsi-test-cu", "--list")
	inventory := map[string]int{}
	for _, l := range strings.Split(list, "\n") {
		if p := strings.Split(strings.TrimSpace(l), "."); len(p) == 3 && (p[0] == "SCSI" || p[0] == "iSCSI") {
			inventory[p[0]+"."+p[1]]++
		}
	}
	names := make([][]string, 2) // per LUN
	for _, e := range exps {
		if inventory[e.Suite] != e.Total {
			t.Errorf("%s: iscsi-test-cu --list has %d tests, expectations say %d", e.Suite, inventory[e.Suite], e.Total)
		}
		names[e.LUN] = append(names[e.LUN], regexp.QuoteMeta(e.Suite))
	}

	d := startDaemon(t, daemonConfig{ImageSize: 128 << 20, KeepRoot: true, RemovableLUN1: true})
	base := t.TempDir()
	outs := map[string]string{} // suite -> its results directory
	for lun, ns := range names {
		if len(ns) == 0 {
			continue
		}
		out := filepath.Join(base, "lun"+strconv.Itoa(lun))
		filter := "^(" + strings.Join(ns, "|") + ")$"
		log, err := runTool(t, 30*time.Minute, "bash", script, "-o", out, "-t", "60", "-f", filter, d.URL(lun, ""))
		t.Logf("run-libiscsi-suite.sh on LUN %d:\n%s", lun, testenv.Tail(log, 40))
		if err != nil {
			t.Fatalf("run-libiscsi-suite.sh: %v", err)
		}
		for _, e := range exps {
			if e.LUN == lun {
				outs[e.Suite] = out
			}
		}
	}

	got := map[string]*testenv.SuiteCounts{}
	for _, out := range []string{filepath.Join(base, "lun0"), filepath.Join(base, "lun1")} {
		if err := testenv.ReadSuiteVerdicts(filepath.Join(out, "tests.tsv"), got); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range exps {
		t.Run(e.Suite, func(t *testing.T) {
			g := got[e.Suite]
			if g == nil {
				t.Fatalf("no results for %s", e.Suite)
			}
			if g.Fail != 0 || g.NotRun != 0 || g.Pass != e.Pass || g.Skip != e.Skip {
				t.Errorf("pass=%d fail=%d skip=%d notrun=%d, want pass=%d skip=%d; %v\n%s",
					g.Pass, g.Fail, g.Skip, g.NotRun, e.Pass, e.Skip, g.Bad, failureLines(outs[e.Suite], e.Suite))
			}
		})
	}
}

// failureLines extracts the assertion messages of a suite's log.
func failureLines(out, suite string) string {
	b, err := os.ReadFile(filepath.Join(out, "logs", suite+".log"))
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	var keep []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "FAILED") || strings.Contains(l, "[SKIPPED]") || strings.Contains(l, "Test: ") {
			keep = append(keep, "    "+strings.TrimSpace(l))
		}
	}
	if len(keep) > 40 {
		keep = append(keep[:40], "    ...")
	}
	return strings.Join(keep, "\n")
}
