package iscsi

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/scstd/scstd/iscsi/config"
	"github.com/scstd/scstd/iscsi/param"
	"github.com/scstd/scstd/target"
	"github.com/scstd/scstd/test/testenv"
	"github.com/scstd/scstd/vdisk"
	"github.com/sirupsen/logrus"
)

// fileEnv serves testTarget with a vdisk_fileio LUN 0 on a sparse image,
// so real initiators see a complete SCSI device.
func fileEnv(t testing.TB, addr string, cfgOpts ...envOpt) (*Server, string) {
	t.Helper()
	log := quietLog()
	dir := t.TempDir()
	core := target.NewCore(target.Options{Log: logrus.NewEntry(log), StateDir: dir})
	img := filepath.Join(dir, "disk.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(64 << 20)
	f.Close()
	vm := vdisk.NewManager(core, vdisk.ManagerOptions{Log: logrus.NewEntry(log), StateDir: dir})
	if err := vm.Open("disk0", img, 512, vdisk.Flags{}); err != nil {
		t.Fatal(err)
	}
	if err := core.AddLUN("Default", "disk0", 0, false); err != nil {
		t.Fatal(err)
	}
	cfg := &config.File{Targets: []*config.Target{{TID: 1, Name: testTarget, Params: param.DefaultConfig()}}}
	so := Options{Core: core, Config: cfg, Log: logrus.NewEntry(log)}
	for _, o := range cfgOpts {
		o(cfg, &so)
	}
	srv := NewServer(so)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(context.Background(), l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		vm.Close("disk0")
	})
	return srv, l.Addr().String()
}

// TestServe serves the image for ISCSI_SERVE_SECONDS on ISCSI_SERVE_ADDR
// (default 127.0.0.1:3261) for manual runs of real initiators.
func TestServe(t *testing.T) {
	secs, _ := strconv.Atoi(os.Getenv("ISCSI_SERVE_SECONDS"))
	if secs <= 0 {
		t.Skip("set ISCSI_SERVE_SECONDS to serve")
	}
	addr := os.Getenv("ISCSI_SERVE_ADDR")
	if addr == "" {
		addr = "127.0.0.1:3261"
	}
	_, a := fileEnv(t, addr)
	t.Logf("serving iscsi://%s/%s/0 for %ds", a, testTarget, secs)
	time.Sleep(time.Duration(secs) * time.Second)
}

// TestLibiscsi runs the libiscsi command line tools against the server.
func TestLibiscsi(t *testing.T) {
	testenv.NeedTools(t, "iscsi-ls", "iscsi-inq", "iscsi-test-cu")
	if testing.Short() {
		t.Skip("short")
	}
	srv, addr := fileEnv(t, "127.0.0.1:0", withParams(func(p *param.Config) {
		p.HeaderDigest = []string{"CRC32C", "None"}
	}))
	url := "iscsi://" + addr + "/" + testTarget + "/0"
	run := func(t *testing.T, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	t.Run("iscsi-ls", func(t *testing.T) {
		out := run(t, "iscsi-ls", "-s", "iscsi://"+addr)
		if !regexp.MustCompile(`Target:`+regexp.QuoteMeta(testTarget)+` Portal:`+regexp.QuoteMeta(addr)+`,1`).MatchString(out) ||
			!regexp.MustCompile(`Lun:0 +Type:DIRECT_ACCESS`).MatchString(out) {
			t.Fatalf("iscsi-ls output:\n%s", out)
		}
	})
	t.Run("iscsi-inq", func(t *testing.T) {
		out := run(t, "iscsi-inq", url)
		if !regexp.MustCompile(`(?i)vendor`).MatchString(out) {
			t.Fatalf("iscsi-inq output:\n%s", out)
		}
	})
	t.Run("header digest under load", func(t *testing.T) {
		testenv.NeedTools(t, "iscsi-perf")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "iscsi-perf", "-m", "32", "-b", "8", "-t", "3", url+"?header_digest=crc32c")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		digest := ""
		for deadline := time.Now().Add(2 * time.Second); digest == "" && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			for _, ts := range srv.Targets() {
				for _, ss := range ts.Sessions {
					digest = ss.Conns[0].HeaderDigest
				}
			}
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("iscsi-perf: %v\n%s", err, out.Bytes())
		}
		if digest != "crc32c" {
			t.Errorf("session header digest %q, want crc32c", digest)
		}
		if !regexp.MustCompile(`iops average [1-9]`).Match(out.Bytes()) {
			t.Fatalf("iscsi-perf output:\n%s", out.Bytes())
		}
	})
	t.Run("CHAP", func(t *testing.T) {
		_, caddr := fileEnv(t, "127.0.0.1:0", withAccounts(authAccounts("alice", "alicesecret12", "", "")))
		curl := "iscsi://alice%alicesecret12@" + caddr + "/" + testTarget + "/0"
		run(t, "iscsi-inq", curl)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		bad := "iscsi://alice%wrongsecret123@" + caddr + "/" + testTarget + "/0"
		if out, err := exec.CommandContext(ctx, "iscsi-inq", bad).CombinedOutput(); err == nil {
			t.Fatalf("wrong secret accepted:\n%s", out)
		}
	})
	suites := []string{"iSCSI", "SCSI.Read10", "SCSI.Write10", "SCSI.Write16"}
	for _, s := range suites {
		t.Run(s, func(t *testing.T) {
			out := run(t, "iscsi-test-cu", "-d", "-t", s, url)
			m := regexp.MustCompile(`tests\s+\d+\s+(\d+)\s+(\d+)\s+(\d+)`).FindStringSubmatch(out)
			if m == nil || m[3] != "0" || m[2] == "0" {
				t.Fatalf("suite %s:\n%s", s, out)
			}
			t.Logf("%s: %s run, %s passed", s, m[1], m[2])
		})
	}
}
