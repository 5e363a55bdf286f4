package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// SuiteExpectation is one row of test/libiscsi-expected.tsv: a libiscsi
// suite a file LUN passes, with its expected counts.
type SuiteExpectation struct {
	Suite             string // FAMILY.SUITE
	Total, Pass, Skip int
	LUN               int // 0: a plain disk, 1: a REMOVABLE disk
	Note              string
}

// ReadSuiteExpectations reads and checks test/libiscsi-expected.tsv (suite,
// total, pass, skip, lun[, note]).
func ReadSuiteExpectations(path string) ([]SuiteExpectation, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var exps []SuiteExpectation
	for n, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		bad := func(msg string) error { return fmt.Errorf("%s:%d: %s", path, n+1, msg) }
		cols := strings.Split(line, "\t")
		if len(cols) < 5 {
			return nil, bad("want suite, total, pass, skip, lun[, note]")
		}
		e := SuiteExpectation{Suite: cols[0]}
		for i, p := range []*int{&e.Total, &e.Pass, &e.Skip, &e.LUN} {
			if *p, err = strconv.Atoi(cols[i+1]); err != nil {
				return nil, bad(err.Error())
			}
		}
		if len(cols) > 5 {
			e.Note = cols[5]
		}
		switch {
		case e.LUN != 0 && e.LUN != 1:
			return nil, bad("lun must be 0 (disk) or 1 (removable disk)")
		case e.Pass+e.Skip != e.Total:
			return nil, bad("pass+skip must equal total (fail and notrun are always 0)")
		case e.Skip > 0 && e.Note == "":
			return nil, bad("a skip needs a note saying why")
		}
		exps = append(exps, e)
	}
	return exps, nil
}

// SuiteCounts are the verdicts of one suite's tests.
type SuiteCounts struct {
	Pass, Fail, Skip, NotRun int
	Bad                      []string // "TEST FAILED" or "TEST <result>"
}

// ReadSuiteVerdicts adds the rows of a run-libiscsi-suite.sh tests.tsv
// (family, suite, test, result) to into, per FAMILY.SUITE. A missing file
// has no rows: its suites then have no results.
func ReadSuiteVerdicts(path string, into map[string]*SuiteCounts) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		c := strings.Split(sc.Text(), "\t")
		if len(c) != 4 {
			continue
		}
		suite, test, result := c[0]+"."+c[1], c[2], c[3]
		g := into[suite]
		if g == nil {
			g = &SuiteCounts{}
			into[suite] = g
		}
		switch result {
		case "pass":
			g.Pass++
		case "skip":
			g.Skip++
		case "fail":
			g.Fail++
			g.Bad = append(g.Bad, test+" FAILED")
		default:
			g.NotRun++
			g.Bad = append(g.Bad, test+" "+result)
		}
	}
	return sc.Err()
}
