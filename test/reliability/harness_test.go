package reliability

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scstd/scstd/iscsi/iscsitest"
	"github.com/scstd/scstd/test/testenv"
)

// targetIQN is the target every test daemon serves.
const targetIQN = "iqn.2026-11.org.scstd:rel"

// blockSize of every test device.
const blockSize = 512

// device is one vdisk of a test daemon, assigned to the Default group at
// its index as LUN unless the config gives its own scst.conf.
type device struct {
	Name  string
	Path  string // created sparse with Size when missing
	Size  int64  // default 64 MiB
	Flags string // scst.conf options field, e.g. "WRITE_THROUGH"
}

// daemonConfig describes one test daemon.
type daemonConfig struct {
	Dir     string   // working directory (configs, state, log); default t.TempDir()
	Devices []device // default: one 64 MiB disk0 in Dir
	// SCSTConf replaces the generated scst.conf (devices are still created).
	SCSTConf string
	// GlobalLines go before the Target stanza of iscsi-scstd.conf
	// (discovery CHAP); TargetLines inside it.
	GlobalLines, TargetLines []string
	// MoreConfig is appended to iscsi-scstd.conf (more Target stanzas).
	MoreConfig string
	Mount      bool   // mount the control tree at Dir/mnt
	RunAs      string // start via setpriv as USER or USER:GROUP (test runs as root)
	Args       []string
	Level      string // log level, default info
}

// daemon is one running scstd started by a test.
type daemon struct {
	t        testing.TB
	cfg      daemonConfig
	proc     *testenv.Proc
	Addr     string
	Dir      string
	MountDir string
	log      *testenv.LockedBuffer
}

// prepare fills the defaults of cfg, creates missing images and writes the
// two configuration files.
func (cfg *daemonConfig) prepare(t testing.TB) (iscsiConf, scstConf string) {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if len(cfg.Devices) == 0 {
		cfg.Devices = []device{{Name: "disk0"}}
	}
	for i := range cfg.Devices {
		d := &cfg.Devices[i]
		if d.Path == "" {
			d.Path = filepath.Join(cfg.Dir, d.Name+".img")
		}
		if d.Size == 0 {
			d.Size = 64 << 20
		}
		if _, err := os.Stat(d.Path); errors.Is(err, os.ErrNotExist) {
			f, err := os.OpenFile(d.Path, os.O_CREATE|os.O_RDWR, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Truncate(d.Size); err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
	}
	var ic strings.Builder
	for _, l := range cfg.GlobalLines {
		fmt.Fprintf(&ic, "%s\n", l)
	}
	fmt.Fprintf(&ic, "Target %s\n", targetIQN)
	for _, l := range cfg.TargetLines {
		fmt.Fprintf(&ic, "\t%s\n", l)
	}
	ic.WriteString(cfg.MoreConfig)
	sc := cfg.SCSTConf
	if sc == "" {
		var b strings.Builder
		b.WriteString("[HANDLER vdisk]\n")
		for _, d := range cfg.Devices {
			fmt.Fprintf(&b, "DEVICE %s,%s,%s,%d\n", d.Name, d.Path, d.Flags, blockSize)
		}
		b.WriteString("\n[GROUP Default]\n\n[ASSIGNMENT Default]\n")
		for i, d := range cfg.Devices {
			fmt.Fprintf(&b, "DEVICE %s,%d\n", d.Name, i)
		}
		sc = b.String()
	}
	iscsiConf = filepath.Join(cfg.Dir, "iscsi-scstd.conf")
	scstConf = filepath.Join(cfg.Dir, "scst.conf")
	for p, s := range map[string]string{iscsiConf: ic.String(), scstConf: sc} {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return iscsiConf, scstConf
}

// startDaemon starts scstd -f for cfg and waits until it listens. The
// daemon is killed (by PID) at the end of the test if still running.
func startDaemon(t testing.TB, cfg daemonConfig) *daemon {
	t.Helper()
	d, err := tryStartDaemon(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// tryStartDaemon is startDaemon returning startup failures (with the log).
func tryStartDaemon(t testing.TB, cfg daemonConfig) (*daemon, error) {
	t.Helper()
	iscsiConf, scstConf := cfg.prepare(t)
	d := &daemon{t: t, cfg: cfg, Dir: cfg.Dir, log: &testenv.LockedBuffer{}}
	level := cfg.Level
	if level == "" {
		level = "info"
	}
	args := []string{"-f", "-a", "127.0.0.1", "-p", "0", "-d", level,
		"-c", iscsiConf, "--scst-config", scstConf,
		"--state-dir", filepath.Join(cfg.Dir, "state"),
		"--initiators-allow", filepath.Join(cfg.Dir, "initiators.allow"),
		"--initiators-deny", filepath.Join(cfg.Dir, "initiators.deny"),
		"--shutdown-timeout", "20s"}
	if cfg.Mount {
		d.MountDir = filepath.Join(cfg.Dir, "mnt")
		if err := os.MkdirAll(d.MountDir, 0o755); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--mount", d.MountDir)
	} else {
		args = append(args, "--no-mount")
	}
	name := testEnv.bin
	if cfg.RunAs != "" {
		user, group, ok := strings.Cut(cfg.RunAs, ":")
		if !ok {
			group = user
		}
		args = append([]string{"--reuid=" + user, "--regid=" + group, "--clear-groups", "--", testEnv.bin}, args...)
		name = "setpriv"
	} else {
		// A root test daemon keeps root: the images live in root's temp dirs.
		args = append(args, "-u", strconv.Itoa(os.Geteuid()), "-g", strconv.Itoa(os.Getegid()))
	}
	args = append(args, cfg.Args...)
	proc, err := testenv.StartProc(exec.Command(name, args...), d.log)
	if err != nil {
		t.Fatal(err)
	}
	d.proc = proc
	t.Cleanup(func() {
		d.proc.Stop(syscall.SIGKILL, time.Minute)
		// A race report (daemon built with -race) or a recovered panic
		// fails whichever test provoked it.
		for _, bad := range []string{"WARNING: DATA RACE", "panic in connection reader", "goroutine panicked"} {
			if i := strings.Index(d.log.String(), bad); i >= 0 {
				t.Errorf("daemon log contains %q:\n%s", bad, excerpt(d.log.String(), i, 6000))
			}
		}
		if t.Failed() {
			t.Logf("daemon log (%s):\n%s", d.Dir, testenv.Tail(d.log.String(), 80))
		}
		if d.MountDir != "" {
			if m, _ := os.ReadFile("/proc/mounts"); bytes.Contains(m, []byte(" "+d.MountDir+" ")) {
				_ = exec.Command("umount", "-l", d.MountDir).Run()
			}
		}
	})
	d.Addr, err = d.proc.WaitAddr(30 * time.Second)
	return d, err
}

// PID of the daemon (of setpriv, which execs the daemon).
func (d *daemon) PID() int { return d.proc.Cmd.Process.Pid }

// Log returns what the daemon logged so far.
func (d *daemon) Log() string { return d.log.String() }

// Alive reports whether the daemon process still runs.
func (d *daemon) Alive() bool { return d.proc.Alive() }

// Stop sends SIGTERM and waits; it returns the exit code (-1 when the
// daemon had to be killed after timeout, which is also a test error).
func (d *daemon) Stop(timeout time.Duration) int {
	d.t.Helper()
	if !d.proc.Stop(syscall.SIGTERM, timeout) {
		d.t.Errorf("daemon did not exit within %v of SIGTERM", timeout)
		return -1
	}
	return d.exitCode()
}

func (d *daemon) exitCode() int {
	code := d.proc.ExitCode()
	if code < 0 {
		d.t.Fatalf("wait: %v", d.proc.Err())
	}
	return code
}

// Kill sends SIGKILL and waits for the process to be gone.
func (d *daemon) Kill() {
	d.t.Helper()
	if !d.proc.Stop(syscall.SIGKILL, 30*time.Second) {
		d.t.Fatal("daemon still running 30 s after SIGKILL")
	}
}

// Restart starts a new daemon with the same configuration and images.
func (d *daemon) Restart() *daemon {
	d.t.Helper()
	if d.Alive() {
		d.t.Fatal("Restart of a running daemon")
	}
	return startDaemon(d.t, d.cfg)
}

// procStatus returns a numeric field (kB for VmRSS) of /proc/PID/status.
func (d *daemon) procStatus(field string) int64 {
	d.t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.PID()))
	if err != nil {
		d.t.Fatalf("read daemon status: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, err := strconv.ParseInt(f[0], 10, 64)
				if err == nil {
					return n
				}
			}
		}
	}
	d.t.Fatalf("no %s in /proc/%d/status", field, d.PID())
	return 0
}

// RSSKiB is the daemon's resident set size.
func (d *daemon) RSSKiB() int64 { return d.procStatus("VmRSS") }

// Threads is the daemon's OS thread count.
func (d *daemon) Threads() int64 { return d.procStatus("Threads") }

// FDs counts the daemon's open file descriptors.
func (d *daemon) FDs() int {
	d.t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", d.PID()))
	if err != nil {
		d.t.Fatalf("list daemon fds: %v", err)
	}
	return len(ents)
}

// ctl writes one command to a control file under the mount (path relative
// to scsi_tgt/) and returns the write error.
func (d *daemon) ctl(path, cmd string) error {
	if d.MountDir == "" {
		d.t.Fatal("ctl needs Mount")
	}
	f, err := os.OpenFile(filepath.Join(d.MountDir, "scsi_tgt", path), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, werr := f.WriteString(cmd + "\n")
	cerr := f.Close()
	if werr != nil {
		return werr
	}
	return cerr
}

// readCtl reads a file of the control tree (relative to scsi_tgt/).
func (d *daemon) readCtl(path string) string {
	d.t.Helper()
	b, err := os.ReadFile(filepath.Join(d.MountDir, "scsi_tgt", path))
	if err != nil {
		d.t.Fatalf("read %s: %v", path, err)
	}
	return string(b)
}

// excerpt returns up to n bytes of s from i.
func excerpt(s string, i, n int) string {
	return s[i:min(len(s), i+n)]
}

// requireTools stops the test when a tool is missing.
// Through testenv: it fails in CI and skips on a developer machine.
func requireTools(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			testenv.Missing(t, "%s not found: install the test tools with apt-get install -y libiscsi-bin fuse3 util-linux", n)
		}
	}
}

// requireRoot stops tests that need root (mounts, other users), through
// testenv like requireTools.
func requireRoot(t testing.TB) {
	t.Helper()
	testenv.NeedRoot(t, "this reliability test (mounts, setpriv)")
}

// runTool runs an external command bounded by timeout; exit status != 0 is an error.
func runTool(t testing.TB, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	requireTools(t, name)
	return testenv.Run(timeout, nil, name, args...)
}

// soak reports whether SCSTD_SOAK is set, and the soak phase length.
func soak(t testing.TB) (bool, time.Duration) {
	t.Helper()
	if os.Getenv("SCSTD_SOAK") == "" {
		return false, 0
	}
	secs := 600
	if s := os.Getenv("SCSTD_SOAK_SECS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("SCSTD_SOAK_SECS=%q: want a positive number of seconds", s)
		}
		secs = n
	}
	return true, time.Duration(secs) * time.Second
}

// phase is the length of a bounded phase: def normally, the soak length
// under SCSTD_SOAK.
func phase(t testing.TB, def time.Duration) time.Duration {
	if ok, d := soak(t); ok {
		return d
	}
	return def
}

// ---- initiator helpers ----

// initiatorName is a distinct IQN per test initiator.
func initiatorName(tag string) string { return "iqn.2026-11.org.scstd.test:" + tag }

// dialLogin connects and logs in to the test target (or discovery when
// o.TargetName is "-").
func dialLogin(addr string, o iscsitest.Options) (*iscsitest.Conn, error) {
	c, err := iscsitest.Dial(addr)
	if err != nil {
		return nil, err
	}
	if o.TargetName == "" {
		o.TargetName = targetIQN
	} else if o.TargetName == "-" {
		o.TargetName = ""
	}
	if err := c.Login(o); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// login is dialLogin failing the test; the connection is closed at cleanup.
func login(t testing.TB, addr string, o iscsitest.Options) *iscsitest.Conn {
	t.Helper()
	c, err := dialLogin(addr, o)
	if err != nil {
		t.Fatalf("login %s: %v", o.InitiatorName, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// lunField is the 8-byte SAM LUN field of LUN n (peripheral addressing).
func lunField(n int) uint64 { return uint64(n) << 48 }

// sense decodes key/ASC/ASCQ of fixed or descriptor sense data.
type sense struct{ Key, ASC, ASCQ byte }

func (s sense) String() string { return fmt.Sprintf("key %#x asc %#02x/%#02x", s.Key, s.ASC, s.ASCQ) }

func decodeSense(b []byte) sense {
	switch {
	case len(b) >= 14 && b[0]&0x7e == 0x70:
		return sense{b[2] & 0xf, b[12], b[13]}
	case len(b) >= 4 && b[0]&0x7e == 0x72:
		return sense{b[1] & 0xf, b[2], b[3]}
	}
	return sense{}
}

const (
	keyMediumError    = 0x3
	keyIllegalRequest = 0x5
	keyUnitAttention  = 0x6
	keyDataProtect    = 0x7
)

// cmdError is a SCSI command that completed with a non-GOOD status.
type cmdError struct {
	Status byte
	Sense  sense
}

func (e *cmdError) Error() string { return fmt.Sprintf("status %#x, %v", e.Status, e.Sense) }

// do runs cmd; a CHECK CONDITION becomes a *cmdError; unit attentions are
// retried (they are expected after resets and LUN changes).
func do(c *iscsitest.Conn, cmd *iscsitest.Cmd) (*iscsitest.Result, error) {
	for try := 0; ; try++ {
		res, err := c.Do(cmd)
		if err != nil {
			return nil, err
		}
		if res.Response != 0 {
			return res, fmt.Errorf("iSCSI response %#x", res.Response)
		}
		if res.Status == 0 {
			return res, nil
		}
		ce := &cmdError{Status: res.Status, Sense: decodeSense(res.Sense)}
		if ce.Sense.Key == keyUnitAttention && try < 8 {
			continue
		}
		return res, ce
	}
}

// clearUA consumes pending unit attentions of a new nexus with TEST UNIT
// READY, for sessions that then drive raw pipelined commands.
func clearUA(t testing.TB, c *iscsitest.Conn, lun uint64) {
	t.Helper()
	if _, err := do(c, &iscsitest.Cmd{LUN: lun, CDB: make([]byte, 6)}); err != nil {
		t.Fatalf("TEST UNIT READY: %v", err)
	}
}

func write16(lba uint64, blocks uint32, fua bool) []byte {
	cdb := make([]byte, 16)
	cdb[0] = 0x8a
	if fua {
		cdb[1] = 0x08
	}
	binary.BigEndian.PutUint64(cdb[2:], lba)
	binary.BigEndian.PutUint32(cdb[10:], blocks)
	return cdb
}

func read16(lba uint64, blocks uint32) []byte {
	cdb := make([]byte, 16)
	cdb[0] = 0x88
	binary.BigEndian.PutUint64(cdb[2:], lba)
	binary.BigEndian.PutUint32(cdb[10:], blocks)
	return cdb
}

// syncCache16 is SYNCHRONIZE CACHE(16) of the whole LU.
func syncCache16() []byte { return []byte{0x91, 15: 0} }

// writeBlocks writes data (a multiple of blockSize) at lba.
func writeBlocks(c *iscsitest.Conn, lun uint64, lba uint64, data []byte, fua bool) error {
	_, err := do(c, &iscsitest.Cmd{LUN: lun, CDB: write16(lba, uint32(len(data)/blockSize), fua), Write: data})
	return err
}

// readBlocks reads n blocks at lba.
func readBlocks(c *iscsitest.Conn, lun uint64, lba uint64, n int) ([]byte, error) {
	res, err := do(c, &iscsitest.Cmd{LUN: lun, CDB: read16(lba, uint32(n)), ReadLen: uint32(n * blockSize)})
	if err != nil {
		return nil, err
	}
	if len(res.Data) != n*blockSize {
		return nil, fmt.Errorf("read %d blocks at %d: got %d bytes", n, lba, len(res.Data))
	}
	return res.Data, nil
}

// ---- block pattern ----
//
// Every test block is self-describing: magic, writer id, LBA, sequence
// number, then bytes derived from those, and a CRC over the block. A block
// read back (through iSCSI or from the backing file) tells who wrote it and
// which generation it is, so lost, torn and misplaced writes are all caught.

var blockMagic = [8]byte{'S', 'C', 'S', 'T', 'R', 'E', 'L', '1'}

// fillBlock writes the pattern of (id, lba, seq) into b (blockSize bytes).
func fillBlock(b []byte, id uint32, lba, seq uint64) {
	copy(b, blockMagic[:])
	binary.LittleEndian.PutUint32(b[8:], id)
	binary.LittleEndian.PutUint64(b[12:], lba)
	binary.LittleEndian.PutUint64(b[20:], seq)
	x := uint64(id)<<40 ^ lba*0x9e3779b97f4a7c15 ^ seq*0xbf58476d1ce4e5b9 | 1
	for i := 28; i < blockSize-4; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	binary.LittleEndian.PutUint32(b[blockSize-4:], crc32.ChecksumIEEE(b[:blockSize-4]))
}

// parseBlock returns the writer, LBA and sequence of b, ok=false when b is
// not an intact pattern block (never written, torn or corrupted).
func parseBlock(b []byte) (id uint32, lba, seq uint64, ok bool) {
	if len(b) < blockSize || !bytes.Equal(b[:8], blockMagic[:]) {
		return 0, 0, 0, false
	}
	if crc32.ChecksumIEEE(b[:blockSize-4]) != binary.LittleEndian.Uint32(b[blockSize-4:]) {
		return 0, 0, 0, false
	}
	id = binary.LittleEndian.Uint32(b[8:])
	lba = binary.LittleEndian.Uint64(b[12:])
	seq = binary.LittleEndian.Uint64(b[20:])
	var want [blockSize]byte
	fillBlock(want[:], id, lba, seq)
	return id, lba, seq, bytes.Equal(want[:], b[:blockSize])
}

// patternBlocks returns n consecutive blocks from lba of writer id at seq.
func patternBlocks(id uint32, lba uint64, n int, seq uint64) []byte {
	b := make([]byte, n*blockSize)
	for i := 0; i < n; i++ {
		fillBlock(b[i*blockSize:], id, lba+uint64(i), seq)
	}
	return b
}

// readFileBlock reads block lba of a backing file directly.
func readFileBlock(t testing.TB, f *os.File, lba uint64) []byte {
	t.Helper()
	b := make([]byte, blockSize)
	if _, err := f.ReadAt(b, int64(lba)*blockSize); err != nil {
		t.Fatalf("read %s block %d: %v", f.Name(), lba, err)
	}
	return b
}
