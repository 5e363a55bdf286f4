package reliability

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/scstd/scstd/iscsi/iscsitest"
)

// durMode is how a durability run makes its writes durable.
type durMode struct {
	name  string
	flags string // device options
	fua   bool   // WRITE(16) with FUA
	sync  int    // SYNCHRONIZE CACHE after this many writes (0: never)
	// durable: acknowledged writes must survive. false is the control run
	// (write-back, no sync) that shows the power-loss model loses data.
	durable bool
}

var durModes = []durMode{
	{name: "write-through", flags: "WRITE_THROUGH", durable: true},
	{name: "fua", fua: true, durable: true},
	{name: "sync-cache", sync: 16, durable: true},
	{name: "write-back-control", durable: false},
}

// ackLog records, per writer, which blocks were acknowledged as durable.
type ackLog struct {
	mu    sync.Mutex
	acked map[uint64]uint64 // lba -> seq
}

func (a *ackLog) add(lba uint64, n int, seq uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := 0; i < n; i++ {
		a.acked[lba+uint64(i)] = seq
	}
}

// durWriter writes a numbered pattern sequentially through its region, round
// after round with growing sequence numbers, until stop or an error, and
// records what the target acknowledged as durable under mode.
func durWriter(c *iscsitest.Conn, mode durMode, id uint32, base uint64, blocks int, acks *ackLog, stop <-chan struct{}) (int, error) {
	const per = 8
	var pending [][2]uint64 // lba, seq written but not yet synced
	n := 0
	for i := 0; ; i++ {
		select {
		case <-stop:
			return n, nil
		default:
		}
		off := i * per % (blocks - blocks%per)
		lba := base + uint64(off)
		seq := uint64(i + 1)
		if err := writeBlocks(c, 0, lba, patternBlocks(id, lba, per, seq), mode.fua); err != nil {
			return n, err
		}
		n++
		if mode.sync == 0 {
			acks.add(lba, per, seq)
			continue
		}
		pending = append(pending, [2]uint64{lba, seq})
		if len(pending) == mode.sync {
			if _, err := do(c, &iscsitest.Cmd{CDB: syncCache16()}); err != nil {
				return n, fmt.Errorf("SYNCHRONIZE CACHE: %w", err)
			}
			for _, p := range pending {
				acks.add(p[0], per, p[1])
			}
			pending = pending[:0]
		}
	}
}

// checkAcked verifies every acknowledged block of every writer in img and
// returns the number checked and the number lost.
func checkAcked(t *testing.T, img []byte, acks []*ackLog, verbose bool) (checked, lost int) {
	t.Helper()
	for w, a := range acks {
		for lba, seq := range a.acked {
			checked++
			id, l, s, ok := parseBlock(img[lba*blockSize:])
			// A later write in flight at the kill may have landed too.
			if !ok || id != uint32(w+1) || l != lba || s < seq {
				if verbose && lost < 5 {
					t.Logf("writer %d block %d: found (id %d lba %d seq %d intact %v), acknowledged seq %d", w+1, lba, id, l, s, ok, seq)
				}
				lost++
			}
		}
	}
	return checked, lost
}

// Acknowledged writes survive SIGKILL of the daemon: with a write-through
// device, with FUA writes, and after SYNCHRONIZE CACHE. The backing file is
// on the test's FUSE disk model, whose stable image only holds data the
// daemon fsynced (fdatasync, or RWF_DSYNC/O_DSYNC writes): checking that
// image after the kill is checking what a power loss would have left.
// A control run in write-back mode without syncs must lose some
// acknowledged writes in the same model, which shows the check can fail.
// Each durable mode is also run on a plain file (page-cache survival only).
func TestDurabilityAcrossSIGKILL(t *testing.T) {
	requireRoot(t)
	const (
		writers = 4
		region  = 4096 // blocks per writer
		size    = writers * region * blockSize
	)
	for _, mode := range durModes {
		for _, backing := range []string{"faultfs", "file"} {
			if backing == "file" && !mode.durable {
				continue
			}
			t.Run(mode.name+"/"+backing, func(t *testing.T) {
				var disk *faultDisk
				dev := device{Name: "disk0", Flags: mode.flags, Size: size}
				if backing == "faultfs" {
					disk, dev.Path = mountFaultDisk(t, size, false)
				}
				d := startDaemon(t, daemonConfig{Devices: []device{dev}})
				if dev.Path == "" {
					dev.Path = d.cfg.Devices[0].Path
				}
				acks := make([]*ackLog, writers)
				conns := make([]*iscsitest.Conn, writers)
				for i := range conns {
					conns[i] = login(t, d.Addr, iscsitest.Options{InitiatorName: initiatorName(fmt.Sprintf("dur%d", i)), ISID: 0x400000000100 | uint64(i)})
					acks[i] = &ackLog{acked: map[uint64]uint64{}}
				}
				stop := make(chan struct{})
				var wg sync.WaitGroup
				counts := make([]int, writers)
				for i := range conns {
					wg.Add(1)
					go func() {
						defer wg.Done()
						// Errors after the kill are expected; what counts is the ack log.
						counts[i], _ = durWriter(conns[i], mode, uint32(i+1), uint64(i*region), region, acks[i], stop)
					}()
				}
				time.Sleep(1500 * time.Millisecond)
				d.Kill() // writes are in flight
				close(stop)
				for _, c := range conns {
					c.Close()
				}
				wg.Wait()
				var img []byte
				if disk != nil {
					img = disk.stableCopy()
				} else {
					b, err := os.ReadFile(dev.Path)
					if err != nil {
						t.Fatal(err)
					}
					img = b
				}
				checked, lost := checkAcked(t, img, acks, mode.durable)
				total := 0
				for _, n := range counts {
					total += n
				}
				fsyncs := int64(-1)
				if disk != nil {
					fsyncs = disk.fsyncs.Load()
				}
				t.Logf("%s on %s: %d writes acknowledged, %d durable blocks checked after SIGKILL, %d lost, %d fsyncs seen", mode.name, backing, total, checked, lost, fsyncs)
				if checked < writers*8*10 {
					t.Fatalf("only %d blocks acknowledged before the kill: the run did not write", checked)
				}
				if mode.durable && lost > 0 {
					t.Fatalf("%d of %d acknowledged blocks lost across SIGKILL", lost, checked)
				}
				if !mode.durable && lost == 0 {
					t.Fatalf("control: write-back without sync lost nothing in the power-loss model; the model does not discriminate")
				}
				if !mode.durable {
					return
				}
				// After a "power loss" the restarted daemon serves the stable image.
				if disk != nil {
					disk.mu.Lock()
					copy(disk.cache, disk.stable)
					disk.mu.Unlock()
				}
				d2 := d.Restart()
				c := login(t, d2.Addr, iscsitest.Options{InitiatorName: initiatorName("dur-verify")})
				bad := 0
				for w, a := range acks {
					for lba, seq := range a.acked {
						b, err := readBlocks(c, 0, lba, 1)
						if err != nil {
							t.Fatalf("read back block %d after restart: %v", lba, err)
						}
						if id, l, s, ok := parseBlock(b); !ok || id != uint32(w+1) || l != lba || s < seq {
							bad++
						}
					}
				}
				if bad > 0 {
					t.Errorf("%d acknowledged blocks wrong when read through the restarted daemon", bad)
				}
				if rc := d2.Stop(30 * time.Second); rc != 0 {
					t.Errorf("exit status %d after SIGTERM", rc)
				}
			})
		}
	}
}
