package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// testUser is the unprivileged account the tests create when missing.
const testUser = "scstd-test"

// ensureUser creates testUser (a system account without home or shell).
func ensureUser(t testing.TB) (uid, gid int) {
	t.Helper()
	if _, err := user.Lookup(testUser); err != nil {
		mustRun(t, time.Minute, "useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", testUser)
	}
	u, err := user.Lookup(testUser)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}

// sharedDir is a scratch directory the given uid/gid own and everybody can
// traverse (t.TempDir's parents are root-only).
func sharedDir(t testing.TB, uid, gid int) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "scstd-e2e-user-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	return dir
}

// sparseImage creates a sparse file of size owned by uid/gid.
func sparseImage(t testing.TB, path string, size int64, uid, gid int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.Chown(uid, gid); err != nil {
		t.Fatal(err)
	}
}

// procIDs returns the real/effective uid and gid lines of pid's status.
func procIDs(t testing.TB, pid int) (uids, gids, groups string) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, ":")
		v = strings.Join(strings.Fields(v), " ")
		switch k {
		case "Uid":
			uids = v
		case "Gid":
			gids = v
		case "Groups":
			groups = v
		}
	}
	return uids, gids, groups
}

// A small write through iSCSI lands in the backing file.
func checkWriteLands(t testing.TB, d *daemon, image string) {
	t.Helper()
	requireTools(t, "qemu-img")
	src := filepath.Join(t.TempDir(), "src.img")
	writeRandomFile(t, src, 1<<20, 7)
	mustRun(t, time.Minute, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src, d.URL(0, ""))
	compareFiles(t, src, image, 1<<20)
}

// What checkWriteLands wrote reads back through iSCSI (after a restart).
func checkWriteLandsAgain(t testing.TB, d *daemon, image string) {
	t.Helper()
	dir := t.TempDir()
	src, back := filepath.Join(dir, "src.img"), filepath.Join(dir, "back.img")
	writeRandomFile(t, src, 1<<20, 7)
	mustRun(t, time.Minute, "qemu-img", "convert", "-f", "raw", "-O", "raw", d.URL(0, ""), back)
	compareFiles(t, src, back, 1<<20)
	compareFiles(t, src, image, 1<<20)
}

// The daemon runs as an unprivileged user created by the test, serving an
// image that user owns and mounting its control tree through the host
// setup of scripts/setup-host.sh.
func TestUnprivilegedUser(t *testing.T) {
	requireRoot(t)
	uid, gid := ensureUser(t)
	dir := sharedDir(t, uid, gid)
	image := filepath.Join(dir, "disk0.img")
	sparseImage(t, image, 64<<20, uid, gid)
	mnt, state := filepath.Join(dir, "mnt"), filepath.Join(dir, "state")
	mustRun(t, time.Minute, filepath.Join(testEnv.repoRoot, "scripts", "setup-host.sh"), "-u", testUser, "-m", mnt, "-s", state)
	if out, err := runTool(t, time.Minute, "setpriv", "--reuid="+testUser, "--regid="+testUser, "--init-groups", "--",
		filepath.Join(testEnv.repoRoot, "scripts", "setup-host.sh"), "-c", "-u", testUser, "-m", mnt, "-s", state); err != nil {
		t.Fatalf("setup-host.sh -c after the setup: %v\n%s", err, out)
	}

	d := startDaemon(t, daemonConfig{Dir: dir, Image: image, RunAs: testUser, Mount: true})
	uids, gids, _ := procIDs(t, d.PID())
	want := fmt.Sprintf("%d %d %d %d", uid, uid, uid, uid)
	if uids != want || gids != fmt.Sprintf("%d %d %d %d", gid, gid, gid, gid) {
		t.Fatalf("daemon runs as uid %q gid %q, want %d/%d", uids, gids, uid, gid)
	}
	if out := mustRun(t, 30*time.Second, "iscsi-inq", d.URL(0, "")); !strings.Contains(out, "DIRECT_ACCESS") {
		t.Errorf("iscsi-inq:\n%s", out)
	}
	checkWriteLands(t, d, image)
	if b, err := os.ReadFile(filepath.Join(d.MountDir, "scsi_tgt", "version")); err != nil || !strings.HasPrefix(string(b), "3.3.0-pre1-procfs\n") {
		t.Errorf("control tree of the unprivileged daemon: %q, %v", b, err)
	}
	if rc := d.Stop(60 * time.Second); rc != 0 {
		t.Errorf("exit status %d after SIGTERM", rc)
	}
	// The daemon's own unmount, or its root helper's, removes the mount.
	waitFor(t, 10*time.Second, "the mount to go away", func() bool { return !mountedAt(d.MountDir) })
}

// Started as root without -u/-g, the daemon drops to nobody/nogroup once
// its socket and mount are open, and still serves.
func TestRootDropsToNobody(t *testing.T) {
	requireRoot(t)
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	nogroup, err := user.LookupGroup("nogroup")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nogroup.Gid)
	dir := sharedDir(t, 0, 0)
	image := filepath.Join(dir, "disk0.img")
	sparseImage(t, image, 64<<20, uid, gid)
	d := startDaemon(t, daemonConfig{Dir: dir, Image: image, Mount: true})
	uids, gids, groups := procIDs(t, d.PID())
	if uids != fmt.Sprintf("%d %d %d %d", uid, uid, uid, uid) || gids != fmt.Sprintf("%d %d %d %d", gid, gid, gid, gid) || groups != strconv.Itoa(gid) {
		t.Fatalf("daemon ids: uid %q gid %q groups %q, want nobody/nogroup only", uids, gids, groups)
	}
	if out := mustRun(t, 30*time.Second, "iscsi-inq", d.URL(0, "")); !strings.Contains(out, "DIRECT_ACCESS") {
		t.Errorf("iscsi-inq:\n%s", out)
	}
	checkWriteLands(t, d, image)
	if _, err := os.ReadFile(filepath.Join(d.MountDir, "scsi_tgt", "version")); err != nil {
		t.Errorf("control tree after the privilege drop: %v", err)
	}
	// The daemon that dropped root still removes its mount, and a restart
	// on the same mountpoint works.
	d = d.Restart()
	if _, err := os.ReadFile(filepath.Join(d.MountDir, "scsi_tgt", "version")); err != nil {
		t.Errorf("control tree after restart: %v", err)
	}
	if rc := d.Stop(60 * time.Second); rc != 0 {
		t.Errorf("exit status %d after SIGTERM", rc)
	}
	waitFor(t, 10*time.Second, "the mount to go away", func() bool { return !mountedAt(d.MountDir) })
}

// SIGTERM while 32 commands are in flight: the daemon finishes or aborts
// them, closes sessions and devices, and exits 0.
func TestGracefulSIGTERM(t *testing.T) {
	d := startDaemon(t, daemonConfig{ImageSize: 64 << 20, KeepRoot: true})
	requireTools(t, "iscsi-perf")
	perf := exec.Command("iscsi-perf", "-m", "32", "-t", "30", d.URL(0, ""))
	var out bytes.Buffer
	perf.Stdout, perf.Stderr = &out, &out
	if err := perf.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = perf.Wait(); close(done) }()
	defer func() { _ = perf.Process.Kill(); <-done }()
	time.Sleep(3 * time.Second)
	start := time.Now()
	if rc := d.Stop(30 * time.Second); rc != 0 {
		t.Fatalf("exit status %d after SIGTERM under load", rc)
	}
	if !strings.Contains(d.Log(), "msg=stopped") {
		t.Errorf("daemon did not log a clean stop")
	}
	t.Logf("stopped %v after SIGTERM", time.Since(start).Round(time.Millisecond))
}

// Without -f the daemon detaches and the command exits 0 once the daemon
// listens; a missing explicit config fails in the foreground process.
func TestBackgroundMode(t *testing.T) {
	dir := t.TempDir()
	image := filepath.Join(dir, "disk0.img")
	sparseImage(t, image, 64<<20, os.Getuid(), os.Getgid())
	iscsiConf, scstConf := writeConfigs(t, dir, daemonConfig{Image: image})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, testEnv.bin, "-a", "127.0.0.1", "-p", "0", "-u", strconv.Itoa(os.Getuid()), "-g", strconv.Itoa(os.Getgid()),
		"-c", iscsiConf, "--scst-config", scstConf, "--no-mount", "--state-dir", filepath.Join(dir, "state"),
		"--log-file", filepath.Join(dir, "scstd.log"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "scstd.log"))
		t.Fatalf("scstd without -f: %v\n%s\nlog:\n%s", err, out, log)
	}
	m := regexp.MustCompile(`listening on ([0-9.]+:[0-9]+), pid ([0-9]+)`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("no address/pid in %q", out)
	}
	pid, _ := strconv.Atoi(m[2])
	proc, _ := os.FindProcess(pid)
	t.Cleanup(func() {
		if alive(pid) {
			_ = proc.Kill()
		}
	})
	if pid == cmd.Process.Pid {
		t.Fatal("the foreground process is the daemon")
	}
	url := fmt.Sprintf("iscsi://%s/%s/0", m[1], targetIQN)
	if out := mustRun(t, 30*time.Second, "iscsi-inq", url); !strings.Contains(out, "DIRECT_ACCESS") {
		t.Errorf("iscsi-inq:\n%s", out)
	}
	if sid, err := unix.Getsid(pid); err != nil || sid != pid {
		t.Errorf("daemon session id %d (%v), want its own session %d", sid, err, pid)
	}
	if err := proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the background daemon to exit", func() bool { return !alive(pid) })

	// Startup errors reach the caller of the backgrounding command.
	cmd = exec.CommandContext(ctx, testEnv.bin, "-a", "127.0.0.1", "-p", "0", "--no-mount", "-c", filepath.Join(dir, "missing.conf"))
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "missing.conf") {
		t.Errorf("missing explicit config in background mode: err %v, output %q", err, out)
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// A root-started daemon that dropped privileges and is then killed with
// SIGKILL leaves no stale mount: its root unmount helper detaches it.
func TestKilledDaemonLeavesNoMount(t *testing.T) {
	requireRoot(t)
	dir := sharedDir(t, 0, 0)
	image := filepath.Join(dir, "disk0.img")
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	sparseImage(t, image, 64<<20, uid, uid)
	d := startDaemon(t, daemonConfig{Dir: dir, Image: image, Mount: true})
	if !mountedAt(d.MountDir) {
		t.Fatalf("%s not mounted", d.MountDir)
	}
	if !d.proc.Stop(syscall.SIGKILL, 30*time.Second) {
		t.Fatal("daemon still running 30 s after SIGKILL")
	}
	waitFor(t, 10*time.Second, "the unmount helper to detach the mount", func() bool { return !mountedAt(d.MountDir) })
	// And the mountpoint is usable again.
	d = startDaemon(t, daemonConfig{Dir: dir, Image: image, Mount: true})
	if _, err := os.ReadFile(filepath.Join(d.MountDir, "scsi_tgt", "version")); err != nil {
		t.Errorf("control tree after restart: %v", err)
	}
}
