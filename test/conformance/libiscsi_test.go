package conformance

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/scstd/scstd/test/testenv"
	"golang.org/x/sys/unix"
)

// The two initiator names of the harness (INIT1/INIT2): the second one is
// used by the reservation and multipath tests. Only they see the LUNs.
const (
	init1 = "iqn.2026-11.test:init"
	init2 = "iqn.2026-11.test:init2"
)

// LUNs of the conformance daemon, one per need of the suites.
const (
	lunMain      = iota // 512-byte thin file LUN: everything not listed below
	lunThin4K           // 4096-byte thin LUN
	lunReadOnly         // READ_ONLY
	lunRemovable        // REMOVABLE
	lunSanitize         // big BLOCKIO thin LUN, see sanitizeSize
)

// suiteRun is one invocation of run-libiscsi-suite.sh.
type suiteRun struct {
	name   string
	lun    int
	suites []string // FAMILY.SUITE; nil: every suite the other runs do not take
	args   []string // harness options besides -o, -f and the URL
	why    string
}

// suiteRuns routes each suite to the LUN it needs. Order matters only for time:
// the runs share the target, and target resets of one would disturb
// another, so they run one after the other.
func suiteRuns() []suiteRun {
	return []suiteRun{
		{name: "main", lun: lunMain, args: []string{"-t", "60"},
			why: "a thin 512-byte LUN, two sessions for SCSI.MultipathIO"},
		{name: "lbp4k", lun: lunThin4K, suites: []string{"SCSI.GetLBAStatus"}, args: []string{"-t", "60"},
			why: "GetLBAStatus.UnmapSingle assumes one logical block per physical block (4096 bytes)"},
		{name: "readonly", lun: lunReadOnly, suites: []string{"SCSI.ReadOnly"}, args: []string{"-t", "60"},
			why: "ReadOnly needs a write-protected LU"},
		{name: "removable", lun: lunRemovable, suites: []string{"SCSI.PreventAllow", "SCSI.StartStopUnit"},
			args: []string{"-M", "-t", "60"},
			why:  "removable medium; -M: PreventAllow.2ITNexuses must log in a fresh second nexus, the multipath one holds the LUN RESET unit attention of PreventAllow.LUNReset"},
		{name: "sanitize", lun: lunSanitize, suites: []string{"SCSI.Sanitize"}, args: []string{"-M", "-S", "-t", "300"},
			why: "Sanitize.Reset needs an overwrite that outlasts its 4 s of sleeps; -M: Sanitize.Reservations leaves the multipath session's RESERVE(6) in place, which would refuse Reset's SANITIZE"},
	}
}

// TestLibiscsiConformance is the CI conformance run (issue 4): every verdict
// must match expected.tsv, at least 200 tests pass, none fails or does not
// run, and every test tgt passes (tgt-tests.tsv) passes.
func TestLibiscsiConformance(t *testing.T) {
	requireTools(t, "iscsi-test-cu", "iscsi-inq", "bash", "bc", "timeout")
	script := sharedConformance(t, "run-libiscsi-suite.sh")
	tgtFile := sharedConformance(t, "tgt-tests.tsv")
	exps := readExpectations(t)

	inventory := libiscsiInventory(t)
	checkInventory(t, exps, inventory)
	if t.Failed() {
		t.FailNow()
	}

	dir := t.TempDir()
	sanSize := sanitizeSize(t, dir)
	d := startDaemon(t, daemonConfig{Dir: dir, Initiators: []string{init1, init2}, Devices: []device{
		{Name: "main", Path: filepath.Join(dir, "main.img"), Size: 1 << 30, BlockSize: 512},
		{Name: "thin4k", Path: filepath.Join(dir, "thin4k.img"), Size: 256 << 20, BlockSize: 4096},
		{Name: "readonly", Path: filepath.Join(dir, "readonly.img"), Size: 64 << 20, Flags: "READ_ONLY", BlockSize: 512},
		{Name: "removable", Path: filepath.Join(dir, "removable.img"), Size: 64 << 20, Flags: "REMOVABLE", BlockSize: 512},
		{Name: "sanitize", Path: filepath.Join(dir, "sanitize.img"), Size: sanSize, Flags: "BLOCKIO", BlockSize: 512},
	}})

	got := map[testID]string{}
	logs := map[string]string{} // suite -> its log file
	start := time.Now()
	for _, r := range suiteRuns() {
		suites := r.suites
		if suites == nil {
			suites = otherSuites(inventory)
		}
		quoted := make([]string, len(suites))
		for i, s := range suites {
			quoted[i] = regexp.QuoteMeta(s)
		}
		out := filepath.Join(dir, "results-"+r.name)
		args := append([]string{script, "-o", out, "-f", "^(" + strings.Join(quoted, "|") + ")$"}, r.args...)
		args = append(args, d.URL(r.lun))
		t0 := time.Now()
		log, err := runTool(t, 10*time.Minute, []string{"INIT1=" + init1, "INIT2=" + init2}, "bash", args...)
		t.Logf("run %s (LUN %d: %s) took %v:\n%s", r.name, r.lun, r.why, time.Since(t0).Round(time.Second), testenv.Tail(log, 8))
		if err != nil {
			t.Fatalf("run-libiscsi-suite.sh (%s): %v\n%s", r.name, err, testenv.Tail(log, 40))
		}
		if err := parseVerdictFile(filepath.Join(out, "tests.tsv"), got); err != nil {
			t.Fatal(err)
		}
		for _, s := range suites {
			logs[s] = filepath.Join(out, "logs", s+".log")
		}
	}
	elapsed := time.Since(start)

	for _, e := range exps {
		v, ran := got[e.ID]
		if m := mismatch(e, v, ran); m != "" {
			t.Errorf("%s: %s\n%s", e.ID, m, testLog(logs[e.ID.suite()], e.ID.Test))
		}
	}
	tgt := map[testID]string{}
	if err := parseVerdictFile(tgtFile, tgt); err != nil {
		t.Fatal(err)
	}
	for id, v := range tgt {
		if v == vPass && got[id] != vPass {
			t.Errorf("%s: tgt passes it, scstd: %q", id, got[id])
		}
	}
	total, table := summarize(t, inventory, got, tgt, elapsed)
	keepResults(t, dir, inventory, got, table)
	if total[vPass] < 200 || total[vFail] != 0 || total[vNotrun] != 0 {
		t.Errorf("pass=%d fail=%d notrun=%d: want >= 200 passing, none failing or unrun",
			total[vPass], total[vFail], total[vNotrun])
	}
}

func readExpectations(t *testing.T) []expectation {
	t.Helper()
	f, err := os.Open("expected.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	exps, err := parseExpectations(f)
	if err != nil {
		t.Fatalf("expected.tsv: %v", err)
	}
	return exps
}

// libiscsiInventory is `iscsi-test-cu --list` for the SCSI and iSCSI
// families, in listing order (the ALL family is their union, LINUX a subset).
func libiscsiInventory(t *testing.T) []testID {
	t.Helper()
	out, err := runTool(t, time.Minute, nil, "iscsi-test-cu", "--list")
	if err != nil {
		t.Fatalf("iscsi-test-cu --list: %v\n%s", err, testenv.Tail(out, 10))
	}
	var ids []testID
	for _, l := range strings.Split(out, "\n") {
		p := strings.Split(strings.TrimSpace(l), ".")
		if len(p) == 3 && (p[0] == "SCSI" || p[0] == "iSCSI") {
			ids = append(ids, testID{p[0], p[1], p[2]})
		}
	}
	if len(ids) == 0 {
		t.Fatalf("iscsi-test-cu --list lists no SCSI or iSCSI test:\n%s", testenv.Tail(out, 10))
	}
	return ids
}

// checkInventory keeps expected.tsv and the installed libiscsi in step:
// every listed test has exactly one expectation, and no expectation names a
// test libiscsi does not have.
func checkInventory(t *testing.T, exps []expectation, inventory []testID) {
	t.Helper()
	listed := map[testID]bool{}
	for _, id := range inventory {
		listed[id] = true
	}
	have := map[testID]bool{}
	for _, e := range exps {
		have[e.ID] = true
		if !listed[e.ID] {
			t.Errorf("expected.tsv:%d: %s is not in iscsi-test-cu --list", e.Line, e.ID)
		}
	}
	for _, id := range inventory {
		if !have[id] {
			t.Errorf("%s (iscsi-test-cu --list) has no row in expected.tsv", id)
		}
	}
	known := map[string]bool{}
	for _, id := range inventory {
		known[id.suite()] = true
	}
	for _, r := range suiteRuns() {
		for _, s := range r.suites {
			if !known[s] {
				t.Errorf("run %s names suite %s, which iscsi-test-cu does not have", r.name, s)
			}
		}
	}
}

// otherSuites lists the suites of the inventory that no run names.
func otherSuites(inventory []testID) []string {
	taken := map[string]bool{}
	for _, r := range suiteRuns() {
		for _, s := range r.suites {
			taken[s] = true
		}
	}
	var out []string
	for _, id := range inventory {
		if s := id.suite(); !taken[s] && (len(out) == 0 || out[len(out)-1] != s) {
			out = append(out, s)
		}
	}
	return out
}

// summarize prints the per-suite table (t.Log and stdout, for the CI log)
// next to tgt's published run, and returns the totals and the table.
func summarize(t *testing.T, inventory []testID, got, tgt map[testID]string, elapsed time.Duration) (map[string]int, string) {
	t.Helper()
	type row struct {
		suite string
		n     int
		c     map[string]int
		tgt   map[string]int
	}
	var rows []*row
	idx := map[string]*row{}
	total, tgtTotal := map[string]int{}, map[string]int{}
	for _, id := range inventory {
		r := idx[id.suite()]
		if r == nil {
			r = &row{suite: id.suite(), c: map[string]int{}, tgt: map[string]int{}}
			idx[id.suite()] = r
			rows = append(rows, r)
		}
		v, ok := got[id]
		if !ok {
			v = vNotrun
		}
		r.n++
		r.c[v]++
		total[v]++
		if tv, ok := tgt[id]; ok {
			r.tgt[tv]++
			tgtTotal[tv]++
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-36s %5s %5s %5s %5s %6s | %8s %8s %8s\n", "family.suite", "tests", "pass", "fail", "skip", "notrun", "tgt pass", "tgt fail", "tgt skip")
	line := func(name string, n int, c, tc map[string]int) {
		fmt.Fprintf(&b, "%-36s %5d %5d %5d %5d %6d | %8d %8d %8d\n", name, n, c[vPass], c[vFail], c[vSkip], c[vNotrun], tc[vPass], tc[vFail], tc[vSkip])
	}
	for _, r := range rows {
		line(r.suite, r.n, r.c, r.tgt)
	}
	line("TOTAL", len(inventory), total, tgtTotal)
	fmt.Fprintf(&b, "libiscsi conformance: %d tests, pass=%d fail=%d skip=%d notrun=%d in %v\n",
		len(inventory), total[vPass], total[vFail], total[vSkip], total[vNotrun], elapsed.Round(time.Second))
	t.Log("\n" + b.String())
	fmt.Print(b.String())
	return total, b.String()
}

// keepResults copies the harness results (and the merged verdicts as one
// tests.tsv) to $SCSTD_CONFORMANCE_OUT when it is set, for CI artifacts
// and docs/conformance.md; go test shows a passing package's output only
// with -v.
func keepResults(t *testing.T, dir string, inventory []testID, got map[testID]string, table string) {
	t.Helper()
	out := os.Getenv("SCSTD_CONFORMANCE_OUT")
	if out == "" {
		return
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, id := range inventory {
		v, ok := got[id]
		if !ok {
			v = vNotrun
		}
		fmt.Fprintf(&b, "%s\t%s\t%s\t%s\n", id.Family, id.Suite, id.Test, v)
	}
	for name, data := range map[string]string{"tests.tsv": b.String(), "summary.txt": table} {
		if err := os.WriteFile(filepath.Join(out, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range suiteRuns() {
		src := filepath.Join(dir, "results-"+r.name)
		if err := os.CopyFS(filepath.Join(out, r.name), os.DirFS(src)); err != nil {
			t.Errorf("keeping %s: %v", src, err)
		}
	}
	t.Logf("results kept in %s", out)
}

// testLog extracts one test's lines from a suite log for a failure message.
func testLog(path, test string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("    (no log: %v)", err)
	}
	var keep []string
	in := false
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "  Test: ") {
			in = strings.HasPrefix(l, "  Test: "+test+" ...")
		}
		if in && (strings.Contains(l, "FAILED") || strings.Contains(l, "SKIPPED") || strings.HasPrefix(l, "  Test: ")) {
			keep = append(keep, "    "+strings.TrimSpace(l))
		}
	}
	if len(keep) > 20 {
		keep = append(keep[:20], "    ...")
	}
	return strings.Join(keep, "\n")
}

// The sanitize LUN must be big enough that one OVERWRITE pass takes about
// sanitizeSeconds on this machine: Sanitize.Reset checks that it is still
// running 4 s after it started, and waits for its end in 60 s steps. The
// rate is measured, and other load on a shared machine makes it look
// slower than it may be during the run, hence the margin and the floor.
const (
	sanitizeSeconds = 10
	minSanitize     = 12 << 30
	maxSanitize     = 40 << 30
	probeSize       = 1 << 30
	probePasses     = 2
)

// sanitizeSize measures the O_DIRECT rewrite rate of dir (which is where
// the BLOCKIO sanitize LUN lives; Sanitize.Reset overwrites blocks earlier
// tests wrote) and sizes the LUN from it.
func sanitizeSize(t *testing.T, dir string) int64 {
	t.Helper()
	rate, err := directRewriteRate(filepath.Join(dir, "probe"), probeSize, probePasses)
	if err != nil {
		t.Fatalf("measuring the write rate of %s: %v", dir, err)
	}
	size := int64(rate * sanitizeSeconds)
	size = (size + 1<<30 - 1) &^ (1<<30 - 1)
	size = min(max(size, minSanitize), maxSanitize)
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	// The overwrites fill the sparse image; the other images stay small.
	if free := int64(st.Bavail) * st.Bsize; free < size+(4<<30) {
		t.Fatalf("%s has %d GiB free; the sanitize LUN needs %d GiB plus 4 GiB (write rate %.0f MB/s)",
			dir, free>>30, size>>30, rate/1e6)
	}
	t.Logf("rewrite rate %.0f MB/s: sanitize LUN of %d GiB", rate/1e6, size>>30)
	return size
}

// directRewriteRate writes n bytes to a new file with O_DIRECT (buffered
// plus fsync where O_DIRECT is refused), then rewrites them passes times
// and returns the best rate in bytes per second.
func directRewriteRate(path string, n int64, passes int) (float64, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|unix.O_DIRECT, 0o600)
	if errors.Is(err, unix.EINVAL) {
		f, err = os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	}
	if err != nil {
		return 0, err
	}
	defer os.Remove(path)
	defer f.Close()
	const chunk = 1 << 20
	raw := make([]byte, chunk+4096)
	off := int(4096-uintptr(unsafe.Pointer(unsafe.SliceData(raw)))%4096) % 4096
	buf := raw[off : off+chunk]
	for i := range buf {
		buf[i] = byte(i)
	}
	best := 0.0
	for pass := 0; pass <= passes; pass++ {
		start := time.Now()
		for w := int64(0); w < n; w += chunk {
			if _, err := f.WriteAt(buf, w); err != nil {
				return 0, fmt.Errorf("write: %w", err)
			}
		}
		if err := f.Sync(); err != nil {
			return 0, fmt.Errorf("fsync: %w", err)
		}
		if pass > 0 { // the first pass allocates
			best = max(best, float64(n)/time.Since(start).Seconds())
		}
	}
	return best, nil
}

// No suite is routed to two LUNs (checked without a daemon, so that a
// routing mistake fails fast).
func TestRunsNameDistinctSuites(t *testing.T) {
	seen := map[string]string{}
	for _, r := range suiteRuns() {
		for _, s := range r.suites {
			if prev, dup := seen[s]; dup {
				t.Errorf("suite %s in runs %s and %s", s, prev, r.name)
			}
			seen[s] = r.name
		}
	}
}
