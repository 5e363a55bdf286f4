package reliability

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scstd/scstd/iscsi/iscsitest"
	"github.com/scstd/scstd/iscsi/param"
	"github.com/scstd/scstd/iscsi/pdu"
	"github.com/scstd/scstd/test/testenv"
)

// fuzzOutcome is how the target dealt with one fuzzed connection.
type fuzzOutcome string

const (
	outReject      fuzzOutcome = "reject"       // a Reject PDU
	outLoginRefuse fuzzOutcome = "login-refuse" // a Login Response with an error status
	outClosed      fuzzOutcome = "closed"       // the target closed the connection
	outClosedOnEOF fuzzOutcome = "closed-on-eof"
	outSurvived    fuzzOutcome = "survived" // answered normally and still in step (NOP echoed)
)

// encodePDU serialises one PDU with enc (digests as enc has them; nil: none).
func encodePDU(enc *pdu.Encoder, h *pdu.BHS, ahs, data []byte) []byte {
	if enc == nil {
		enc = pdu.NewEncoder()
	}
	var f pdu.Frame
	iov := enc.AppendWithAHS(nil, &f, h, ahs, data)
	var b bytes.Buffer
	for _, p := range iov {
		b.Write(p)
	}
	return b.Bytes()
}

// fuzzer builds valid PDUs and mutates them.
type fuzzer struct{ rng *rand.Rand }

// loginPDU is a valid first Login Request.
func (f *fuzzer) loginPDU(name string, isid uint64) []byte {
	var h pdu.BHS
	h.SetOpcode(pdu.OpLoginReq, true)
	h.SetLoginFlags(true, false, pdu.StageSecurity, pdu.StageOperational)
	h.SetISID(isid)
	h.SetITT(1)
	h.SetCmdSN(1)
	kvs := []param.KV{{Key: "InitiatorName", Value: name}, {Key: "TargetName", Value: fuzzIQN},
		{Key: "SessionType", Value: "Normal"}, {Key: "AuthMethod", Value: "None"}}
	if f.rng.IntN(3) == 0 {
		kvs = append(kvs, param.KV{Key: "MaxRecvDataSegmentLength", Value: "8192"}, param.KV{Key: "HeaderDigest", Value: "None"})
	}
	return encodePDU(nil, &h, nil, param.AppendText(nil, kvs))
}

// ffPDU is a valid full-feature-phase PDU of a random kind for session c.
func (f *fuzzer) ffPDU(c *iscsitest.Conn) []byte {
	var h pdu.BHS
	h.SetITT(c.NextITT())
	h.SetCmdSN(c.CmdSN)
	h.SetExpStatSN(c.ExpStatSN)
	var ahs, data []byte
	switch f.rng.IntN(8) {
	case 0: // READ(16)
		h.SetOpcode(pdu.OpSCSICmd, false)
		h.SetFlags(pdu.FlagFinal | pdu.FlagRead)
		h.SetEDTL(8 * blockSize)
		copy(h.CDB(), read16(uint64(f.rng.IntN(1024)), 8))
	case 1: // WRITE(16) with immediate data, into the fuzz area
		h.SetOpcode(pdu.OpSCSICmd, false)
		h.SetFlags(pdu.FlagFinal | pdu.FlagWrite)
		h.SetEDTL(4 * blockSize)
		copy(h.CDB(), write16(fuzzAreaLBA+uint64(f.rng.IntN(1024)), 4, false))
		data = make([]byte, 4*blockSize)
	case 2: // Data-Out
		h.SetOpcode(pdu.OpDataOut, false)
		h.SetFinal(true)
		h.SetTTT(f.rng.Uint32())
		data = make([]byte, blockSize)
	case 3: // NOP-Out ping with data
		h.SetOpcode(pdu.OpNOPOut, true)
		h.SetFinal(true)
		h.SetTTT(pdu.ReservedTag)
		data = []byte("fuzz-ping")
	case 4: // Text
		h.SetOpcode(pdu.OpTextReq, false)
		h.SetFinal(true)
		h.SetTTT(pdu.ReservedTag)
		data = param.AppendText(nil, []param.KV{{Key: "SendTargets", Value: "All"}})
	case 5: // TMF
		h.SetOpcode(pdu.OpTMFReq, true)
		h.SetFlags(pdu.FlagFinal | byte(1+f.rng.IntN(8)))
		h.SetRefTaskTag(f.rng.Uint32())
	case 6: // SCSI command with an extended CDB AHS
		h.SetOpcode(pdu.OpSCSICmd, false)
		h.SetFlags(pdu.FlagFinal)
		copy(h.CDB(), []byte{0x7f, 0, 0, 0, 0, 0, 0, 24})
		ahs = pdu.AppendAHS(nil, pdu.AHSExtendedCDB, append([]byte{0}, make([]byte, 16)...))
	case 7: // SNACK
		h.SetOpcode(pdu.Opcode(0x10), false)
		h.SetFinal(true)
	}
	return encodePDU(c.Enc, &h, ahs, data)
}

// mutate applies 1 to 4 random mutations to a copy of b.
func (f *fuzzer) mutate(b []byte) []byte {
	b = append([]byte(nil), b...)
	for n := 1 + f.rng.IntN(4); n > 0; n-- {
		switch f.rng.IntN(9) {
		case 0: // bit flip
			if len(b) > 0 {
				i := f.rng.IntN(len(b))
				b[i] ^= 1 << f.rng.IntN(8)
			}
		case 1: // interesting byte, header biased
			if len(b) > 0 {
				i := f.rng.IntN(min(len(b), 48))
				b[i] = []byte{0, 0xff, 0x80, 0x7f, 0x01, 0x3f}[f.rng.IntN(6)]
			}
		case 2: // opcode
			if len(b) > 0 {
				b[0] = b[0]&0x40 | byte(f.rng.IntN(64))
			}
		case 3: // DataSegmentLength
			if len(b) >= 8 {
				v := []uint32{0, 1, 3, 8191, 8193, 1 << 20, 1<<24 - 1, f.rng.Uint32() & 0xffffff}[f.rng.IntN(8)]
				b[5], b[6], b[7] = byte(v>>16), byte(v>>8), byte(v)
			}
		case 4: // TotalAHSLength
			if len(b) >= 5 {
				b[4] = byte(f.rng.IntN(256))
			}
		case 5: // truncate
			if len(b) > 1 {
				b = b[:f.rng.IntN(len(b))]
			}
		case 6: // append junk
			junk := make([]byte, f.rng.IntN(64))
			for i := range junk {
				junk[i] = byte(f.rng.Uint32())
			}
			b = append(b, junk...)
		case 7: // text key damage: drop the NULs or add '=' soup
			if len(b) > 48 {
				i := 48 + f.rng.IntN(len(b)-48)
				b[i] = []byte{0, '=', 0xff, ','}[f.rng.IntN(4)]
			}
		case 8: // random 32-bit field of the BHS (tags, SNs, lengths)
			if len(b) >= 48 {
				i := 16 + 4*f.rng.IntN(8)
				v := f.rng.Uint32()
				b[i], b[i+1], b[i+2], b[i+3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
			}
		}
	}
	return b
}

// fuzzAreaLBA is where fuzzed writes may land.
const fuzzAreaLBA = 65536

// The fuzzed sessions log in to their own target and see their own device
// (group "fuzzers"): a fuzzed TMF may legitimately be a LUN or target reset,
// which would abort the verifying sessions' commands without a response.
const fuzzIQN = "iqn.2026-11.org.scstd:rel-fuzz"

// awaitVerdict reads the target's answers on c after the fuzzed bytes and a
// NOP-Out ping with ITT ping (0: none) were sent.
func awaitVerdict(c *iscsitest.Conn, ping uint32) (fuzzOutcome, error) {
	sawReject, sawLoginRefuse := false, false
	verdict := func() fuzzOutcome {
		switch {
		case sawReject:
			return outReject
		case sawLoginRefuse:
			return outLoginRefuse
		}
		return outClosed
	}
	// The target answers within milliseconds on loopback; a longer quiet
	// spell means it waits for bytes the mutation announced.
	c.Timeout = 500 * time.Millisecond
	for {
		h, _, err := c.Recv()
		if err == nil {
			switch h.Opcode() {
			case pdu.OpReject:
				sawReject = true
			case pdu.OpLoginResp:
				if h.StatusClass() != 0 {
					sawLoginRefuse = true
				}
			case pdu.OpNOPIn:
				if ping != 0 && h.ITT() == ping {
					if sawReject {
						return outReject, nil
					}
					return outSurvived, nil
				}
			}
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			break
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isConnReset(err) {
			return verdict(), nil
		}
		return "", fmt.Errorf("unparsable PDU from the target: %w", err)
	}
	// Quiet: the target may legitimately wait for data a mangled length
	// announced. Half-close: now it must close the connection.
	if tc, ok := c.NC.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	c.Timeout = 5 * time.Second
	for {
		h, _, err := c.Recv()
		if err == nil {
			if h.Opcode() == pdu.OpReject {
				sawReject = true
			}
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "", errors.New("connection neither answered, rejected nor closed, even after the initiator's EOF")
		}
		if sawReject {
			return outReject, nil
		}
		return outClosedOnEOF, nil
	}
}

func isConnReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe"))
}

// sendPing sends an immediate NOP-Out ping and returns its ITT.
func sendPing(c *iscsitest.Conn) (uint32, error) {
	itt := c.NextITT()
	var h pdu.BHS
	h.SetOpcode(pdu.OpNOPOut, true)
	h.SetFinal(true)
	h.SetITT(itt)
	h.SetTTT(pdu.ReservedTag)
	h.SetCmdSN(c.CmdSN)
	h.SetExpStatSN(c.ExpStatSN)
	return itt, c.Send(&h, nil, nil)
}

// fuzzOne runs one fuzzed connection and returns its outcome.
func fuzzOne(f *fuzzer, addr string, n int) (string, fuzzOutcome, error) {
	name := initiatorName(fmt.Sprintf("fuzz%d", n%16))
	isid := 0x400000000c00 | uint64(n%256)
	switch kind := f.rng.IntN(10); {
	case kind == 0: // random bytes before any login
		c, err := iscsitest.Dial(addr)
		if err != nil {
			return "", "", err
		}
		defer c.Close()
		junk := make([]byte, f.rng.IntN(600))
		for i := range junk {
			junk[i] = byte(f.rng.Uint32())
		}
		_ = c.SendRaw(junk)
		o, err := awaitVerdict(c, 0)
		return "random", o, err
	case kind < 4: // mutated login request
		c, err := iscsitest.Dial(addr)
		if err != nil {
			return "", "", err
		}
		defer c.Close()
		b := f.mutate(f.loginPDU(name, isid))
		if f.rng.IntN(4) == 0 {
			b = append(b, f.mutate(f.loginPDU(name, isid))...)
		}
		_ = c.SendRaw(b)
		o, err := awaitVerdict(c, 0)
		return "login", o, err
	default: // logged in, then mutated full-feature PDUs and a ping
		// A third of the sessions run with header and data digests, so
		// mutations also hit the CRC checks.
		dig := f.rng.IntN(3) == 0
		c, err := dialLogin(addr, iscsitest.Options{InitiatorName: name, TargetName: fuzzIQN, ISID: isid, HeaderDigest: dig, DataDigest: dig})
		if err != nil {
			return "", "", fmt.Errorf("fuzz login: %w", err)
		}
		defer c.Close()
		if dig {
			if c.Answers["HeaderDigest"] != "CRC32C" || c.Answers["DataDigest"] != "CRC32C" {
				return "", "", fmt.Errorf("digests not negotiated: %v", c.Answers)
			}
		}
		var b []byte
		for k := 1 + f.rng.IntN(3); k > 0; k-- {
			b = append(b, f.mutate(f.ffPDU(c))...)
		}
		_ = c.SendRaw(b)
		ping, _ := sendPing(c)
		o, err := awaitVerdict(c, ping)
		if dig {
			return "full-feature-crc", o, err
		}
		return "full-feature", o, err
	}
}

// Random and mutated PDUs (from valid Login, SCSI Command, Data-Out, NOP,
// Text, TMF and SNACK PDUs built with the pdu codec, a third of the
// sessions with CRC32C header and data digests, plus raw garbage) at a
// live daemon for a bounded time, 8 connections at a time. Meanwhile two
// sessions run verified I/O (on another target and device, since a fuzzed
// TMF may be a reset that legitimately aborts their commands). The daemon never dies, the verifying sessions
// see no error and no mismatch, every fuzzed connection is answered with a
// Reject or a login refusal, closed, or stays in step (its NOP-Out ping is
// echoed), and the daemon's descriptors return to their level before the
// fuzzing.
func TestNetworkFuzz(t *testing.T) {
	cfg := daemonConfig{Dir: t.TempDir(), Devices: []device{{Name: "disk0"}, {Name: "disk1"}},
		MoreConfig: "Target " + fuzzIQN + "\n\tHeaderDigest CRC32C,None\n\tDataDigest CRC32C,None\n"}
	cfg.prepare(t) // image paths for the scst.conf below
	cfg.SCSTConf = fmt.Sprintf("[HANDLER vdisk]\nDEVICE disk0,%s,,512\nDEVICE disk1,%s,,512\n\n[GROUP Default]\n\n[GROUP fuzzers]\nUSER %s\n\n[ASSIGNMENT Default]\nDEVICE disk0,0\n\n[ASSIGNMENT fuzzers]\nDEVICE disk1,0\n",
		cfg.Devices[0].Path, cfg.Devices[1].Path, initiatorName("fuzz*"))
	d := startDaemon(t, cfg)
	var vs []*verifier
	for i := 0; i < 2; i++ {
		c := login(t, d.Addr, iscsitest.Options{InitiatorName: initiatorName(fmt.Sprintf("verify%d", i)), ISID: 0x400000000d00 | uint64(i)})
		vs = append(vs, newVerifier(c, 0, uint32(i+1), uint64(i*4096), 4096, 64))
	}
	fdBase := d.FDs()
	stop := make(chan struct{})
	verr := make(chan []error, 1)
	go func() { verr <- runVerifiers(vs, stop) }()

	dur := phase(t, 8*time.Second)
	var (
		mu       sync.Mutex
		counts   = map[string]int{}
		failures []string
		conns    int
	)
	deadline := time.Now().Add(dur)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f := &fuzzer{rng: rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))}
			for n := w; time.Now().Before(deadline); n += 8 {
				kind, o, err := fuzzOne(f, d.Addr, n)
				mu.Lock()
				conns++
				if err != nil {
					failures = append(failures, err.Error())
				} else {
					counts[kind+"/"+string(o)]++
				}
				mu.Unlock()
				if !d.Alive() {
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	verrs := <-verr
	if !d.Alive() {
		t.Fatalf("the daemon died under fuzzing:\n%s", testenv.Tail(d.Log(), 40))
	}
	var keys []string
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sb strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&sb, " %s=%d", k, counts[k])
	}
	var cmds int64
	for _, v := range vs {
		cmds += v.cmds.Load()
	}
	t.Logf("network fuzz: %v, %d connections:%s; %d failures; verifying sessions: %d commands, %d errors", dur, conns, sb.String(), len(failures), cmds, len(verrs))
	if len(failures) > 0 {
		t.Errorf("%d fuzzed connections misbehaved; first: %s", len(failures), failures[0])
	}
	if len(verrs) > 0 {
		t.Errorf("verifying session failed during fuzzing: %v", verrs[0])
	}
	for _, v := range vs {
		if err := v.verifyAll(); err != nil {
			t.Error(err)
		}
	}
	if conns < 50 {
		t.Errorf("only %d fuzzed connections in %v", conns, dur)
	}
	fdAfter := 0
	if !eventually(10*time.Second, func() bool { fdAfter = d.FDs(); return fdAfter <= fdBase }) {
		t.Errorf("daemon holds %d descriptors after fuzzing, %d before: connections leaked", fdAfter, fdBase)
	}
	if rc := d.Stop(30 * time.Second); rc != 0 {
		t.Errorf("exit status %d after SIGTERM", rc)
	}
	// Connections the target refused or closed on its own leave a log line
	// saying why. (Connections the initiator ended with an EOF at a PDU
	// boundary need none.)
	refused := counts["login/"+string(outLoginRefuse)]
	closed := counts["full-feature/"+string(outClosed)] + counts["full-feature-crc/"+string(outClosed)] +
		counts["login/"+string(outClosed)] + counts["random/"+string(outClosed)]
	if n := strings.Count(d.Log(), `msg="login failed"`); n < refused {
		t.Errorf("%d logins refused but %d 'login failed' log lines", refused, n)
	}
	if n := strings.Count(d.Log(), `msg="closing connection"`) + strings.Count(d.Log(), `msg="login failed"`); n < refused+closed {
		t.Errorf("%d connections refused or closed by the target but %d log lines about it", refused+closed, n)
	}
	if os.Getenv("SCSTD_FUZZ_LOG") != "" {
		t.Logf("daemon log:\n%s", d.Log())
	}
}
