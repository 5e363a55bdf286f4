package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scstd/scstd/test/testenv"
	"golang.org/x/sys/unix"
)

// targetIQN is the target every test daemon serves; demoIQN is the one
// of `scstd --demo` (samples/demo).
const (
	targetIQN = "iqn.2026-11.org.scstd:e2e"
	demoIQN   = "iqn.2026-11.org.scstd:demo"
)

// daemonConfig describes one test daemon.
type daemonConfig struct {
	// Image is the backing file; created sparse with ImageSize when missing.
	Image     string
	ImageSize int64
	// Flags are disk0's scst.conf flags (for example O_DIRECT).
	Flags string
	// TargetLines go inside the Target stanza of iscsi-scstd.conf.
	TargetLines []string
	// RemovableLUN1 adds a second image, <Dir>/disk1.img (64 MiB), as a
	// REMOVABLE disk on LUN 1.
	RemovableLUN1 bool
	// Mount mounts the control tree at <dir>/mnt (needs root or the host setup).
	Mount bool
	// RunAs starts the daemon as this user via setpriv (the test must run as root).
	RunAs string
	// KeepRoot passes -u 0 -g 0 so that a root daemon does not drop to nobody.
	KeepRoot bool
	// Dir is the working directory (configs, state, log); default t.TempDir().
	Dir string
	// Demo serves `--demo <Dir>/demo` instead of generated config files.
	Demo bool
	// ISCSIConf and SCSTConf, when set, are used instead of generated
	// config files; Target is then the IQN to address.
	ISCSIConf, SCSTConf, Target string
	// Args are appended to the command line.
	Args []string
}

// daemon is one running scstd started by a test.
type daemon struct {
	t        testing.TB
	cfg      daemonConfig
	proc     *testenv.Proc
	Addr     string // host:port it listens on
	Target   string // the IQN it serves
	Dir      string
	MountDir string
	log      *testenv.LockedBuffer
}

// writeConfigs writes iscsi-scstd.conf and scst.conf for cfg into dir.
func writeConfigs(t testing.TB, dir string, cfg daemonConfig) (iscsiConf, scstConf string) {
	t.Helper()
	iscsiConf = filepath.Join(dir, "iscsi-scstd.conf")
	scstConf = filepath.Join(dir, "scst.conf")
	var ic strings.Builder
	fmt.Fprintf(&ic, "Target %s\n", targetIQN)
	for _, l := range cfg.TargetLines {
		fmt.Fprintf(&ic, "\t%s\n", l)
	}
	devs, luns := fmt.Sprintf("DEVICE disk0,%s,%s,512,e2e0\n", cfg.Image, cfg.Flags), "DEVICE disk0,0\n"
	if cfg.RemovableLUN1 {
		img := filepath.Join(dir, "disk1.img")
		if err := os.WriteFile(img, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(img, 64<<20); err != nil {
			t.Fatal(err)
		}
		devs += fmt.Sprintf("DEVICE disk1,%s,REMOVABLE,512,e2e1\n", img)
		luns += "DEVICE disk1,1\n"
	}
	sc := "[HANDLER vdisk]\n" + devs + "\n[GROUP Default]\n\n[ASSIGNMENT Default]\n" + luns
	for p, s := range map[string]string{iscsiConf: ic.String(), scstConf: sc} {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return iscsiConf, scstConf
}

// startDaemon starts scstd -f for cfg and waits until it listens. The
// daemon is killed (by PID) when the test ends if the test did not stop it.
func startDaemon(t testing.TB, cfg daemonConfig) *daemon {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.Image == "" {
		cfg.Image = filepath.Join(cfg.Dir, "disk0.img")
	}
	if cfg.Demo || cfg.SCSTConf != "" {
		// The image and configs are given.
	} else if _, err := os.Stat(cfg.Image); errors.Is(err, os.ErrNotExist) {
		if cfg.ImageSize == 0 {
			cfg.ImageSize = 64 << 20
		}
		f, err := os.OpenFile(cfg.Image, os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(cfg.ImageSize); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	d := &daemon{t: t, cfg: cfg, Dir: cfg.Dir, Target: targetIQN, log: &testenv.LockedBuffer{}}
	args := []string{"-f", "-a", "127.0.0.1", "-p", "0", "-d", "info"}
	if cfg.Demo {
		args = append(args, "--demo", filepath.Join(cfg.Dir, "demo"))
		d.Target = demoIQN
	} else if cfg.SCSTConf != "" {
		args = append(args, "-c", cfg.ISCSIConf, "--scst-config", cfg.SCSTConf)
		d.Target = cfg.Target
	} else {
		iscsiConf, scstConf := writeConfigs(t, cfg.Dir, cfg)
		args = append(args, "-c", iscsiConf, "--scst-config", scstConf)
	}
	args = append(args,
		"--state-dir", filepath.Join(cfg.Dir, "state"),
		"--initiators-allow", filepath.Join(cfg.Dir, "initiators.allow"),
		"--initiators-deny", filepath.Join(cfg.Dir, "initiators.deny"),
		"--shutdown-timeout", "20s")
	if cfg.Mount {
		d.MountDir = filepath.Join(cfg.Dir, "mnt")
		if err := os.MkdirAll(d.MountDir, 0o755); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--mount", d.MountDir)
	} else {
		args = append(args, "--no-mount")
	}
	if cfg.KeepRoot {
		args = append(args, "-u", "0", "-g", "0")
	}
	args = append(args, cfg.Args...)
	name := testEnv.bin
	if cfg.RunAs != "" {
		args = append([]string{"--reuid=" + cfg.RunAs, "--regid=" + cfg.RunAs, "--init-groups", "--", testEnv.bin}, args...)
		name = "setpriv"
	}
	proc, err := testenv.StartProc(exec.Command(name, args...), d.log)
	if err != nil {
		t.Fatal(err)
	}
	d.proc = proc
	t.Cleanup(func() {
		if d.proc.Alive() {
			// Tests that do not stop their daemon get the graceful path;
			// one that hangs is killed.
			if !d.proc.Stop(syscall.SIGTERM, 30*time.Second) {
				t.Errorf("daemon did not exit within 30 s of SIGTERM; killed")
			} else if err := d.proc.Err(); err != nil {
				t.Errorf("daemon exit after SIGTERM: %v", err)
			}
		}
		if d.MountDir != "" && mountedAt(d.MountDir) {
			t.Errorf("%s still mounted after the daemon exited", d.MountDir)
			_ = unix.Unmount(d.MountDir, unix.MNT_DETACH)
		}
		// A race-detector build (SCSTD_E2E_RACE=1) reports on stderr; a
		// recovered panic is logged. Either fails the test.
		for _, bad := range []string{"WARNING: DATA RACE", "panic:"} {
			if log := d.log.String(); strings.Contains(log, bad) {
				lines := strings.SplitN(log[strings.Index(log, bad):], "\n", 61)
				t.Errorf("daemon log contains %q:\n%s", bad, strings.Join(lines[:min(len(lines), 60)], "\n"))
			}
		}
		if t.Failed() {
			t.Logf("daemon log (%s):\n%s", d.Dir, testenv.Tail(d.log.String(), 60))
		}
	})
	if d.Addr, err = d.proc.WaitAddr(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	return d
}

// URL is the libiscsi URL of LUN lun; query is appended as is ("" or "?...").
func (d *daemon) URL(lun int, query string) string {
	return fmt.Sprintf("iscsi://%s/%s/%d%s", d.Addr, d.Target, lun, query)
}

// URLWithAuth is the URL with CHAP credentials user%secret.
func (d *daemon) URLWithAuth(user, secret string, lun int) string {
	return fmt.Sprintf("iscsi://%s%%%s@%s/%s/%d", user, secret, d.Addr, d.Target, lun)
}

// Portal is the discovery URL.
func (d *daemon) Portal() string { return "iscsi://" + d.Addr }

// PID of the daemon process (of setpriv, which execs the daemon).
func (d *daemon) PID() int { return d.proc.Cmd.Process.Pid }

// Log returns what the daemon logged so far.
func (d *daemon) Log() string { return d.log.String() }

// Stop sends SIGTERM and waits; it returns the exit code (-1: killed
// after the timeout, a test failure).
func (d *daemon) Stop(timeout time.Duration) int {
	d.t.Helper()
	if !d.proc.Stop(syscall.SIGTERM, timeout) {
		d.t.Errorf("daemon did not exit within %v of SIGTERM", timeout)
		return -1
	}
	code := d.proc.ExitCode()
	if code < 0 {
		d.t.Fatalf("wait: %v", d.proc.Err())
	}
	return code
}

// Restart stops the daemon (expecting exit 0) and starts a new one on the
// same directory and image.
func (d *daemon) Restart() *daemon {
	d.t.Helper()
	if rc := d.Stop(60 * time.Second); rc != 0 {
		d.t.Fatalf("daemon exit status %d after SIGTERM, want 0", rc)
	}
	return startDaemon(d.t, d.cfg)
}

// mountedAt reports whether something is mounted at dir.
func mountedAt(dir string) bool {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[1] == dir {
			return true
		}
	}
	return false
}

// requireTools fails the test when a tool is missing; the message names
// the packages that provide it.
func requireTools(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Fatalf("%s not found: install the test tools with\n  apt-get install -y libiscsi-bin qemu-utils qemu-block-extra fuse3 e2fsprogs bc fio\n  apt-get install -y --no-install-recommends qemu-system-common", n)
		}
	}
}

// requireRoot fails tests that need root (loop devices, mounts, useradd).
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this end-to-end test needs root (run the test command with sudo)")
	}
}

// runTool runs an external command bounded by timeout and returns its
// combined output and error. Exit status != 0 is an error.
func runTool(t testing.TB, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	requireTools(t, name)
	return testenv.Run(timeout, nil, name, args...)
}

// mustRun is runTool that fails the test on error.
func mustRun(t testing.TB, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	out, err := runTool(t, timeout, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, testenv.Tail(out, 40))
	}
	return out
}

// loadSeconds is the duration of each load test (SCSTD_E2E_LOAD_SECS).
func loadSeconds(t testing.TB) int {
	t.Helper()
	s := os.Getenv("SCSTD_E2E_LOAD_SECS")
	if s == "" {
		return 60
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("SCSTD_E2E_LOAD_SECS=%q: want a positive number of seconds", s)
	}
	return n
}

// sharedConformance is a file of ../shared/conformance.
func sharedConformance(t testing.TB, name string) string {
	t.Helper()
	return testenv.SharedConformance(t, testEnv.repoRoot, name)
}
