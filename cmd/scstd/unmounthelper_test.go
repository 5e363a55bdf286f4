package main

import (
	"strings"
	"testing"
)

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		"/fuse/scst/proc": "/fuse/scst/proc",
		`/a\040b`:         "/a b",
		`/tab\011x`:       "/tab\tx",
		`/back\134slash`:  `/back\slash`,
		`/short\04`:       `/short\04`,
		`/not\999octal`:   `/not\999octal`,
		`/end\040`:        "/end ",
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

// The helper returns once its input ends and leaves a path that is not a
// FUSE mount alone.
func TestUnmountHelperNotMounted(t *testing.T) {
	dir := t.TempDir()
	if fuseMountedAt(dir) {
		t.Fatalf("%s reported as a FUSE mount", dir)
	}
	if rc := runUnmountHelper(dir, strings.NewReader("")); rc != 0 {
		t.Fatalf("rc %d", rc)
	}
}
