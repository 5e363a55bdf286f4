package testenv

import (
	"strings"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		env     []string
		timeout time.Duration
		want    string
		wantErr string
	}{
		{"output and env", []string{"-c", "echo $X"}, []string{"X=42"}, 5 * time.Second, "42\n", ""},
		{"exit status", []string{"-c", "echo no; exit 3"}, nil, 5 * time.Second, "no\n", "exit status 3"},
		{"timeout kills", []string{"-c", "exec sleep 30"}, nil, 200 * time.Millisecond, "", "timed out"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Run(tc.timeout, tc.env, "sh", tc.args...)
			if out != tc.want {
				t.Errorf("output %q, want %q", out, tc.want)
			}
			if (err == nil) != (tc.wantErr == "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestTail(t *testing.T) {
	for in, want := range map[string]string{"a\nb\nc\n": "b\nc", "a": "a", "": ""} {
		if got := Tail(in, 2); got != want {
			t.Errorf("Tail(%q) = %q, want %q", in, got, want)
		}
	}
}
