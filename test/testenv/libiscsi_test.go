package testenv

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestReadSuiteExpectations(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       []SuiteExpectation
		err        string
	}{
		{"rows and comments", "# c\nSCSI.Read10\t9\t9\t0\t0\n\nSCSI.Prevent\t2\t1\t1\t1\tno medium lock\n",
			[]SuiteExpectation{{Suite: "SCSI.Read10", Total: 9, Pass: 9}, {Suite: "SCSI.Prevent", Total: 2, Pass: 1, Skip: 1, LUN: 1, Note: "no medium lock"}}, ""},
		{"short row", "SCSI.Read10\t9\t9\t0\n", nil, ":1: want suite"},
		{"bad number", "SCSI.Read10\tnine\t9\t0\t0\n", nil, ":1: strconv"},
		{"bad lun", "SCSI.Read10\t9\t9\t0\t2\n", nil, "lun must be"},
		{"counts", "# x\n\nSCSI.Read10\t9\t8\t0\t0\n", nil, ":3: pass+skip"},
		{"skip without note", "SCSI.Read10\t9\t8\t1\t0\n", nil, "needs a note"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "e.tsv")
			if err := os.WriteFile(p, []byte(tc.text), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := ReadSuiteExpectations(p)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestReadSuiteVerdicts(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "tests.tsv")
	rows := "SCSI\tRead10\tSimple\tpass\nSCSI\tRead10\tBeyondEol\tfail\nSCSI\tRead10\tZero\tskip\niSCSI\tTMF\tLUNReset\tnotrun\nshort\trow\n"
	if err := os.WriteFile(p, []byte(rows), 0o644); err != nil {
		t.Fatal(err)
	}
	got := map[string]*SuiteCounts{}
	if err := ReadSuiteVerdicts(p, got); err != nil {
		t.Fatal(err)
	}
	if err := ReadSuiteVerdicts(filepath.Join(dir, "missing.tsv"), got); err != nil {
		t.Fatalf("missing file: %v", err)
	}
	want := map[string]*SuiteCounts{
		"SCSI.Read10": {Pass: 1, Fail: 1, Skip: 1, Bad: []string{"BeyondEol FAILED"}},
		"iSCSI.TMF":   {NotRun: 1, Bad: []string{"LUNReset notrun"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v %+v, want %+v %+v", got["SCSI.Read10"], got["iSCSI.TMF"], want["SCSI.Read10"], want["iSCSI.TMF"])
	}
}

func TestRepoRoot(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "cmd", "scstd")); err != nil {
		t.Fatalf("RepoRoot %s is not the module root: %v", root, err)
	}
}
