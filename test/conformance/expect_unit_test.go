package conformance

import (
	"strings"
	"testing"
)

func TestParseExpectations(t *testing.T) {
	tests := []struct {
		name, in string
		want     int
		err      string
	}{
		{"pass and skip", "# c\nSCSI\tRead10\tSimple\tpass\nSCSI\tX\tY\tskip\tno FOO (SBC-4 5.1)\n", 2, ""},
		{"blank lines", "\n\nSCSI\tRead10\tSimple\tpass\t\n", 1, ""},
		{"skip without reason", "SCSI\tX\tY\tskip\n", 0, "needs a reason"},
		{"skip with blank reason", "SCSI\tX\tY\tskip\t \n", 0, "needs a reason"},
		{"fail expected", "SCSI\tX\tY\tfail\twhy\n", 0, "only pass or skip"},
		{"notrun expected", "SCSI\tX\tY\tnotrun\n", 0, "only pass or skip"},
		{"duplicate", "SCSI\tX\tY\tpass\nSCSI\tX\tY\tpass\n", 0, "already listed"},
		{"short row", "SCSI\tX\tpass\n", 0, "separated by tabs"},
		{"empty field", "SCSI\t\tY\tpass\n", 0, "empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseExpectations(strings.NewReader(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || len(got) != tc.want {
				t.Fatalf("%d rows, %v; want %d", len(got), err, tc.want)
			}
		})
	}
}

func TestParseVerdicts(t *testing.T) {
	m := map[testID]string{}
	if err := parseVerdicts(strings.NewReader("SCSI\tA\tB\tpass\niSCSI\tC\tD\tnotrun\n"), m); err != nil {
		t.Fatal(err)
	}
	if m[testID{"SCSI", "A", "B"}] != vPass || m[testID{"iSCSI", "C", "D"}] != vNotrun {
		t.Fatalf("%v", m)
	}
	for _, bad := range []string{"SCSI\tA\tB\tmaybe\n", "SCSI\tA\tpass\n", "SCSI\tA\tB\tpass\nSCSI\tA\tB\tfail\n"} {
		if err := parseVerdicts(strings.NewReader(bad), map[testID]string{}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestMismatch(t *testing.T) {
	pass := expectation{Result: vPass}
	skip := expectation{Result: vSkip, Reason: "no FOO"}
	tests := []struct {
		e    expectation
		got  string
		ran  bool
		isOK bool
	}{
		{pass, vPass, true, true},
		{pass, vFail, true, false},
		{pass, vSkip, true, false},
		{pass, vNotrun, true, false},
		{pass, "", false, false},
		{skip, vSkip, true, true},
		{skip, vPass, true, false}, // keep the file honest
		{skip, vFail, true, false},
	}
	for _, tc := range tests {
		if m := mismatch(tc.e, tc.got, tc.ran); (m == "") != tc.isOK {
			t.Errorf("expected %s, got %q (ran %v): %q", tc.e.Result, tc.got, tc.ran, m)
		}
	}
}

// Fuzz the harness output parser: it must never panic, and what it accepts
// has exactly the four known verdicts.
func FuzzParseVerdicts(f *testing.F) {
	f.Add("SCSI\tRead10\tSimple\tpass\n")
	f.Add("SCSI\tA\tB\tskip\niSCSI\tC\tD\tnotrun\n")
	f.Add("\t\t\t\n")
	f.Fuzz(func(t *testing.T, s string) {
		m := map[testID]string{}
		if err := parseVerdicts(strings.NewReader(s), m); err != nil {
			return
		}
		for id, v := range m {
			switch v {
			case vPass, vFail, vSkip, vNotrun:
			default:
				t.Fatalf("%s: verdict %q accepted", id, v)
			}
		}
	})
}
