package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/scstd/scstd/test/testenv"
)

// reconnectRE matches what libiscsi and qemu print when a session dies
// under load: the stall gotgt shows (peers.md).
var reconnectRE = regexp.MustCompile(`(?i)NOP timeout|reconnect`)

// A SCSTD_E2E_LOAD_SECS (default 60) `iscsi-perf -m 32` run keeps its
// session: iscsi-perf sends a NOP-Out every 5 s while 32 commands are in
// flight, and must see every answer.
func TestLoadIscsiPerf(t *testing.T) {
	secs := loadSeconds(t)
	d := startDaemon(t, daemonConfig{ImageSize: 256 << 20, KeepRoot: true})
	out, err := runTool(t, time.Duration(secs+60)*time.Second, "iscsi-perf", "-m", "32", "-t", strconv.Itoa(secs), d.URL(0, ""))
	out = strings.ReplaceAll(out, "\r", "\n")
	t.Logf("iscsi-perf:\n%s", testenv.Tail(out, 8))
	if err != nil {
		t.Fatalf("iscsi-perf: %v", err)
	}
	if m := reconnectRE.FindString(out); m != "" {
		t.Errorf("iscsi-perf reported %q", m)
	}
	m := regexp.MustCompile(`(?m)^iops average ([0-9]+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no iops average in the iscsi-perf output")
	}
	if iops, _ := strconv.Atoi(m[1]); iops == 0 {
		t.Errorf("iops average 0")
	}
}

// A SCSTD_E2E_LOAD_SECS qemu-nbd + fio random-write run (qemu's iscsi
// driver pings every 5 s) sees no NOP timeout or reconnect; fio verifies
// what it wrote (crc32c, read back during the run), and afterwards the
// whole LUN read back through iSCSI equals the backing file.
func TestLoadFioNbd(t *testing.T) {
	const size = 256 << 20
	secs := loadSeconds(t)
	requireTools(t, "qemu-nbd", "fio", "qemu-img")
	d := startDaemon(t, daemonConfig{ImageSize: size, KeepRoot: true})
	scratch := t.TempDir()
	sock := filepath.Join(scratch, "nbd.sock")
	nbdLog, err := os.Create(filepath.Join(scratch, "qemu-nbd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer nbdLog.Close()
	nbd := exec.Command("qemu-nbd", "-f", "raw", "--cache=none", "-k", sock, "-t", d.URL(0, ""))
	nbd.Stdout, nbd.Stderr = nbdLog, nbdLog
	if err := nbd.Start(); err != nil {
		t.Fatal(err)
	}
	nbdDone := make(chan struct{})
	go func() { _ = nbd.Wait(); close(nbdDone) }()
	stopNBD := func() {
		select {
		case <-nbdDone:
			return
		default:
		}
		_ = nbd.Process.Signal(os.Interrupt)
		select {
		case <-nbdDone:
		case <-time.After(10 * time.Second):
			_ = nbd.Process.Kill()
			<-nbdDone
		}
	}
	t.Cleanup(stopNBD)
	waitFor(t, 20*time.Second, "qemu-nbd socket", func() bool { _, err := os.Stat(sock); return err == nil })

	out, err := runTool(t, time.Duration(secs+120)*time.Second, "fio",
		"--name=randwrite", "--ioengine=nbd", "--uri=nbd+unix:///?socket="+sock,
		"--rw=randwrite", "--bs=4k", "--iodepth=32", fmt.Sprintf("--size=%d", size),
		fmt.Sprintf("--runtime=%d", secs), "--time_based",
		"--verify=crc32c", "--verify_backlog=4096", "--verify_fatal=1", "--do_verify=1",
		// No verify-state file in the working directory.
		"--verify_state_save=0")
	t.Logf("fio:\n%s", testenv.Tail(out, 25))
	if err != nil {
		t.Fatalf("fio: %v", err)
	}
	if strings.Contains(out, "verify") && regexp.MustCompile(`(?i)verify: bad|bad magic|crc32c: verify failed`).MatchString(out) {
		t.Errorf("fio reported verify failures")
	}
	stopNBD()
	nbdOut, _ := os.ReadFile(nbdLog.Name())
	if m := reconnectRE.Find(nbdOut); m != nil {
		t.Errorf("qemu-nbd reported %q:\n%s", m, testenv.Tail(string(nbdOut), 20))
	}

	back := filepath.Join(scratch, "back.img")
	mustRun(t, 5*time.Minute, "qemu-img", "convert", "-f", "raw", "-O", "raw", d.URL(0, ""), back)
	compareFiles(t, back, filepath.Join(d.Dir, "disk0.img"), -1)
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
