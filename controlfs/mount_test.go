package controlfs

// Tests through a real FUSE mount. The mount is served by this test process;
// every write is made by a child process (this test binary re-executed in a
// helper mode), so that the serving goroutines never block on their own
// filesystem and the errno is exactly what write(2) returned.

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scstd/scstd/target"
	"github.com/scstd/scstd/test/testenv"
	"github.com/scstd/scstd/vdisk"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

const helperEnv = "CONTROLFS_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "write":
		os.Exit(helperWrite())
	case "serve":
		os.Exit(helperServe())
	}
	os.Exit(m.Run())
}

// helperWrite executes "PATH<TAB>HEXDATA" lines from stdin, each as one
// open(O_WRONLY|O_TRUNC) + one write(2) + close, and prints "OK n" or
// "ERR errno" per line.
func helperWrite() int {
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		path, hx, _ := strings.Cut(sc.Text(), "\t")
		data, err := hex.DecodeString(hx)
		if err != nil {
			fmt.Println("BAD", err)
			continue
		}
		fd, err := unix.Open(path, unix.O_WRONLY|unix.O_TRUNC, 0)
		if err != nil {
			fmt.Println("ERR", int(err.(syscall.Errno)))
			continue
		}
		n, err := unix.Write(fd, data)
		unix.Close(fd)
		if err != nil {
			fmt.Println("ERR", int(err.(syscall.Errno)))
			continue
		}
		fmt.Println("OK", n)
	}
	return 0
}

// helperServe mounts a tree over fakes at $CONTROLFS_TEST_DIR, prints
// READY and serves until SIGTERM.
func helperServe() int {
	st, _, vd := newFakeState()
	st.log = logrus.NewEntry(logrus.New()) // to stderr, for the parent to check
	if err := vd.Open("disk0", "/dev/zero", 512, vdisk.Flags{}); err != nil {
		fmt.Println("FAIL", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := mount(ctx, os.Getenv("CONTROLFS_TEST_DIR"), st)
	if err != nil {
		fmt.Println("FAIL", err)
		return 1
	}
	fmt.Println("READY")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
	case <-srv.done:
	}
	if err := srv.Unmount(); err != nil {
		fmt.Fprintln(os.Stderr, "unmount:", err)
		return 1
	}
	return 0
}

type writeResult struct {
	n     int
	errno syscall.Errno
}

func (r writeResult) String() string {
	if r.errno != 0 {
		return "errno " + r.errno.Error()
	}
	return "wrote " + strconv.Itoa(r.n)
}

type writeReq struct {
	path string
	data []byte
}

// childWrites performs the writes in one child process, in order.
func childWrites(t *testing.T, cred *syscall.Credential, reqs ...writeReq) []writeResult {
	t.Helper()
	w := startWriter(t, cred)
	defer w.close()
	res := make([]writeResult, len(reqs))
	for i, r := range reqs {
		res[i] = w.write(r.path, r.data)
	}
	return res
}

// writer is a helper child process that performs one write per request.
type writer struct {
	t   *testing.T
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

func startWriter(t *testing.T, cred *syscall.Credential) *writer {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=write")
	cmd.Stderr = os.Stderr
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return &writer{t: t, cmd: cmd, in: in, out: bufio.NewReader(out)}
}

func (w *writer) write(path string, data []byte) writeResult {
	w.t.Helper()
	if _, err := io.WriteString(w.in, path+"\t"+hex.EncodeToString(data)+"\n"); err != nil {
		w.t.Fatalf("write helper: %v", err)
	}
	l, err := w.out.ReadString('\n')
	if err != nil {
		w.t.Fatalf("write helper: %v", err)
	}
	kind, num, _ := strings.Cut(strings.TrimSpace(l), " ")
	v, err := strconv.Atoi(num)
	if err != nil {
		w.t.Fatalf("write helper output %q", l)
	}
	switch kind {
	case "OK":
		return writeResult{n: v}
	case "ERR":
		return writeResult{errno: syscall.Errno(v)}
	}
	w.t.Fatalf("write helper output %q", l)
	return writeResult{}
}

func (w *writer) close() {
	w.in.Close()
	if err := w.cmd.Wait(); err != nil {
		w.t.Errorf("write helper: %v", err)
	}
}

func needFUSE(t *testing.T) {
	t.Helper()
	testenv.NeedRoot(t, "a FUSE mount test")
	if _, err := os.Stat("/dev/fuse"); err != nil {
		testenv.Missing(t, "no /dev/fuse")
	}
}

type fakeMount struct {
	dir  string
	srv  *Server
	st   *state
	core *fakeCore
	vd   *fakeVdisk
}

func (m *fakeMount) p(rel string) string { return filepath.Join(m.dir, rel) }

func mountFakes(t *testing.T) *fakeMount {
	t.Helper()
	needFUSE(t)
	st, core, vd := newFakeState()
	return mountState(t, t.TempDir(), st, core, vd)
}

func mountState(t *testing.T, dir string, st *state, core *fakeCore, vd *fakeVdisk) *fakeMount {
	t.Helper()
	srv, err := mount(context.Background(), dir, st)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
		srv.Wait()
	})
	return &fakeMount{dir: dir, srv: srv, st: st, core: core, vd: vd}
}

// snapshot reads every file of the tree.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() {
			m[rel+"/"] = ""
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		m[rel] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func diffSnap(a, b map[string]string) string {
	var d []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			d = append(d, "-"+k)
		} else if w != v {
			d = append(d, "~"+k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			d = append(d, "+"+k)
		}
	}
	slices.Sort(d)
	return strings.Join(d, " ")
}

func TestMountTreeAndModes(t *testing.T) {
	m := mountFakes(t)
	want := map[string]os.FileMode{
		"scsi_tgt":                            fs.ModeDir | 0o555,
		"scsi_tgt/scsi_tgt":                   0o644,
		"scsi_tgt/version":                    0o444,
		"scsi_tgt/sessions":                   0o444,
		"scsi_tgt/help":                       0o444,
		"scsi_tgt/threads":                    0o644,
		"scsi_tgt/sgv":                        0o444,
		"scsi_tgt/groups":                     fs.ModeDir | 0o555,
		"scsi_tgt/groups/Default":             fs.ModeDir | 0o555,
		"scsi_tgt/groups/Default/addr_method": 0o444,
		"scsi_tgt/groups/Default/devices":     0o644,
		"scsi_tgt/groups/Default/names":       0o644,
		"scsi_tgt/vdisk":                      fs.ModeDir | 0o555,
		"scsi_tgt/vdisk/type":                 0o444,
		"scsi_tgt/vdisk/help":                 0o444,
		"scsi_tgt/vdisk/vdisk":                0o644,
		"scsi_tgt/vcdrom":                     fs.ModeDir | 0o555,
		"scsi_tgt/vcdrom/type":                0o444,
		"scsi_tgt/vcdrom/help":                0o444,
		"scsi_tgt/vcdrom/vcdrom":              0o644,
		"scsi_tgt/iscsi":                      fs.ModeDir | 0o555,
		"scsi_tgt/iscsi/version":              0o444,
		"scsi_tgt/iscsi/session":              0o444,
		"num_threads":                         0o444,
		"scst_vdisk_ID":                       0o444,
		"scst_threads":                        0o444,
		"scst_max_cmd_mem":                    0o444,
		"scst_max_dev_cmd_mem":                0o444,
		"forcibly_close_sessions":             0o644,
	}
	got := map[string]os.FileMode{}
	err := filepath.WalkDir(m.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == m.dir {
			return err
		}
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(m.dir, path)
		got[rel] = fi.Mode()
		st := fi.Sys().(*syscall.Stat_t)
		if st.Size != 4096 || st.Uid != uint32(os.Geteuid()) || st.Gid != uint32(os.Getegid()) {
			t.Errorf("%s: size %d uid %d gid %d", rel, st.Size, st.Uid, st.Gid)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: mode %v, want %v", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected node %s", k)
		}
	}
	// A dev handler dir is one with a "type" file (scstadmin's test).
	for _, d := range []string{"vdisk", "vcdrom", "iscsi", "groups"} {
		_, err := os.Stat(m.p("scsi_tgt/" + d + "/type"))
		if (err == nil) != (d == "vdisk" || d == "vcdrom") {
			t.Errorf("%s/type: %v", d, err)
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(m.p("scsi_tgt/nope"), &st); !errors.Is(err, unix.ENOENT) {
		t.Errorf("lookup of a missing name: %v", err)
	}
}

func TestMountReads(t *testing.T) {
	m := mountFakes(t)
	if err := m.vd.Open("disk_sda5", "/dev/zero", 4096, vdisk.Flags{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{
		{"scsi_tgt/version", "3.3.0-pre1-procfs\n"},
		{"scsi_tgt/iscsi/version", "3.3.0-pre1-procfs\n"},
		{"scsi_tgt/threads", "1\n"},
		{"scsi_tgt/help", helpText},
		{"scsi_tgt/groups/Default/addr_method", "PERIPHERAL\n"},
		{"scsi_tgt/groups/Default/names", ""},
		{"scsi_tgt/vdisk/type", "0 - Direct-access device (e.g., magnetic disk)\n"},
		{"scsi_tgt/vcdrom/type", "5 - CD-ROM device\n"},
		{"num_threads", "1 0x1\n"},
		{"scst_threads", "1 0x1\n"},
		{"forcibly_close_sessions", "0 0x0\n"},
		{"scst_vdisk_ID", "0 0x0\n"},
		{"scst_max_cmd_mem", string(renderModuleParam(m.st.tun.Param(target.ParamMaxCmdMem)))},
		{"scsi_tgt/scsi_tgt", string(renderScsiTgt([]deviceRow{{"disk_sda5", "vdisk_fileio"}}))},
		{"scsi_tgt/iscsi/session", string(renderISCSISession(paperTargets()))},
	} {
		b, err := os.ReadFile(m.p(tc.path))
		if err != nil || string(b) != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.path, b, err, tc.want)
		}
	}
	// cat (a child process) sees the same bytes.
	out, err := exec.Command("cat", m.p("scsi_tgt/vdisk/vdisk")).Output()
	if err != nil || string(out) != string(renderVdisks(m.vd.Disks())) {
		t.Errorf("cat vdisk: %q, %v", out, err)
	}
	// A module parameter read at a non-zero offset is EOF (UMC).
	f, err := os.Open(m.p("num_threads"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 2)
	if n, err := f.Read(buf); n != 2 || err != nil {
		t.Fatalf("first read: %d %v", n, err)
	}
	if n, _ := f.Read(buf); n != 0 {
		t.Errorf("read past offset 0 returned %d bytes", n)
	}
}

// TestMountLargeRead reads a file larger than one FUSE read request and
// checks it is one consistent snapshot even while it changes.
func TestMountLargeRead(t *testing.T) {
	m := mountFakes(t)
	for i := 0; i < 3000; i++ {
		if err := m.core.AddName("Default", fmt.Sprintf("iqn.2026-01.test.example:initiator-%05d", i)); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(m.p("scsi_tgt/groups/Default/names"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	first := make([]byte, 4096)
	n, err := f.Read(first)
	if err != nil || n != 4096 {
		t.Fatalf("read: %d %v", n, err)
	}
	// Change the state between reads of the same open file.
	if err := m.core.ClearNames("Default"); err != nil {
		t.Fatal(err)
	}
	rest, err := readAll(f)
	if err != nil {
		t.Fatal(err)
	}
	all := append(first[:n], rest...)
	if got, want := len(strings.Split(strings.TrimSpace(string(all)), "\n")), 3000; got != want {
		t.Errorf("snapshot has %d lines, want %d", got, want)
	}
	// A fresh read sees the change.
	b, _ := os.ReadFile(m.p("scsi_tgt/groups/Default/names"))
	if len(b) != 0 {
		t.Errorf("after clear: %d bytes", len(b))
	}
}

func readAll(f *os.File) ([]byte, error) {
	var out []byte
	buf := make([]byte, 8192)
	for {
		n, err := f.Read(buf)
		out = append(out, buf[:n]...)
		if n == 0 || err != nil {
			if err != nil && err.Error() != "EOF" {
				return out, err
			}
			return out, nil
		}
	}
}

// TestMountCommandErrnos writes every command of §1 through the mount from
// a child process and checks write(2)'s result, and that a refused command
// changed nothing in the tree.
func TestMountCommandErrnos(t *testing.T) {
	m := mountFakes(t)
	m.core.sessions = []target.SessionStat{{Info: target.SessionInfo{Initiator: "iqn.x:busy", Transport: "iscsi"}, Group: "busy"}}
	runCommandTable(t, m)
}

// runCommandTable runs the command table of §1 against a mount whose core
// has a session of initiator iqn.x:busy (which resolves to group "busy"
// once that group lists the name).
func runCommandTable(t *testing.T, m *fakeMount) {
	img := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(img, make([]byte, 3<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	long := "add_group " + strings.Repeat("x", maxWrite)
	steps := []struct {
		file, cmd string
		errno     syscall.Errno
	}{
		// scsi_tgt (§1.2)
		{"scsi_tgt/scsi_tgt", "add_group g1\n", 0},
		{"scsi_tgt/scsi_tgt", "ADD_GROUP g1\n", syscall.EINVAL},
		{"scsi_tgt/scsi_tgt", "add_group Default\n", syscall.EINVAL},
		{"scsi_tgt/scsi_tgt", "add_group g3 LUN\n", 0},
		{"scsi_tgt/scsi_tgt", "add_group g4 flat\n", 0},
		{"scsi_tgt/scsi_tgt", "add_group g5 SCSI\n", syscall.EINVAL},
		{"scsi_tgt/scsi_tgt", "add_group g5 FLAT x\n", syscall.EINVAL},
		{"scsi_tgt/scsi_tgt", "add_group a/b\n", syscall.EINVAL},
		{"scsi_tgt/scsi_tgt", "add_group\n", syscall.EINVAL},
		{"scsi_tgt/scsi_tgt", "add_group busy\n", 0},
		{"scsi_tgt/groups/busy/names", "add iqn.x:busy\n\x00", 0},
		{"scsi_tgt/scsi_tgt", "del_group busy\n", syscall.EBUSY},
		{"scsi_tgt/scsi_tgt", "del_group nope\n", syscall.EINVAL},
		{"scsi_tgt/scsi_tgt", "del_group g4 x\n", syscall.EINVAL},
		{"scsi_tgt/scsi_tgt", "del_group Default\n", syscall.EINVAL},
		{"scsi_tgt/scsi_tgt", "del_group g4\n", 0},
		{"scsi_tgt/scsi_tgt", "rename_group g1 g2\n", 0},
		{"scsi_tgt/scsi_tgt", "rename_group g1 g2\n", syscall.EINVAL},
		{"scsi_tgt/scsi_tgt", "rename_group g2 busy\n", syscall.EEXIST},
		{"scsi_tgt/scsi_tgt", "rename_group g2\n", syscall.EINVAL},
		{"scsi_tgt/scsi_tgt", "rename_group Default x\n", syscall.EINVAL},
		{"scsi_tgt/scsi_tgt", "rename_group g2 x y\n", syscall.EINVAL},
		{"scsi_tgt/scsi_tgt", "assign 0:0:0:0 dev_disk\n\x00", syscall.EINVAL},
		{"scsi_tgt/scsi_tgt", "frobnicate\n", syscall.EINVAL},
		{"scsi_tgt/scsi_tgt", long, syscall.EOVERFLOW},
		{"scsi_tgt/scsi_tgt", "add_group gmax" + strings.Repeat(" ", maxWrite-len("add_group gmax")), 0},
		{"scsi_tgt/scsi_tgt", "del_group gmax\n", 0},
		// vdisk/vdisk (§1.15)
		{"scsi_tgt/vdisk/vdisk", "open d0 " + img + " 4096 NV_CACHE\x00", 0},
		{"scsi_tgt/vdisk/vdisk", "open null_NULLIO /dev/zero 512 NULLIO\x00", 0},
		{"scsi_tgt/vdisk/vdisk", "open d0 " + img + "\x00", syscall.EEXIST},
		{"scsi_tgt/vdisk/vdisk", "open d1 relative\x00", syscall.EINVAL},
		{"scsi_tgt/vdisk/vdisk", "open d1 /no/such/file\x00", syscall.ENOENT},
		{"scsi_tgt/vdisk/vdisk", "open d1 " + img + " 512 FAST\x00", syscall.EINVAL},
		{"scsi_tgt/vdisk/vdisk", "open d1 " + img + " 100\x00", syscall.EINVAL},
		{"scsi_tgt/vdisk/vdisk", "open d1 " + img + " 512k\x00", syscall.EINVAL},
		{"scsi_tgt/vdisk/vdisk", "open a.b " + img + "\x00", syscall.EINVAL},
		{"scsi_tgt/vdisk/vdisk", "open " + strings.Repeat("n", 65) + " " + img + "\x00", syscall.EINVAL},
		{"scsi_tgt/vdisk/vdisk", "open d1\x00", syscall.EINVAL},
		{"scsi_tgt/vdisk/vdisk", "Open d1 " + img + "\x00", syscall.EINVAL},
		{"scsi_tgt/vdisk/vdisk", "set_t10_dev_id d0 T10-D0\n\x00", 0},
		{"scsi_tgt/vdisk/vdisk", "set_t10_dev_id d0\n\x00", syscall.EINVAL},
		{"scsi_tgt/vdisk/vdisk", "set_t10_dev_id nope X\n\x00", syscall.EINVAL},
		{"scsi_tgt/vdisk/vdisk", "resync_size d0\n\x00", 0},
		{"scsi_tgt/vdisk/vdisk", "resync_size nope\n\x00", syscall.EINVAL},
		{"scsi_tgt/vdisk/vdisk", "resync_size null_NULLIO\n\x00", syscall.EINVAL},
		{"scsi_tgt/vdisk/vdisk", "\x00ignored", 0},
		{"scsi_tgt/vdisk/vdisk", "\n", syscall.EINVAL},
		{"scsi_tgt/vdisk/vdisk", strings.Repeat("y", maxWrite+1), syscall.EOVERFLOW},
		// vcdrom/vcdrom (§1.16)
		{"scsi_tgt/vcdrom/vcdrom", "open cd0\n", 0},
		{"scsi_tgt/vcdrom/vcdrom", "open cd1 " + img + " extra\n", 0},
		{"scsi_tgt/vcdrom/vcdrom", "open d0\n", syscall.EEXIST},
		{"scsi_tgt/vcdrom/vcdrom", "open cd2 rel.iso\n", syscall.EINVAL},
		{"scsi_tgt/vcdrom/vcdrom", "change cd0 " + img + "\n", 0},
		{"scsi_tgt/vcdrom/vcdrom", "change cd0\n", 0},
		{"scsi_tgt/vcdrom/vcdrom", "change nope " + img + "\n", syscall.EINVAL},
		{"scsi_tgt/vcdrom/vcdrom", "change cd0 rel.iso\n", syscall.EINVAL},
		{"scsi_tgt/vcdrom/vcdrom", "close nope\n", syscall.EINVAL},
		{"scsi_tgt/vcdrom/vcdrom", "close cd1\n", 0},
		{"scsi_tgt/vcdrom/vcdrom", "eject cd0\n", syscall.EINVAL},
		// groups/G/devices (§1.10)
		{"scsi_tgt/groups/g2/devices", "add d0 0 \n\x00", 0},
		{"scsi_tgt/groups/g2/devices", "add d0 0 \n\x00", syscall.EEXIST},
		{"scsi_tgt/groups/g2/devices", "add null_NULLIO 0x1 READ_ONLY\n\x00", 0},
		{"scsi_tgt/groups/g2/devices", "add nodev 2\n\x00", syscall.EINVAL},
		{"scsi_tgt/groups/g2/devices", "add d0 16384\n\x00", syscall.EINVAL},
		{"scsi_tgt/groups/g2/devices", "add d0 2 RO\n\x00", syscall.EINVAL},
		{"scsi_tgt/groups/g2/devices", "replace cd0 1\n\x00", 0},
		{"scsi_tgt/groups/g2/devices", "replace nodev 1\n\x00", syscall.EINVAL},
		{"scsi_tgt/groups/g2/devices", "del nodev\n\x00", syscall.EINVAL},
		{"scsi_tgt/groups/g2/devices", "del null_NULLIO\n\x00", 0},
		{"scsi_tgt/groups/g2/devices", "list\n\x00", syscall.EINVAL},
		{"scsi_tgt/groups/g3/devices", "add d0 5\n\x00", 0},
		{"scsi_tgt/groups/g3/devices", "clear\n\x00", 0},
		// groups/G/names (§1.11)
		{"scsi_tgt/groups/g2/names", "add iqn.1993-08.org.debian:01:abc\n\x00", 0},
		{"scsi_tgt/groups/g2/names", "add iqn.1993-08.org.debian:01:abc\n\x00", syscall.EEXIST},
		{"scsi_tgt/groups/g2/names", "add a b\n\x00", syscall.EINVAL},
		{"scsi_tgt/groups/g2/names", "del nope\n\x00", syscall.EINVAL},
		{"scsi_tgt/groups/g2/names", "move iqn.1993-08.org.debian:01:abc nope\n\x00", syscall.EINVAL},
		{"scsi_tgt/groups/g2/names", "move nope g3\n\x00", syscall.EINVAL},
		{"scsi_tgt/groups/g3/names", "add iqn.1993-08.org.debian:01:abc\n\x00", 0},
		{"scsi_tgt/groups/g2/names", "move iqn.1993-08.org.debian:01:abc g3\n\x00", syscall.EEXIST},
		{"scsi_tgt/groups/g3/names", "clear\n\x00", 0},
		{"scsi_tgt/groups/g2/names", "move iqn.1993-08.org.debian:01:abc g3\n\x00", 0},
		{"scsi_tgt/groups/g2/names", "rename a\n\x00", syscall.EINVAL},
		// threads (§1.6)
		{"scsi_tgt/threads", "0\n", syscall.EINVAL},
		{"scsi_tgt/threads", "-3\n", syscall.EINVAL},
		{"scsi_tgt/threads", "0x8\n", 0},
		// read-only nodes
		{"scsi_tgt/version", "x\n", syscall.EPERM},
		{"scsi_tgt/sessions", "x\n", syscall.EPERM},
		{"scsi_tgt/help", "x\n", syscall.EPERM},
		{"scsi_tgt/sgv", "x\n", syscall.EPERM},
		{"scsi_tgt/groups/g2/addr_method", "FLAT\n", syscall.EPERM},
		{"scsi_tgt/vdisk/type", "5\n", syscall.EPERM},
		{"scsi_tgt/vdisk/help", "x\n", syscall.EPERM},
		{"scsi_tgt/iscsi/session", "x\n", syscall.EPERM},
		{"scsi_tgt/iscsi/version", "x\n", syscall.EPERM},
		{"num_threads", "4\n", syscall.EPERM},
		{"scst_vdisk_ID", "4\n", syscall.EPERM},
		// module parameters (§1.19)
		{"forcibly_close_sessions", "1\n", 0},
		{"forcibly_close_sessions", "abc\n", syscall.EINVAL},
		{"forcibly_close_sessions", "-1\n", syscall.ERANGE},
		{"forcibly_close_sessions", "0x100000000\n", syscall.ERANGE},
		// a closed device disappears from every group
		{"scsi_tgt/vdisk/vdisk", "close d0 \n\x00", 0},
		{"scsi_tgt/vdisk/vdisk", "close d0 \n\x00", syscall.EINVAL},
	}
	w := startWriter(t, nil)
	defer w.close()
	for i, s := range steps {
		before := snapshot(t, m.dir)
		r := w.write(m.p(s.file), []byte(s.cmd))
		after := snapshot(t, m.dir)
		short := s.cmd
		if len(short) > 60 {
			short = short[:60] + "..."
		}
		if r.errno != s.errno || (r.errno == 0 && r.n != len(s.cmd)) {
			t.Errorf("step %d: %s <- %q: %v, want errno %v", i, s.file, short, r, s.errno)
		}
		if r.errno != 0 {
			if d := diffSnap(before, after); d != "" {
				t.Errorf("step %d: refused %q changed the tree: %s", i, short, d)
			}
		}
	}
	final := snapshot(t, m.dir)
	for path, want := range map[string]string{
		"scsi_tgt/threads":                 "8\n",
		"forcibly_close_sessions":          "1 0x1\n",
		"scsi_tgt/groups/g3/names":         "iqn.1993-08.org.debian:01:abc\n",
		"scsi_tgt/groups/g2/names":         "",
		"scsi_tgt/groups/g2/devices":       string(renderGroupDevices([]target.LUNInfo{{LUN: 1, Device: "cd0"}})),
		"scsi_tgt/groups/g3/addr_method":   "LUN\n",
		"scsi_tgt/groups/busy/addr_method": "PERIPHERAL\n",
		"scsi_tgt/scsi_tgt":                string(renderScsiTgt([]deviceRow{{"null_NULLIO", "vdisk_nullio"}, {"cd0", "vcdrom"}})),
		"scsi_tgt/vcdrom/vcdrom":           "Name              Size(MB)  File name\ncd0               0         none\n",
	} {
		if final[path] != want {
			t.Errorf("%s = %q, want %q", path, final[path], want)
		}
	}
	var groups []string
	for k := range final {
		if rest, ok := strings.CutPrefix(k, "scsi_tgt/groups/"); ok && strings.Count(rest, "/") == 1 && strings.HasSuffix(rest, "/") {
			groups = append(groups, strings.TrimSuffix(rest, "/"))
		}
	}
	slices.Sort(groups)
	if !slices.Equal(groups, []string{"Default", "busy", "g2", "g3"}) {
		t.Errorf("group dirs %v", groups)
	}
}

// TestMountShell drives the mount the way an administrator does.
func TestMountShell(t *testing.T) {
	m := mountFakes(t)
	bash := func(script string) (string, error) {
		out, err := exec.Command("bash", "-c", script).CombinedOutput()
		return string(out), err
	}
	p := m.p("scsi_tgt")
	if out, err := bash("echo add_group web >" + p + "/scsi_tgt && ls " + p + "/groups"); err != nil || out != "Default\nweb\n" {
		t.Errorf("add_group: %q %v", out, err)
	}
	if out, err := bash("echo bogus >" + p + "/scsi_tgt"); err == nil || !strings.Contains(out, "Invalid argument") {
		t.Errorf("bogus: %q %v", out, err)
	}
	if out, err := bash("echo add n1 >" + p + "/groups/web/names; echo add n1 >" + p + "/groups/web/names"); err == nil || !strings.Contains(out, "File exists") {
		t.Errorf("EEXIST: %q %v", out, err)
	}
	if out, err := bash("echo rename_group web www >" + p + "/scsi_tgt && ls " + p + "/groups && cat " + p + "/groups/www/names"); err != nil || out != "Default\nwww\nn1\n" {
		t.Errorf("rename_group: %q %v", out, err)
	}
	if out, err := bash("cat " + p + "/groups/web/names"); err == nil {
		t.Errorf("old group dir still readable: %q", out)
	}
	if out, err := bash("echo del_group www >" + p + "/scsi_tgt && ls " + p + "/groups"); err != nil || out != "Default\n" {
		t.Errorf("del_group: %q %v", out, err)
	}
	if out, err := bash("echo 3 >" + p + "/threads && cat " + p + "/threads"); err != nil || out != "3\n" {
		t.Errorf("threads: %q %v", out, err)
	}
	if out, err := bash("echo x >" + p + "/version"); err == nil || !strings.Contains(out, "not permitted") {
		t.Errorf("version write: %q %v", out, err)
	}
	// A group created by another path (the startup config) shows up too.
	if err := m.core.AddGroup("fromconfig", target.AddrFlat); err != nil {
		t.Fatal(err)
	}
	if out, err := bash("cat " + p + "/groups/fromconfig/addr_method && ls " + p + "/groups"); err != nil || out != "FLAT\nDefault\nfromconfig\n" {
		t.Errorf("external group: %q %v", out, err)
	}
	if err := m.core.DelGroup("fromconfig"); err != nil {
		t.Fatal(err)
	}
	if out, err := bash("ls " + p + "/groups"); err != nil || out != "Default\n" {
		t.Errorf("external delete: %q %v", out, err)
	}
}

// TestMountNonRootAccess checks default_permissions: another user can read
// but not write; root and the owner can do both.
func TestMountNonRootAccess(t *testing.T) {
	m := mountFakes(t)
	// Let the other user reach the mountpoint.
	if err := os.Chmod(filepath.Dir(m.dir), 0o755); err != nil {
		t.Fatal(err)
	}
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
	w := exec.Command("bash", "-c", "echo add_group x >"+m.p("scsi_tgt/scsi_tgt"))
	w.SysProcAttr = &syscall.SysProcAttr{Credential: nobody}
	if out, err := w.CombinedOutput(); err == nil || !strings.Contains(string(out), "Permission denied") {
		t.Errorf("nobody write: %q %v, want Permission denied", out, err)
	}
	cmd := exec.Command("cat", m.p("scsi_tgt/version"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: nobody}
	if out, err := cmd.Output(); err != nil || string(out) != "3.3.0-pre1-procfs\n" {
		t.Errorf("nobody read: %q %v", out, err)
	}
}

// TestMountStaleAndBusy covers a second mount over a live one and the
// stale mount left by a killed server.
func TestMountStaleAndBusy(t *testing.T) {
	needFUSE(t)
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=serve", "CONTROLFS_TEST_DIR="+dir)
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if line != "READY\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("server: %q", line)
	}
	st, _, _ := newFakeState()
	if _, err := mount(context.Background(), dir, st); err == nil || !strings.Contains(err.Error(), "already a live") {
		t.Errorf("mount over a live mount: %v", err)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	var s unix.Stat_t
	if err := unix.Stat(dir, &s); !errors.Is(err, unix.ENOTCONN) {
		t.Fatalf("after kill -9: stat %v, want ENOTCONN", err)
	}
	m := mountState(t, dir, st, nil, nil)
	if b, err := os.ReadFile(m.p("scsi_tgt/version")); err != nil || string(b) != "3.3.0-pre1-procfs\n" {
		t.Errorf("after clearing the stale mount: %q %v", b, err)
	}
}

func TestMountpointErrors(t *testing.T) {
	needFUSE(t)
	st, _, _ := newFakeState()
	missing := filepath.Join(t.TempDir(), "fuse", "scst", "proc")
	_, err := mount(context.Background(), missing, st)
	if err == nil || !strings.Contains(err.Error(), "mkdir -p "+missing+" && chmod 777 "+missing) {
		t.Errorf("missing mountpoint: %v", err)
	}
	file := filepath.Join(t.TempDir(), "f")
	os.WriteFile(file, nil, 0o644)
	if _, err := mount(context.Background(), file, st); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("file mountpoint: %v", err)
	}
}

// TestMountCancel unmounts when the context ends.
func TestMountCancel(t *testing.T) {
	needFUSE(t)
	st, _, _ := newFakeState()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := mount(ctx, t.TempDir(), st)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	done := make(chan struct{})
	go func() { srv.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("not unmounted after cancel")
	}
	if mounted, _ := mountedAt(srv.Dir()); mounted {
		t.Error("still mounted")
	}
}

// TestUnmountBusy: a shell sitting in the tree does not keep the daemon
// from stopping; the mount is detached lazily.
func TestUnmountBusy(t *testing.T) {
	needFUSE(t)
	st, _, _ := newFakeState()
	dir := t.TempDir()
	srv, err := mount(context.Background(), dir, st)
	if err != nil {
		t.Fatal(err)
	}
	// The shell changes directory itself, after exec: a chdir between fork
	// and exec would be served by this very process (go-fuse caveat 1a).
	sh := exec.Command("bash", "-c", "cd "+dir+"/scsi_tgt && echo in && exec sleep 30")
	out, _ := sh.StdoutPipe()
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sh.Process.Kill(); sh.Wait() }()
	if l, _ := bufio.NewReader(out).ReadString('\n'); l != "in\n" {
		t.Fatalf("shell: %q", l)
	}
	if err := srv.Unmount(); err != nil {
		t.Fatalf("unmount with a busy mount: %v", err)
	}
	done := make(chan struct{})
	go func() { srv.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return after a lazy unmount")
	}
	if mounted, _ := mountedAt(dir); mounted {
		t.Error("still mounted")
	}
}
