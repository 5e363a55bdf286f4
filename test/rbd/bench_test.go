//go:build rbd

package rbd

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/scstd/scstd/iscsi/iscsitest"
	"github.com/scstd/scstd/iscsi/pdu"
	"github.com/scstd/scstd/test/testenv"
	"github.com/scstd/scstd/vdisk/backend"
	"github.com/scstd/scstd/vdisk/rbd"
)

const (
	benchQD    = 32
	benchBlock = 4096
	benchSize  = 256 << 20
)

// benchSeconds is the duration of each run (SCSTD_RBD_BENCH_SECS, default 5).
func benchSeconds(t testing.TB) time.Duration {
	t.Helper()
	s := os.Getenv("SCSTD_RBD_BENCH_SECS")
	if s == "" {
		return 5 * time.Second
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("SCSTD_RBD_BENCH_SECS=%q: want a positive number of seconds", s)
	}
	return time.Duration(n) * time.Second
}

// minRatio is the ratio below which the benchmark fails
// (SCSTD_RBD_MIN_RATIO, default 0.4). The goal is 0.8, which a
// 2-core machine, where the OSD, librbd, scstd and the initiator share the
// CPUs, does not always reach; the floor catches a path that lost its
// queue depth (QD1 gives about 0.3 of QD32 here).
func minRatio(t testing.TB) float64 {
	t.Helper()
	s := os.Getenv("SCSTD_RBD_MIN_RATIO")
	if s == "" {
		return 0.4
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("SCSTD_RBD_MIN_RATIO=%q: %v", s, err)
	}
	return f
}

// directIOPS runs 4k random I/O at QD32 on the image straight through the
// librbd engine scstd uses (no SCSI, no iSCSI) and returns IOPS.
func directIOPS(t *testing.T, img string, write bool, d time.Duration) float64 {
	t.Helper()
	conn, err := rbd.Connect(rbd.Options{ConfFile: testEnv.conf})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	im, err := conn.Open("rbd", img, rbd.ImageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	e := im.Engine()
	rng := rand.New(rand.NewPCG(1, 2))
	var mu sync.Mutex
	var done int
	var firstErr error
	stop := time.Now().Add(d)
	finished := make(chan struct{})
	inflight := benchQD
	var resubmit func(r *backend.Request)
	next := func(r *backend.Request) {
		r.Off = int64(rng.IntN(benchSize/benchBlock)) * benchBlock
		e.Submit(r)
	}
	resubmit = func(r *backend.Request) {
		mu.Lock()
		if r.Err != nil && firstErr == nil {
			firstErr = r.Err
		}
		done++
		more := time.Now().Before(stop) && firstErr == nil
		if !more {
			inflight--
			if inflight == 0 {
				close(finished)
			}
		}
		if more {
			next(r)
		}
		mu.Unlock()
	}
	op := backend.OpRead
	if write {
		op = backend.OpWrite
	}
	start := time.Now()
	mu.Lock()
	for i := 0; i < benchQD; i++ {
		r := &backend.Request{Op: op, Buf: make([]byte, benchBlock), Done: resubmit}
		next(r)
	}
	mu.Unlock()
	<-finished
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	return float64(done) / time.Since(start).Seconds()
}

// scstdIOPS runs the same pattern through scstd over one iSCSI session
// (READ16/WRITE16, QD32, immediate data) and returns IOPS.
func scstdIOPS(t *testing.T, d *daemon, write bool, dur time.Duration) float64 {
	t.Helper()
	c, err := iscsitest.Dial(d.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(iscsitest.Options{InitiatorName: "iqn.2026-11.test:bench", TargetName: targetIQN}); err != nil {
		t.Fatal(err)
	}
	// Consume the power-on unit attention before the timed run.
	for i := 0; ; i++ {
		res, err := c.Do(&iscsitest.Cmd{CDB: make([]byte, 6), Attr: 1})
		if err != nil {
			t.Fatal(err)
		}
		if res.Status == 0 {
			break
		}
		if i == 8 {
			t.Fatalf("TEST UNIT READY status %#x", res.Status)
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	data := make([]byte, benchBlock)
	cdb := make([]byte, 16)
	send := func() {
		lba := uint64(rng.IntN(benchSize/benchBlock)) * (benchBlock / 512)
		cmd := &iscsitest.Cmd{CDB: cdb, Attr: 1}
		if write {
			cdb[0] = 0x8a
			cmd.Write = data
		} else {
			cdb[0] = 0x88
			cmd.ReadLen = benchBlock
		}
		binary.BigEndian.PutUint64(cdb[2:], lba)
		binary.BigEndian.PutUint32(cdb[10:], benchBlock/512)
		if _, err := c.SendCommand(cmd); err != nil {
			t.Fatal(err)
		}
	}
	inflight := 0
	window := func() bool { return int32(c.MaxCmdSN-c.CmdSN) >= 0 }
	for inflight < benchQD && window() {
		send()
		inflight++
	}
	start := time.Now()
	stop := start.Add(dur)
	done := 0
	for inflight > 0 {
		h, _, err := c.RecvSkipPings()
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case h.Opcode() == pdu.OpSCSIResp:
			if h.Status() != 0 {
				t.Fatalf("status %#x", h.Status())
			}
		case h.Opcode() == pdu.OpDataIn && h.Flags()&pdu.FlagStatus != 0:
			if h.Status() != 0 {
				t.Fatalf("status %#x", h.Status())
			}
		case h.Opcode() == pdu.OpDataIn:
			continue
		default:
			t.Fatalf("unexpected %v", h.Opcode())
		}
		inflight--
		done++
		for time.Now().Before(stop) && inflight < benchQD && window() {
			send()
			inflight++
		}
	}
	return float64(done) / time.Since(start).Seconds()
}

// TestIOPSRatio measures 4k random read and write IOPS at QD32 through
// scstd and straight through librbd on the same image, in the same run,
// and reports scstd/direct. `rbd bench` is logged as a reference.
func TestIOPSRatio(t *testing.T) {
	dur := benchSeconds(t)
	img := newImage(t, fmt.Sprintf("%dM", benchSize>>20))
	// Prefill, so that reads hit data rather than holes.
	rbdCLI(t, "bench", "--io-type", "write", "--io-size", "4M", "--io-total", fmt.Sprint(benchSize), "--io-pattern", "seq", "rbd/"+img)
	d := startDaemon(t, daemonConfig{LUNs: []lunSpec{{Image: img}}})
	floor := minRatio(t)
	for _, write := range []bool{false, true} {
		name := "randread"
		if write {
			name = "randwrite"
		}
		t.Run(name, func(t *testing.T) {
			// Alternate direct and scstd twice and keep the best of each,
			// which evens out the OSD's background work.
			var direct, via float64
			for i := 0; i < 2; i++ {
				direct = max(direct, directIOPS(t, img, write, dur))
				via = max(via, scstdIOPS(t, d, write, dur))
			}
			ioType := "read"
			if write {
				ioType = "write"
			}
			ref := mustRun(t, 2*time.Minute, "rbd", "-c", testEnv.conf, "bench", "--io-type", ioType, "--io-size", "4K",
				"--io-threads", strconv.Itoa(benchQD), "--io-total", "64M", "--io-pattern", "rand", "rbd/"+img)
			ratio := via / direct
			t.Logf("4k %s QD%d: scstd %.0f IOPS, direct librbd %.0f IOPS, ratio %.2f (goal 0.8); rbd bench: %s",
				name, benchQD, via, direct, ratio, testenv.Tail(ref, 1))
			if ratio < floor {
				t.Errorf("ratio %.2f below %.2f", ratio, floor)
			}
		})
	}
}
