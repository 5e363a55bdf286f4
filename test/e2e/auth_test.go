package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scstd/scstd/test/testenv"
)

// CHAP: the right secret logs in, a wrong or missing one is refused;
// mutual CHAP authenticates the target too.
func TestCHAP(t *testing.T) {
	const (
		user, secret       = "e2euser", "e2e-secret-123"
		tUser, tSecret     = "e2etarget", "target-secret-456"
		wrongSecret, query = "wrong-secret-000", "?target_user=%s&target_password=%s"
	)
	d := startDaemon(t, daemonConfig{KeepRoot: true, TargetLines: []string{
		"IncomingUser " + user + " " + secret,
		"OutgoingUser " + tUser + " " + tSecret,
	}})
	tests := []struct {
		name string
		url  string
		ok   bool
	}{
		{"right secret", d.URLWithAuth(user, secret, 0), true},
		{"wrong secret", d.URLWithAuth(user, wrongSecret, 0), false},
		{"unknown user", d.URLWithAuth("nobody", secret, 0), false},
		{"no credentials", d.URL(0, ""), false},
		{"mutual", d.URLWithAuth(user, secret, 0) + fmt.Sprintf(query, tUser, tSecret), true},
		{"mutual, target secret wrong", d.URLWithAuth(user, secret, 0) + fmt.Sprintf(query, tUser, wrongSecret), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runTool(t, 30*time.Second, "iscsi-inq", tc.url)
			switch {
			case tc.ok && err != nil:
				t.Errorf("login refused: %v\n%s", err, out)
			case tc.ok && !strings.Contains(out, "Peripheral Device Type:DIRECT_ACCESS"):
				t.Errorf("no INQUIRY data:\n%s", out)
			case !tc.ok && err == nil:
				t.Errorf("login accepted:\n%s", out)
			}
		})
	}
}

// Header digests: a CRC32C-only initiator logs in and works, the session
// shows hd:crc32c in the control tree, and I/O under digests is intact.
func TestHeaderDigest(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t, daemonConfig{KeepRoot: true, Mount: true, TargetLines: []string{
		"HeaderDigest CRC32C,None",
	}})
	url := d.URL(0, "?header_digest=crc32c")
	for _, tool := range [][]string{{"iscsi-inq", url}, {"iscsi-readcapacity16", url}} {
		if out, err := runTool(t, 30*time.Second, tool[0], tool[1:]...); err != nil {
			t.Errorf("%s with header_digest=crc32c: %v\n%s", tool[0], err, out)
		}
	}
	if out, err := runTool(t, 30*time.Second, "iscsi-ls", "-s", "iscsi://"+d.Addr+"?header_digest=crc32c"); err != nil || !strings.Contains(out, targetIQN) {
		t.Errorf("iscsi-ls with header_digest=crc32c: %v\n%s", err, out)
	}

	// Keep a session busy for a few seconds and look at it.
	requireTools(t, "iscsi-perf")
	perf := exec.Command("iscsi-perf", "-m", "8", "-t", "6", url)
	var perfOut strings.Builder
	perf.Stdout, perf.Stderr = &perfOut, &perfOut
	if err := perf.Start(); err != nil {
		t.Fatal(err)
	}
	var perfErr error
	done := make(chan struct{})
	go func() { perfErr = perf.Wait(); close(done) }()
	defer func() {
		select {
		case <-done:
		default:
			_ = perf.Process.Kill()
			<-done
		}
	}()
	sessionFile := filepath.Join(d.MountDir, "scsi_tgt", "iscsi", "session")
	var last string
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && !strings.Contains(last, "hd:crc32c") {
		b, _ := os.ReadFile(sessionFile)
		last = string(b)
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(last, "hd:crc32c") {
		t.Errorf("%s does not show hd:crc32c for the live session:\n%s", sessionFile, last)
	}
	select {
	case <-done:
		if perfErr != nil || reconnectRE.MatchString(perfOut.String()) {
			t.Errorf("iscsi-perf with header digests: %v\n%s", perfErr, testenv.Tail(strings.ReplaceAll(perfOut.String(), "\r", "\n"), 10))
		}
	case <-time.After(60 * time.Second):
		t.Errorf("iscsi-perf -t 6 did not finish in 60 s")
	}
}
