package controlfs

// The control filesystem served by an unprivileged user, as the usermode
// daemon runs: root (scstadmin) and the owner must both be able to read and
// write it, and a kill -9 must leave a stale mount that the next start
// clears. The test creates the user and makes /dev/fuse and /etc/fuse.conf
// usable for it, restoring both afterwards.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scstd/scstd/test/testenv"
	"golang.org/x/sys/unix"
)

const testUser = "scstd-fuse-test"

// ensureTestUser returns the uid and gid of testUser, creating it if needed.
func ensureTestUser(t *testing.T) (uint32, uint32) {
	t.Helper()
	u, err := user.Lookup(testUser)
	if err != nil {
		out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", testUser).CombinedOutput()
		if err != nil {
			testenv.Missing(t, "useradd %s: %v: %s", testUser, err, out)
		}
		if u, err = user.Lookup(testUser); err != nil {
			t.Fatal(err)
		}
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uint32(uid), uint32(gid)
}

// publicCopy copies the test binary where the test user can execute it.
func publicCopy(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "controlfs-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst := filepath.Join(dir, "controlfs.test")
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, src); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// served is a child process serving a mount as the test user.
type served struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	first  string // first stdout line: READY or FAIL ...
}

func serveAs(t *testing.T, bin, dir string, uid, gid uint32) *served {
	t.Helper()
	cmd := exec.Command("setpriv", "--reuid="+strconv.Itoa(int(uid)), "--regid="+strconv.Itoa(int(gid)), "--clear-groups",
		bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=serve", "CONTROLFS_TEST_DIR="+dir)
	s := &served{cmd: cmd, stderr: &bytes.Buffer{}}
	cmd.Stderr = s.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(out).ReadString('\n')
		line <- strings.TrimSpace(l)
		io.Copy(io.Discard, out)
	}()
	select {
	case s.first = <-line:
	case <-time.After(20 * time.Second):
		t.Fatal("serving child did not start")
	}
	return s
}

// asUser runs a shell script as uid/gid (nil credential: as root).
func asUser(cred *syscall.Credential, script string) (string, error) {
	cmd := exec.Command("bash", "-c", script)
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestUnprivilegedDaemon(t *testing.T) {
	needFUSE(t)
	testenv.NeedTools(t, "setpriv", "useradd", "fusermount3")
	uid, gid := ensureTestUser(t)
	bin := publicCopy(t)

	base, err := os.MkdirTemp("", "controlfs-unpriv-")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "proc")
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if mounted, _ := mountedAt(dir); mounted {
			unix.Unmount(dir, unix.MNT_DETACH)
		}
		os.RemoveAll(base)
	})

	var fst unix.Stat_t
	if err := unix.Stat("/dev/fuse", &fst); err != nil {
		t.Fatal(err)
	}
	fuseMode := fst.Mode & 0o7777
	conf, confErr := os.ReadFile("/etc/fuse.conf")
	allowed := confErr == nil && userAllowOther("/etc/fuse.conf")

	// Without the host setup, the start fails with one error that says
	// what to fix.
	if fuseMode&0o006 != 0o006 || !allowed {
		s := serveAs(t, bin, dir, uid, gid)
		s.cmd.Wait()
		if !strings.HasPrefix(s.first, "FAIL") {
			t.Fatalf("start without host setup: %q", s.first)
		}
		if fuseMode&0o006 != 0o006 && !strings.Contains(s.first, "chmod 0666 /dev/fuse") {
			t.Errorf("error does not tell how to fix /dev/fuse: %q", s.first)
		}
		if !allowed && !strings.Contains(s.first, "user_allow_other") {
			t.Errorf("error does not mention user_allow_other: %q", s.first)
		}
	}

	// The host setup of `make run`: /dev/fuse usable, user_allow_other.
	if err := os.Chmod("/dev/fuse", 0o666); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Chmod("/dev/fuse", os.FileMode(fuseMode)); err != nil {
			t.Errorf("restore /dev/fuse mode: %v", err)
		}
	})
	if !allowed {
		newConf := append(append([]byte{}, conf...), []byte("\nuser_allow_other\n")...)
		if err := os.WriteFile("/etc/fuse.conf", newConf, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			var err error
			if confErr != nil {
				err = os.Remove("/etc/fuse.conf")
			} else {
				err = os.WriteFile("/etc/fuse.conf", conf, 0o644)
			}
			if err != nil {
				t.Errorf("restore /etc/fuse.conf: %v", err)
			}
		})
	}

	// A mountpoint the user cannot write gets the mkdir/chmod advice.
	ro := filepath.Join(base, "ro")
	if err := os.Mkdir(ro, 0o755); err != nil {
		t.Fatal(err)
	}
	if s := serveAs(t, bin, ro, uid, gid); !strings.Contains(s.first, "chmod 777 "+ro) {
		s.cmd.Wait()
		t.Errorf("unwritable mountpoint: %q", s.first)
	} else {
		s.cmd.Wait()
	}

	s := serveAs(t, bin, dir, uid, gid)
	if s.first != "READY" {
		t.Fatalf("unprivileged start: %q\n%s", s.first, s.stderr)
	}
	owner := &syscall.Credential{Uid: uid, Gid: gid}
	p := dir + "/scsi_tgt"
	var st unix.Stat_t
	if err := unix.Stat(p+"/scsi_tgt", &st); err != nil || st.Uid != uid || st.Mode&0o777 != 0o644 {
		t.Errorf("scsi_tgt: uid %d mode %o %v; want uid %d mode 644", st.Uid, st.Mode&0o777, err, uid)
	}
	for _, step := range []struct {
		who    *syscall.Credential
		script string
		want   string
	}{
		{nil, "cat " + p + "/version", "3.3.0-pre1-procfs\n"},
		{owner, "cat " + p + "/version", "3.3.0-pre1-procfs\n"},
		{nil, "echo add_group byroot >" + p + "/scsi_tgt && ls " + p + "/groups", "Default\nbyroot\n"},
		{owner, "echo add_group byowner >" + p + "/scsi_tgt && LC_ALL=C ls " + p + "/groups", "Default\nbyowner\nbyroot\n"},
		{owner, "echo add iqn.x:owner >" + p + "/groups/byroot/names && cat " + p + "/groups/byroot/names", "iqn.x:owner\n"},
		{nil, "echo add iqn.x:root >" + p + "/groups/byowner/names && cat " + p + "/groups/byowner/names", "iqn.x:root\n"},
		{nil, "awk 'NR>1{print $1}' " + p + "/scsi_tgt", "disk0\n"},
		{owner, "{ echo bogus >" + p + "/scsi_tgt; } 2>&1 | grep -o 'Invalid argument'", "Invalid argument\n"},
	} {
		out, err := asUser(step.who, step.script)
		if err != nil || out != step.want {
			who := "root"
			if step.who != nil {
				who = testUser
			}
			t.Errorf("%s: %s: %q %v, want %q", who, step.script, out, err, step.want)
		}
	}

	// kill -9 leaves a stale mount ...
	s.cmd.Process.Signal(syscall.SIGKILL)
	s.cmd.Wait()
	if err := unix.Stat(dir, &st); !errors.Is(err, unix.ENOTCONN) {
		t.Fatalf("after kill -9: stat %v, want ENOTCONN", err)
	}
	// ... that the next start clears, with a log line.
	s = serveAs(t, bin, dir, uid, gid)
	if s.first != "READY" {
		t.Fatalf("restart after kill -9: %q\n%s", s.first, s.stderr)
	}
	if out, err := asUser(nil, "cat "+p+"/version"); err != nil || out != "3.3.0-pre1-procfs\n" {
		t.Errorf("after restart: %q %v", out, err)
	}
	// A clean stop unmounts.
	s.cmd.Process.Signal(syscall.SIGTERM)
	if err := s.cmd.Wait(); err != nil {
		t.Errorf("serving child: %v\n%s", err, s.stderr)
	}
	if !strings.Contains(s.stderr.String(), "clearing stale FUSE mount") {
		t.Errorf("no log line about the stale mount:\n%s", s.stderr)
	}
	if mounted, _ := mountedAt(dir); mounted {
		t.Error("still mounted after SIGTERM")
	}
}

// TestMountOwnerDropped mounts as root for another owner (the daemon's
// mount-then-drop-privileges start): the nodes belong to the owner and the
// owner can unmount with fusermount3.
func TestMountOwnerDropped(t *testing.T) {
	needFUSE(t)
	testenv.NeedTools(t, "setpriv")
	uid, gid := ensureTestUser(t)
	base, err := os.MkdirTemp("", "controlfs-owner-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	dir := filepath.Join(base, "proc")
	os.Mkdir(dir, 0o777)
	st, _, _ := newFakeState()
	srv, err := mountAs(context.Background(), dir, st, &Owner{UID: uid, GID: gid})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Unmount() })
	var s unix.Stat_t
	if err := unix.Stat(dir+"/scsi_tgt/scsi_tgt", &s); err != nil || s.Uid != uid || s.Gid != gid {
		t.Errorf("owner %d:%d %v, want %d:%d", s.Uid, s.Gid, err, uid, gid)
	}
	if out, err := asUser(&syscall.Credential{Uid: uid, Gid: gid}, "echo add_group o >"+dir+"/scsi_tgt/scsi_tgt && fusermount3 -u "+dir); err != nil {
		t.Fatalf("owner write + fusermount3 -u: %v: %s", err, out)
	}
	done := make(chan struct{})
	go func() { srv.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("server did not stop after fusermount3 -u")
	}
}
