package e2e

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

// suiteExpectation is one row of test/libiscsi-expected.tsv.
type suiteExpectation struct {
	Suite             string // FAMILY.SUITE
	Total, Pass, Skip int
	LUN               int // 0: a plain disk, 1: a REMOVABLE disk
	Note              string
}

func readExpectations(t testing.TB) []suiteExpectation {
	t.Helper()
	path := filepath.Join(testEnv.repoRoot, "test", "libiscsi-expected.tsv")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var exps []suiteExpectation
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		cols := strings.Split(line, "\t")
		if len(cols) < 5 {
			t.Fatalf("%s:%d: want suite, total, pass, skip, lun[, note]", path, n)
		}
		e := suiteExpectation{Suite: cols[0]}
		for i, p := range []*int{&e.Total, &e.Pass, &e.Skip, &e.LUN} {
			if *p, err = strconv.Atoi(cols[i+1]); err != nil {
				t.Fatalf("%s:%d: %v", path, n, err)
			}
		}
		if e.LUN != 0 && e.LUN != 1 {
			t.Fatalf("%s:%d: lun must be 0 (disk) or 1 (removable disk)", path, n)
		}
		if len(cols) > 5 {
			e.Note = cols[5]
		}
		if e.Pass+e.Skip != e.Total {
			t.Fatalf("%s:%d: pass+skip must equal total (fail and notrun are always 0)", path, n)
		}
		if e.Skip > 0 && e.Note == "" {
			t.Fatalf("%s:%d: a skip needs a note saying why", path, n)
		}
		exps = append(exps, e)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return exps
}

// run-libiscsi-suite.sh passes every test of the foundation suites; the
// per-suite counts must match the committed expectations exactly.
func TestLibiscsiSuites(t *testing.T) {
	requireTools(t, "iscsi-test-cu", "iscsi-inq", "bash", "bc")
	script := sharedConformance(t, "run-libiscsi-suite.sh")
	exps := readExpectations(t)

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

	type counts struct {
		pass, fail, skip, notrun int
		bad                      []string
	}
	got := map[string]*counts{}
	for _, out := range []string{filepath.Join(base, "lun0"), filepath.Join(base, "lun1")} {
		readVerdicts(t, filepath.Join(out, "tests.tsv"), func(suite, test, result string) {
			if got[suite] == nil {
				got[suite] = &counts{}
			}
			g := got[suite]
			switch result {
			case "pass":
				g.pass++
			case "skip":
				g.skip++
			case "fail":
				g.fail++
				g.bad = append(g.bad, test+" FAILED")
			default:
				g.notrun++
				g.bad = append(g.bad, test+" "+result)
			}
		})
	}
	for _, e := range exps {
		t.Run(e.Suite, func(t *testing.T) {
			g := got[e.Suite]
			if g == nil {
				t.Fatalf("no results for %s", e.Suite)
			}
			if g.fail != 0 || g.notrun != 0 || g.pass != e.Pass || g.skip != e.Skip {
				t.Errorf("pass=%d fail=%d skip=%d notrun=%d, want pass=%d skip=%d; %v\n%s",
					g.pass, g.fail, g.skip, g.notrun, e.Pass, e.Skip, g.bad, failureLines(outs[e.Suite], e.Suite))
			}
		})
	}
}

// readVerdicts calls fn for each row of a run-libiscsi-suite.sh tests.tsv
// (a missing file has no rows: its suites then have no results).
func readVerdicts(t testing.TB, path string, fn func(suite, test, result string)) {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		c := strings.Split(sc.Text(), "\t")
		if len(c) == 4 {
			fn(c[0]+"."+c[1], c[2], c[3])
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
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
