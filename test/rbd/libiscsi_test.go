//go:build rbd

package rbd

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/scstd/scstd/test/testenv"
)

// rbdExtraSuites exercise what the RBD backend maps onto librbd calls of
// its own (compare-and-write, writesame, discard); they are not in the
// file-LUN expectations, so they must simply have no failure.
var rbdExtraSuites = []string{"SCSI.CompareAndWrite", "SCSI.WriteSame10", "SCSI.WriteSame16", "SCSI.Unmap"}

// runSuites runs run-libiscsi-suite.sh with filter on url and returns the
// verdicts per suite.
func runSuites(t *testing.T, url, filter string) map[string]*testenv.SuiteCounts {
	t.Helper()
	requireTools(t, "iscsi-test-cu", "iscsi-inq", "bash", "bc")
	out := t.TempDir()
	// The per-suite limit catches a hung target. SCSI.Unmap sends 32,896
	// single-block descriptors, each a synchronous partial discard that
	// waits for the OSD's commit on the host disk: 40-110 s on a shared
	// 2-core VM, so 90 s (enough for file LUNs) cuts it off.
	log, err := runTool(t, 30*time.Minute, "bash", sharedConformance(t, "run-libiscsi-suite.sh"), "-o", out, "-t", "240", "-f", filter, url)
	t.Logf("run-libiscsi-suite.sh %s:\n%s", filter, testenv.Tail(log, 40))
	if err != nil {
		t.Fatalf("run-libiscsi-suite.sh: %v", err)
	}
	got := map[string]*testenv.SuiteCounts{}
	if err := testenv.ReadSuiteVerdicts(filepath.Join(out, "tests.tsv"), got); err != nil {
		t.Fatal(err)
	}
	return got
}

// runMultipath runs SCSI.MultipathIO with one URL per node (the suite
// script passes one URL twice, so iscsi-test-cu is run directly).
func runMultipath(t *testing.T, url1, url2 string) map[string]*testenv.SuiteCounts {
	t.Helper()
	out, err := runTool(t, 10*time.Minute, "iscsi-test-cu", "--dataloss", "-i", "iqn.2026-11.test:init",
		"-t", "SCSI.MultipathIO", url1, url2)
	t.Logf("iscsi-test-cu SCSI.MultipathIO %s %s:\n%s", url1, url2, testenv.Tail(out, 40))
	g := &testenv.SuiteCounts{}
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if !strings.HasPrefix(l, "Test: ") {
			continue
		}
		switch {
		case strings.HasSuffix(l, "passed"):
			g.Pass++
		case strings.HasSuffix(l, "FAILED"):
			g.Fail++
			g.Bad = append(g.Bad, l)
		}
	}
	if err != nil && g.Fail == 0 {
		g.NotRun++
		g.Bad = append(g.Bad, fmt.Sprintf("iscsi-test-cu: %v", err))
	}
	if strings.Contains(out, "[SKIPPED]") {
		g.Skip++
	}
	return map[string]*testenv.SuiteCounts{"SCSI.MultipathIO": g}
}

// TestLibiscsiSuites runs the file-LUN suites (test/libiscsi-expected.tsv)
// on RBD LUNs with the same expected counts, and the suites of the
// operations the RBD backend delegates to librbd with no failure.
func TestLibiscsiSuites(t *testing.T) {
	rows, err := testenv.ReadSuiteExpectations(filepath.Join(testEnv.repoRoot, "test", "libiscsi-expected.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	imgs := []string{newImage(t, "128M"), newImage(t, "64M")}
	d := startDaemon(t, daemonConfig{LUNs: []lunSpec{{Image: imgs[0]}, {Image: imgs[1], Flags: "REMOVABLE"}}})
	var names [2][]string
	for _, r := range rows {
		names[r.LUN] = append(names[r.LUN], regexp.QuoteMeta(r.Suite))
	}
	for _, s := range rbdExtraSuites {
		names[0] = append(names[0], regexp.QuoteMeta(s))
	}
	got := map[string]*testenv.SuiteCounts{}
	for lun, ns := range names {
		for s, v := range runSuites(t, d.URL(lun), "^("+strings.Join(ns, "|")+")$") {
			got[s] = v
		}
	}
	for _, r := range rows {
		t.Run(r.Suite, func(t *testing.T) {
			g := got[r.Suite]
			if g == nil {
				t.Fatal("no results")
			}
			if g.Fail != 0 || g.NotRun != 0 || g.Pass != r.Pass || g.Skip != r.Skip {
				t.Errorf("pass=%d fail=%d skip=%d notrun=%d, want pass=%d skip=%d: %v", g.Pass, g.Fail, g.Skip, g.NotRun, r.Pass, r.Skip, g.Bad)
			}
		})
	}
	for _, s := range rbdExtraSuites {
		t.Run(s, func(t *testing.T) {
			g := got[s]
			if g == nil {
				t.Fatal("no results")
			}
			t.Logf("pass=%d skip=%d", g.Pass, g.Skip)
			if g.Fail != 0 || g.NotRun != 0 || g.Pass == 0 {
				t.Errorf("pass=%d fail=%d skip=%d notrun=%d: %v", g.Pass, g.Fail, g.Skip, g.NotRun, g.Bad)
			}
		})
	}
}
