//go:build rbd

package rbd

import (
	"bufio"
	"crypto/rand"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/scstd/scstd/test/testenv"
)

// TestDiscoveryAndInquiry: iscsi-ls lists the RBD LUN with its size,
// iscsi-inq and READ CAPACITY(16) describe a thin 512-byte-block disk.
func TestDiscoveryAndInquiry(t *testing.T) {
	img := newImage(t, "96M")
	d := startDaemon(t, daemonConfig{LUNs: []lunSpec{{Image: img}}})
	ls := mustRun(t, time.Minute, "iscsi-ls", "-s", "iscsi://"+d.Addr)
	if !strings.Contains(ls, targetIQN) || !regexp.MustCompile(`Lun:0 .*Type:DIRECT_ACCESS.*\(Size:9[56]M\)`).MatchString(ls) {
		t.Fatalf("iscsi-ls -s does not list LUN 0 as a 96M disk:\n%s", ls)
	}
	inq := mustRun(t, time.Minute, "iscsi-inq", d.URL(0))
	if !strings.Contains(inq, "Peripheral Device Type:DIRECT_ACCESS") {
		t.Fatalf("iscsi-inq:\n%s", inq)
	}
	// The Device Identification page carries the T10 id (the image name).
	vpd := mustRun(t, time.Minute, "iscsi-inq", "-e", "1", "-c", "131", d.URL(0))
	if !strings.Contains(vpd, img) {
		t.Fatalf("VPD 0x83 does not name the image %s:\n%s", img, vpd)
	}
	rc := mustRun(t, time.Minute, "iscsi-readcapacity16", d.URL(0))
	for _, want := range []string{"RETURNED LOGICAL BLOCK ADDRESS:" + strconv.Itoa(96<<20/512-1), "LOGICAL BLOCK LENGTH IN BYTES:512", "LBPME:1 LBPRZ:1"} {
		if !strings.Contains(rc, want) {
			t.Fatalf("READ CAPACITY(16) lacks %q:\n%s", want, rc)
		}
	}
}

// TestQemuImgRoundTrip copies random data onto the LUN with qemu-img,
// reads it back through iSCSI and with `rbd export`: all three are equal.
func TestQemuImgRoundTrip(t *testing.T) {
	const size = 128 << 20
	img := newImage(t, "128M")
	d := startDaemon(t, daemonConfig{LUNs: []lunSpec{{Image: img}}})
	dir := t.TempDir()
	src, back, exported := filepath.Join(dir, "src.raw"), filepath.Join(dir, "back.raw"), filepath.Join(dir, "export.raw")
	writeRandomFile(t, src, size)
	mustRun(t, 5*time.Minute, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", "-t", "none", src, d.URL(0))
	mustRun(t, 5*time.Minute, "qemu-img", "convert", "-f", "raw", "-O", "raw", d.URL(0), back)
	sameFiles(t, src, back)
	rbdCLI(t, "export", "--no-progress", "rbd/"+img, exported)
	sameFiles(t, src, exported)
}

func writeRandomFile(t testing.TB, path string, size int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	buf := make([]byte, 1<<20)
	for n := 0; n < size; n += len(buf) {
		rand.Read(buf)
		if _, err := w.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
}

// TestExt4 runs the shared filesystem script on an RBD LUN: mkfs, files,
// fsck, and an independent read-back after the daemon stopped.
func TestExt4(t *testing.T) {
	requireRoot(t)
	requireTools(t, "qemu-storage-daemon", "qemu-img", "losetup", "mkfs.ext4", "e2fsck", "sha256sum", "mountpoint", "bash")
	img := newImage(t, "256M")
	d := startDaemon(t, daemonConfig{LUNs: []lunSpec{{Image: img}}})
	out, err := runTool(t, 10*time.Minute, "bash", sharedConformance(t, "e2e-ext4.sh"), "-n", "10", "-m", "4", d.URL(0))
	t.Logf("e2e-ext4.sh:\n%s", testenv.Tail(out, 30))
	if err != nil || strings.Contains(out, "FAIL ") {
		t.Fatalf("e2e-ext4.sh failed: %v", err)
	}
}
