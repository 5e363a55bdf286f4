//go:build rbd

package rbd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/scstd/scstd/test/testenv"
)

const targetIQN = "iqn.2026-11.org.scstd:rbd"

// imageSeq numbers the images the tests create.
var imageSeq atomic.Int64

// rbdCLI runs the rbd tool against the test cluster.
func rbdCLI(t testing.TB, args ...string) string {
	t.Helper()
	return mustRun(t, 5*time.Minute, "rbd", append([]string{"-c", testEnv.conf}, args...)...)
}

// newImage creates an image of size (rbd syntax, e.g. 64M) in pool rbd,
// removed when the test ends, and returns its name.
func newImage(t testing.TB, size string) string {
	t.Helper()
	name := fmt.Sprintf("e2e%d-%d", os.Getpid(), imageSeq.Add(1))
	rbdCLI(t, "create", "rbd/"+name, "--size", size, "--image-feature", "layering")
	t.Cleanup(func() {
		// The daemons are stopped by their own (later registered, so
		// earlier run) cleanups. A killed daemon's watch on the image
		// lingers until the OSD times it out (30 s), refusing rm.
		// The object of the nodes' reset notifications outlives the image.
		if info, err := runTool(t, time.Minute, "rbd", "-c", testEnv.conf, "info", "--format", "json", "rbd/"+name); err == nil {
			var v struct{ ID string }
			if json.Unmarshal([]byte(info), &v) == nil && v.ID != "" {
				// Absent unless a daemon opened the image: errors do not matter.
				_, _ = runTool(t, time.Minute, "rados", "-c", testEnv.conf, "-p", "rbd", "rm", "scstd_events."+v.ID)
			}
		}
		deadline := time.Now().Add(90 * time.Second)
		for {
			out, err := runTool(t, 2*time.Minute, "rbd", "-c", testEnv.conf, "rm", "--no-progress", "rbd/"+name)
			if err == nil {
				return
			}
			if !strings.Contains(out, "watchers") || time.Now().After(deadline) {
				t.Errorf("rbd rm %s: %v\n%s", name, err, out)
				return
			}
			time.Sleep(2 * time.Second)
		}
	})
	return name
}

// lunSpec is one RBD LUN of a daemon.
type lunSpec struct {
	Image string // in pool rbd
	Flags string // scst.conf DEVICE flags, e.g. REMOVABLE
	// BlockSize is the LUN's logical block size (default 512).
	BlockSize int
}

// daemonConfig describes one test daemon.
type daemonConfig struct {
	LUNs []lunSpec
	// Dir holds configs, state and log; default t.TempDir().
	Dir string
	// Args are appended to the command line.
	Args []string
	// Mount mounts the control tree at <Dir>/mnt (root).
	Mount bool
}

// daemon is one running scstd started by a test.
type daemon struct {
	t    testing.TB
	proc *testenv.Proc
	Addr string
	Dir  string
	// MountDir is the control tree ("" without daemonConfig.Mount).
	MountDir string
	log      *testenv.LockedBuffer
}

// startDaemon starts scstd -f --ceph-conf for cfg and waits until it
// listens. It is stopped (SIGTERM, then killed, by PID) when the test ends.
func startDaemon(t testing.TB, cfg daemonConfig) *daemon {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	iscsiConf := filepath.Join(cfg.Dir, "iscsi-scstd.conf")
	scstConf := filepath.Join(cfg.Dir, "scst.conf")
	var devs, luns strings.Builder
	for i, l := range cfg.LUNs {
		// The T10 id is the image's, so that every node reports the same
		// device identification for the same image.
		bs := l.BlockSize
		if bs == 0 {
			bs = 512
		}
		fmt.Fprintf(&devs, "DEVICE rbd%d,/rbd/rbd/%s,%s,%d,%s\n", i, l.Image, l.Flags, bs, l.Image)
		fmt.Fprintf(&luns, "DEVICE rbd%d,%d\n", i, i)
	}
	sc := "[HANDLER vdisk]\n" + devs.String() + "\n[GROUP Default]\n\n[ASSIGNMENT Default]\n" + luns.String()
	if err := os.WriteFile(iscsiConf, []byte("Target "+targetIQN+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(scstConf, []byte(sc), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-f", "-a", "127.0.0.1", "-p", "0", "-d", "info", "-u", "0", "-g", "0",
		"-c", iscsiConf, "--scst-config", scstConf,
		"--state-dir", filepath.Join(cfg.Dir, "state"),
		"--initiators-allow", filepath.Join(cfg.Dir, "initiators.allow"),
		"--initiators-deny", filepath.Join(cfg.Dir, "initiators.deny"),
		"--shutdown-timeout", "20s", "--ceph-conf", testEnv.conf}
	d := &daemon{t: t, Dir: cfg.Dir, log: &testenv.LockedBuffer{}}
	if cfg.Mount {
		d.MountDir = filepath.Join(cfg.Dir, "mnt")
		args = append(args, "--mount", d.MountDir)
	} else {
		args = append(args, "--no-mount")
	}
	args = append(args, cfg.Args...)
	cmd := exec.Command(testEnv.bin, args...)
	if v := os.Getenv("SCSTD_RBD_DAEMON_ENV"); v != "" {
		// Runtime settings for the daemon only (e.g. GODEBUG, GOMAXPROCS),
		// to compare them without changing the test process.
		cmd.Env = append(os.Environ(), strings.Fields(v)...)
	}
	proc, err := testenv.StartProc(cmd, d.log)
	if err != nil {
		t.Fatal(err)
	}
	d.proc = proc
	t.Cleanup(func() {
		if d.proc.Alive() {
			if !d.proc.Stop(syscall.SIGTERM, 30*time.Second) {
				t.Errorf("daemon did not exit within 30 s of SIGTERM; killed")
			} else if err := d.proc.Err(); err != nil {
				t.Errorf("daemon exit after SIGTERM: %v", err)
			}
		}
		for _, bad := range []string{"WARNING: DATA RACE", "panic:"} {
			if log := d.log.String(); strings.Contains(log, bad) {
				t.Errorf("daemon log contains %q:\n%s", bad, testenv.Tail(log[strings.Index(log, bad):], 60))
			}
		}
		if t.Failed() {
			t.Logf("daemon log (%s):\n%s", d.Dir, testenv.Tail(d.log.String(), 60))
		}
	})
	if d.Addr, err = d.proc.WaitAddr(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	// The control tree is mounted after the listener opened.
	for deadline := time.Now().Add(30 * time.Second); d.MountDir != ""; {
		if _, err := os.Stat(filepath.Join(d.MountDir, "scsi_tgt", "vdisk", "vdisk")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("control tree not mounted at %s within 30 s", d.MountDir)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return d
}

// URL is the libiscsi URL of LUN lun.
func (d *daemon) URL(lun int) string {
	return fmt.Sprintf("iscsi://%s/%s/%d", d.Addr, targetIQN, lun)
}

// Kill ends the daemon with SIGKILL, as a node crash would.
func (d *daemon) Kill() {
	d.t.Helper()
	if !d.proc.Stop(syscall.SIGKILL, 30*time.Second) {
		d.t.Fatal("daemon still running 30 s after SIGKILL")
	}
}

// Stop sends SIGTERM and waits for a clean exit.
func (d *daemon) Stop() {
	d.t.Helper()
	if !d.proc.Stop(syscall.SIGTERM, 60*time.Second) {
		d.t.Fatal("daemon did not exit within 60 s of SIGTERM")
	}
	if err := d.proc.Err(); err != nil {
		d.t.Fatalf("daemon exit: %v\n%s", err, testenv.Tail(d.log.String(), 30))
	}
}

// requireTools fails the test when a tool is missing.
func requireTools(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Fatalf("%s not found: install the test tools as .ci/run does (libiscsi-bin qemu-utils qemu-block-extra e2fsprogs bc fio qemu-system-common ceph-common)", n)
		}
	}
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (loop devices, mounts)")
	}
}

// runTool runs a command bounded by timeout; exit status != 0 is an error.
func runTool(t testing.TB, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	requireTools(t, name)
	return testenv.Run(timeout, nil, name, args...)
}

func mustRun(t testing.TB, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	out, err := runTool(t, timeout, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, testenv.Tail(out, 40))
	}
	return out
}

// sharedConformance is a file of ../shared/conformance.
func sharedConformance(t testing.TB, name string) string {
	t.Helper()
	return testenv.SharedConformance(t, testEnv.repoRoot, name)
}

// sameFiles fails the test unless two files have equal contents.
func sameFiles(t testing.TB, a, b string) {
	t.Helper()
	fa, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	fb, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fa, fb) {
		i := 0
		for i < len(fa) && i < len(fb) && fa[i] == fb[i] {
			i++
		}
		t.Fatalf("%s and %s differ (sizes %d, %d; first difference at byte %d)", a, b, len(fa), len(fb), i)
	}
}
