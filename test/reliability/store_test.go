package reliability

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/scstd/scstd/iscsi/iscsitest"
	"github.com/scstd/scstd/iscsi/pdu"
	"github.com/scstd/scstd/test/testenv"
)

// expectSense runs cmd and requires CHECK CONDITION with the given sense.
func expectSense(t testing.TB, c *iscsitest.Conn, what string, cmd *iscsitest.Cmd, want sense) {
	t.Helper()
	_, err := do(c, cmd)
	var ce *cmdError
	if !errors.As(err, &ce) {
		t.Fatalf("%s: want CHECK CONDITION %v, got %v", what, want, err)
	}
	if ce.Status != 0x02 || ce.Sense != want {
		t.Fatalf("%s: got status %#x %v, want CHECK CONDITION %v", what, ce.Status, ce.Sense, want)
	}
}

// Backing store errors reach the initiator as the right sense: EIO on a
// read is MEDIUM ERROR / UNRECOVERED READ ERROR, on a write MEDIUM ERROR /
// WRITE ERROR (also for SYNCHRONIZE CACHE when the flush fails), ENOSPC is
// DATA PROTECT / SPACE ALLOCATION FAILED WRITE PROTECT. When the store
// recovers the same session carries on and the data is intact. The file
// lives on the test's FUSE filesystem, which fails on demand.
func TestBackingStoreErrors(t *testing.T) {
	disk, path := mountFaultDisk(t, 16<<20, true)
	d := startDaemon(t, daemonConfig{Devices: []device{{Name: "disk0", Path: path}}})
	c := login(t, d.Addr, iscsitest.Options{InitiatorName: initiatorName("eio")})
	fillRegion(t, c, 0, 3, 0, 64, 1)

	var (
		readErr  = sense{keyMediumError, 0x11, 0x00}
		writeErr = sense{keyMediumError, 0x0c, 0x00}
		noSpace  = sense{keyDataProtect, 0x27, 0x07}
	)
	tests := []struct {
		name    string
		readEn  syscall.Errno
		writeEn syscall.Errno
		cmd     *iscsitest.Cmd
		want    sense
	}{
		{"read EIO", syscall.EIO, 0, &iscsitest.Cmd{CDB: read16(8, 8), ReadLen: 8 * blockSize}, readErr},
		{"write EIO", 0, syscall.EIO, &iscsitest.Cmd{CDB: write16(8, 8, false), Write: patternBlocks(3, 8, 8, 9)}, writeErr},
		{"FUA write EIO", 0, syscall.EIO, &iscsitest.Cmd{CDB: write16(8, 8, true), Write: patternBlocks(3, 8, 8, 9)}, writeErr},
		{"flush EIO", 0, syscall.EIO, &iscsitest.Cmd{CDB: syncCache16()}, writeErr},
		{"write ENOSPC", 0, syscall.ENOSPC, &iscsitest.Cmd{CDB: write16(8, 8, false), Write: patternBlocks(3, 8, 8, 9)}, noSpace},
		{"write EDQUOT", 0, syscall.EDQUOT, &iscsitest.Cmd{CDB: write16(8, 8, false), Write: patternBlocks(3, 8, 8, 9)}, noSpace},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "flush EIO" {
				// Leave something to flush.
				if err := writeBlocks(c, 0, 32, patternBlocks(3, 32, 8, 1), false); err != nil {
					t.Fatal(err)
				}
			}
			disk.readErr.Store(int32(tc.readEn))
			disk.writeErr.Store(int32(tc.writeEn))
			expectSense(t, c, tc.name, tc.cmd, tc.want)
			disk.readErr.Store(0)
			disk.writeErr.Store(0)
			// Recovered: the old data is intact and new writes work.
			expectRegion(t, c, 0, 3, 0, 64, 1)
		})
	}
	if !d.Alive() {
		t.Fatal("daemon died")
	}
	fillRegion(t, c, 0, 3, 0, 64, 2)
	expectRegion(t, c, 0, 3, 0, 64, 2)
}

// A real full filesystem: the backing file is sparse on a 1 MiB tmpfs the
// test mounts. Writes that need new space fail with DATA PROTECT / SPACE
// ALLOCATION FAILED, while reads and overwrites of allocated blocks keep
// working, and the daemon survives.
func TestDiskFullTmpfs(t *testing.T) {
	requireRoot(t)
	dir := filepath.Join(t.TempDir(), "tiny")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := runTool(t, 10*time.Second, "mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "scstd-tiny", dir); err != nil {
		t.Fatalf("mount tmpfs: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = runTool(t, 10*time.Second, "umount", "-l", dir) })
	img := filepath.Join(dir, "disk0.img")
	d := startDaemon(t, daemonConfig{Devices: []device{{Name: "disk0", Path: img, Size: 16 << 20}}})
	c := login(t, d.Addr, iscsitest.Options{InitiatorName: initiatorName("enospc")})
	const chunk = 128 // blocks, 64 KiB
	var full bool
	var written uint64
	for lba := uint64(0); lba < 16<<20/blockSize; lba += chunk {
		err := writeBlocks(c, 0, lba, patternBlocks(4, lba, chunk, 1), false)
		if err == nil {
			written = lba + chunk
			continue
		}
		var ce *cmdError
		if !errors.As(err, &ce) || ce.Sense != (sense{keyDataProtect, 0x27, 0x07}) {
			t.Fatalf("write at %d on a full filesystem: %v, want DATA PROTECT 27/07", lba, err)
		}
		full = true
		break
	}
	if !full {
		t.Fatal("16 MiB fitted on a 1 MiB tmpfs")
	}
	if written == 0 {
		t.Fatal("nothing fitted before the filesystem was full")
	}
	// What was acknowledged reads back, and allocated blocks take overwrites.
	expectRegion(t, c, 0, 4, 0, int(written), 1)
	fillRegion(t, c, 0, 4, 0, int(min(written, 256)), 2)
	expectRegion(t, c, 0, 4, 0, int(min(written, 256)), 2)
	t.Logf("tmpfs full after %d KiB; writes beyond fail with DATA PROTECT 27/07; earlier data intact", written*blockSize>>10)
}

// `close` of a device while sessions do I/O on it and on another device:
// the control write succeeds, I/O to the closed LUN ends with LOGICAL UNIT
// NOT SUPPORTED (after the REPORTED LUNS DATA HAS CHANGED unit attention),
// the other LUN's sessions see no error, and the device opened and mapped
// again serves every acknowledged write.
func TestCloseDeviceInUse(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t, daemonConfig{Mount: true, Devices: []device{{Name: "disk0"}, {Name: "disk1"}}})
	path1 := d.cfg.Devices[1].Path
	// Separate sessions per LUN, so that the end of LUN 1 does not stop
	// the verification of LUN 0.
	var stay, doomed []*verifier
	for i := 0; i < 4; i++ {
		c := login(t, d.Addr, iscsitest.Options{InitiatorName: initiatorName(fmt.Sprintf("close-a%d", i)), ISID: 0x400000000800 | uint64(i)})
		stay = append(stay, newVerifier(c, lunField(0), uint32(i+1), uint64(i*2048), 2048, 64))
		c = login(t, d.Addr, iscsitest.Options{InitiatorName: initiatorName(fmt.Sprintf("close-b%d", i)), ISID: 0x400000000880 | uint64(i)})
		doomed = append(doomed, newVerifier(c, lunField(1), uint32(i+11), uint64(i*2048), 2048, 64))
	}
	stop := make(chan struct{})
	stayErr := make(chan []error, 1)
	doomErr := make(chan []error, 1)
	go func() { stayErr <- runVerifiers(stay, stop) }()
	go func() { doomErr <- runVerifiers(doomed, stop) }()
	time.Sleep(time.Second)
	if err := d.ctl("vdisk/vdisk", "close disk1"); err != nil {
		t.Fatalf("close disk1 while in use: %v", err)
	}
	var derrs []error
	select {
	case derrs = <-doomErr:
	case <-time.After(15 * time.Second):
		t.Fatal("sessions on the closed LUN still running 15 s after close")
	}
	for _, err := range derrs {
		var ce *cmdError
		if !errors.As(err, &ce) || ce.Sense != (sense{keyIllegalRequest, 0x25, 0x00}) {
			t.Errorf("I/O to the closed device ended with %v, want LOGICAL UNIT NOT SUPPORTED", err)
		}
	}
	if len(derrs) != len(doomed) {
		t.Errorf("%d of %d sessions on the closed LUN noticed", len(derrs), len(doomed))
	}
	time.Sleep(time.Second)
	close(stop)
	if errs := <-stayErr; len(errs) > 0 {
		t.Fatalf("sessions on the other LUN failed: %v", errs[0])
	}
	if strings.Contains(d.readCtl("vdisk/vdisk"), "disk1 ") {
		t.Errorf("disk1 still listed after close:\n%s", d.readCtl("vdisk/vdisk"))
	}
	if err := d.ctl("vdisk/vdisk", "open disk1 "+path1); err != nil {
		t.Fatalf("reopen disk1: %v", err)
	}
	if err := d.ctl("groups/Default/devices", "add disk1 1"); err != nil {
		t.Fatalf("map disk1 again: %v", err)
	}
	var cmds int64
	for i, v := range doomed {
		if err := v.verifyAll(); err != nil {
			t.Errorf("session %d after reopen: %v", i, err)
		}
		cmds += v.cmds.Load()
	}
	for _, v := range stay {
		if err := v.verifyAll(); err != nil {
			t.Fatal(err)
		}
		cmds += v.cmds.Load()
	}
	t.Logf("close of a device in use: %d commands before/after, acknowledged writes intact after reopen", cmds)
}

// SIGTERM while 16 sessions write: the daemon exits 0 within its shutdown
// timeout, logs a clean stop, and every write it acknowledged is in the
// backing file.
func TestSIGTERMUnderLoad(t *testing.T) {
	d := startDaemon(t, daemonConfig{})
	path := d.cfg.Devices[0].Path
	vs := make([]*verifier, 16)
	for i := range vs {
		c := login(t, d.Addr, iscsitest.Options{InitiatorName: initiatorName(fmt.Sprintf("term%d", i)), ISID: 0x400000000900 | uint64(i)})
		vs[i] = newVerifier(c, 0, uint32(i+1), uint64(i*4096), 4096, 128)
	}
	stop := make(chan struct{})
	done := make(chan []error, 1)
	go func() { done <- runVerifiers(vs, stop) }()
	time.Sleep(2 * time.Second)
	start := time.Now()
	rc := d.Stop(30 * time.Second)
	took := time.Since(start)
	close(stop)
	errs := <-done // connection errors after the signal are expected
	if rc != 0 {
		t.Fatalf("exit status %d after SIGTERM under load", rc)
	}
	if !strings.Contains(d.Log(), "msg=stopped") {
		t.Errorf("no clean stop logged")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var checked, lost int
	var cmds int64
	for _, v := range vs {
		cmds += v.cmds.Load()
		for off, want := range v.seq {
			if want == 0 {
				continue
			}
			checked++
			lba := v.base + uint64(off)
			id, l, s, ok := parseBlock(readFileBlock(t, f, lba))
			// A write in flight at the signal may have landed after its
			// predecessor was acknowledged.
			if !ok || id != v.id || l != lba || s < want {
				lost++
			}
		}
	}
	t.Logf("SIGTERM under load: exit 0 after %v; %d commands, %d sessions ended with an error (expected), %d acknowledged blocks checked, %d lost",
		took.Round(time.Millisecond), cmds, len(errs), checked, lost)
	if checked == 0 {
		t.Fatal("no acknowledged writes before the signal")
	}
	if lost > 0 {
		t.Fatalf("%d acknowledged blocks missing from the backing file after a graceful stop", lost)
	}
}

// LUN mapping churn under load: LUN 1 is deleted and added back (and
// replaced) every 100 ms through the control tree while sessions do
// verified I/O on LUN 0 and LUN 1. LUN 0 sees no error at all; LUN 1's
// commands fail only with LOGICAL UNIT NOT SUPPORTED or unit attentions
// while it is away (a command caught in flight may be dropped, as a reset
// would), and every write acknowledged on LUN 1 is there at the end.
func TestLUNMappingChurnUnderLoad(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t, daemonConfig{Mount: true, Devices: []device{{Name: "disk0"}, {Name: "disk1"}}})
	var stay []*verifier
	var moving []*resettableVerifier
	var epoch atomic.Int64
	for i := 0; i < 3; i++ {
		c := login(t, d.Addr, iscsitest.Options{InitiatorName: initiatorName(fmt.Sprintf("map-a%d", i)), ISID: 0x400000001200 | uint64(i)})
		stay = append(stay, newVerifier(c, lunField(0), uint32(i+1), uint64(i*2048), 2048, 64))
		name := initiatorName(fmt.Sprintf("map-b%d", i))
		isid := 0x400000001280 | uint64(i)
		c = login(t, d.Addr, iscsitest.Options{InitiatorName: name, ISID: isid})
		moving = append(moving, &resettableVerifier{verifier: newVerifier(c, lunField(1), uint32(i+11), uint64(i*2048), 2048, 64),
			addr: d.Addr, name: name, isid: isid, epoch: &epoch})
	}
	stop := make(chan struct{})
	stayErr := make(chan []error, 1)
	go func() { stayErr <- runVerifiers(stay, stop) }()
	var wg sync.WaitGroup
	var gone, movErrs atomic.Int64
	var mu sync.Mutex
	var firstErr error
	for _, r := range moving {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				err := r.step()
				if err == nil {
					continue
				}
				var ce *cmdError
				if errors.As(err, &ce) && ce.Sense == (sense{keyIllegalRequest, 0x25, 0x00}) {
					gone.Add(1)
					time.Sleep(5 * time.Millisecond)
					continue
				}
				movErrs.Add(1)
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				return
			}
		}()
	}
	changes := 0
	deadline := time.Now().Add(phase(t, 4*time.Second))
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		epoch.Add(1)
		cmd := "del disk1"
		if changes%4 == 3 {
			cmd = "replace disk1 1"
		}
		if err := d.ctl("groups/Default/devices", cmd); err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		epoch.Add(1) // commands sent since the first bump may be caught too
		// Commands caught by the removal get no response: unblock them.
		for _, r := range moving {
			r.nudge(1500 * time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond)
		if cmd == "del disk1" {
			if err := d.ctl("groups/Default/devices", "add disk1 1"); err != nil {
				t.Fatalf("add disk1 1: %v", err)
			}
		}
		changes++
	}
	close(stop)
	wg.Wait()
	if errs := <-stayErr; len(errs) > 0 {
		t.Fatalf("LUN 0 sessions failed while LUN 1 came and went: %v", errs[0])
	}
	if firstErr != nil {
		t.Fatalf("%d LUN 1 sessions failed with something else than LOGICAL UNIT NOT SUPPORTED: %v", movErrs.Load(), firstErr)
	}
	var cmds, lost int64
	for _, v := range stay {
		cmds += v.cmds.Load()
		if err := v.verifyAll(); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range moving {
		cmds += r.cmds.Load()
		lost += r.lost.Load()
		r.c.Timeout = 10 * time.Second
		if err := r.verifyAll(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("LUN 1 remapped %d times under load: %d commands, %d refused while unmapped, %d dropped in flight, 0 errors on LUN 0", changes, cmds, gone.Load(), lost)
}

// A backing store that stops answering (every read and write of disk1
// held by the test's FUSE server) holds only its own commands: 32 reads
// and writes stuck on disk1 leave disk0's sessions doing verified I/O
// untouched; when the store comes back the stuck commands complete with
// the right data.
func TestStuckBackingStore(t *testing.T) {
	disk, path := mountFaultDisk(t, 16<<20, true)
	d := startDaemon(t, daemonConfig{Devices: []device{{Name: "disk0"}, {Name: "disk1", Path: path}}})
	stuckConn := login(t, d.Addr, iscsitest.Options{InitiatorName: initiatorName("stuck"), ISID: 0x400000001301, Keys: unsolicitedKeys})
	clearUA(t, stuckConn, lunField(1))
	fillRegion(t, stuckConn, lunField(1), 21, 0, 256, 1)
	var vs []*verifier
	for i := 0; i < 2; i++ {
		c := login(t, d.Addr, iscsitest.Options{InitiatorName: initiatorName(fmt.Sprintf("unstuck%d", i)), ISID: 0x400000001310 | uint64(i)})
		vs = append(vs, newVerifier(c, lunField(0), uint32(i+1), uint64(i*4096), 4096, 64))
	}

	release := disk.stall()
	defer release()
	want := map[uint32]bool{}
	reads := map[uint32]uint64{}
	for i := 0; i < 32; i++ {
		lba := uint64(i * 8)
		cmd := &iscsitest.Cmd{LUN: lunField(1), CDB: read16(lba, 8), ReadLen: 8 * blockSize}
		if i%2 == 1 {
			cmd = &iscsitest.Cmd{LUN: lunField(1), CDB: write16(lba, 8, false), Write: patternBlocks(21, lba, 8, 2)}
		}
		itt, err := stuckConn.SendCommand(cmd)
		if err != nil {
			t.Fatal(err)
		}
		want[itt] = true
		if i%2 == 0 {
			reads[itt] = lba
		}
	}
	if !eventually(5*time.Second, func() bool { return disk.waiting.Load() > 0 }) {
		t.Fatal("no request reached the stuck store")
	}
	stop := make(chan struct{})
	errc := make(chan []error, 1)
	go func() { errc <- runVerifiers(vs, stop) }()
	time.Sleep(phase(t, 3*time.Second))
	close(stop)
	if errs := <-errc; len(errs) > 0 {
		t.Fatalf("disk0 sessions failed while disk1 was stuck: %v", errs[0])
	}
	var cmds int64
	for _, v := range vs {
		cmds += v.cmds.Load()
	}
	if cmds < 100 {
		t.Fatalf("disk0 served only %d commands while disk1 was stuck", cmds)
	}
	held := disk.waiting.Load()
	release()
	status := map[uint32]byte{}
	stuckConn.Timeout = 10 * time.Second
	for len(status) < len(want) {
		h, data, err := stuckConn.RecvSkipPings()
		if err != nil {
			t.Fatalf("stuck commands after the store came back: %d of %d answered: %v", len(status), len(want), err)
		}
		switch h.Opcode() {
		case pdu.OpDataIn:
			if lba, ok := reads[h.ITT()]; ok {
				// Old or new generation, but intact and in place.
				for i := 0; i*blockSize < len(data); i++ {
					id, l, _, ok := parseBlock(data[i*blockSize:])
					if !ok || id != 21 || l != lba+uint64(h.BufferOffset())/blockSize+uint64(i) {
						t.Fatalf("read at %d returned a wrong block %d", lba, i)
					}
				}
			}
			if h.Flags()&pdu.FlagStatus != 0 {
				status[h.ITT()] = h.Status()
			}
		case pdu.OpSCSIResp:
			status[h.ITT()] = h.Status()
		default:
			t.Fatalf("unexpected %v", h.Opcode())
		}
	}
	for itt, st := range status {
		if st != 0 {
			t.Errorf("stuck command %#x ended with status %#x", itt, st)
		}
	}
	expectRegion(t, stuckConn, lunField(1), 21, 8, 8, 2)
	t.Logf("disk1 stuck with %d requests held: disk0 served %d verified commands meanwhile; all 32 stuck commands completed GOOD after release", held, cmds)
}

// SIGTERM while a backing store hangs (every read of disk1 held by the
// test's FUSE server): the daemon must exit within --shutdown-timeout plus
// a margin, giving up on the stuck device, instead of waiting for it for
// ever.
func TestSIGTERMWithStuckBackingStore(t *testing.T) {
	disk, path := mountFaultDisk(t, 16<<20, true)
	d := startDaemon(t, daemonConfig{Devices: []device{{Name: "disk0"}, {Name: "disk1", Path: path}},
		Args: []string{"--shutdown-timeout", "3s"}})
	release := stickRead(t, d, disk, "stuck-term")
	defer release()
	start := time.Now()
	rc := d.Stop(20 * time.Second)
	took := time.Since(start)
	t.Logf("SIGTERM with a stuck store: exit status %d after %v (shutdown timeout 3 s)", rc, took.Round(10*time.Millisecond))
	if took > 10*time.Second {
		t.Errorf("shutdown took %v with a 3 s shutdown timeout", took)
	}
	// Giving up on a device is not a clean stop: say so, and which one.
	if rc == 0 {
		t.Errorf("exit status 0 although disk1 could not be closed")
	}
	if !strings.Contains(d.Log(), "disk1") || !strings.Contains(d.Log(), "level=error") {
		t.Errorf("no error naming disk1 in the log:\n%s", testenv.Tail(d.Log(), 10))
	}
}

// stickRead stalls disk (disk1's store, LUN 1) and leaves a READ of a new
// session hanging in it; release lets the store answer again.
func stickRead(t *testing.T, d *daemon, disk *faultDisk, initiator string) (release func()) {
	t.Helper()
	c := login(t, d.Addr, iscsitest.Options{InitiatorName: initiatorName(initiator)})
	clearUA(t, c, lunField(1))
	release = disk.stall()
	if _, err := c.SendCommand(&iscsitest.Cmd{LUN: lunField(1), CDB: read16(0, 8), ReadLen: 8 * blockSize}); err != nil {
		release()
		t.Fatal(err)
	}
	if !eventually(5*time.Second, func() bool { return disk.waiting.Load() > 0 }) {
		release()
		t.Fatal("no request reached the stuck store")
	}
	return release
}
