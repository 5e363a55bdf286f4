//go:build rbd

package rbd

import (
	"bufio"
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

// suiteRow is one row of test/libiscsi-expected.tsv (the suites a file LUN
// passes, with their expected pass/skip counts).
type suiteRow struct {
	Suite      string
	Pass, Skip int
	LUN        int // 0: plain disk, 1: REMOVABLE disk
}

func readSuiteRows(t testing.TB) []suiteRow {
	t.Helper()
	path := filepath.Join(testEnv.repoRoot, "test", "libiscsi-expected.tsv")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []suiteRow
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		c := strings.Split(line, "\t")
		if len(c) < 5 {
			t.Fatalf("%s:%d: malformed row", path, n)
		}
		r := suiteRow{Suite: c[0]}
		for i, p := range []*int{&r.Pass, &r.Skip, &r.LUN} {
			if *p, err = strconv.Atoi(c[i+2]); err != nil {
				t.Fatalf("%s:%d: %v", path, n, err)
			}
		}
		rows = append(rows, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

// rbdExtraSuites exercise what the RBD backend maps onto librbd calls of
// its own (compare-and-write, writesame, discard); they are not in the
// file-LUN expectations, so they must simply have no failure.
var rbdExtraSuites = []string{"SCSI.CompareAndWrite", "SCSI.WriteSame10", "SCSI.WriteSame16", "SCSI.Unmap"}

type verdicts struct {
	pass, fail, skip, notrun int
	bad                      []string
}

// runSuites runs run-libiscsi-suite.sh with filter on url and returns the
// verdicts per suite.
func runSuites(t *testing.T, url, filter string) map[string]*verdicts {
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
	got := map[string]*verdicts{}
	b, err := os.ReadFile(filepath.Join(out, "tests.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		c := strings.Split(l, "\t")
		if len(c) != 4 {
			continue
		}
		s := c[0] + "." + c[1]
		if got[s] == nil {
			got[s] = &verdicts{}
		}
		g := got[s]
		switch c[3] {
		case "pass":
			g.pass++
		case "skip":
			g.skip++
		case "fail":
			g.fail++
			g.bad = append(g.bad, c[2]+" FAILED")
		default:
			g.notrun++
			g.bad = append(g.bad, c[2]+" "+c[3])
		}
	}
	return got
}

// runMultipath runs SCSI.MultipathIO with one URL per node (the suite
// script passes one URL twice, so iscsi-test-cu is run directly).
func runMultipath(t *testing.T, url1, url2 string) map[string]*verdicts {
	t.Helper()
	out, err := runTool(t, 10*time.Minute, "iscsi-test-cu", "--dataloss", "-i", "iqn.2026-11.test:init",
		"-t", "SCSI.MultipathIO", url1, url2)
	t.Logf("iscsi-test-cu SCSI.MultipathIO %s %s:\n%s", url1, url2, testenv.Tail(out, 40))
	g := &verdicts{}
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if !strings.HasPrefix(l, "Test: ") {
			continue
		}
		switch {
		case strings.HasSuffix(l, "passed"):
			g.pass++
		case strings.HasSuffix(l, "FAILED"):
			g.fail++
			g.bad = append(g.bad, l)
		}
	}
	if err != nil && g.fail == 0 {
		g.notrun++
		g.bad = append(g.bad, fmt.Sprintf("iscsi-test-cu: %v", err))
	}
	if strings.Contains(out, "[SKIPPED]") {
		g.skip++
	}
	return map[string]*verdicts{"SCSI.MultipathIO": g}
}

// TestLibiscsiSuites runs the file-LUN suites (test/libiscsi-expected.tsv)
// on RBD LUNs with the same expected counts, and the suites of the
// operations the RBD backend delegates to librbd with no failure.
func TestLibiscsiSuites(t *testing.T) {
	rows := readSuiteRows(t)
	imgs := []string{newImage(t, "128M"), newImage(t, "64M")}
	d := startDaemon(t, daemonConfig{LUNs: []lunSpec{{Image: imgs[0]}, {Image: imgs[1], Flags: "REMOVABLE"}}})
	var names [2][]string
	for _, r := range rows {
		names[r.LUN] = append(names[r.LUN], regexp.QuoteMeta(r.Suite))
	}
	for _, s := range rbdExtraSuites {
		names[0] = append(names[0], regexp.QuoteMeta(s))
	}
	got := map[string]*verdicts{}
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
			if g.fail != 0 || g.notrun != 0 || g.pass != r.Pass || g.skip != r.Skip {
				t.Errorf("pass=%d fail=%d skip=%d notrun=%d, want pass=%d skip=%d: %v", g.pass, g.fail, g.skip, g.notrun, r.Pass, r.Skip, g.bad)
			}
		})
	}
	for _, s := range rbdExtraSuites {
		t.Run(s, func(t *testing.T) {
			g := got[s]
			if g == nil {
				t.Fatal("no results")
			}
			t.Logf("pass=%d skip=%d", g.pass, g.skip)
			if g.fail != 0 || g.notrun != 0 || g.pass == 0 {
				t.Errorf("pass=%d fail=%d skip=%d notrun=%d: %v", g.pass, g.fail, g.skip, g.notrun, g.bad)
			}
		})
	}
}
