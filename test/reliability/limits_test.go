package reliability

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scstd/scstd/iscsi/iscsitest"
	"github.com/scstd/scstd/iscsi/pdu"
)

// Session churn and idle connections: 8 workers log in, do a command and
// log out (or just drop the socket) as fast as they can while 100 idle TCP
// connections sit in the login phase sending nothing and a session runs
// verified I/O. Logins are not held up by the idle connections, nothing
// fails, the daemon's descriptors return to their level before the churn
// and its RSS peak does not grow from the second quarter of the run to the
// last by more than a bound. Under SCSTD_SOAK the idle connections
// are also held past the login timeout (30 s) and must be closed by the
// target.
func TestSessionChurnAndIdleConnections(t *testing.T) {
	const rssBoundKiB = 32 << 10
	d := startDaemon(t, daemonConfig{})
	good := login(t, d.Addr, iscsitest.Options{InitiatorName: initiatorName("churn-good"), ISID: 0x400000000e00})
	v := newVerifier(good, 0, 1, 0, 4096, 64)
	fdBase := d.FDs()

	var idle []net.Conn
	for i := 0; i < 100; i++ {
		nc, err := net.DialTimeout("tcp", d.Addr, 5*time.Second)
		if err != nil {
			t.Fatalf("idle connection %d: %v", i, err)
		}
		idle = append(idle, nc)
	}
	defer func() {
		for _, nc := range idle {
			nc.Close()
		}
	}()
	stop := make(chan struct{})
	verr := make(chan []error, 1)
	go func() { verr <- runVerifiers([]*verifier{v}, stop) }()

	rssStart := d.RSSKiB()
	dur := phase(t, 8*time.Second)
	deadline := time.Now().Add(dur)
	var (
		logins, drops atomic.Int64
		maxLogin      atomic.Int64
		mu            sync.Mutex
		errs          []error
		wg            sync.WaitGroup
	)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; time.Now().Before(deadline); n++ {
				start := time.Now()
				c, err := dialLogin(d.Addr, iscsitest.Options{InitiatorName: initiatorName(fmt.Sprintf("churn%d", w)), ISID: 0x400000000e10 | uint64(w)})
				if err == nil {
					if ms := time.Since(start).Milliseconds(); ms > maxLogin.Load() {
						maxLogin.Store(ms)
					}
					_, err = readBlocks(c, 0, uint64(n%1024), 1)
				}
				if err == nil && n%3 == 0 {
					c.Close() // vanish without logout
					drops.Add(1)
				} else if err == nil {
					var r byte
					if r, err = c.Logout(0); err == nil && r != 0 {
						err = fmt.Errorf("logout response %d", r)
					}
					c.Close()
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				logins.Add(1)
			}
		}()
	}
	// RSS against logins, once a second: a leak grows with the logins.
	samplerDone := make(chan struct{})
	var (
		samples            []string
		peakFirst, peakEnd int64 // RSS peaks of the second and the last quarter
	)
	q2, q3 := time.Now().Add(dur/4), time.Now().Add(dur/2)
	q4 := time.Now().Add(3 * dur / 4)
	go func() {
		defer close(samplerDone)
		tk := time.NewTicker(250 * time.Millisecond)
		defer tk.Stop()
		for time.Now().Before(deadline) {
			<-tk.C
			r := d.RSSKiB()
			// The first quarter is the climb to the plateau.
			switch now := time.Now(); {
			case now.After(q2) && now.Before(q3):
				peakFirst = max(peakFirst, r)
			case now.After(q4):
				peakEnd = max(peakEnd, r)
			}
			if len(samples) < 200 {
				samples = append(samples, fmt.Sprintf("%d:%dK", logins.Load(), r))
			}
		}
	}()
	wg.Wait()
	<-samplerDone
	rssEnd := d.RSSKiB()
	if ok, _ := soak(t); ok {
		// The login timeout must close the idle connections.
		time.Sleep(35 * time.Second)
		for i, nc := range idle {
			_ = nc.SetReadDeadline(time.Now().Add(time.Second))
			if _, err := nc.Read(make([]byte, 1)); err == nil || isTimeout(err) {
				t.Errorf("idle connection %d still open after the login timeout", i)
				break
			}
		}
	}
	for _, nc := range idle {
		nc.Close()
	}
	close(stop)
	if ve := <-verr; len(ve) > 0 {
		t.Errorf("verifying session failed during churn: %v", ve[0])
	}
	if err := v.verifyAll(); err != nil {
		t.Error(err)
	}
	t.Logf("churn: %v, %d logins (%d dropped without logout), slowest login %d ms, 100 idle connections; verifying session %d commands; RSS start %d KiB, peak 2nd quarter %d KiB, peak last quarter %d KiB, end %d KiB",
		dur, logins.Load(), drops.Load(), maxLogin.Load(), v.cmds.Load(), rssStart, peakFirst, peakEnd, rssEnd)
	if testing.Verbose() {
		t.Logf("logins:RSS every 250 ms: %v", samples)
	}
	if len(errs) > 0 {
		t.Fatalf("%d churn workers failed; first: %v", len(errs), errs[0])
	}
	if logins.Load() < 100 {
		t.Errorf("only %d logins in %v", logins.Load(), dur)
	}
	if maxLogin.Load() > 2000 {
		t.Errorf("a login took %d ms with idle connections around", maxLogin.Load())
	}
	// Churn garbage makes RSS climb to a plateau set by the GC pacer; a
	// leak grows with the logins, so the last quarter peaks higher.
	if peakEnd-peakFirst > rssBoundKiB && !testEnv.race {
		t.Errorf("RSS peak grew %d KiB from the second quarter (%d) to the last (%d) of the churn (bound %d)", peakEnd-peakFirst, peakFirst, peakEnd, rssBoundKiB)
	}
	fdAfter := 0
	if !eventually(10*time.Second, func() bool { fdAfter = d.FDs(); return fdAfter <= fdBase }) {
		t.Errorf("daemon holds %d descriptors after the churn, %d before", fdAfter, fdBase)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// MaxSessions caps the sessions of a target: the next login is refused
// with OUT OF RESOURCES (0x0302) and admitted again once a session ends.
// QueuedCommands bounds the command window the target opens.
func TestMaxSessionsAndQueueDepth(t *testing.T) {
	d := startDaemon(t, daemonConfig{TargetLines: []string{"MaxSessions 3", "QueuedCommands 8"}})
	var cs []*iscsitest.Conn
	for i := 0; i < 3; i++ {
		cs = append(cs, login(t, d.Addr, iscsitest.Options{InitiatorName: initiatorName(fmt.Sprintf("max%d", i)), ISID: 0x400000000f00 | uint64(i)}))
	}
	_, err := dialLogin(d.Addr, iscsitest.Options{InitiatorName: initiatorName("max3"), ISID: 0x400000000f03})
	if st := loginStatus(err); st != 0x0302 {
		t.Fatalf("4th session with MaxSessions 3: %v, want login status 0x0302", err)
	}
	if r, err := cs[0].Logout(0); err != nil || r != 0 {
		t.Fatalf("logout: %d %v", r, err)
	}
	cs[0].Close()
	var c *iscsitest.Conn
	if !eventually(5*time.Second, func() bool {
		c, err = dialLogin(d.Addr, iscsitest.Options{InitiatorName: initiatorName("max3"), ISID: 0x400000000f03})
		return err == nil
	}) {
		t.Fatalf("login after a logout under MaxSessions: %v", err)
	}
	defer c.Close()
	if _, err := readBlocks(c, 0, 0, 1); err != nil {
		t.Fatal(err)
	}
	if win := int64(c.MaxCmdSN) - int64(c.ExpCmdSN) + 1; win > 8 || win < 1 {
		t.Errorf("command window %d (ExpCmdSN %d MaxCmdSN %d) with QueuedCommands 8", win, c.ExpCmdSN, c.MaxCmdSN)
	}
}

// floodUnread sends up to 200,000 READs of 64 KiB for at most 5 s and never
// reads the socket. The target must stop reading (TCP back-pressure) or
// refuse commands (BUSY / TASK SET FULL) once a bounded number of responses
// wait to be sent: RSS may not grow by more than 256 MiB, and another
// session keeps working.
func floodUnread(t *testing.T, immediate bool) {
	const (
		cmdBlocks     = 128 // 64 KiB per command
		rssBoundKiB   = 256 << 10
		maxCommands   = 200000
		floodDuration = 5 * time.Second
	)
	d := startDaemon(t, daemonConfig{})
	good := login(t, d.Addr, iscsitest.Options{InitiatorName: initiatorName("flood-good"), ISID: 0x400000001001})
	c := login(t, d.Addr, iscsitest.Options{InitiatorName: initiatorName("flood"), ISID: 0x400000001002})
	clearUA(t, c, 0)
	rssStart := d.RSSKiB()
	c.Timeout = 2 * time.Second // a blocked send is the back-pressure we want
	deadline := time.Now().Add(floodDuration)
	sent, peak := 0, int64(0)
	blocked := false
	for sent < maxCommands && time.Now().Before(deadline) {
		var h pdu.BHS
		h.SetOpcode(pdu.OpSCSICmd, immediate)
		h.SetFlags(pdu.FlagFinal | pdu.FlagRead)
		h.SetITT(c.NextITT())
		h.SetEDTL(cmdBlocks * blockSize)
		h.SetCmdSN(c.CmdSN)
		if !immediate {
			c.CmdSN++
		}
		copy(h.CDB(), read16(uint64(sent%4096), cmdBlocks))
		if err := c.Send(&h, nil, nil); err != nil {
			if isTimeout(err) {
				blocked = true
				break
			}
			t.Fatalf("send %d: %v", sent, err)
		}
		sent++
		if sent%2000 == 0 {
			r := d.RSSKiB()
			peak = max(peak, r)
			if r-rssStart > 2*rssBoundKiB {
				break // enough to fail, before the machine suffers
			}
		}
	}
	peak = max(peak, d.RSSKiB())
	t.Logf("%d unread 64 KiB READs sent (immediate %v, blocked: %v); daemon RSS %d KiB -> peak %d KiB", sent, immediate, blocked, rssStart, peak)
	if peak-rssStart > rssBoundKiB && !testEnv.race {
		t.Errorf("daemon RSS grew %d KiB buffering responses nobody reads (bound %d KiB)", peak-rssStart, rssBoundKiB)
	}
	c.Close()
	if _, err := readBlocks(good, 0, 0, 8); err != nil {
		t.Errorf("another session after the flood: %v", err)
	}
}

// READs with CmdSN running on whose responses are never read (so the
// initiator never learns MaxCmdSN): the window must hold them. The window
// reopens when the writer takes a response (e838c7e), not when the core
// completes the command, so cached reads that complete at once are held too.
func TestUnreadResponsesWindowed(t *testing.T) {
	floodUnread(t, false)
}

// Immediate READs whose responses are never read: see floodUnread. Past
// maxImmediate outstanding ones the target answers TASK SET FULL and the
// writer queue's back-pressure stops the reader.
func TestUnreadResponsesImmediate(t *testing.T) {
	floodUnread(t, true)
}

// Immediate WRITE commands are outside the CmdSN window, and each reserves
// a write buffer of its EDTL (up to 64 MiB) before any data arrives: 200 of
// them, never followed by data, must not reserve 12.5 GiB.
func TestImmediateWritesBoundReservation(t *testing.T) {
	const (
		commands   = 200
		edtl       = 64 << 20
		boundBytes = 4 << 30
	)
	d := startDaemon(t, daemonConfig{Devices: []device{{Name: "disk0", Size: 128 << 20}}})
	c := login(t, d.Addr, iscsitest.Options{InitiatorName: initiatorName("wflood"), ISID: 0x400000001003, Keys: r2tKeys})
	clearUA(t, c, 0)
	vmStart := d.procStatus("VmSize")
	c.Timeout = 2 * time.Second
	sent := 0
	for ; sent < commands; sent++ {
		var h pdu.BHS
		h.SetOpcode(pdu.OpSCSICmd, true)
		h.SetFlags(pdu.FlagFinal | pdu.FlagWrite)
		h.SetITT(c.NextITT())
		h.SetEDTL(edtl)
		h.SetCmdSN(c.CmdSN)
		copy(h.CDB(), write16(0, edtl/blockSize, false))
		if err := c.Send(&h, nil, nil); err != nil {
			break // the target stopped reading: fine
		}
	}
	time.Sleep(time.Second)
	grown := (d.procStatus("VmSize") - vmStart) << 10
	t.Logf("%d immediate 64 MiB WRITEs without data: daemon VmSize grew %d MiB", sent, grown>>20)
	if grown > boundBytes {
		t.Errorf("daemon reserved %d MiB for writes whose data never came (bound %d MiB)", grown>>20, boundBytes>>20)
	}
}
