package reliability

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scstd/scstd/iscsi/iscsitest"
)

// verifier is one session's view of its own region of a LUN: the last
// acknowledged sequence number of every block, so every read can be checked
// block by block.
type verifier struct {
	c       *iscsitest.Conn
	lun     uint64
	id      uint32
	base    uint64 // first LBA of the region
	seq     []uint64
	next    uint64
	rng     *rand.Rand
	maxXfer int // blocks per command

	cmds, bytes, mismatches atomic.Int64
}

func newVerifier(c *iscsitest.Conn, lun uint64, id uint32, base uint64, blocks, maxXfer int) *verifier {
	return &verifier{c: c, lun: lun, id: id, base: base, seq: make([]uint64, blocks),
		rng: rand.New(rand.NewPCG(uint64(id), 42)), maxXfer: maxXfer}
}

// step runs one random write or verifying read.
func (v *verifier) step() error {
	n := 1 + v.rng.IntN(v.maxXfer)
	off := v.rng.IntN(len(v.seq) - n + 1)
	lba := v.base + uint64(off)
	if v.rng.IntN(2) == 0 {
		v.next++
		data := patternBlocks(v.id, lba, n, v.next)
		if err := writeBlocks(v.c, v.lun, lba, data, false); err != nil {
			return fmt.Errorf("session %d write %d+%d: %w", v.id, lba, n, err)
		}
		for i := 0; i < n; i++ {
			v.seq[off+i] = v.next
		}
		v.cmds.Add(1)
		v.bytes.Add(int64(len(data)))
		return nil
	}
	data, err := readBlocks(v.c, v.lun, lba, n)
	if err != nil {
		return fmt.Errorf("session %d read %d+%d: %w", v.id, lba, n, err)
	}
	v.cmds.Add(1)
	v.bytes.Add(int64(len(data)))
	return v.check(lba, data)
}

// check compares blocks read at lba with what was acknowledged.
func (v *verifier) check(lba uint64, data []byte) error {
	for i := 0; i*blockSize < len(data); i++ {
		want := v.seq[lba-v.base+uint64(i)]
		b := data[i*blockSize : (i+1)*blockSize]
		if want == 0 || want == seqUnknown {
			continue // never written in this run, or the last write's fate is unknown
		}
		id, l, s, ok := parseBlock(b)
		if !ok || id != v.id || l != lba+uint64(i) || s != want {
			v.mismatches.Add(1)
			return fmt.Errorf("session %d block %d: read (id %d lba %d seq %d intact %v), want seq %d", v.id, lba+uint64(i), id, l, s, ok, want)
		}
	}
	return nil
}

// verifyAll reads the whole region and checks it.
func (v *verifier) verifyAll() error {
	for off := 0; off < len(v.seq); off += 128 {
		n := min(128, len(v.seq)-off)
		data, err := readBlocks(v.c, v.lun, v.base+uint64(off), n)
		if err != nil {
			return err
		}
		if err := v.check(v.base+uint64(off), data); err != nil {
			return err
		}
	}
	return nil
}

// runVerifiers drives every verifier until stop closes or it fails;
// it returns the errors.
func runVerifiers(vs []*verifier, stop <-chan struct{}) []error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, v := range vs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := v.step(); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return errs
}

// 64 concurrent sessions do random verified reads and writes (1 to 256
// blocks, so both immediate data and R2T paths run) on their own regions of
// two LUNs for a bounded time: no errors, no mismatches, and the daemon's
// RSS does not grow between the middle and the end of the run.
func TestLoad64Sessions(t *testing.T) {
	const (
		sessions = 64
		regionLB = 2048 // blocks per session: 32 sessions x 1 MiB per LUN
		// rssGrowthKiB is the bound on RSS growth from the middle to the end
		// of the run, when pools and heap have reached their steady state.
		rssGrowthKiB = 16 << 10
	)
	dur := phase(t, 20*time.Second)
	d := startDaemon(t, daemonConfig{Devices: []device{{Name: "disk0"}, {Name: "disk1"}},
		TargetLines: []string{"QueuedCommands 64", "NopInInterval 5", "NopInTimeout 10"}})
	vs := make([]*verifier, sessions)
	for i := range vs {
		c := login(t, d.Addr, iscsitest.Options{InitiatorName: initiatorName(fmt.Sprintf("load%02d", i)), ISID: 0x400000000000 | uint64(i+1)})
		lun := lunField(i % 2)
		vs[i] = newVerifier(c, lun, uint32(i+1), uint64(i/2)*regionLB, regionLB, 256)
	}
	rssStart, fdStart := d.RSSKiB(), d.FDs()
	stop := make(chan struct{})
	done := make(chan []error, 1)
	start := time.Now()
	go func() { done <- runVerifiers(vs, stop) }()

	var rssMid, rssPeak int64
	// Commands per second in each tenth of the run, to see a slowdown.
	var rates []string
	tenth := dur / 10
	nextTenth, lastCmds := time.Now().Add(tenth), int64(0)
	total := func() int64 {
		var n int64
		for _, v := range vs {
			n += v.cmds.Load()
		}
		return n
	}
	sampler := time.NewTicker(500 * time.Millisecond)
	defer sampler.Stop()
	midAt := time.After(dur / 2)
	endAt := time.After(dur)
	var errs []error
	running := true
	for running {
		select {
		case <-sampler.C:
			if r := d.RSSKiB(); r > rssPeak {
				rssPeak = r
			}
			if now := time.Now(); now.After(nextTenth) {
				n := total()
				rates = append(rates, fmt.Sprintf("%.0f", float64(n-lastCmds)/tenth.Seconds()))
				lastCmds, nextTenth = n, now.Add(tenth)
			}
		case <-midAt:
			rssMid = d.RSSKiB()
		case <-endAt:
			close(stop)
			errs = <-done
			running = false
		case errs = <-done:
			close(stop)
			running = false
		}
	}
	elapsed := time.Since(start)
	rssEnd := d.RSSKiB()
	var cmds, nbytes, mism int64
	for _, v := range vs {
		cmds += v.cmds.Load()
		nbytes += v.bytes.Load()
		mism += v.mismatches.Load()
	}
	for _, v := range vs {
		if err := v.verifyAll(); err != nil {
			errs = append(errs, fmt.Errorf("final verify: %w", err))
		}
	}
	t.Logf("load: %d sessions, %v, %d commands (%.0f/s), %.1f MiB (%.1f MiB/s), %d errors, %d mismatches",
		sessions, elapsed.Round(time.Millisecond), cmds, float64(cmds)/elapsed.Seconds(),
		float64(nbytes)/(1<<20), float64(nbytes)/(1<<20)/elapsed.Seconds(), len(errs), mism)
	t.Logf("load: commands/s per tenth of the run: %v", rates)
	t.Logf("load: RSS start %d KiB, middle %d KiB, end %d KiB, peak %d KiB; fds start %d end %d; threads %d",
		rssStart, rssMid, rssEnd, rssPeak, fdStart, d.FDs(), d.Threads())
	if len(errs) > 0 {
		t.Errorf("%d sessions failed; first: %v", len(errs), errors.Join(errs[:min(len(errs), 5)]...))
	}
	if mism > 0 {
		t.Errorf("%d data mismatches", mism)
	}
	if cmds < sessions*10 {
		t.Errorf("only %d commands in %v: the load did not run", cmds, elapsed)
	}
	if rssMid == 0 {
		t.Errorf("the run ended before its middle")
	} else if rssEnd-rssMid > rssGrowthKiB && !testEnv.race {
		t.Errorf("RSS grew %d KiB from the middle (%d) to the end (%d) of the run (bound %d KiB)", rssEnd-rssMid, rssMid, rssEnd, rssGrowthKiB)
	}
	for _, v := range vs {
		if r, err := v.c.Logout(0); err != nil || r != 0 {
			t.Errorf("logout of session %d: %d %v", v.id, r, err)
		}
		v.c.Close()
	}
	if rc := d.Stop(60 * time.Second); rc != 0 {
		t.Errorf("exit status %d after SIGTERM", rc)
	}
}
