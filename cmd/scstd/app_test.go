package main

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/scstd/scstd/iscsi/config"
	"github.com/scstd/scstd/target/scstconf"
	"github.com/sirupsen/logrus"
)

// parseArgs runs the command line with a run function that only records
// the options.
func parseArgs(t *testing.T, args ...string) (*options, string, error) {
	t.Helper()
	var got *options
	var out, errOut bytes.Buffer
	app := newApp(&out, &errOut, func(o *options) error { got = o; return nil })
	err := app.Run(append([]string{"scstd"}, args...))
	return got, out.String(), err
}

func TestFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		check   func(*options) bool
		wantErr string
	}{
		{"defaults", nil, func(o *options) bool {
			return !o.Foreground && o.Config == defaultConfig && !o.ConfigExplicit && o.Port == 3260 &&
				o.Mount == defaultMount && o.StateDir == defaultStateDir && o.User == "nobody" &&
				o.Group == "nogroup" && o.LogLevel == logrus.InfoLevel && o.listenAddr() == ":3260" &&
				o.Allow == defaultAllow && o.Deny == defaultDeny
		}, ""},
		{"short flags", []string{"-f", "-c", "/x.conf", "-a", "127.0.0.1", "-p", "3261", "-d", "1", "-u", "1000", "-g", "1000"}, func(o *options) bool {
			return o.Foreground && o.Config == "/x.conf" && o.ConfigExplicit && o.listenAddr() == "127.0.0.1:3261" &&
				o.LogLevel == logrus.DebugLevel && o.User == "1000" && o.Group == "1000"
		}, ""},
		{"long flags", []string{"--foreground", "--config=/y.conf", "--address=::1", "--port=0", "--debug=trace"}, func(o *options) bool {
			return o.Foreground && o.ConfigExplicit && o.listenAddr() == "[::1]:0" && o.LogLevel == logrus.TraceLevel
		}, ""},
		{"explicit default path is explicit", []string{"-c", defaultConfig}, func(o *options) bool { return o.ConfigExplicit }, ""},
		{"no-mount", []string{"--no-mount"}, func(o *options) bool { return o.Mount == "" }, ""},
		{"scst-config and state", []string{"--scst-config", "/s.conf", "--state-dir", "/st", "--mount", "/m"}, func(o *options) bool {
			return o.SCSTConfig == "/s.conf" && o.StateDir == "/st" && o.Mount == "/m"
		}, ""},
		{"bad level", []string{"-d", "loud"}, nil, "debug level"},
		{"negative level", []string{"-d", "-1"}, nil, "negative"},
		{"bad port", []string{"-p", "70000"}, nil, "out of range"},
		{"relative mount", []string{"--mount", "rel"}, nil, "absolute"},
		{"stray argument", []string{"extra"}, nil, "unexpected argument"},
		{"demo with config", []string{"--demo", "/d", "-c", "/x"}, nil, "--demo"},
		{"demo with scst-config", []string{"--demo", "/d", "--scst-config", "/x"}, nil, "--demo"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, _, err := parseArgs(t, tc.args...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o == nil || !tc.check(o) {
				t.Fatalf("options %+v do not match", o)
			}
		})
	}
}

func TestVersionFlag(t *testing.T) {
	for _, arg := range []string{"-v", "--version"} {
		o, out, err := parseArgs(t, arg)
		if err != nil || o != nil {
			t.Fatalf("%s: err %v, ran daemon: %v", arg, err, o != nil)
		}
		if out != SCSTVersion+"\nscstd "+Version+"\n" {
			t.Fatalf("%s printed %q", arg, out)
		}
	}
}

func quietLog() *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return logrus.NewEntry(l)
}

func TestLoadISCSIConfigMissing(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "iscsi-scstd.conf")
	if _, err := loadISCSIConfig(missing, true, quietLog()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("explicit missing file: err = %v, want ErrNotExist", err)
	}
	cfg, err := loadISCSIConfig(missing, false, quietLog())
	if err != nil {
		t.Fatalf("default missing file: %v", err)
	}
	if cfg == nil || len(cfg.Targets) != 0 {
		t.Fatalf("default missing file gave %+v, want an empty config", cfg)
	}
}

// A missing -c file stops the daemon before anything else starts, with
// exit status 1 and the path in the message.
func TestMissingExplicitConfigExits(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none.conf")
	var out, errOut bytes.Buffer
	rc := realMain([]string{"scstd", "-f", "--no-mount", "-a", "127.0.0.1", "-p", "0", "--state-dir", t.TempDir(), "-c", missing}, &out, &errOut)
	if rc != 1 || !strings.Contains(errOut.String(), missing) {
		t.Fatalf("rc %d, stderr %q", rc, errOut.String())
	}
}

func TestParseLevel(t *testing.T) {
	tests := []struct {
		in   string
		want logrus.Level
		ok   bool
	}{
		{"0", logrus.InfoLevel, true}, {"1", logrus.DebugLevel, true}, {"7", logrus.TraceLevel, true},
		{"warn", logrus.WarnLevel, true}, {"ERROR", logrus.ErrorLevel, true}, {"x", 0, false}, {"-3", 0, false},
	}
	for _, tc := range tests {
		got, err := parseLevel(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("parseLevel(%q) = %v, %v", tc.in, got, err)
		}
	}
}

func TestLookupID(t *testing.T) {
	names := map[string]string{"alice": "1001"}
	lookup := func(s string) (string, error) {
		if v, ok := names[s]; ok {
			return v, nil
		}
		return "", errors.New("unknown")
	}
	tests := []struct {
		in   string
		want int
		ok   bool
	}{{"0", 0, true}, {"65534", 65534, true}, {"alice", 1001, true}, {"bob", 0, false}, {"-1", 0, false}}
	for _, tc := range tests {
		got, err := lookupID(tc.in, lookup)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("lookupID(%q) = %d, %v", tc.in, got, err)
		}
	}
}

func TestWriteDemo(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	d, err := writeDemo(dir, &credentials{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(d.Image)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != demoImageSize {
		t.Fatalf("image size %d", st.Size())
	}
	if blocks := st.Sys().(*syscall.Stat_t).Blocks; blocks*512 >= demoImageSize/2 {
		t.Fatalf("image is not sparse: %d blocks", blocks)
	}
	got, err := os.ReadFile(d.SCSTConfig)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(got), "DEVICE disk0,"+d.Image+",,512,disk0\n") {
		t.Fatalf("scst.conf does not name the image:\n%s", got)
	}
	// A second run keeps the user's data and edited files.
	if err := os.WriteFile(d.Image, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.ISCSIConfig, []byte("# edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := writeDemo(dir, &credentials{}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(d.Image); string(b) != "data" {
		t.Fatal("second run replaced the image")
	}
	if b, _ := os.ReadFile(d.ISCSIConfig); string(b) != "# edited\n" {
		t.Fatal("second run replaced the edited config")
	}
	if _, err := writeDemo(filepath.Join(t.TempDir(), "a b"), &credentials{}); err == nil {
		t.Fatal("a demo dir with a blank was accepted")
	}
}

// samples/demo holds what `scstd --demo /var/lib/scst/demo` writes; keep them equal.
func TestDemoSamplesCurrent(t *testing.T) {
	for file, want := range map[string]string{
		"scst.conf":        demoSCSTConf("/var/lib/scst/demo"),
		"iscsi-scstd.conf": demoISCSIConf(),
	} {
		got, err := os.ReadFile(filepath.Join("..", "..", "samples", "demo", file))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Errorf("samples/demo/%s differs from what --demo writes; regenerate it:\n%s", file, want)
		}
	}
}

// The shipped iscsi-scstd samples parse without a rejected line, and the
// sample host ACLs do what their comments say.
func TestISCSISamplesParse(t *testing.T) {
	for _, tc := range []struct {
		file, target string
	}{
		{"iscsi-scstd_usermode.conf", "iqn.2001-04.com.example.frobozz:1"},
		{"demo/iscsi-scstd.conf", DemoTarget},
	} {
		f, errs, err := config.Load(filepath.Join("..", "..", "samples", tc.file), true)
		if err != nil || len(errs) != 0 {
			t.Errorf("%s: %v %v", tc.file, err, errs)
			continue
		}
		if len(f.Targets) != 1 || f.Target(tc.target) == nil {
			t.Errorf("%s: targets %+v, want just %s", tc.file, f.Targets, tc.target)
		}
	}
	allow := filepath.Join("..", "..", "samples", "initiators.allow")
	deny := filepath.Join("..", "..", "samples", "initiators.deny")
	for ip, want := range map[string]bool{"127.0.0.1": true, "192.168.7.9": true, "::1": true, "10.1.1.1": false} {
		if got := config.Allowed(allow, deny, "iqn.2001-04.com.example.frobozz:1", net.ParseIP(ip)); got != want {
			t.Errorf("sample ACLs: %s allowed = %v, want %v", ip, got, want)
		}
	}
	if !config.Allowed(allow, deny, DemoTarget, net.ParseIP("10.1.1.1")) {
		t.Error("sample ACLs restrict a target they do not name")
	}
}

// The shipped scst.conf samples parse.
func TestSCSTSamplesParse(t *testing.T) {
	for _, file := range []string{"scst_usermode.conf", "demo/scst.conf"} {
		f, err := os.Open(filepath.Join("..", "..", "samples", file))
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := scstconf.Parse(f)
		f.Close()
		if err != nil {
			t.Errorf("%s: %v", file, err)
			continue
		}
		if len(cfg.Handlers) == 0 || len(cfg.Assignments) == 0 {
			t.Errorf("%s: no handlers or assignments parsed", file)
		}
	}
}
