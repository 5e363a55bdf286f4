package e2e

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/scstd/scstd/test/testenv"
)

// writeRandomFile writes size pseudo-random bytes (seeded, so a failure
// can be reproduced) to path.
func writeRandomFile(t testing.TB, path string, size int64, seed uint64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	rng := rand.NewChaCha8(s)
	buf := make([]byte, 1<<20)
	for written := int64(0); written < size; written += int64(len(buf)) {
		n := min(int64(len(buf)), size-written)
		_, _ = rng.Read(buf[:n])
		if _, err := f.Write(buf[:n]); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// compareFiles fails the test at the first MiB where a and b differ
// (comparing the first n bytes, or all of both when n < 0).
func compareFiles(t testing.TB, a, b string, n int64) {
	t.Helper()
	fa, err := os.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	if n < 0 {
		sa, _ := fa.Stat()
		sb, _ := fb.Stat()
		if sa.Size() != sb.Size() {
			t.Fatalf("%s is %d bytes, %s is %d", a, sa.Size(), b, sb.Size())
		}
		n = sa.Size()
	}
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	for off := int64(0); off < n; off += int64(len(ba)) {
		l := min(int64(len(ba)), n-off)
		if _, err := io.ReadFull(fa, ba[:l]); err != nil {
			t.Fatalf("read %s at %d: %v", a, off, err)
		}
		if _, err := io.ReadFull(fb, bb[:l]); err != nil {
			t.Fatalf("read %s at %d: %v", b, off, err)
		}
		if !bytes.Equal(ba[:l], bb[:l]) {
			i := 0
			for ba[i] == bb[i] {
				i++
			}
			t.Fatalf("%s and %s differ at byte %d", a, b, off+int64(i))
		}
	}
}

// A 256 MiB random image copied onto the LUN with qemu-img and read back is
// bit-identical, and the backing file holds the same bytes. The O_DIRECT
// case serves the file through the Linux AIO engine (writes batched by its
// submitter); its image lives on /var/tmp, a disk file system, because
// tmpfs refuses O_DIRECT before Linux 6.6.
func TestQemuImgCopyRoundTrip(t *testing.T) {
	const size = 256 << 20
	requireTools(t, "qemu-img")
	for _, tc := range []struct {
		name, flags, engine, dir string
		// mapped: the read-back is sent from the daemon's mapping of the
		// backing file (buffered LUNs), so the pages it sent count in the
		// daemon's RSS for that mapping; O_DIRECT LUNs are never mapped.
		mapped bool
	}{
		{"buffered", "", "pool", "", true},
		{"O_DIRECT", "O_DIRECT", "aio", "/var/tmp", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.dir != "" {
				var err error
				if dir, err = os.MkdirTemp(tc.dir, "scstd-e2e-"); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { os.RemoveAll(dir) })
			}
			image := filepath.Join(dir, "disk0.img")
			d := startDaemon(t, daemonConfig{Image: image, ImageSize: size, Flags: tc.flags, KeepRoot: true})
			if !strings.Contains(d.Log(), "engine="+tc.engine) {
				t.Fatalf("disk0 is not served by the %s engine:\n%s", tc.engine, testenv.Tail(d.Log(), 20))
			}
			scratch := t.TempDir()
			src := filepath.Join(scratch, "src.img")
			back := filepath.Join(scratch, "back.img")
			writeRandomFile(t, src, size, 2)

			mustRun(t, 5*time.Minute, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", "-t", "none", src, d.URL(0, ""))
			mustRun(t, 5*time.Minute, "qemu-img", "convert", "-f", "raw", "-O", "raw", d.URL(0, ""), back)
			compareFiles(t, src, back, -1)
			compareFiles(t, src, image, -1)
			rss, found := mappingRSS(t, d.PID(), image)
			// Served from the mapping, the read-back leaves nearly the whole
			// image resident in it (without: about 1 MiB).
			if found != tc.mapped || (tc.mapped && rss*1024 < size/2) {
				t.Errorf("daemon's mapping of %s: present %v, RSS %d kB; want present %v with most of the %d MiB read through it",
					image, found, rss, tc.mapped, size>>20)
			}
		})
	}
}

// mappingRSS sums the resident kB of pid's mappings of file (smaps).
func mappingRSS(t *testing.T, pid int, file string) (kB int, found bool) {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps")
	if err != nil {
		t.Fatal(err)
	}
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 6 && strings.Contains(f[0], "-"):
			in = f[len(f)-1] == file
			found = found || in
		case in && len(f) == 3 && f[0] == "Rss:":
			n, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatalf("smaps: %q", line)
			}
			kB += n
		}
	}
	return kB, found
}

// ../shared/conformance/e2e-ext4.sh passes (mkfs, files, fsck, read back
// after its initiator stopped); then the daemon restarts and the LUN read
// again is a clean ext4 holding the same files, identical to the backing
// file.
func TestExt4AndRestart(t *testing.T) {
	requireRoot(t)
	requireTools(t, "qemu-storage-daemon", "qemu-img", "losetup", "mkfs.ext4", "e2fsck", "sha256sum", "mountpoint", "bash")
	script := sharedConformance(t, "e2e-ext4.sh")
	d := startDaemon(t, daemonConfig{ImageSize: 256 << 20, KeepRoot: true})

	out, err := runTool(t, 15*time.Minute, "bash", script, d.URL(0, ""))
	t.Logf("e2e-ext4.sh:\n%s", testenv.Tail(out, 30))
	if err != nil || !strings.Contains(out, "E2E PASS") {
		t.Fatalf("e2e-ext4.sh failed (%v)", err)
	}
	if strings.Contains(out, "NOP timeout") || strings.Contains(out, "Reconnecting") {
		t.Errorf("initiator reported NOP timeouts or reconnects")
	}

	d = d.Restart()
	scratch := t.TempDir()
	copyImg := filepath.Join(scratch, "copy.img")
	mustRun(t, 5*time.Minute, "qemu-img", "convert", "-f", "raw", "-O", "raw", d.URL(0, ""), copyImg)
	mustRun(t, 5*time.Minute, "e2fsck", "-fn", copyImg)
	compareFiles(t, copyImg, filepath.Join(d.Dir, "disk0.img"), -1)

	mnt := filepath.Join(scratch, "ro")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	mustRun(t, time.Minute, "mount", "-o", "ro,loop", copyImg, mnt)
	defer func() { _, _ = runTool(t, time.Minute, "umount", mnt) }()
	// e2e-ext4.sh writes f1..f20 of 4 MiB and tree/a/b/c/s1..s200.
	for i := 1; i <= 20; i++ {
		st, err := os.Stat(filepath.Join(mnt, "f"+strconv.Itoa(i)))
		if err != nil || st.Size() != 4<<20 {
			t.Errorf("f%d after restart: %v", i, err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "tree/a/b/c/s200")); err != nil || string(b) != "small 200\n" {
		t.Errorf("tree/a/b/c/s200 after restart: %q, %v", b, err)
	}
}
