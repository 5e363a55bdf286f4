package reliability

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/scstd/scstd/iscsi/auth"
	"github.com/scstd/scstd/iscsi/iscsitest"
	"github.com/scstd/scstd/iscsi/param"
	"github.com/scstd/scstd/iscsi/pdu"
	"github.com/scstd/scstd/test/testenv"
)

const (
	chapUser, chapSecret   = "reluser", "rel-secret-0123"
	chapTUser, chapTSecret = "reltarget", "target-secret-4567"
	discUser, discSecret   = "discuser", "disc-secret-8901"
	loginStatusAuthFailure = 0x0201
)

// loginStatus returns the login status class/detail of err (0 = none).
func loginStatus(err error) uint16 {
	var le *iscsitest.LoginError
	if errors.As(err, &le) {
		return le.Status
	}
	return 0
}

// rawLogin drives a login PDU by PDU, for the CHAP attacks the regular
// initiator would never send.
type rawLogin struct {
	c    *iscsitest.Conn
	isid uint64
}

func newRawLogin(t testing.TB, addr string, isid uint64) *rawLogin {
	t.Helper()
	c, err := iscsitest.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.CmdSN = 1
	return &rawLogin{c: c, isid: isid}
}

// step sends one Login Request and returns the answer's status and keys.
func (r *rawLogin) step(t testing.TB, transit bool, csg, nsg uint8, kvs []param.KV) (uint16, map[string]string) {
	t.Helper()
	var h pdu.BHS
	h.SetOpcode(pdu.OpLoginReq, true)
	h.SetLoginFlags(transit, false, csg, nsg)
	h.SetISID(r.isid)
	h.SetITT(r.c.NextITT())
	h.SetCmdSN(r.c.CmdSN)
	h.SetExpStatSN(r.c.ExpStatSN)
	if err := r.c.Send(&h, nil, param.AppendText(nil, kvs)); err != nil {
		t.Fatalf("send login: %v", err)
	}
	rh, data, err := r.c.Recv()
	if err != nil {
		t.Fatalf("login answer: %v", err)
	}
	if rh.Opcode() != pdu.OpLoginResp {
		t.Fatalf("got %v during login", rh.Opcode())
	}
	ans := map[string]string{}
	kv, _ := param.ParseText(data)
	for _, p := range kv {
		ans[p.Key] = p.Value
	}
	return uint16(rh.StatusClass())<<8 | uint16(rh.StatusDetail()), ans
}

// chapStart runs the login up to the target's CHAP challenge.
func (r *rawLogin) chapStart(t testing.TB, initiator string) (id byte, challenge []byte) {
	t.Helper()
	st, ans := r.step(t, false, pdu.StageSecurity, pdu.StageSecurity, []param.KV{
		{Key: "InitiatorName", Value: initiator}, {Key: "TargetName", Value: targetIQN},
		{Key: "SessionType", Value: "Normal"}, {Key: "AuthMethod", Value: "CHAP,None"}})
	if st != 0 || ans["AuthMethod"] != "CHAP" {
		t.Fatalf("security negotiation: status %#x, AuthMethod %q", st, ans["AuthMethod"])
	}
	st, ans = r.step(t, false, pdu.StageSecurity, pdu.StageSecurity, []param.KV{{Key: "CHAP_A", Value: "5"}})
	if st != 0 || ans["CHAP_A"] != "5" {
		t.Fatalf("CHAP_A: status %#x, %v", st, ans)
	}
	n, err := strconv.Atoi(ans["CHAP_I"])
	if err != nil {
		t.Fatalf("CHAP_I %q", ans["CHAP_I"])
	}
	challenge, err = auth.DecodeBinary(ans["CHAP_C"])
	if err != nil || len(challenge) < 16 {
		t.Fatalf("CHAP_C %q: %v", ans["CHAP_C"], err)
	}
	return byte(n), challenge
}

func hexValue(b []byte) string { return "0x" + hex.EncodeToString(b) }

// CHAP one-way and mutual, with the in-repo initiator (exact login status)
// and libiscsi's iscsi-inq: only the right user and secret get in, a wrong
// user, a wrong secret or no credentials get AUTHENTICATION FAILURE, mutual
// CHAP proves the target, and a target without an OutgoingUser refuses an
// initiator that demands mutual authentication.
func TestCHAPLogin(t *testing.T) {
	d := startDaemon(t, daemonConfig{TargetLines: []string{
		"IncomingUser " + chapUser + " " + chapSecret,
		"IncomingUser other " + "other-secret-999",
		"OutgoingUser " + chapTUser + " " + chapTSecret}})
	tests := []struct {
		name string
		o    iscsitest.Options
		want uint16 // login status; 0 = accepted
		err  bool   // refused by the initiator (mutual check failed)
	}{
		{"one-way", iscsitest.Options{User: chapUser, Secret: chapSecret}, 0, false},
		{"wrong secret", iscsitest.Options{User: chapUser, Secret: "wrong-secret-000"}, loginStatusAuthFailure, false},
		{"other user's secret", iscsitest.Options{User: chapUser, Secret: "other-secret-999"}, loginStatusAuthFailure, false},
		{"unknown user", iscsitest.Options{User: "mallory", Secret: chapSecret}, loginStatusAuthFailure, false},
		{"no credentials", iscsitest.Options{}, loginStatusAuthFailure, false},
		{"mutual", iscsitest.Options{User: chapUser, Secret: chapSecret, TargetUser: chapTUser, TargetSecret: chapTSecret}, 0, false},
		{"mutual, initiator expects another target secret", iscsitest.Options{User: chapUser, Secret: chapSecret, TargetUser: chapTUser, TargetSecret: "not-the-target-1"}, 0, true},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.InitiatorName = initiatorName("chap")
			tc.o.ISID = 0x400000000a00 | uint64(i)
			c, err := dialLogin(d.Addr, tc.o)
			switch {
			case tc.err:
				if err == nil || loginStatus(err) != 0 {
					t.Fatalf("initiator accepted a target that does not know the secret: %v", err)
				}
			case tc.want == 0 && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != 0 && loginStatus(err) != tc.want:
				t.Fatalf("got %v, want login status %#04x", err, tc.want)
			}
			if c != nil {
				if _, err := readBlocks(c, 0, 0, 1); err != nil {
					t.Errorf("I/O after CHAP login: %v", err)
				}
				c.Close()
			}
		})
	}
	t.Run("libiscsi", func(t *testing.T) {
		base := fmt.Sprintf("iscsi://%%s%%%%%%s@%s/%s/0", d.Addr, targetIQN)
		mutual := "?target_user=" + chapTUser + "&target_password="
		cases := []struct {
			url string
			ok  bool
		}{
			{fmt.Sprintf(base, chapUser, chapSecret), true},
			{fmt.Sprintf(base, chapUser, "wrong-secret-000"), false},
			{fmt.Sprintf(base, "mallory", chapSecret), false},
			{fmt.Sprintf("iscsi://%s/%s/0", d.Addr, targetIQN), false},
			{fmt.Sprintf(base, chapUser, chapSecret) + mutual + chapTSecret, true},
			{fmt.Sprintf(base, chapUser, chapSecret) + mutual + "not-the-target-1", false},
		}
		for _, tc := range cases {
			out, err := runTool(t, 30*time.Second, "iscsi-inq", tc.url)
			if tc.ok != (err == nil) {
				t.Errorf("iscsi-inq %s: accepted=%v, want %v\n%s", tc.url, err == nil, tc.ok, testenv.Tail(out, 5))
			}
		}
	})
	t.Run("mutual without OutgoingUser", func(t *testing.T) {
		d2 := startDaemon(t, daemonConfig{TargetLines: []string{"IncomingUser " + chapUser + " " + chapSecret}})
		_, err := dialLogin(d2.Addr, iscsitest.Options{InitiatorName: initiatorName("chap"), User: chapUser, Secret: chapSecret, TargetUser: chapTUser, TargetSecret: chapTSecret})
		if err == nil {
			t.Fatal("mutual CHAP login accepted by a target without an OutgoingUser")
		}
		if st := loginStatus(err); st != loginStatusAuthFailure && st != 0 {
			t.Errorf("refused with login status %#04x, want authentication failure (or the initiator's own refusal)", st)
		}
	})
}

// CHAP attacks on the protocol itself: a response captured from one login
// does not open another (every login gets a fresh challenge), and an
// initiator that reflects the target's own challenge back to it in mutual
// CHAP is refused instead of being handed the answer.
func TestCHAPReplayAndReflection(t *testing.T) {
	d := startDaemon(t, daemonConfig{TargetLines: []string{
		"IncomingUser " + chapUser + " " + chapSecret,
		"OutgoingUser " + chapTUser + " " + chapTSecret}})
	name := initiatorName("chap-attack")

	// A legitimate login whose response the attacker records.
	r1 := newRawLogin(t, d.Addr, 0x400000000b01)
	id1, ch1 := r1.chapStart(t, name)
	resp1 := auth.Response(id1, []byte(chapSecret), ch1)
	st, _ := r1.step(t, true, pdu.StageSecurity, pdu.StageOperational, []param.KV{{Key: "CHAP_N", Value: chapUser}, {Key: "CHAP_R", Value: hexValue(resp1[:])}})
	if st != 0 {
		t.Fatalf("legitimate CHAP login refused: %#x", st)
	}

	// Replay: the same CHAP_R against a new challenge.
	seen := map[string]bool{hex.EncodeToString(ch1): true}
	for i := 0; i < 5; i++ {
		r := newRawLogin(t, d.Addr, 0x400000000b10|uint64(i))
		_, ch := r.chapStart(t, name)
		if seen[hex.EncodeToString(ch)] {
			t.Fatalf("the target repeated a CHAP challenge")
		}
		seen[hex.EncodeToString(ch)] = true
		st, _ := r.step(t, true, pdu.StageSecurity, pdu.StageOperational, []param.KV{{Key: "CHAP_N", Value: chapUser}, {Key: "CHAP_R", Value: hexValue(resp1[:])}})
		if st != loginStatusAuthFailure {
			t.Fatalf("replayed CHAP response: login status %#04x, want %#04x", st, loginStatusAuthFailure)
		}
	}

	// Reflection: the attacker does not know the secret; it answers with
	// garbage but asks the target to authenticate itself with the target's
	// own identifier and challenge, hoping to learn the answer.
	r := newRawLogin(t, d.Addr, 0x400000000b20)
	id, ch := r.chapStart(t, name)
	var junk [16]byte
	rand.Read(junk[:])
	st, ans := r.step(t, true, pdu.StageSecurity, pdu.StageOperational, []param.KV{
		{Key: "CHAP_N", Value: chapUser}, {Key: "CHAP_R", Value: hexValue(junk[:])},
		{Key: "CHAP_I", Value: strconv.Itoa(int(id))}, {Key: "CHAP_C", Value: hexValue(ch)}})
	if st == 0 || ans["CHAP_R"] != "" {
		t.Fatalf("reflected challenge: status %#x, target answered CHAP_R=%q", st, ans["CHAP_R"])
	}
	// Reflection with the right response (a man in the middle relaying a
	// real initiator's answer) is refused too.
	r = newRawLogin(t, d.Addr, 0x400000000b21)
	id, ch = r.chapStart(t, name)
	good := auth.Response(id, []byte(chapSecret), ch)
	st, ans = r.step(t, true, pdu.StageSecurity, pdu.StageOperational, []param.KV{
		{Key: "CHAP_N", Value: chapUser}, {Key: "CHAP_R", Value: hexValue(good[:])},
		{Key: "CHAP_I", Value: strconv.Itoa(int(id))}, {Key: "CHAP_C", Value: hexValue(ch)}})
	if st == 0 || ans["CHAP_R"] != "" {
		t.Fatalf("reflected challenge with a valid response: status %#x, target answered CHAP_R=%q", st, ans["CHAP_R"])
	}
}

// A CHAP secret shorter than 12 characters is refused when the
// configuration is loaded, with a log line naming the user, and that
// account cannot log in.
func TestCHAPShortSecretRefused(t *testing.T) {
	const short = "elevenchars" // 11
	d, err := tryStartDaemon(t, daemonConfig{TargetLines: []string{"IncomingUser shorty " + short}})
	if err != nil {
		// Refusing to start is acceptable, if it says why.
		if !strings.Contains(err.Error(), "shorter than 12") {
			t.Fatalf("daemon did not start, without naming the short secret: %v", err)
		}
		return
	}
	if !strings.Contains(d.Log(), "shorter than 12") || !strings.Contains(d.Log(), "shorty") {
		t.Errorf("no log line about the short secret of shorty:\n%s", testenv.Tail(d.Log(), 20))
	}
	_, err = dialLogin(d.Addr, iscsitest.Options{InitiatorName: initiatorName("shorty"), User: "shorty", Secret: short})
	if err == nil {
		t.Fatal("login with an 11-character secret accepted")
	}
}

// discover runs SendTargets=All on a discovery session.
func discover(addr string, o iscsitest.Options) ([]param.KV, error) {
	o.TargetName = "-"
	c, err := dialLogin(addr, o)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Text([]param.KV{{Key: "SendTargets", Value: "All"}})
}

func listsTarget(kvs []param.KV) bool {
	for _, kv := range kvs {
		if kv.Key == "TargetName" && kv.Value == targetIQN {
			return true
		}
	}
	return false
}

// Discovery CHAP (global IncomingUser): a discovery session needs the
// discovery account; with it SendTargets lists the target, and iscsi-ls
// with the CHAP URL agrees. Normal sessions keep their own accounts.
func TestDiscoveryCHAP(t *testing.T) {
	d := startDaemon(t, daemonConfig{
		GlobalLines: []string{"IncomingUser " + discUser + " " + discSecret},
		TargetLines: []string{"IncomingUser " + chapUser + " " + chapSecret}})
	name := initiatorName("disc")
	if _, err := discover(d.Addr, iscsitest.Options{InitiatorName: name}); loginStatus(err) != loginStatusAuthFailure {
		t.Errorf("discovery without CHAP: %v, want authentication failure", err)
	}
	if _, err := discover(d.Addr, iscsitest.Options{InitiatorName: name, User: discUser, Secret: "wrong-secret-000"}); loginStatus(err) != loginStatusAuthFailure {
		t.Errorf("discovery with a wrong secret: %v, want authentication failure", err)
	}
	if _, err := discover(d.Addr, iscsitest.Options{InitiatorName: name, User: chapUser, Secret: chapSecret}); loginStatus(err) != loginStatusAuthFailure {
		t.Errorf("discovery with the target's (not the discovery) account: %v, want authentication failure", err)
	}
	kvs, err := discover(d.Addr, iscsitest.Options{InitiatorName: name, User: discUser, Secret: discSecret})
	if err != nil || !listsTarget(kvs) {
		t.Fatalf("discovery with the discovery account: %v %v", kvs, err)
	}
	if _, err := dialLogin(d.Addr, iscsitest.Options{InitiatorName: name, User: discUser, Secret: discSecret}); loginStatus(err) != loginStatusAuthFailure {
		t.Errorf("normal login with the discovery account: %v, want authentication failure", err)
	}
	// Without -s: iscsi-ls would log in to the target with the discovery
	// account to list LUNs, which the target's own CHAP refuses.
	out, err := runTool(t, 30*time.Second, "iscsi-ls", fmt.Sprintf("iscsi://%s%%%s@%s", discUser, discSecret, d.Addr))
	if err != nil || !strings.Contains(out, targetIQN) {
		t.Errorf("iscsi-ls with discovery CHAP: %v\n%s", err, out)
	}
	if out, err := runTool(t, 30*time.Second, "iscsi-ls", "iscsi://"+d.Addr); err == nil || strings.Contains(out, targetIQN) {
		t.Errorf("iscsi-ls without CHAP listed the target:\n%s", out)
	}
}

// dialFrom is iscsitest.Dial from a chosen local address.
func dialFrom(src, addr string) (*iscsitest.Conn, error) {
	dl := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	nc, err := dl.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	// The defaults iscsitest.Dial sets.
	r := pdu.NewReader(nc, 64<<10)
	r.MaxData = 1<<24 - 1
	return &iscsitest.Conn{NC: nc, R: r, Enc: pdu.NewEncoder(), Answers: map[string]string{}, Timeout: 10 * time.Second,
		InitialR2T: true, ImmediateData: true, TargetMRDSL: 8192, MaxBurst: 262144, FirstBurst: 65536, MaxOutstandingR2T: 1}, nil
}

// loginFrom logs in (or discovers, target "-") from source address src.
func loginFrom(src, addr string, o iscsitest.Options) error {
	c, err := dialFrom(src, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if o.TargetName == "" {
		o.TargetName = targetIQN
	} else if o.TargetName == "-" {
		o.TargetName = ""
	}
	if err := c.Login(o); err != nil {
		return err
	}
	if o.TargetName == "" {
		kvs, err := c.Text([]param.KV{{Key: "SendTargets", Value: "All"}})
		if err != nil {
			return err
		}
		if !listsTarget(kvs) {
			return errNotListed
		}
	}
	return nil
}

var errNotListed = errors.New("target not listed by SendTargets")

// initiators.allow / initiators.deny (spec §2.5), re-read at every login:
// access is denied iff a deny line matches and no allow line does; a
// denied host neither logs in nor sees the target in SendTargets.
func TestInitiatorsAllowDeny(t *testing.T) {
	d := startDaemon(t, daemonConfig{})
	allow, deny := filepath.Join(d.Dir, "initiators.allow"), filepath.Join(d.Dir, "initiators.deny")
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, allow, deny string
		from              map[string]bool // source address -> admitted
	}{
		{"no files", "", "", map[string]bool{"127.0.0.1": true, "127.0.0.2": true}},
		{"deny all", "", "ALL ALL\n", map[string]bool{"127.0.0.1": false, "127.0.0.2": false}},
		{"deny all, allow one host", targetIQN + " 127.0.0.2\n", "ALL ALL\n", map[string]bool{"127.0.0.1": false, "127.0.0.2": true}},
		{"deny a subnet for this target", "", targetIQN + " 127.0.0.0/30\n", map[string]bool{"127.0.0.1": false, "127.0.0.5": true}},
		{"deny another target only", "", "iqn.2026-11.org.scstd:other ALL\n", map[string]bool{"127.0.0.1": true}},
		{"allow list alone changes nothing", "ALL 127.0.0.9\n", "", map[string]bool{"127.0.0.1": true}},
		{"deny one address in a list", "", "ALL 127.0.0.3, 127.0.0.1\n", map[string]bool{"127.0.0.1": false, "127.0.0.2": true}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			write(allow, tc.allow)
			write(deny, tc.deny)
			for src, ok := range tc.from {
				name := initiatorName(fmt.Sprintf("acl%d", i))
				err := loginFrom(src, d.Addr, iscsitest.Options{InitiatorName: name})
				if ok != (err == nil) {
					t.Errorf("login from %s: %v, want admitted=%v", src, err, ok)
				}
				derr := loginFrom(src, d.Addr, iscsitest.Options{InitiatorName: name, TargetName: "-"})
				if ok && derr != nil {
					t.Errorf("discovery from %s: %v", src, derr)
				}
				if !ok && derr == nil {
					t.Errorf("discovery from denied %s listed the target", src)
				}
			}
		})
	}
}

// An initiator whose group (or the Default group) has no LUN neither
// discovers nor logs in to the target; a member of the group with LUNs
// does both. Changing the group's names through the control tree takes
// effect at the next login.
func TestInitiatorWithoutLUNs(t *testing.T) {
	requireRoot(t)
	member, outsider := initiatorName("member"), initiatorName("outsider")
	cfg := daemonConfig{Mount: true}
	cfg.Dir = t.TempDir()
	img := filepath.Join(cfg.Dir, "disk0.img")
	cfg.Devices = []device{{Name: "disk0", Path: img}}
	cfg.SCSTConf = fmt.Sprintf("[HANDLER vdisk]\nDEVICE disk0,%s,,512\n\n[GROUP Default]\n\n[GROUP members]\nUSER %s\n\n[ASSIGNMENT members]\nDEVICE disk0,0\n", img, member)
	d := startDaemon(t, cfg)
	kvs, err := discover(d.Addr, iscsitest.Options{InitiatorName: outsider})
	if err == nil && listsTarget(kvs) {
		t.Errorf("outsider discovered the target: %v", kvs)
	}
	if _, err := dialLogin(d.Addr, iscsitest.Options{InitiatorName: outsider}); err == nil {
		t.Errorf("outsider logged in")
	} else if st := loginStatus(err); st>>8 != 2 {
		t.Errorf("outsider refused with %v, want an initiator error status (class 2)", err)
	}
	kvs, err = discover(d.Addr, iscsitest.Options{InitiatorName: member})
	if err != nil || !listsTarget(kvs) {
		t.Errorf("member discovery: %v %v", kvs, err)
	}
	c := login(t, d.Addr, iscsitest.Options{InitiatorName: member})
	if _, err := readBlocks(c, 0, 0, 1); err != nil {
		t.Errorf("member I/O: %v", err)
	}
	// The outsider joins the group: admitted from the next login.
	if err := d.ctl("groups/members/names", "add "+outsider); err != nil {
		t.Fatal(err)
	}
	if _, err := dialLogin(d.Addr, iscsitest.Options{InitiatorName: outsider}); err != nil {
		t.Errorf("outsider added to the group still refused: %v", err)
	}
	// A pattern in Default matching nobody keeps others out.
	if err := d.ctl("groups/members/names", "del "+outsider); err != nil {
		t.Fatal(err)
	}
	if _, err := dialLogin(d.Addr, iscsitest.Options{InitiatorName: outsider}); err == nil {
		t.Errorf("outsider removed from the group still logs in")
	}
}

// A read-only LUN mapping (`add DEV LUN READ_ONLY`) refuses every kind of
// write with DATA PROTECT / WRITE PROTECTED while reads work, and the same
// device's read-write mapping keeps taking writes. The data is unchanged
// by the refused writes.
func TestReadOnlyAssignment(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t, daemonConfig{Mount: true})
	if err := d.ctl("groups/Default/devices", "add disk0 1 READ_ONLY"); err != nil {
		t.Fatalf("add disk0 1 READ_ONLY: %v", err)
	}
	if !strings.Contains(d.readCtl("groups/Default/devices"), "RO") {
		t.Errorf("devices file does not show RO:\n%s", d.readCtl("groups/Default/devices"))
	}
	c := login(t, d.Addr, iscsitest.Options{InitiatorName: initiatorName("ro")})
	rw, ro := lunField(0), lunField(1)
	clearUA(t, c, ro)
	fillRegion(t, c, rw, 8, 0, 64, 1)
	wp := sense{keyDataProtect, 0x27, 0x00}
	writes := []struct {
		name string
		cmd  *iscsitest.Cmd
	}{
		{"WRITE(10)", &iscsitest.Cmd{LUN: ro, CDB: iscsitest.Write10(0, 8), Write: patternBlocks(9, 0, 8, 1)}},
		{"WRITE(16) FUA", &iscsitest.Cmd{LUN: ro, CDB: write16(8, 8, true), Write: patternBlocks(9, 8, 8, 1)}},
		{"WRITE(6)", &iscsitest.Cmd{LUN: ro, CDB: []byte{0x0a, 0, 0, 16, 8, 0}, Write: patternBlocks(9, 16, 8, 1)}},
		{"WRITE SAME(16)", &iscsitest.Cmd{LUN: ro, CDB: []byte{0x93, 0, 0, 0, 0, 0, 0, 0, 0, 24, 0, 0, 0, 8, 0, 0}, Write: patternBlocks(9, 24, 1, 1)}},
		{"WRITE AND VERIFY(10)", &iscsitest.Cmd{LUN: ro, CDB: []byte{0x2e, 0, 0, 0, 0, 32, 0, 0, 8, 0}, Write: patternBlocks(9, 32, 8, 1)}},
	}
	for _, w := range writes {
		expectSense(t, c, w.name+" on the READ_ONLY LUN", w.cmd, wp)
	}
	// UNMAP with one descriptor (0+8).
	unmap := make([]byte, 24)
	unmap[1], unmap[3] = 22, 16
	unmap[15+8] = 8
	_, err := do(c, &iscsitest.Cmd{LUN: ro, CDB: []byte{0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0}, Write: unmap})
	var ce *cmdError
	if !errors.As(err, &ce) || (ce.Sense != wp && ce.Sense.Key != keyIllegalRequest) {
		t.Errorf("UNMAP on the READ_ONLY LUN: %v, want DATA PROTECT (or ILLEGAL REQUEST if unsupported)", err)
	}
	if _, err := readBlocks(c, ro, 0, 64); err != nil {
		t.Errorf("read on the READ_ONLY LUN: %v", err)
	}
	expectRegion(t, c, ro, 8, 0, 64, 1)
	fillRegion(t, c, rw, 8, 0, 64, 2)
	expectRegion(t, c, ro, 8, 0, 64, 2)
	// MODE SENSE(6) of the read-only LUN reports WP.
	res, err := do(c, &iscsitest.Cmd{LUN: ro, CDB: []byte{0x1a, 0, 0x3f, 0, 255, 0}, ReadLen: 255})
	if err != nil || len(res.Data) < 4 || res.Data[2]&0x80 == 0 {
		t.Errorf("MODE SENSE of the READ_ONLY LUN does not report WP: %v % x", err, res.Data)
	}
}

// The control tree's modes keep other unprivileged users out of its
// writable files (default_permissions): nobody can read the tree but not
// write a command, and the command has no effect.
func TestControlTreeModes(t *testing.T) {
	requireRoot(t)
	requireTools(t, "setpriv")
	dir := t.TempDir()
	// nobody must reach the mountpoint; the modes under it are the test.
	for _, p := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	d := startDaemon(t, daemonConfig{Dir: dir, Mount: true})
	asNobody := func(script string) (string, error) {
		ctx := exec.Command("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", "sh", "-c", script)
		out, err := ctx.CombinedOutput()
		return string(out), err
	}
	root := filepath.Join(d.MountDir, "scsi_tgt")
	if out, err := asNobody("cat " + filepath.Join(root, "version")); err != nil || !strings.Contains(out, "procfs") {
		t.Errorf("nobody cannot read the version file: %v %s", err, out)
	}
	for _, f := range []string{"scsi_tgt", "vdisk/vdisk", "groups/Default/devices", "groups/Default/names", "threads", "vcdrom/vcdrom", "../forcibly_close_sessions"} {
		p := filepath.Join(root, f)
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("stat %s: %v", f, err)
			continue
		}
		if fi.Mode().Perm()&0o002 != 0 {
			t.Errorf("%s is world-writable (%v)", f, fi.Mode())
		}
		out, err := asNobody("echo 'add_group intruder' > " + p)
		if err == nil || !strings.Contains(out, "ermission denied") {
			t.Errorf("nobody wrote %s: %v %s", f, err, out)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "groups", "intruder")); err == nil {
		t.Errorf("a group was created by nobody")
	}
	// Root (the owner) still can.
	if err := d.ctl("scsi_tgt", "add_group admins"); err != nil {
		t.Errorf("root cannot write scsi_tgt: %v", err)
	}
}

// The daemon never needs root: started as nobody/nogroup without the
// control tree, it serves a LUN that user owns, and it never holds root
// ids.
func TestDaemonAsNonRoot(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	// The parent of t.TempDir must be traversable by nobody.
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "disk0.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(64 << 20)
	f.Close()
	uid, gid := lookupIDs(t, "nobody", "nogroup")
	if err := os.Chown(img, uid, gid); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, daemonConfig{Dir: dir, RunAs: "nobody:nogroup", Devices: []device{{Name: "disk0", Path: img}}})
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.PID()))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "Uid:") || strings.HasPrefix(l, "Gid:") {
			for _, f := range strings.Fields(l)[1:] {
				if f == "0" {
					t.Errorf("daemon holds a root id: %s", l)
				}
			}
		}
		if strings.HasPrefix(l, "CapEff:") && strings.TrimSpace(strings.TrimPrefix(l, "CapEff:")) != "0000000000000000" {
			t.Errorf("daemon has capabilities: %s", l)
		}
	}
	c := login(t, d.Addr, iscsitest.Options{InitiatorName: initiatorName("nonroot")})
	fillRegion(t, c, 0, 12, 0, 256, 1)
	expectRegion(t, c, 0, 12, 0, 256, 1)
	if rc := d.Stop(30 * time.Second); rc != 0 {
		t.Errorf("exit status %d", rc)
	}
}

func lookupIDs(t testing.TB, user, group string) (int, int) {
	t.Helper()
	out, err := exec.Command("id", "-u", user).Output()
	if err != nil {
		t.Fatalf("id -u %s: %v", user, err)
	}
	uid, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	out, err = exec.Command("getent", "group", group).Output()
	if err != nil {
		t.Fatalf("getent group %s: %v", group, err)
	}
	parts := strings.Split(strings.TrimSpace(string(out)), ":")
	gid, _ := strconv.Atoi(parts[2])
	return uid, gid
}
