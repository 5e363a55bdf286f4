// Package durability checks that what scstd acknowledges as durable is in the
// backing file even when the daemon dies at once: it kills the daemon with
// SIGKILL right after acknowledged FUA writes (and after writes to a
// WRITE_THROUGH LUN, and after SYNCHRONIZE CACHE), then reads the file.
package durability

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scstd/scstd/iscsi/iscsitest"
	"github.com/scstd/scstd/iscsi/pdu"
)

const (
	targetIQN = "iqn.2026-11.org.scstd:durability"
	blockSize = 512
	imageSize = 64 << 20
	// Each scenario writes writes commands of chunk bytes, inFlight at a time.
	writes   = 96
	chunk    = 64 << 10
	inFlight = 16
)

var listeningRE = regexp.MustCompile(`msg=listening addr="?([0-9.]+:[0-9]+)`)

// buildDaemon builds cmd/scstd once for the package's tests.
func buildDaemon(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "scstd")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/scstd")
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/scstd: %v\n%s", err, out)
	}
	return bin
}

// daemon is one scstd process serving image as LUN 0 with the given vdisk
// options (e.g. WRITE_THROUGH).
type daemon struct {
	cmd  *exec.Cmd
	addr string
	log  *syncBuffer
	done chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startDaemon(t *testing.T, bin, image, opts string) *daemon {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "iscsi-scstd.conf")
	scst := filepath.Join(dir, "scst.conf")
	if err := os.WriteFile(conf, []byte("Target "+targetIQN+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sc := fmt.Sprintf("[HANDLER vdisk]\nDEVICE dur0,%s,%s,%d,dur0\n\n[GROUP Default]\n\n[ASSIGNMENT Default]\nDEVICE dur0,0\n",
		image, opts, blockSize)
	if err := os.WriteFile(scst, []byte(sc), 0o644); err != nil {
		t.Fatal(err)
	}
	d := &daemon{log: &syncBuffer{}, done: make(chan struct{})}
	d.cmd = exec.Command(bin, "-f", "-a", "127.0.0.1", "-p", "0", "-d", "info", "-c", conf, "--scst-config", scst,
		"--state-dir", filepath.Join(dir, "state"), "--initiators-allow", filepath.Join(dir, "allow"),
		"--initiators-deny", filepath.Join(dir, "deny"), "--no-mount",
		"-u", strconv.Itoa(os.Geteuid()), "-g", strconv.Itoa(os.Getegid()))
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	d.cmd.Stdout = d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		defer close(d.done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			d.log.Write(append(sc.Bytes(), '\n'))
			if m := listeningRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(d.log, stderr)
		_ = d.cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = d.cmd.Process.Kill()
		<-d.done
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.log.String())
		}
	})
	select {
	case d.addr = <-addr:
	case <-d.done:
		t.Fatalf("daemon exited during startup:\n%s", d.log.String())
	case <-time.After(30 * time.Second):
		t.Fatal("daemon did not listen within 30 s")
	}
	return d
}

// kill ends the daemon with SIGKILL and waits until it is gone.
func (d *daemon) kill(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		t.Fatal("daemon still running 10 s after SIGKILL")
	}
}

func write10(lba uint32, blocks uint16, fua bool) []byte {
	cdb := iscsitest.Write10(lba, blocks)
	if fua {
		cdb[1] |= 0x08
	}
	return cdb
}

func TestAcknowledgedWritesSurviveSIGKILL(t *testing.T) {
	bin := buildDaemon(t)
	for _, tc := range []struct {
		name string
		opts string // vdisk options of the LUN
		fua  bool   // FUA bit in the WRITE CDBs
		sync bool   // SYNCHRONIZE CACHE after the writes
	}{
		{name: "fua", fua: true},
		{name: "write_through", opts: "WRITE_THROUGH"},
		{name: "sync_cache", sync: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A disk file system (not tmpfs), where FUA and fdatasync matter.
			image := filepath.Join(t.TempDir(), "disk.img")
			if err := os.WriteFile(image, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(image, imageSize); err != nil {
				t.Fatal(err)
			}
			d := startDaemon(t, bin, image, tc.opts)
			c, err := iscsitest.Dial(d.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Timeout = 30 * time.Second
			if err := c.Login(iscsitest.Options{InitiatorName: "iqn.2026-11.test:durability", TargetName: targetIQN}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Do(&iscsitest.Cmd{CDB: make([]byte, 6)}); err != nil { // POWER ON unit attention
				t.Fatal(err)
			}
			data := make([]byte, writes*chunk)
			if _, err := rand.Read(data); err != nil {
				t.Fatal(err)
			}
			// Pipelined writes, inFlight at a time; every one must be GOOD.
			// Each fits in the immediate data (FirstBurstLength is 64 KiB),
			// so the only PDUs coming back are responses, in any order.
			outstanding := map[uint32]bool{}
			collect := func() {
				h, data, err := c.RecvSkipPings()
				if err != nil {
					t.Fatal(err)
				}
				if h.Opcode() != pdu.OpSCSIResp || !outstanding[h.ITT()] {
					t.Fatalf("unexpected %v for ITT %#x", h.Opcode(), h.ITT())
				}
				if h.Status() != 0 {
					t.Fatalf("WRITE status %#x sense % x", h.Status(), data)
				}
				delete(outstanding, h.ITT())
			}
			for i := 0; i < writes; i++ {
				cmd := &iscsitest.Cmd{CDB: write10(uint32(i*chunk/blockSize), chunk/blockSize, tc.fua), Write: data[i*chunk : (i+1)*chunk]}
				itt, err := c.SendCommand(cmd)
				if err != nil {
					t.Fatal(err)
				}
				outstanding[itt] = true
				if len(outstanding) == inFlight {
					collect()
				}
			}
			for len(outstanding) > 0 {
				collect()
			}
			if tc.sync {
				res, err := c.Do(&iscsitest.Cmd{CDB: []byte{0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0}})
				if err != nil || res.Status != 0 {
					t.Fatalf("SYNCHRONIZE CACHE: %v %+v", err, res)
				}
			}
			// More writes still in flight when the daemon dies: they may or
			// may not land, but must not disturb the acknowledged ones.
			for i := 0; i < inFlight; i++ {
				junk := bytes.Repeat([]byte{0xa5}, chunk)
				if _, err := c.SendCommand(&iscsitest.Cmd{CDB: write10(uint32((writes+i)*chunk/blockSize), chunk/blockSize, tc.fua), Write: junk}); err != nil {
					t.Fatal(err)
				}
			}
			d.kill(t)

			got, err := os.ReadFile(image)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[:len(data)], data) {
				off := 0
				for off < len(data) && got[off] == data[off] {
					off++
				}
				t.Fatalf("acknowledged data lost: first difference at byte %d (command %d)", off, off/chunk)
			}
			if !strings.Contains(d.log.String(), "virtual disk opened") {
				t.Errorf("unexpected daemon log:\n%s", d.log.String())
			}
		})
	}
}
