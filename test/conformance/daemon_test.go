package conformance

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scstd/scstd/test/testenv"
)

// targetIQN is the target every daemon of this package serves.
const targetIQN = "iqn.2026-11.org.scstd:conformance"

// device is one vdisk device of the daemon's scst.conf.
type device struct {
	Name      string
	Path      string
	Size      int64  // the image is created sparse with this size when missing
	Flags     string // scst.conf options, e.g. "READ_ONLY" or "BLOCKIO|REMOVABLE"
	BlockSize int
}

// daemonConfig is one daemon: its devices on LUN 0, 1, ... in order, and
// the initiator names allowed to see them (a security group); nil
// Initiators maps the LUNs in the Default group instead.
type daemonConfig struct {
	Dir        string
	Devices    []device
	Initiators []string
}

// daemon is a running scstd started by a test; it is stopped by PID only.
type daemon struct {
	t    testing.TB
	cfg  daemonConfig
	proc *testenv.Proc
	Addr string
	log  *testenv.LockedBuffer
}

// writeConfigs writes iscsi-scstd.conf and scst.conf (spec §4.6 syntax).
func writeConfigs(t testing.TB, cfg daemonConfig) (iscsiConf, scstConf string) {
	t.Helper()
	var sc strings.Builder
	sc.WriteString("[HANDLER vdisk]\n")
	for _, d := range cfg.Devices {
		fmt.Fprintf(&sc, "DEVICE %s,%s,%s,%d,%s\n", d.Name, d.Path, d.Flags, d.BlockSize, d.Name)
	}
	group := "Default"
	sc.WriteString("\n[GROUP Default]\n")
	if cfg.Initiators != nil {
		group = "conformance"
		sc.WriteString("\n[GROUP conformance]\n")
		for _, n := range cfg.Initiators {
			fmt.Fprintf(&sc, "USER %s\n", n)
		}
	}
	fmt.Fprintf(&sc, "\n[ASSIGNMENT %s]\n", group)
	for i, d := range cfg.Devices {
		fmt.Fprintf(&sc, "DEVICE %s,%d\n", d.Name, i)
	}
	iscsiConf = filepath.Join(cfg.Dir, "iscsi-scstd.conf")
	scstConf = filepath.Join(cfg.Dir, "scst.conf")
	for p, s := range map[string]string{iscsiConf: "Target " + targetIQN + "\n", scstConf: sc.String()} {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return iscsiConf, scstConf
}

// startDaemon creates missing images, starts scstd -f on a free port of
// 127.0.0.1 and waits until it listens. The test's cleanup stops it.
func startDaemon(t testing.TB, cfg daemonConfig) *daemon {
	t.Helper()
	for _, d := range cfg.Devices {
		if _, err := os.Stat(d.Path); err == nil {
			continue
		}
		f, err := os.OpenFile(d.Path, os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(d.Size); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	iscsiConf, scstConf := writeConfigs(t, cfg)
	args := []string{"-f", "-a", "127.0.0.1", "-p", "0", "-d", "info",
		"-c", iscsiConf, "--scst-config", scstConf,
		"--state-dir", filepath.Join(cfg.Dir, "state"),
		"--initiators-allow", filepath.Join(cfg.Dir, "initiators.allow"),
		"--initiators-deny", filepath.Join(cfg.Dir, "initiators.deny"),
		"--shutdown-timeout", "20s", "--no-mount"}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "0", "-g", "0") // keep access to the images
	}
	d := &daemon{t: t, cfg: cfg, log: &testenv.LockedBuffer{}}
	proc, err := testenv.StartProc(exec.Command(testEnv.bin, args...), d.log)
	if err != nil {
		t.Fatal(err)
	}
	d.proc = proc
	t.Cleanup(func() {
		if d.proc.Alive() {
			d.Stop()
		}
		if t.Failed() {
			t.Logf("daemon log (%s):\n%s", cfg.Dir, testenv.Tail(d.log.String(), 80))
		}
	})
	if d.Addr, err = d.proc.WaitAddr(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	return d
}

// Stop sends SIGTERM and waits (killing after 30 s, a test failure); it
// reports whether the daemon exited with status 0.
func (d *daemon) Stop() bool {
	d.t.Helper()
	if !d.proc.Stop(syscall.SIGTERM, 30*time.Second) {
		d.t.Errorf("daemon did not exit within 30 s of SIGTERM; killed")
		return false
	}
	return d.proc.Err() == nil
}

// URL is the libiscsi URL of a LUN.
func (d *daemon) URL(lun int) string {
	return fmt.Sprintf("iscsi://%s/%s/%d", d.Addr, targetIQN, lun)
}

// requireTools fails the test when a tool is missing.
func requireTools(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Fatalf("%s not found: install the conformance tools with\n  apt-get install -y libiscsi-bin bc", n)
		}
	}
}

// runTool runs a command bounded by timeout; it returns the combined output.
func runTool(t testing.TB, timeout time.Duration, env []string, name string, args ...string) (string, error) {
	t.Helper()
	return testenv.Run(timeout, env, name, args...)
}

// sharedConformance is a file of ../shared/conformance.
func sharedConformance(t testing.TB, name string) string {
	t.Helper()
	return testenv.SharedConformance(t, testEnv.repoRoot, name)
}
