package reliability

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/scstd/scstd/iscsi/iscsitest"
	"github.com/scstd/scstd/iscsi/param"
	"github.com/scstd/scstd/iscsi/pdu"
)

// Keys that make every write wait for an R2T.
var r2tKeys = []param.KV{{Key: "InitialR2T", Value: "Yes"}, {Key: "ImmediateData", Value: "No"}}

// Keys that let a small write travel whole with its command.
var unsolicitedKeys = []param.KV{{Key: "InitialR2T", Value: "No"}, {Key: "ImmediateData", Value: "Yes"}}

// waitClosed reads from c (not answering NOP-In pings) until the target
// closes the connection or timeout passes; it returns the NOP-Ins seen and
// whether the connection was closed.
func waitClosed(c *iscsitest.Conn, timeout time.Duration) (nops int, closed bool) {
	c.Timeout = timeout
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		h, _, err := c.Recv()
		if err != nil {
			var ne net.Error
			return nops, !(errors.As(err, &ne) && ne.Timeout())
		}
		if h.Opcode() == pdu.OpNOPIn {
			nops++
		}
	}
	return nops, false
}

// sessionListed reports whether the iscsi/session file of d lists initiator.
func sessionListed(d *daemon, initiator string) bool {
	return strings.Contains(d.readCtl("iscsi/session"), "initiator:"+initiator+" ")
}

// eventually polls cond every 50 ms until it holds or timeout passes.
func eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fillRegion writes a known generation over [lba, lba+n) through c.
func fillRegion(t testing.TB, c *iscsitest.Conn, lun uint64, id uint32, lba uint64, n int, seq uint64) {
	t.Helper()
	for off := 0; off < n; off += 128 {
		k := min(128, n-off)
		if err := writeBlocks(c, lun, lba+uint64(off), patternBlocks(id, lba+uint64(off), k, seq), false); err != nil {
			t.Fatalf("fill %d+%d: %v", lba+uint64(off), k, err)
		}
	}
}

// expectRegion reads [lba, lba+n) through c and checks every block is
// generation seq of writer id.
func expectRegion(t testing.TB, c *iscsitest.Conn, lun uint64, id uint32, lba uint64, n int, seq uint64) {
	t.Helper()
	for off := 0; off < n; off += 128 {
		k := min(128, n-off)
		data, err := readBlocks(c, lun, lba+uint64(off), k)
		if err != nil {
			t.Fatalf("read %d+%d: %v", lba+uint64(off), k, err)
		}
		if !bytes.Equal(data, patternBlocks(id, lba+uint64(off), k, seq)) {
			for i := 0; i < k; i++ {
				gid, gl, gs, ok := parseBlock(data[i*blockSize:])
				if !ok || gid != id || gl != lba+uint64(off+i) || gs != seq {
					t.Fatalf("block %d: found (id %d lba %d seq %d intact %v), want id %d seq %d", lba+uint64(off+i), gid, gl, gs, ok, id, seq)
				}
			}
		}
	}
}

// An initiator that vanishes between the R2T and its Data-Out (some after
// sending part of the burst) leaves nothing behind: the blocks it was
// writing keep their old content, the daemon's descriptors and sessions go
// back to where they were, and the LUN serves another initiator.
func TestDisconnectBetweenR2TAndDataOut(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t, daemonConfig{Mount: true})
	good := login(t, d.Addr, iscsitest.Options{InitiatorName: initiatorName("r2t-good"), ISID: 0x400000000201})
	const region = 256
	fillRegion(t, good, 0, 7, 0, region, 1)
	fdBase := d.FDs()
	const rounds = 60
	r2ts := 0
	for i := 0; i < rounds; i++ {
		name := initiatorName(fmt.Sprintf("r2t-cut%d", i%4))
		c, err := dialLogin(d.Addr, iscsitest.Options{InitiatorName: name, ISID: 0x400000000300 | uint64(i), Keys: r2tKeys})
		if err != nil {
			t.Fatalf("round %d: login: %v", i, err)
		}
		blocks := 8 + i%120
		lba := uint64(i % (region - blocks))
		cmd := &iscsitest.Cmd{CDB: write16(lba, uint32(blocks), false), Write: patternBlocks(99, lba, blocks, uint64(i+100)), NoImmediate: true, NoUnsolicited: true}
		itt, err := c.SendCommand(cmd)
		if err != nil {
			t.Fatalf("round %d: send: %v", i, err)
		}
		h, _, err := c.RecvSkipPings()
		if err != nil || h.Opcode() != pdu.OpR2T || h.ITT() != itt {
			t.Fatalf("round %d: want R2T, got %v %v", i, h, err)
		}
		r2ts++
		if i%2 == 1 {
			// Part of the solicited data, not the final PDU.
			half := min(int(h.DesiredLength())/2, len(cmd.Write)) &^ (blockSize - 1)
			var o pdu.BHS
			o.SetOpcode(pdu.OpDataOut, false)
			o.SetITT(itt)
			o.SetTTT(h.TTT())
			o.SetExpStatSN(c.ExpStatSN)
			o.SetBufferOffset(h.BufferOffset())
			if err := c.Send(&o, nil, cmd.Write[h.BufferOffset():int(h.BufferOffset())+half]); err != nil {
				t.Fatalf("round %d: data-out: %v", i, err)
			}
		}
		if i%3 == 0 {
			// An abortive close (RST) as well as orderly FINs.
			c.NC.(*net.TCPConn).SetLinger(0)
		}
		c.Close()
	}
	if r2ts != rounds {
		t.Fatalf("%d R2Ts for %d writes", r2ts, rounds)
	}
	expectRegion(t, good, 0, 7, 0, region, 1)
	fdAfter := 0
	if !eventually(5*time.Second, func() bool { fdAfter = d.FDs(); return fdAfter <= fdBase }) {
		t.Errorf("daemon holds %d descriptors after %d cut connections, %d before", fdAfter, rounds, fdBase)
	}
	if !eventually(5*time.Second, func() bool { return !strings.Contains(d.readCtl("iscsi/session"), "r2t-cut") }) {
		t.Errorf("cut sessions still listed:\n%s", d.readCtl("iscsi/session"))
	}
	// The LUN is fully usable: the region takes a new generation.
	fillRegion(t, good, 0, 7, 0, region, 2)
	expectRegion(t, good, 0, 7, 0, region, 2)
	t.Logf("%d connections cut after R2T (half with partial data); daemon fds %d before, %d after", rounds, fdBase, fdAfter)
}

// A dead initiator (socket open, nothing read or answered) is detected by
// NOP-In within NopInInterval+NopInTimeout: its connection is closed, its
// session disappears with its pending write, and another initiator keeps
// doing verified I/O on the same LUN throughout. The same initiator can
// log in again afterwards.
func TestNopInTimeoutDeadInitiator(t *testing.T) {
	requireRoot(t)
	const interval, timeout = 1, 2
	d := startDaemon(t, daemonConfig{Mount: true, TargetLines: []string{
		fmt.Sprintf("NopInInterval %d", interval), fmt.Sprintf("NopInTimeout %d", timeout)}})
	other := login(t, d.Addr, iscsitest.Options{InitiatorName: initiatorName("nop-alive"), ISID: 0x400000000401})
	v := newVerifier(other, 0, 1, 4096, 1024, 32)

	dead := initiatorName("nop-dead")
	c := login(t, d.Addr, iscsitest.Options{InitiatorName: dead, ISID: 0x400000000402, Keys: r2tKeys})
	if !sessionListed(d, dead) {
		t.Fatalf("session of %s not listed after login", dead)
	}
	// A write waiting for its data when the initiator dies.
	cmd := &iscsitest.Cmd{CDB: write16(0, 64, false), Write: make([]byte, 64*blockSize), NoImmediate: true, NoUnsolicited: true}
	if _, err := c.SendCommand(cmd); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	errc := make(chan []error, 1)
	go func() { errc <- runVerifiers([]*verifier{v}, stop) }()

	start := time.Now()
	nops, closed := waitClosed(c, time.Duration(interval+timeout+5)*time.Second)
	took := time.Since(start)
	if !closed {
		t.Fatalf("dead initiator's connection still open after %v (%d NOP-Ins seen)", took, nops)
	}
	if nops == 0 {
		t.Errorf("connection closed without a NOP-In ping")
	}
	if max := time.Duration(interval+timeout+2) * time.Second; took > max {
		t.Errorf("closed after %v, want within %v", took, max)
	}
	if !eventually(5*time.Second, func() bool { return !sessionListed(d, dead) }) {
		t.Errorf("dead session still listed:\n%s", d.readCtl("iscsi/session"))
	}
	if !strings.Contains(d.Log(), "NOP-In ping not answered") {
		t.Errorf("no log line for the NOP-In timeout")
	}
	// Keep the other session running a little past the cleanup.
	time.Sleep(time.Second)
	close(stop)
	if errs := <-errc; len(errs) > 0 {
		t.Fatalf("the live session failed while the dead one was cleaned up: %v", errs[0])
	}
	if err := v.verifyAll(); err != nil {
		t.Fatal(err)
	}
	again := login(t, d.Addr, iscsitest.Options{InitiatorName: dead, ISID: 0x400000000402})
	if _, err := readBlocks(again, 0, 0, 8); err != nil {
		t.Fatalf("I/O after the dead initiator logged in again: %v", err)
	}
	t.Logf("dead initiator dropped %v after going silent (%d NOP-Ins); live session: %d commands, 0 errors", took.Round(10*time.Millisecond), nops, v.cmds.Load())
}

// collect reads responses on c until enough says so (or, when enough is
// nil, every ITT in want and tmf is answered) or the connection is quiet
// for quiet; it returns the SCSI status per ITT and the TMF responses per
// ITT.
func collect(c *iscsitest.Conn, want map[uint32]bool, tmf map[uint32]bool, quiet time.Duration, enough func(status, tmfResp map[uint32]byte) bool) (map[uint32]byte, map[uint32]byte, error) {
	status := map[uint32]byte{}
	tmfResp := map[uint32]byte{}
	old := c.Timeout
	defer func() { c.Timeout = old }()
	c.Timeout = quiet
	if enough == nil {
		enough = func(status, tmfResp map[uint32]byte) bool {
			return len(status) == len(want) && len(tmfResp) == len(tmf)
		}
	}
	for !enough(status, tmfResp) {
		h, _, err := c.RecvSkipPings()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return status, tmfResp, nil
			}
			return status, tmfResp, err
		}
		switch h.Opcode() {
		case pdu.OpSCSIResp:
			if !want[h.ITT()] {
				return status, tmfResp, fmt.Errorf("response for unknown ITT %#x", h.ITT())
			}
			if _, dup := status[h.ITT()]; dup {
				return status, tmfResp, fmt.Errorf("second response for ITT %#x", h.ITT())
			}
			status[h.ITT()] = h.Status()
		case pdu.OpDataIn:
			if h.Flags()&pdu.FlagStatus != 0 {
				status[h.ITT()] = h.Status()
			}
		case pdu.OpTMFResp:
			if !tmf[h.ITT()] {
				return status, tmfResp, fmt.Errorf("TMF response for unknown ITT %#x", h.ITT())
			}
			tmfResp[h.ITT()] = h.Response()
		case pdu.OpR2T:
			// Not answered: the task stays waiting for data.
		default:
			return status, tmfResp, fmt.Errorf("unexpected %v", h.Opcode())
		}
	}
	return status, tmfResp, nil
}

// Session reinstatement (same initiator name and ISID, TSIH 0) while the
// old session has writes waiting for R2T data, writes in the target and
// reads in flight: the new session logs in, the old connection is closed,
// the unfinished writes leave no partial blocks, and the LUN keeps working.
func TestReinstatementWithCommandsInFlight(t *testing.T) {
	d := startDaemon(t, daemonConfig{})
	const region = 512
	base := login(t, d.Addr, iscsitest.Options{InitiatorName: initiatorName("reinst-base"), ISID: 0x400000000501})
	fillRegion(t, base, 0, 5, 0, region, 1)
	name := initiatorName("reinst")
	const isid = 0x400000000502
	old := login(t, d.Addr, iscsitest.Options{InitiatorName: name, ISID: isid, Keys: r2tKeys})
	gen := uint64(1)
	for round := 0; round < 20; round++ {
		// Solicited writes over the first half (their R2Ts are not answered).
		for i := 0; i < 4; i++ {
			lba := uint64(i * 32)
			cmd := &iscsitest.Cmd{CDB: write16(lba, 32, false), Write: patternBlocks(66, lba, 32, 1000), NoImmediate: true, NoUnsolicited: true}
			if _, err := old.SendCommand(cmd); err != nil {
				t.Fatalf("round %d: send write: %v", round, err)
			}
		}
		// Reads in flight.
		for i := 0; i < 4; i++ {
			if _, err := old.SendCommand(&iscsitest.Cmd{CDB: read16(uint64(256+i*64), 64), ReadLen: 64 * blockSize}); err != nil {
				t.Fatalf("round %d: send read: %v", round, err)
			}
		}
		c, err := dialLogin(d.Addr, iscsitest.Options{InitiatorName: name, ISID: isid, Keys: r2tKeys})
		if err != nil {
			t.Fatalf("round %d: reinstating login: %v", round, err)
		}
		if _, closed := waitClosed(old, 5*time.Second); !closed {
			t.Fatalf("round %d: the reinstated session's old connection is still open", round)
		}
		old.Close()
		// Nothing of the unanswered writes may appear: the region is still
		// the last complete generation.
		expectRegion(t, c, 0, 5, 0, 128, gen)
		gen++
		for off := 0; off < 128; off += 32 {
			if err := writeBlocks(c, 0, uint64(off), patternBlocks(5, uint64(off), 32, gen), false); err != nil {
				t.Fatalf("round %d: write on the new session: %v", round, err)
			}
		}
		expectRegion(t, base, 0, 5, 0, 128, gen)
		old = c
	}
	expectRegion(t, base, 0, 5, 128, region-128, 1)
	if !d.Alive() {
		t.Fatal("daemon died")
	}
}

// ABORT TASK under load: while 8 sessions run verified I/O, another
// session keeps 8 writes in flight and aborts some of them (including one
// waiting for R2T data). An aborted task gets no response, a task that
// already completed answers "task does not exist" and gets its response,
// and every write acknowledged GOOD is on the disk.
func TestAbortTaskUnderLoad(t *testing.T) {
	d := startDaemon(t, daemonConfig{TargetLines: []string{"QueuedCommands 64"}})
	vs := make([]*verifier, 8)
	for i := range vs {
		c := login(t, d.Addr, iscsitest.Options{InitiatorName: initiatorName(fmt.Sprintf("abort-load%d", i)), ISID: 0x400000000600 | uint64(i)})
		vs[i] = newVerifier(c, 0, uint32(i+1), uint64(8192+i*2048), 2048, 64)
	}
	stop := make(chan struct{})
	errc := make(chan []error, 1)
	go func() { errc <- runVerifiers(vs, stop) }()

	c := login(t, d.Addr, iscsitest.Options{InitiatorName: initiatorName("aborter"), ISID: 0x400000000680, Keys: unsolicitedKeys})
	clearUA(t, c, 0)
	rng := rand.New(rand.NewPCG(6, 6))
	var aborted, notask, good int
	deadline := time.Now().Add(phase(t, 6*time.Second))
	gen := uint64(0)
	for round := 0; time.Now().Before(deadline); round++ {
		gen++
		want := map[uint32]bool{}
		lbaOf := map[uint32]uint64{}
		var itts []uint32
		for i := 0; i < 8; i++ {
			lba := uint64(i * 16)
			cmd := &iscsitest.Cmd{CDB: write16(lba, 16, false), Write: patternBlocks(77, lba, 16, gen)}
			if i == 7 {
				// Bigger than FirstBurstLength: waits for an R2T we never answer.
				lba = 128
				cmd = &iscsitest.Cmd{CDB: write16(lba, 256, false), Write: patternBlocks(77, lba, 256, gen)}
			}
			itt, err := c.SendCommand(cmd)
			if err != nil {
				t.Fatalf("round %d: send: %v", round, err)
			}
			want[itt], lbaOf[itt] = true, lba
			itts = append(itts, itt)
		}
		victims := []uint32{itts[7], itts[rng.IntN(7)]}
		tmfs := map[uint32]bool{}
		tmfRef := map[uint32]uint32{}
		for _, v := range victims {
			titt, err := c.SendTMF(1, 0, v, 0)
			if err != nil {
				t.Fatal(err)
			}
			tmfs[titt] = true
			tmfRef[titt] = v
		}
		// Done when every TMF is answered and every task either completed
		// or was aborted by a TMF that answered "function complete".
		settled := func(status, tmfResp map[uint32]byte) bool {
			if len(tmfResp) < len(tmfs) {
				return false
			}
			gone := map[uint32]bool{}
			for titt, r := range tmfResp {
				if r == 0 {
					gone[tmfRef[titt]] = true
				}
			}
			for itt := range want {
				if _, ok := status[itt]; !ok && !gone[itt] {
					return false
				}
			}
			return true
		}
		status, tmfResp, err := collect(c, want, tmfs, 5*time.Second, settled)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if len(tmfResp) != len(tmfs) {
			t.Fatalf("round %d: %d of %d ABORT TASK answered", round, len(tmfResp), len(tmfs))
		}
		abortedITT := map[uint32]bool{}
		for titt, r := range tmfResp {
			ref := tmfRef[titt]
			switch r {
			case 0:
				aborted++
				abortedITT[ref] = true
				if _, ok := status[ref]; ok {
					t.Fatalf("round %d: aborted task %#x also got a response", round, ref)
				}
			case 1:
				notask++
				if _, ok := status[ref]; !ok {
					t.Fatalf("round %d: ABORT TASK said task %#x does not exist but it never completed", round, ref)
				}
			default:
				t.Fatalf("round %d: ABORT TASK response %d", round, r)
			}
		}
		if !abortedITT[itts[7]] {
			t.Fatalf("round %d: the write waiting for R2T was not aborted", round)
		}
		for _, itt := range itts {
			st, ok := status[itt]
			if !ok && !abortedITT[itt] {
				t.Fatalf("round %d: task %#x neither completed nor aborted", round, itt)
			}
			if ok {
				if st != 0 {
					t.Fatalf("round %d: write %#x status %#x", round, itt, st)
				}
				good++
				if err := func() error {
					data, err := readBlocks(c, 0, lbaOf[itt], 16)
					if err != nil {
						return err
					}
					if !bytes.Equal(data, patternBlocks(77, lbaOf[itt], 16, gen)) {
						return fmt.Errorf("acknowledged write at %d not on disk", lbaOf[itt])
					}
					return nil
				}(); err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
			}
		}
		// The session is in step: a ping and a command work.
		if _, err := c.NOP(nil); err != nil {
			t.Fatalf("round %d: NOP after aborts: %v", round, err)
		}
	}
	close(stop)
	if errs := <-errc; len(errs) > 0 {
		t.Fatalf("load sessions failed during aborts: %v", errs[0])
	}
	var cmds int64
	for _, v := range vs {
		cmds += v.cmds.Load()
		if err := v.verifyAll(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("ABORT TASK: %d aborted, %d already complete, %d acknowledged writes verified; load: %d commands, 0 errors", aborted, notask, good, cmds)
}

// resettableVerifier is a verifier whose commands may be dropped by a LUN
// RESET from another session (TAS=0: aborted tasks of other I_T nexuses get
// no response). It relogs in when that happens and forgets what the lost
// write did.
type resettableVerifier struct {
	*verifier
	addr  string
	name  string
	isid  uint64
	epoch *atomic.Int64 // bumped by every reset
	mu    sync.Mutex    // guards verifier.c against the resetter's deadline nudge
	lost  atomic.Int64
	// nudges counts the resetter's deadline nudges: a command that was
	// waiting when one came may time out although it was not dropped
	// (a slow daemon, e.g. built with -race); it counts as dropped.
	nudges atomic.Int64
}

// nudge makes a reader waiting for a dropped command give up soon.
func (r *resettableVerifier) nudge(d time.Duration) {
	r.mu.Lock()
	r.nudges.Add(1)
	_ = r.c.NC.SetReadDeadline(time.Now().Add(d))
	r.mu.Unlock()
}

const seqUnknown = ^uint64(0)

func (r *resettableVerifier) conn() *iscsitest.Conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.c
}

// step is verifier.step tolerating a drop by a concurrent reset.
func (r *resettableVerifier) step() error {
	e, nudges := r.epoch.Load(), r.nudges.Load()
	n := 1 + r.rng.IntN(r.maxXfer)
	off := r.rng.IntN(len(r.seq) - n + 1)
	lba := r.base + uint64(off)
	write := r.rng.IntN(2) == 0
	var err error
	if write {
		r.next++
		data := patternBlocks(r.id, lba, n, r.next)
		if err = writeBlocks(r.c, r.lun, lba, data, false); err == nil {
			for i := 0; i < n; i++ {
				r.seq[off+i] = r.next
			}
		}
	} else {
		var data []byte
		if data, err = readBlocks(r.c, r.lun, lba, n); err == nil {
			err = r.check(lba, data)
			if err != nil {
				return err
			}
		}
	}
	if err == nil {
		r.cmds.Add(1)
		return nil
	}
	var ce *cmdError
	var ne net.Error
	dropped := errors.As(err, &ne) && ne.Timeout()
	abortedStatus := errors.As(err, &ce) && ce.Status == 0x40 // TASK ABORTED (TAS=1)
	if (!dropped && !abortedStatus) || (r.epoch.Load() == e && r.nudges.Load() == nudges) {
		return fmt.Errorf("session %d: %w", r.id, err)
	}
	r.lost.Add(1)
	if write {
		for i := 0; i < n; i++ {
			r.seq[off+i] = seqUnknown
		}
	}
	if dropped {
		c, err := dialLogin(r.addr, iscsitest.Options{InitiatorName: r.name, ISID: r.isid})
		if err != nil {
			return fmt.Errorf("session %d relogin: %w", r.id, err)
		}
		r.mu.Lock()
		r.c.Close()
		r.c = c
		r.mu.Unlock()
	}
	return nil
}

// Task management that reaches other sessions' tasks, every 300 ms from one
// session while 8 others run verified I/O: LOGICAL UNIT RESET, TARGET WARM
// RESET, CLEAR TASK SET, and ABORT TASK SET (which must not touch the
// others at all). Every function completes, the other sessions see their
// unit attention and carry on (a command the function dropped is retried
// on a new login), and no acknowledged block is wrong.
func TestTaskManagementUnderLoad(t *testing.T) {
	for _, tc := range []struct {
		name string
		fn   uint8
		// others: the function may abort other sessions' tasks.
		others bool
	}{
		{"LUN RESET", 5, true},
		{"TARGET WARM RESET", 6, true},
		{"CLEAR TASK SET", 4, true},
		{"ABORT TASK SET", 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) { tmfUnderLoad(t, tc.fn, tc.others) })
	}
}

func tmfUnderLoad(t *testing.T, fn uint8, others bool) {
	d := startDaemon(t, daemonConfig{TargetLines: []string{"QueuedCommands 64"}})
	var epoch atomic.Int64
	rvs := make([]*resettableVerifier, 8)
	for i := range rvs {
		name := initiatorName(fmt.Sprintf("reset-load%d", i))
		isid := 0x400000000700 | uint64(i)
		c := login(t, d.Addr, iscsitest.Options{InitiatorName: name, ISID: isid})
		rvs[i] = &resettableVerifier{verifier: newVerifier(c, 0, uint32(i+1), uint64(i*2048), 2048, 64), addr: d.Addr, name: name, isid: isid, epoch: &epoch}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, r := range rvs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := r.step(); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
			}
		}()
	}
	resetter := login(t, d.Addr, iscsitest.Options{InitiatorName: initiatorName("resetter"), ISID: 0x400000000780})
	resets := 0
	deadline := time.Now().Add(phase(t, 3*time.Second))
	for time.Now().Before(deadline) {
		time.Sleep(300 * time.Millisecond)
		if others {
			epoch.Add(1)
		}
		resp, err := resetter.TMF(fn, 0, pdu.ReservedTag, 0)
		if err != nil || resp != 0 {
			t.Fatalf("TMF %d: response %d, %v", fn, resp, err)
		}
		if others {
			// Also after: a command sent between the first bump and the
			// TMF's execution may have been dropped too.
			epoch.Add(1)
		}
		resets++
		// Tasks of other sessions the reset aborted get no response: make
		// the waiting readers give up soon instead of after their timeout.
		for _, r := range rvs {
			r.nudge(1500 * time.Millisecond)
		}
		if _, err := resetter.NOP(nil); err != nil {
			t.Fatalf("resetter after reset: %v", err)
		}
	}
	close(stop)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d load sessions failed; first: %v", len(errs), errs[0])
	}
	var cmds, lost int64
	for _, r := range rvs {
		cmds += r.cmds.Load()
		lost += r.lost.Load()
		r.c.Timeout = 10 * time.Second
		if err := r.verifyAll(); err != nil {
			t.Fatal(err)
		}
	}
	if cmds < 100 {
		t.Fatalf("only %d commands ran", cmds)
	}
	t.Logf("TMF %d: %d times under load; %d commands, %d dropped by it and retried, 0 errors, 0 mismatches", fn, resets, cmds, lost)
}

// Logout (close the session) right behind a burst of writes: the logout
// response comes after the writes' responses or in place of them, never
// before a GOOD that is not on disk; every write acknowledged GOOD is on
// the disk, and the connection is closed after the Logout Response.
func TestLogoutWithCommandsInFlight(t *testing.T) {
	d := startDaemon(t, daemonConfig{})
	check := login(t, d.Addr, iscsitest.Options{InitiatorName: initiatorName("logout-check"), ISID: 0x400000001101})
	acked, dropped := 0, 0
	for round := 0; round < 30; round++ {
		c := login(t, d.Addr, iscsitest.Options{InitiatorName: initiatorName("logout"), ISID: 0x400000001102, Keys: unsolicitedKeys})
		clearUA(t, c, 0)
		seq := uint64(round + 1)
		want := map[uint32]bool{}
		lbaOf := map[uint32]uint64{}
		for i := 0; i < 16; i++ {
			lba := uint64(i * 64)
			itt, err := c.SendCommand(&iscsitest.Cmd{CDB: write16(lba, 64, false), Write: patternBlocks(31, lba, 64, seq)})
			if err != nil {
				t.Fatalf("round %d: send: %v", round, err)
			}
			want[itt], lbaOf[itt] = true, lba
		}
		litt := c.NextITT()
		var h pdu.BHS
		h.SetOpcode(pdu.OpLogoutReq, true)
		h.SetFlags(pdu.FlagFinal) // reason 0: close the session
		h.SetITT(litt)
		h.SetCmdSN(c.CmdSN)
		h.SetExpStatSN(c.ExpStatSN)
		if err := c.Send(&h, nil, nil); err != nil {
			t.Fatalf("round %d: logout: %v", round, err)
		}
		good := map[uint32]bool{}
		gotLogout := false
		c.Timeout = 5 * time.Second
		for !gotLogout {
			rh, _, err := c.RecvSkipPings()
			if err != nil {
				t.Fatalf("round %d: connection ended before the Logout Response: %v", round, err)
			}
			switch rh.Opcode() {
			case pdu.OpSCSIResp:
				if !want[rh.ITT()] {
					t.Fatalf("round %d: response for unknown ITT %#x", round, rh.ITT())
				}
				if rh.Status() == 0 {
					good[rh.ITT()] = true
				}
			case pdu.OpLogoutResp:
				if rh.ITT() != litt || rh.Response() != 0 {
					t.Fatalf("round %d: logout response %d for ITT %#x", round, rh.Response(), rh.ITT())
				}
				gotLogout = true
			default:
				t.Fatalf("round %d: unexpected %v", round, rh.Opcode())
			}
		}
		if _, closed := waitClosed(c, 5*time.Second); !closed {
			t.Fatalf("round %d: connection open after the Logout Response", round)
		}
		for itt := range want {
			if !good[itt] {
				dropped++
				continue
			}
			acked++
			data, err := readBlocks(check, 0, lbaOf[itt], 64)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 64; i++ {
				if _, _, s, ok := parseBlock(data[i*blockSize:]); !ok || s < seq {
					t.Fatalf("round %d: acknowledged write at %d not on disk (block %d seq %d ok %v)", round, lbaOf[itt], i, s, ok)
				}
			}
		}
	}
	t.Logf("logout behind 16 writes, 30 rounds: %d writes acknowledged and verified, %d ended without GOOD", acked, dropped)
	if acked == 0 {
		t.Errorf("no write completed before any logout")
	}
}

// corruptData encodes h with data using c's digests, then flips one bit of
// the data segment (not of its digest): a payload damaged on the wire.
func corruptData(c *iscsitest.Conn, h *pdu.BHS, data []byte, bit int) []byte {
	b := encodePDU(c.Enc, h, nil, data)
	hdr := pdu.BHSLen
	if c.Answers["HeaderDigest"] == "CRC32C" {
		hdr += pdu.DigestLen
	}
	b[hdr+bit/8%len(data)] ^= 1 << (bit % 8)
	return b
}

// A payload damaged on the wire (data digest mismatch) must never reach
// the disk: a WRITE whose immediate data or whose solicited Data-Out fails
// the CRC32C data digest ends with a Reject and a failed command (or a
// closed connection), never GOOD, and the blocks keep their content.
func TestDataDigestErrorNeverWrites(t *testing.T) {
	d := startDaemon(t, daemonConfig{TargetLines: []string{"HeaderDigest CRC32C", "DataDigest CRC32C"}})
	check := login(t, d.Addr, iscsitest.Options{InitiatorName: initiatorName("crc-check"), ISID: 0x400000001401})
	fillRegion(t, check, 0, 41, 0, 64, 1)
	outcomes := map[string]int{}
	for round := 0; round < 40; round++ {
		solicited := round%2 == 1
		keys := unsolicitedKeys
		if solicited {
			keys = r2tKeys
		}
		c, err := dialLogin(d.Addr, iscsitest.Options{InitiatorName: initiatorName("crc"), ISID: 0x400000001402, HeaderDigest: true, DataDigest: true, Keys: keys})
		if err != nil {
			t.Fatal(err)
		}
		clearUA(t, c, 0)
		lba := uint64(round % 56)
		data := patternBlocks(41, lba, 8, 2)
		itt := c.NextITT()
		var h pdu.BHS
		h.SetOpcode(pdu.OpSCSICmd, false)
		h.SetFlags(pdu.FlagFinal | pdu.FlagWrite)
		h.SetITT(itt)
		h.SetEDTL(uint32(len(data)))
		h.SetCmdSN(c.CmdSN)
		h.SetExpStatSN(c.ExpStatSN)
		copy(h.CDB(), write16(lba, 8, false))
		c.CmdSN++
		if !solicited {
			if err := c.SendRaw(corruptData(c, &h, data, round*37)); err != nil {
				t.Fatal(err)
			}
		} else {
			if err := c.Send(&h, nil, nil); err != nil {
				t.Fatal(err)
			}
			r2t, _, err := c.RecvSkipPings()
			if err != nil || r2t.Opcode() != pdu.OpR2T {
				t.Fatalf("round %d: want R2T: %v %v", round, r2t, err)
			}
			var o pdu.BHS
			o.SetOpcode(pdu.OpDataOut, false)
			o.SetFinal(true)
			o.SetITT(itt)
			o.SetTTT(r2t.TTT())
			o.SetExpStatSN(c.ExpStatSN)
			if err := c.SendRaw(corruptData(c, &o, data, round*37)); err != nil {
				t.Fatal(err)
			}
		}
		outcome := ""
		c.Timeout = 5 * time.Second
		for outcome == "" {
			rh, _, err := c.RecvSkipPings()
			switch {
			case err != nil:
				outcome = "closed"
			case rh.Opcode() == pdu.OpReject:
				outcomes["reject"]++
			case rh.Opcode() == pdu.OpSCSIResp && rh.ITT() == itt:
				if rh.Status() == 0 && rh.Response() == 0 {
					t.Fatalf("round %d: a WRITE with a corrupt payload got GOOD", round)
				}
				outcome = fmt.Sprintf("failed(status %#x)", rh.Status())
			default:
				t.Fatalf("round %d: unexpected %v", round, rh.Opcode())
			}
		}
		outcomes[outcome]++
		c.Close()
		expectRegion(t, check, 0, 41, 0, 64, 1)
	}
	t.Logf("40 WRITEs with a corrupt payload (half immediate, half solicited): %v; the disk never changed", outcomes)
}

// `close` of a device whose backing store hangs may wait for the commands
// inside, but it must not hold up the rest of the control plane: opening
// another device still works.
func TestControlPlaneWithStuckDevice(t *testing.T) {
	requireRoot(t)
	disk, path := mountFaultDisk(t, 16<<20, true)
	d := startDaemon(t, daemonConfig{Mount: true, Devices: []device{{Name: "disk0"}, {Name: "disk1", Path: path}}})
	release := stickRead(t, d, disk, "stuck-ctl")
	defer release()
	closed := make(chan error, 1)
	go func() { closed <- d.ctl("vdisk/vdisk", "close disk1") }()
	time.Sleep(500 * time.Millisecond)
	spare := filepath.Join(d.Dir, "spare.img")
	if err := os.WriteFile(spare, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	opened := make(chan error, 1)
	go func() { opened <- d.ctl("vdisk/vdisk", "open spare "+spare) }()
	select {
	case err := <-opened:
		if err != nil {
			t.Errorf("open of another device while disk1 is stuck closing: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("open of another device blocked behind the close of a stuck one")
		release()
		<-opened
	}
	// The close changed the configuration at once: disk1 is gone even though
	// its backing store still holds a command.
	if err := <-closed; err != nil {
		t.Errorf("close of the stuck device: %v", err)
	}
	if v := d.readCtl("vdisk/vdisk"); strings.Contains(v, "disk1") || !strings.Contains(v, "spare") {
		t.Errorf("vdisk/vdisk after close disk1 and open spare:\n%s", v)
	}
	// Its name stays taken until the drain ends, then it can be reused.
	if err := d.ctl("vdisk/vdisk", "open disk1 "+spare); !errors.Is(err, syscall.EEXIST) {
		t.Errorf("reopening disk1 while its commands drain: %v, want EEXIST", err)
	}
	release()
	if !eventually(10*time.Second, func() bool { return d.ctl("vdisk/vdisk", "open disk1 "+spare) == nil }) {
		t.Errorf("disk1 cannot be reopened after its stuck command was released")
	}
}
