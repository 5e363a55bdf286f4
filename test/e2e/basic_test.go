package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// `iscsi-ls -s` lists the target and its LUN, `iscsi-inq` reads standard
// INQUIRY and each VPD page the block device needs, and
// `iscsi-readcapacity16` reports the image size.
func TestDiscoveryInquiryCapacity(t *testing.T) {
	const size = 64 << 20
	d := startDaemon(t, daemonConfig{ImageSize: size, KeepRoot: true})

	t.Run("iscsi-ls", func(t *testing.T) {
		out := mustRun(t, 30*time.Second, "iscsi-ls", "-s", d.Portal())
		if !strings.Contains(out, "Target:"+targetIQN+" Portal:"+d.Addr) {
			t.Errorf("target %s at %s not listed:\n%s", targetIQN, d.Addr, out)
		}
		if !regexp.MustCompile(`(?m)^Lun:0\s+Type:DIRECT_ACCESS \(Size:6[34]M\)`).MatchString(out) {
			t.Errorf("LUN 0 (64M disk) not listed:\n%s", out)
		}
	})

	inquiries := []struct {
		name string
		args []string
		want []string
	}{
		{"standard", nil, []string{"Peripheral Device Type:DIRECT_ACCESS", "Vendor:SCST_FIO", "Removable:0"}},
		{"vpd 0x00 supported pages", []string{"-e", "1", "-c", "0"}, []string{
			"Page:0x00 SUPPORTED_VPD_PAGES", "Page:0x80 UNIT_SERIAL_NUMBER", "Page:0x83 DEVICE_IDENTIFICATION",
			"Page:0xb0 BLOCK_LIMITS", "Page:0xb1 BLOCK_DEVICE_CHARACTERISTICS", "Page:0xb2 LOGICAL_BLOCK_PROVISIONING"}},
		{"vpd 0x80 serial", []string{"-e", "1", "-c", strconv.Itoa(0x80)}, []string{"Unit Serial Number:["}},
		{"vpd 0x83 identification", []string{"-e", "1", "-c", strconv.Itoa(0x83)}, []string{
			"Page Code:(0x83) DEVICE_IDENTIFICATION", "Designator Type:(1) T10_VENDORT_ID", "Designator Type:(3) NAA"}},
		{"vpd 0xb0 block limits", []string{"-e", "1", "-c", strconv.Itoa(0xb0)}, []string{"maximum transfer length:", "optimal transfer length granularity:"}},
		{"vpd 0xb1 characteristics", []string{"-e", "1", "-c", strconv.Itoa(0xb1)}, []string{"Medium Rotation Rate:"}},
		{"vpd 0xb2 provisioning", []string{"-e", "1", "-c", strconv.Itoa(0xb2)}, []string{"provisioning type:"}},
	}
	for _, tc := range inquiries {
		t.Run("iscsi-inq "+tc.name, func(t *testing.T) {
			out := mustRun(t, 30*time.Second, "iscsi-inq", append(tc.args, d.URL(0, ""))...)
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("missing %q in:\n%s", w, out)
				}
			}
		})
	}

	t.Run("iscsi-readcapacity16", func(t *testing.T) {
		out := mustRun(t, 30*time.Second, "iscsi-readcapacity16", d.URL(0, ""))
		for _, w := range []string{
			fmt.Sprintf("Total size:%d\n", size),
			fmt.Sprintf("RETURNED LOGICAL BLOCK ADDRESS:%d\n", size/512-1),
			"LOGICAL BLOCK LENGTH IN BYTES:512\n",
		} {
			if !strings.Contains(out, w) {
				t.Errorf("missing %q in:\n%s", w, out)
			}
		}
	})

	t.Run("unknown LUN", func(t *testing.T) {
		if out, err := runTool(t, 30*time.Second, "iscsi-inq", d.URL(7, "")); err == nil {
			t.Errorf("INQUIRY on unmapped LUN 7 succeeded:\n%s", out)
		}
	})
}

// The daemon mounts the control tree, serves it while running and
// removes it on SIGTERM (exit status 0).
func TestControlTreeMount(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t, daemonConfig{KeepRoot: true, Mount: true})
	b, err := os.ReadFile(d.MountDir + "/scsi_tgt/version")
	if err != nil {
		t.Fatalf("read version from the control tree: %v", err)
	}
	if first, _, _ := strings.Cut(string(b), "\n"); first != "3.3.0-pre1-procfs" {
		t.Errorf("version file starts with %q", first)
	}
	if rc := d.Stop(60 * time.Second); rc != 0 {
		t.Fatalf("exit status %d after SIGTERM", rc)
	}
	if mountedAt(d.MountDir) {
		t.Errorf("%s still mounted after shutdown", d.MountDir)
	}
}

// `scstd --demo DIR` (what `make run` starts) creates a sparse 1 GiB image
// and its config files, and serves them as LUN 0 of the demo target; a
// restart keeps what was written.
func TestDemoMode(t *testing.T) {
	d := startDaemon(t, daemonConfig{Demo: true, KeepRoot: true})
	image := filepath.Join(d.Dir, "demo", "disk0.img")
	if out := mustRun(t, 30*time.Second, "iscsi-readcapacity16", d.URL(0, "")); !strings.Contains(out, "Total size:1073741824\n") {
		t.Errorf("demo LUN capacity:\n%s", out)
	}
	if out := mustRun(t, 30*time.Second, "iscsi-ls", "-s", d.Portal()); !strings.Contains(out, "Target:"+demoIQN) {
		t.Errorf("demo target not listed:\n%s", out)
	}
	checkWriteLands(t, d, image)
	d = d.Restart()
	checkWriteLandsAgain(t, d, image)
}

// The usermode samples (samples/scst_usermode.conf with its image paths
// moved to a scratch directory, samples/iscsi-scstd_usermode.conf) come
// up: NULLIO, NV_CACHE and BLOCKIO disks on LUNs 0-2 of every group.
func TestUsermodeSamples(t *testing.T) {
	dir := t.TempDir()
	images := filepath.Join(dir, "images")
	if err := os.Mkdir(images, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, size := range map[string]int64{"zero.img": 1 << 30, "bzero.img": 4 << 30} {
		f, err := os.Create(filepath.Join(images, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	sample, err := os.ReadFile(filepath.Join(testEnv.repoRoot, "samples", "scst_usermode.conf"))
	if err != nil {
		t.Fatal(err)
	}
	scst := filepath.Join(dir, "scst.conf")
	if err := os.WriteFile(scst, []byte(strings.ReplaceAll(string(sample), "/var/lib/scst/images", images)), 0o644); err != nil {
		t.Fatal(err)
	}
	const iqn = "iqn.2001-04.com.example.frobozz:1"
	d := startDaemon(t, daemonConfig{Dir: dir, KeepRoot: true, Target: iqn, SCSTConf: scst,
		ISCSIConf: filepath.Join(testEnv.repoRoot, "samples", "iscsi-scstd_usermode.conf")})
	out := mustRun(t, 30*time.Second, "iscsi-ls", "-s", d.Portal())
	for _, want := range []string{"Target:" + iqn, "Lun:0", "Lun:1", "Lun:2"} {
		if !strings.Contains(out, want) {
			t.Errorf("iscsi-ls -s lacks %q:\n%s", want, out)
		}
	}
	for lun, size := range map[int]string{0: "2748779069440", 1: "1073741824", 2: "4294967296"} {
		if out := mustRun(t, 30*time.Second, "iscsi-readcapacity16", d.URL(lun, "")); !strings.Contains(out, "Total size:"+size+"\n") {
			t.Errorf("LUN %d: want %s bytes:\n%s", lun, size, out)
		}
	}
	if out := mustRun(t, 30*time.Second, "iscsi-inq", d.URL(2, "")); !strings.Contains(out, "Vendor:SCST_BIO") {
		t.Errorf("BLOCKIO LUN 2 vendor:\n%s", out)
	}
}
