package conformance

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
)

// Verdicts of run-libiscsi-suite.sh's tests.tsv.
const (
	vPass   = "pass"
	vFail   = "fail"
	vSkip   = "skip"
	vNotrun = "notrun"
)

// testID names one libiscsi test.
type testID struct{ Family, Suite, Test string }

func (id testID) suite() string  { return id.Family + "." + id.Suite }
func (id testID) String() string { return id.suite() + "." + id.Test }

// expectation is one row of expected.tsv.
type expectation struct {
	ID     testID
	Result string // pass or skip
	Reason string // why a skip is right: the standard feature scstd lacks
	Line   int
}

// parseExpectations reads expected.tsv: family, suite, test, expected
// result, reason; '#' starts a comment line. Only pass and skip may be
// expected (a failing or unrun test is never acceptable), a skip needs its
// one-line reason, and each test appears once.
func parseExpectations(r io.Reader) ([]expectation, error) {
	var out []expectation
	seen := map[testID]int{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		c := strings.Split(line, "\t")
		if len(c) < 4 || len(c) > 5 {
			return nil, fmt.Errorf("line %d: want family, suite, test, result[, reason] separated by tabs", n)
		}
		e := expectation{ID: testID{c[0], c[1], c[2]}, Result: c[3], Line: n}
		if len(c) == 5 {
			e.Reason = strings.TrimSpace(c[4])
		}
		switch {
		case e.ID.Family == "" || e.ID.Suite == "" || e.ID.Test == "":
			return nil, fmt.Errorf("line %d: empty family, suite or test", n)
		case e.Result != vPass && e.Result != vSkip:
			return nil, fmt.Errorf("line %d: %s: expected result %q: only pass or skip may be expected", n, e.ID, e.Result)
		case e.Result == vSkip && e.Reason == "":
			return nil, fmt.Errorf("line %d: %s: a skip needs a reason naming the missing standard feature", n, e.ID)
		}
		if prev, dup := seen[e.ID]; dup {
			return nil, fmt.Errorf("line %d: %s already listed on line %d", n, e.ID, prev)
		}
		seen[e.ID] = n
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// parseVerdicts reads a tests.tsv of the harness (family, suite, test,
// result) into a map; both it and tgt-tests.tsv have this shape.
func parseVerdicts(r io.Reader, into map[testID]string) error {
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" {
			continue
		}
		c := strings.Split(line, "\t")
		if len(c) != 4 {
			return fmt.Errorf("line %d: want family, suite, test, result: %q", n, line)
		}
		switch c[3] {
		case vPass, vFail, vSkip, vNotrun:
		default:
			return fmt.Errorf("line %d: unknown result %q", n, c[3])
		}
		id := testID{c[0], c[1], c[2]}
		if _, dup := into[id]; dup {
			return fmt.Errorf("line %d: %s has two verdicts", n, id)
		}
		into[id] = c[3]
	}
	return sc.Err()
}

func parseVerdictFile(path string, into map[testID]string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := parseVerdicts(f, into); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// mismatch compares one test's verdict with its expectation; "" is a match.
func mismatch(e expectation, got string, ran bool) string {
	switch {
	case !ran:
		return "no verdict: the test did not run"
	case got == e.Result:
		return ""
	case e.Result == vSkip && got == vPass:
		return "passes but expected.tsv says skip (" + e.Reason + "): make it pass in the file"
	default:
		return fmt.Sprintf("%s, expected %s", got, e.Result)
	}
}
