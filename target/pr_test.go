package target

import (
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/scstd/scstd/target/scsi"
)

const prTarget = "iqn.2026-01.test:t1"

// prEnv is one device on LUN 0 with three sessions from different
// initiators (a, b, c), unit attentions consumed.
type prEnv struct {
	core    *Core
	h       *fakeHandler
	a, b, c *Session
}

func newPREnv(t *testing.T, stateDir string) *prEnv {
	t.Helper()
	core := NewCore(Options{StateDir: stateDir})
	h := &fakeHandler{}
	if err := core.AddDevice(&Device{Name: "disk1", Handler: h}); err != nil {
		t.Fatal(err)
	}
	if err := core.AddLUN(DefaultGroup, "disk1", 0, false); err != nil {
		t.Fatal(err)
	}
	e := &prEnv{core: core, h: h}
	e.a = newPRSess(t, core, "iqn.2026-01.test:a", 0x23d000000001)
	e.b = newPRSess(t, core, "iqn.2026-01.test:b", 0x23d000000002)
	e.c = newPRSess(t, core, "iqn.2026-01.test:c", 0)
	return e
}

func newPRSess(t *testing.T, c *Core, ini string, isid uint64) *Session {
	t.Helper()
	s, err := c.NewSession(SessionInfo{Initiator: ini, Target: prTarget, Transport: "iscsi", ISID: isid})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	clearUAs(t, s, 0)
	return s
}

func proutCDB(sa, typ byte, plen uint32) []byte {
	cdb := make([]byte, 10)
	cdb[0] = scsi.OpPersistentReserveOut
	cdb[1] = sa
	cdb[2] = typ
	binary.BigEndian.PutUint32(cdb[5:], plen)
	return cdb
}

func proutParams(key, sark uint64, flags byte) []byte {
	p := make([]byte, 24)
	binary.BigEndian.PutUint64(p[0:], key)
	binary.BigEndian.PutUint64(p[8:], sark)
	p[20] = flags
	return p
}

// runData submits cdb with data-out and waits.
func runData(t *testing.T, s *Session, cdb, data []byte) *result {
	t.Helper()
	c, r := newCmd(0, 0, Simple, cdb...)
	c.Write = len(data) > 0
	c.ExpectedLen = uint32(len(data))
	c.DataOut = data
	s.Submit(c)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		t.Fatal("command did not complete")
	}
	return r
}

func prout(t *testing.T, s *Session, sa, typ byte, key, sark uint64, flags byte) *result {
	t.Helper()
	return runData(t, s, proutCDB(sa, typ, 24), proutParams(key, sark, flags))
}

func prin(t *testing.T, s *Session, sa byte, alloc uint16) *result {
	t.Helper()
	cdb := make([]byte, 10)
	cdb[0] = scsi.OpPersistentReserveIn
	cdb[1] = sa
	binary.BigEndian.PutUint16(cdb[7:], alloc)
	return run(t, s, 0, cdb...)
}

func wantStatus(t *testing.T, what string, r *result, status byte) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: status %#x sense %x, want %#x", what, r.status, r.sense, status)
	}
}

func wantSense(t *testing.T, what string, r *result, key byte, asc scsi.ASC) {
	t.Helper()
	if r.status != scsi.StatusCheckCondition {
		t.Fatalf("%s: status %#x, want CHECK CONDITION %x/%04x", what, r.status, key, asc)
	}
	if k, a := senseKeyASC(t, r.sense); k != key || a != asc {
		t.Fatalf("%s: sense %x/%04x, want %x/%04x", what, k, a, key, asc)
	}
}

func readKeys(t *testing.T, s *Session) (gen uint32, keys []uint64) {
	t.Helper()
	r := prin(t, s, prinReadKeys, 4096)
	wantStatus(t, "READ KEYS", r, scsi.StatusGood)
	gen = binary.BigEndian.Uint32(r.data[0:])
	n := binary.BigEndian.Uint32(r.data[4:])
	if int(n) != len(r.data)-8 {
		t.Fatalf("READ KEYS additional length %d, data %d", n, len(r.data))
	}
	for i := 8; i < len(r.data); i += 8 {
		keys = append(keys, binary.BigEndian.Uint64(r.data[i:]))
	}
	return gen, keys
}

// readResv returns the reservation key and type (typ 0: none).
func readResv(t *testing.T, s *Session) (key uint64, typ byte) {
	t.Helper()
	r := prin(t, s, prinReadReservation, 4096)
	wantStatus(t, "READ RESERVATION", r, scsi.StatusGood)
	switch n := binary.BigEndian.Uint32(r.data[4:]); n {
	case 0:
		return 0, 0
	case 16:
		if r.data[21]>>4 != 0 {
			t.Fatalf("scope %d", r.data[21]>>4)
		}
		return binary.BigEndian.Uint64(r.data[8:]), r.data[21] & 0xf
	default:
		t.Fatalf("READ RESERVATION additional length %d", n)
	}
	return 0, 0
}

func read10() []byte  { return []byte{scsi.OpRead10, 0, 0, 0, 0, 1, 0, 0, 1, 0} }
func write10() []byte { return []byte{scsi.OpWrite10, 0, 0, 0, 0, 1, 0, 0, 1, 0} }

func TestPRRegister(t *testing.T) {
	tests := []struct {
		name        string
		pre         uint64 // key a registered first (0: none)
		sa          byte
		key, sark   uint64
		status      byte
		want        []uint64
		genIncrease bool
	}{
		{"register new", 0, proutRegister, 0, 0xa1, scsi.StatusGood, []uint64{0xa1}, true},
		{"register new with nonzero key", 0, proutRegister, 0x99, 0xa1, scsi.StatusReservationConflict, nil, false},
		{"register zero while unregistered", 0, proutRegister, 0, 0, scsi.StatusGood, nil, false},
		{"ignore zero while unregistered", 0, proutRegisterIgnore, 0x5, 0, scsi.StatusGood, nil, false},
		{"re-register with right key", 0xa1, proutRegister, 0xa1, 0xa2, scsi.StatusGood, []uint64{0xa2}, true},
		{"re-register with wrong key", 0xa1, proutRegister, 0xa9, 0xa2, scsi.StatusReservationConflict, []uint64{0xa1}, false},
		{"unregister", 0xa1, proutRegister, 0xa1, 0, scsi.StatusGood, nil, true},
		{"ignore new", 0, proutRegisterIgnore, 0x77, 0xa1, scsi.StatusGood, []uint64{0xa1}, true},
		{"ignore replaces", 0xa1, proutRegisterIgnore, 0x77, 0xa3, scsi.StatusGood, []uint64{0xa3}, true},
		{"ignore unregisters", 0xa1, proutRegisterIgnore, 0x77, 0, scsi.StatusGood, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newPREnv(t, "")
			if tc.pre != 0 {
				wantStatus(t, "pre", prout(t, e.a, proutRegister, 0, 0, tc.pre, 0), scsi.StatusGood)
			}
			gen0, _ := readKeys(t, e.a)
			wantStatus(t, "PROUT", prout(t, e.a, tc.sa, 0, tc.key, tc.sark, 0), tc.status)
			gen, keys := readKeys(t, e.b)
			if !reflect.DeepEqual(keys, tc.want) {
				t.Fatalf("keys %x, want %x", keys, tc.want)
			}
			if (gen == gen0+1) != tc.genIncrease || gen > gen0+1 {
				t.Fatalf("generation %d -> %d", gen0, gen)
			}
		})
	}
}

// TestPRAccess is the conflict table: a holds the reservation, b is
// registered, c is not.
func TestPRAccess(t *testing.T) {
	const (
		ok = scsi.StatusGood
		rc = scsi.StatusReservationConflict
	)
	modeSense := []byte{scsi.OpModeSense6, 0, 0x3f, 0, 0xff, 0}
	modeSelect := []byte{scsi.OpModeSelect6, 0x10, 0, 0, 0, 0}
	inquiry := []byte{scsi.OpInquiry, 0, 0, 0, 36, 0}
	readCap := []byte{scsi.OpReadCapacity10, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	syncCache := []byte{scsi.OpSynchronizeCache10, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	type want struct{ read, write, modeSense, modeSelect byte }
	tests := []struct {
		typ        byte
		registered want // b
		other      want // c
	}{
		{prWriteExclusive, want{ok, rc, ok, rc}, want{ok, rc, ok, rc}},
		{prExclusiveAccess, want{rc, rc, rc, rc}, want{rc, rc, rc, rc}},
		{prWriteExclusiveRegsOnly, want{ok, ok, ok, ok}, want{ok, rc, ok, rc}},
		{prExclusiveAccessRegOnly, want{ok, ok, ok, ok}, want{rc, rc, rc, rc}},
		{prWriteExclusiveAllRegs, want{ok, ok, ok, ok}, want{ok, rc, ok, rc}},
		{prExclusiveAccessAllRegs, want{ok, ok, ok, ok}, want{rc, rc, rc, rc}},
	}
	for _, tc := range tests {
		t.Run(prTypeName(tc.typ), func(t *testing.T) {
			e := newPREnv(t, "")
			wantStatus(t, "register a", prout(t, e.a, proutRegister, 0, 0, 0xa, 0), ok)
			wantStatus(t, "register b", prout(t, e.b, proutRegister, 0, 0, 0xb, 0), ok)
			wantStatus(t, "reserve", prout(t, e.a, proutReserve, tc.typ, 0xa, 0, 0), ok)
			for _, cdb := range [][]byte{read10(), write10(), modeSense, modeSelect, syncCache} {
				wantStatus(t, "holder", run(t, e.a, 0, cdb...), ok)
			}
			for _, s := range []struct {
				name string
				sess *Session
				w    want
			}{{"registered", e.b, tc.registered}, {"unregistered", e.c, tc.other}} {
				wantStatus(t, s.name+" READ", run(t, s.sess, 0, read10()...), s.w.read)
				wantStatus(t, s.name+" WRITE", run(t, s.sess, 0, write10()...), s.w.write)
				wantStatus(t, s.name+" MODE SENSE", run(t, s.sess, 0, modeSense...), s.w.modeSense)
				wantStatus(t, s.name+" MODE SELECT", run(t, s.sess, 0, modeSelect...), s.w.modeSelect)
				wantStatus(t, s.name+" SYNCHRONIZE CACHE", run(t, s.sess, 0, syncCache...), s.w.write)
				// Never refused: they report state the initiator needs to
				// find out about the reservation.
				for _, cdb := range [][]byte{tur(), inquiry, readCap} {
					wantStatus(t, s.name+" allowed command", run(t, s.sess, 0, cdb...), ok)
				}
				wantStatus(t, s.name+" READ KEYS", prin(t, s.sess, prinReadKeys, 100), ok)
			}
			// Released: everyone has access again.
			wantStatus(t, "release", prout(t, e.a, proutRelease, tc.typ, 0xa, 0, 0), ok)
			wantStatus(t, "write after release", run(t, e.c, 0, write10()...), ok)
		})
	}
}

func prTypeName(t byte) string {
	return map[byte]string{1: "WE", 3: "EA", 5: "WE-RO", 6: "EA-RO", 7: "WE-AR", 8: "EA-AR"}[t]
}

func TestPRReserveRelease(t *testing.T) {
	e := newPREnv(t, "")
	wantStatus(t, "reserve unregistered", prout(t, e.a, proutReserve, prExclusiveAccess, 0, 0, 0), scsi.StatusReservationConflict)
	wantStatus(t, "register a", prout(t, e.a, proutRegister, 0, 0, 0xa, 0), scsi.StatusGood)
	wantStatus(t, "register b", prout(t, e.b, proutRegister, 0, 0, 0xb, 0), scsi.StatusGood)
	gen0, _ := readKeys(t, e.a)
	wantStatus(t, "reserve wrong key", prout(t, e.a, proutReserve, prExclusiveAccess, 0xb, 0, 0), scsi.StatusReservationConflict)
	wantSense(t, "reserve bad type", prout(t, e.a, proutReserve, 2, 0xa, 0, 0), scsi.SenseIllegalRequest, scsi.ASCInvalidFieldInCDB)
	wantSense(t, "reserve element scope", prout(t, e.a, proutReserve, 0x20|prExclusiveAccess, 0xa, 0, 0), scsi.SenseIllegalRequest, scsi.ASCInvalidFieldInCDB)
	wantStatus(t, "reserve", prout(t, e.a, proutReserve, prExclusiveAccess, 0xa, 0, 0), scsi.StatusGood)
	wantStatus(t, "reserve again", prout(t, e.a, proutReserve, prExclusiveAccess, 0xa, 0, 0), scsi.StatusGood)
	wantStatus(t, "reserve other type by holder", prout(t, e.a, proutReserve, prWriteExclusive, 0xa, 0, 0), scsi.StatusReservationConflict)
	wantStatus(t, "reserve by other registrant", prout(t, e.b, proutReserve, prExclusiveAccess, 0xb, 0, 0), scsi.StatusReservationConflict)
	if key, typ := readResv(t, e.c); key != 0xa || typ != prExclusiveAccess {
		t.Fatalf("reservation %x type %d", key, typ)
	}
	wantStatus(t, "release by non-holder is a no-op", prout(t, e.b, proutRelease, prExclusiveAccess, 0xb, 0, 0), scsi.StatusGood)
	if _, typ := readResv(t, e.c); typ != prExclusiveAccess {
		t.Fatal("non-holder released the reservation")
	}
	wantSense(t, "release with wrong type", prout(t, e.a, proutRelease, prWriteExclusive, 0xa, 0, 0),
		scsi.SenseIllegalRequest, scsi.ASCInvalidReleaseOfPersistentReservation)
	wantStatus(t, "release", prout(t, e.a, proutRelease, prExclusiveAccess, 0xa, 0, 0), scsi.StatusGood)
	wantStatus(t, "release when not reserved", prout(t, e.a, proutRelease, prExclusiveAccess, 0xa, 0, 0), scsi.StatusGood)
	if _, typ := readResv(t, e.c); typ != 0 {
		t.Fatal("still reserved")
	}
	if gen, _ := readKeys(t, e.a); gen != gen0 {
		t.Fatalf("RESERVE/RELEASE changed the generation %d -> %d", gen0, gen)
	}
	// WE and EA releases give no unit attention; none is pending.
	if uas := pendingUAs(t, e.b, 0); len(uas) != 0 {
		t.Fatalf("b got %04x", uas)
	}
}

func TestPRReleaseUnitAttentions(t *testing.T) {
	for _, typ := range []byte{prWriteExclusive, prExclusiveAccess, prWriteExclusiveRegsOnly,
		prExclusiveAccessRegOnly, prWriteExclusiveAllRegs, prExclusiveAccessAllRegs} {
		for _, how := range []string{"release", "unregister"} {
			t.Run(prTypeName(typ)+" "+how, func(t *testing.T) {
				e := newPREnv(t, "")
				prout(t, e.a, proutRegister, 0, 0, 0xa, 0)
				prout(t, e.b, proutRegister, 0, 0, 0xb, 0)
				wantStatus(t, "reserve", prout(t, e.a, proutReserve, typ, 0xa, 0, 0), scsi.StatusGood)
				if how == "release" {
					wantStatus(t, how, prout(t, e.a, proutRelease, typ, 0xa, 0, 0), scsi.StatusGood)
				} else {
					wantStatus(t, how, prout(t, e.a, proutRegister, 0, 0xa, 0, 0), scsi.StatusGood)
				}
				var want []scsi.ASC
				stillReserved := how == "unregister" && allRegistrantsType(typ)
				switch {
				case stillReserved:
					// b still holds the all-registrants reservation.
				case how == "release" && registrantsType(typ),
					how == "unregister" && registrantsType(typ):
					want = []scsi.ASC{scsi.ASCReservationsReleased}
				}
				if got := pendingUAs(t, e.b, 0); !reflect.DeepEqual(got, want) {
					t.Fatalf("b: UAs %04x, want %04x", got, want)
				}
				if got := pendingUAs(t, e.a, 0); len(got) != 0 {
					t.Fatalf("a (the requester) got %04x", got)
				}
				if got := pendingUAs(t, e.c, 0); len(got) != 0 {
					t.Fatalf("c (unregistered) got %04x", got)
				}
				_, rtyp := readResv(t, e.a)
				if (rtyp != 0) != stillReserved {
					t.Fatalf("reservation type %d after %s", rtyp, how)
				}
				if stillReserved {
					wantStatus(t, "b releases", prout(t, e.b, proutRelease, typ, 0xb, 0, 0), scsi.StatusGood)
				}
			})
		}
	}
}

func TestPRClear(t *testing.T) {
	e := newPREnv(t, "")
	prout(t, e.a, proutRegister, 0, 0, 0xa, 0)
	prout(t, e.b, proutRegister, 0, 0, 0xb, 0)
	wantStatus(t, "clear unregistered", prout(t, e.c, proutClear, 0, 0, 0, 0), scsi.StatusReservationConflict)
	wantStatus(t, "clear wrong key", prout(t, e.a, proutClear, 0, 0xb, 0, 0), scsi.StatusReservationConflict)
	wantStatus(t, "reserve", prout(t, e.b, proutReserve, prExclusiveAccess, 0xb, 0, 0), scsi.StatusGood)
	gen0, _ := readKeys(t, e.a)
	wantStatus(t, "clear", prout(t, e.a, proutClear, prExclusiveAccess, 0xa, 0, 0), scsi.StatusGood)
	gen, keys := readKeys(t, e.a)
	if len(keys) != 0 || gen != gen0+1 {
		t.Fatalf("after CLEAR gen %d->%d keys %x", gen0, gen, keys)
	}
	if _, typ := readResv(t, e.a); typ != 0 {
		t.Fatal("reservation survived CLEAR")
	}
	if got := pendingUAs(t, e.b, 0); !reflect.DeepEqual(got, []scsi.ASC{scsi.ASCReservationsPreempted}) {
		t.Fatalf("b: %04x", got)
	}
	if got := pendingUAs(t, e.c, 0); len(got) != 0 {
		t.Fatalf("c: %04x", got)
	}
}

func TestPRPreempt(t *testing.T) {
	type check struct {
		keys []uint64
		typ  byte
		key  uint64 // reservation key
		uaB  []scsi.ASC
		uaC  []scsi.ASC
	}
	tests := []struct {
		name   string
		resv   byte   // type b reserves first (0: none)
		typ    byte   // PREEMPT type
		sark   uint64 // a preempts with key 0xa
		status byte
		sense  scsi.ASC
		want   check
	}{
		{"registrations only", 0, prExclusiveAccess, 0xb, scsi.StatusGood, 0,
			check{keys: []uint64{0xa, 0xc}, uaB: []scsi.ASC{scsi.ASCRegistrationsPreempted}}},
		{"no reservation, zero key", 0, prExclusiveAccess, 0, scsi.StatusCheckCondition, scsi.ASCInvalidFieldInParameterList,
			check{keys: []uint64{0xa, 0xb, 0xc}}},
		{"no reservation, unknown key", 0, prExclusiveAccess, 0x99, scsi.StatusReservationConflict, 0,
			check{keys: []uint64{0xa, 0xb, 0xc}}},
		{"holder, same type", prExclusiveAccess, prExclusiveAccess, 0xb, scsi.StatusGood, 0,
			check{keys: []uint64{0xa, 0xc}, typ: prExclusiveAccess, key: 0xa, uaB: []scsi.ASC{scsi.ASCRegistrationsPreempted}}},
		{"holder, new type", prExclusiveAccess, prWriteExclusive, 0xb, scsi.StatusGood, 0,
			check{keys: []uint64{0xa, 0xc}, typ: prWriteExclusive, key: 0xa,
				uaB: []scsi.ASC{scsi.ASCRegistrationsPreempted}, uaC: []scsi.ASC{scsi.ASCReservationsReleased}}},
		{"non-holder key keeps reservation", prExclusiveAccess, prExclusiveAccess, 0xc, scsi.StatusGood, 0,
			check{keys: []uint64{0xa, 0xb}, typ: prExclusiveAccess, key: 0xb, uaC: []scsi.ASC{scsi.ASCRegistrationsPreempted}}},
		{"reservation, zero key", prExclusiveAccess, prExclusiveAccess, 0, scsi.StatusCheckCondition, scsi.ASCInvalidFieldInParameterList,
			check{keys: []uint64{0xa, 0xb, 0xc}, typ: prExclusiveAccess, key: 0xb}},
		{"all registrants, zero key", prExclusiveAccessAllRegs, prWriteExclusive, 0, scsi.StatusGood, 0,
			check{keys: []uint64{0xa}, typ: prWriteExclusive, key: 0xa,
				uaB: []scsi.ASC{scsi.ASCRegistrationsPreempted}, uaC: []scsi.ASC{scsi.ASCRegistrationsPreempted}}},
		{"all registrants, one key", prExclusiveAccessAllRegs, prWriteExclusive, 0xc, scsi.StatusGood, 0,
			check{keys: []uint64{0xa, 0xb}, typ: prExclusiveAccessAllRegs, uaC: []scsi.ASC{scsi.ASCRegistrationsPreempted}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newPREnv(t, "")
			prout(t, e.a, proutRegister, 0, 0, 0xa, 0)
			prout(t, e.b, proutRegister, 0, 0, 0xb, 0)
			prout(t, e.c, proutRegister, 0, 0, 0xc, 0)
			if tc.resv != 0 {
				wantStatus(t, "reserve", prout(t, e.b, proutReserve, tc.resv, 0xb, 0, 0), scsi.StatusGood)
			}
			gen0, _ := readKeys(t, e.a)
			r := prout(t, e.a, proutPreempt, tc.typ, 0xa, tc.sark, 0)
			if tc.status == scsi.StatusCheckCondition {
				wantSense(t, "PREEMPT", r, scsi.SenseIllegalRequest, tc.sense)
			} else {
				wantStatus(t, "PREEMPT", r, tc.status)
			}
			gen, keys := readKeys(t, e.a)
			if !reflect.DeepEqual(keys, tc.want.keys) {
				t.Fatalf("keys %x, want %x", keys, tc.want.keys)
			}
			if wantGen := gen0 + map[bool]uint32{true: 1}[tc.status == scsi.StatusGood]; gen != wantGen {
				t.Fatalf("generation %d, want %d", gen, wantGen)
			}
			if key, typ := readResv(t, e.a); key != tc.want.key || typ != tc.want.typ {
				t.Fatalf("reservation key %x type %d, want %x %d", key, typ, tc.want.key, tc.want.typ)
			}
			if got := pendingUAs(t, e.b, 0); !reflect.DeepEqual(got, tc.want.uaB) {
				t.Fatalf("b UAs %04x, want %04x", got, tc.want.uaB)
			}
			if got := pendingUAs(t, e.c, 0); !reflect.DeepEqual(got, tc.want.uaC) {
				t.Fatalf("c UAs %04x, want %04x", got, tc.want.uaC)
			}
			if got := pendingUAs(t, e.a, 0); len(got) != 0 {
				t.Fatalf("a UAs %04x", got)
			}
		})
	}
}

// waitAborted waits until the parked command with tag is marked aborted.
func waitAborted(t *testing.T, h *fakeHandler, tag uint32) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.mu.Lock()
		var c *Command
		for _, p := range h.parked {
			if p.Tag == tag {
				c = p
			}
		}
		h.mu.Unlock()
		if c != nil {
			nx := c.core.nx
			nx.mu.Lock()
			ab := c.core.aborted
			nx.mu.Unlock()
			if ab {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("tag %d never aborted", tag)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestPRPreemptAndAbort(t *testing.T) {
	e := newPREnv(t, "")
	prout(t, e.a, proutRegister, 0, 0, 0xa, 0)
	prout(t, e.b, proutRegister, 0, 0, 0xb, 0)
	wantStatus(t, "reserve", prout(t, e.b, proutReserve, prWriteExclusive, 0xb, 0, 0), scsi.StatusGood)
	e.h.mu.Lock()
	e.h.block = true
	e.h.mu.Unlock()
	// b and c have a command executing; only b is preempted.
	cb, rb := newCmd(0, 7, Simple, read10()...)
	e.b.Submit(cb)
	cc, rc := newCmd(0, 8, Simple, read10()...)
	e.c.Submit(cc)
	waitParked(t, e.h, 2)

	paa := make(chan *result, 1)
	go func() {
		c, r := newCmd(0, 9, Simple, proutCDB(proutPreemptAbort, prExclusiveAccess, 24)...)
		c.Write, c.ExpectedLen, c.DataOut = true, 24, proutParams(0xa, 0xb, 0)
		e.a.Submit(c)
		<-r.done
		paa <- r
	}()
	waitAborted(t, e.h, 7)
	select {
	case <-paa:
		t.Fatal("PREEMPT AND ABORT completed before the aborted task")
	case <-time.After(20 * time.Millisecond):
	}
	e.h.release(t, 7)
	r := <-paa
	wantStatus(t, "PREEMPT AND ABORT", r, scsi.StatusGood)
	<-rb.done
	if !rb.aborted {
		t.Fatal("b's task was not aborted")
	}
	if rc.isDone() {
		t.Fatal("c's task was aborted")
	}
	e.h.release(t, 8)
	<-rc.done
	if rc.aborted {
		t.Fatal("c's task reported aborted")
	}
	e.h.mu.Lock()
	e.h.block = false
	e.h.mu.Unlock()
	if got := pendingUAs(t, e.b, 0); !reflect.DeepEqual(got, []scsi.ASC{scsi.ASCRegistrationsPreempted}) {
		t.Fatalf("b UAs %04x", got)
	}
	if key, typ := readResv(t, e.a); key != 0xa || typ != prExclusiveAccess {
		t.Fatalf("reservation %x/%d", key, typ)
	}
}

func TestPRPreemptAndAbortSelf(t *testing.T) {
	// Preempting one's own key must not abort (and wait for) the command
	// doing it.
	e := newPREnv(t, "")
	prout(t, e.a, proutRegister, 0, 0, 0xa, 0)
	prout(t, e.b, proutRegister, 0, 0, 0xa, 0) // same key on b
	wantStatus(t, "reserve", prout(t, e.a, proutReserve, prExclusiveAccess, 0xa, 0, 0), scsi.StatusGood)
	wantStatus(t, "PREEMPT AND ABORT own key", prout(t, e.a, proutPreemptAbort, prWriteExclusive, 0xa, 0xa, 0), scsi.StatusGood)
	if _, keys := readKeys(t, e.a); !reflect.DeepEqual(keys, []uint64{0xa}) {
		t.Fatalf("keys %x", keys)
	}
	if key, typ := readResv(t, e.a); key != 0xa || typ != prWriteExclusive {
		t.Fatalf("reservation %x/%d", key, typ)
	}
	if got := pendingUAs(t, e.b, 0); !reflect.DeepEqual(got, []scsi.ASC{scsi.ASCRegistrationsPreempted}) {
		t.Fatalf("b UAs %04x", got)
	}
	wantStatus(t, "b lost its registration", prout(t, e.b, proutReserve, prWriteExclusive, 0xa, 0, 0), scsi.StatusReservationConflict)
}

func TestPRRegisterAndMove(t *testing.T) {
	e := newPREnv(t, "")
	prout(t, e.a, proutRegister, 0, 0, 0xa, 0)
	port := e.core.ports.id(prTarget)
	ram := func(s *Session, key, sark uint64, name string, isid uint64, rel uint16, unreg bool) *result {
		tid := appendTransportID(nil, name, isid)
		p := make([]byte, 24, 24+len(tid))
		binary.BigEndian.PutUint64(p[0:], key)
		binary.BigEndian.PutUint64(p[8:], sark)
		if unreg {
			p[17] = 0x02
		}
		binary.BigEndian.PutUint16(p[18:], rel)
		binary.BigEndian.PutUint32(p[20:], uint32(len(tid)))
		p = append(p, tid...)
		return runData(t, s, proutCDB(proutRegisterMove, 0, uint32(len(p))), p)
	}
	bName := "iqn.2026-01.test:b"
	wantStatus(t, "move without reservation", ram(e.a, 0xa, 0xb, bName, 0x23d000000002, port, false), scsi.StatusReservationConflict)
	wantStatus(t, "reserve", prout(t, e.a, proutReserve, prExclusiveAccess, 0xa, 0, 0), scsi.StatusGood)
	wantSense(t, "move to unknown port", ram(e.a, 0xa, 0xb, bName, 0x23d000000002, port+5, false),
		scsi.SenseIllegalRequest, scsi.ASCInvalidFieldInParameterList)
	wantSense(t, "move to self", ram(e.a, 0xa, 0xb, "iqn.2026-01.test:a", 0x23d000000001, port, false),
		scsi.SenseIllegalRequest, scsi.ASCInvalidFieldInParameterList)
	wantSense(t, "zero key", ram(e.a, 0xa, 0, bName, 0x23d000000002, port, false),
		scsi.SenseIllegalRequest, scsi.ASCInvalidFieldInParameterList)
	wantStatus(t, "move from non-holder", ram(e.c, 0, 0xb, bName, 0x23d000000002, port, false), scsi.StatusReservationConflict)
	wantStatus(t, "move", ram(e.a, 0xa, 0xb, bName, 0x23d000000002, port, true), scsi.StatusGood)
	if key, typ := readResv(t, e.c); key != 0xb || typ != prExclusiveAccess {
		t.Fatalf("reservation %x/%d", key, typ)
	}
	if _, keys := readKeys(t, e.c); !reflect.DeepEqual(keys, []uint64{0xb}) {
		t.Fatalf("keys %x (UNREG should have removed a)", keys)
	}
	wantStatus(t, "b is the holder", run(t, e.b, 0, write10()...), scsi.StatusGood)
	wantStatus(t, "a lost access", run(t, e.a, 0, write10()...), scsi.StatusReservationConflict)
	// A parameter list whose TransportID length disagrees.
	bad := proutParams(0xb, 0xc, 0)
	binary.BigEndian.PutUint32(bad[20:], 8)
	wantSense(t, "length mismatch", runData(t, e.b, proutCDB(proutRegisterMove, 0, 24), bad),
		scsi.SenseIllegalRequest, scsi.ASCParameterListLengthError)
}

func TestPRParameterChecks(t *testing.T) {
	e := newPREnv(t, "")
	for _, plen := range []uint32{0, 23, 25, 48} {
		data := make([]byte, plen)
		wantSense(t, "length", runData(t, e.a, proutCDB(proutRegister, 0, plen), data),
			scsi.SenseIllegalRequest, scsi.ASCParameterListLengthError)
	}
	// Fewer bytes arrived than the CDB announced.
	wantSense(t, "short data", runData(t, e.a, proutCDB(proutRegister, 0, 24), make([]byte, 10)),
		scsi.SenseIllegalRequest, scsi.ASCParameterListLengthError)
	wantSense(t, "SPEC_I_PT without TransportIDs", prout(t, e.a, proutRegister, 0, 0, 0xa, 0x08),
		scsi.SenseIllegalRequest, scsi.ASCParameterListLengthError)
	wantSense(t, "SPEC_I_PT on REGISTER AND IGNORE", prout(t, e.a, proutRegisterIgnore, 0, 0, 0xa, 0x08),
		scsi.SenseIllegalRequest, scsi.ASCInvalidFieldInParameterList)
	wantSense(t, "APTPL without a state directory", prout(t, e.a, proutRegister, 0, 0, 0xa, 0x01),
		scsi.SenseIllegalRequest, scsi.ASCInvalidFieldInParameterList)
	wantSense(t, "PROUT SA 8", prout(t, e.a, 8, 0, 0, 0xa, 0), scsi.SenseIllegalRequest, scsi.ASCInvalidFieldInCDB)
	for sa := byte(4); sa < 0x20; sa++ {
		wantSense(t, "PRIN SA", prin(t, e.a, sa, 100), scsi.SenseIllegalRequest, scsi.ASCInvalidFieldInCDB)
	}
	if _, keys := readKeys(t, e.a); len(keys) != 0 {
		t.Fatalf("failed commands registered %x", keys)
	}
}

func TestPRINFormats(t *testing.T) {
	e := newPREnv(t, t.TempDir())
	prout(t, e.a, proutRegister, 0, 0, 0xa, 0x01) // APTPL
	prout(t, e.c, proutRegister, 0, 0, 0xc, 0x04) // ALL_TG_PT, APTPL off again
	wantStatus(t, "reserve", prout(t, e.a, proutReserve, prWriteExclusiveRegsOnly, 0xa, 0, 0), scsi.StatusGood)

	r := prin(t, e.a, prinReportCapabilities, 100)
	wantStatus(t, "REPORT CAPABILITIES", r, scsi.StatusGood)
	wantCaps := []byte{0, 8, 0x1d, 0xb0, 0xea, 0x01, 0, 0}
	if !reflect.DeepEqual(r.data, wantCaps) {
		t.Fatalf("capabilities %x, want %x", r.data, wantCaps)
	}

	r = prin(t, e.b, prinReadFullStatus, 4096)
	wantStatus(t, "READ FULL STATUS", r, scsi.StatusGood)
	d := r.data
	if n := binary.BigEndian.Uint32(d[4:]); int(n) != len(d)-8 {
		t.Fatalf("additional length %d of %d", n, len(d))
	}
	type desc struct {
		key     uint64
		flags   byte
		typ     byte
		rel     uint16
		name    string
		isid    uint64
		tidByte byte
	}
	var got []desc
	for off := 8; off < len(d); {
		tl := int(binary.BigEndian.Uint32(d[off+20:]))
		if tl%4 != 0 || tl < 24 {
			t.Fatalf("TransportID length %d", tl)
		}
		name, isid, n, err := parseTransportID(d[off+24 : off+24+tl])
		if err != nil || n != tl {
			t.Fatalf("TransportID %q: %v", d[off+24:off+24+tl], err)
		}
		got = append(got, desc{binary.BigEndian.Uint64(d[off:]), d[off+12], d[off+13],
			binary.BigEndian.Uint16(d[off+18:]), name, isid, d[off+24]})
		off += 24 + tl
	}
	port := e.core.ports.id(prTarget)
	want := []desc{
		{0xa, 0x01, prWriteExclusiveRegsOnly, port, "iqn.2026-01.test:a", 0x23d000000001, 0x45},
		{0xc, 0x02, 0, 0, "iqn.2026-01.test:c", 0, 0x05},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("full status %+v\nwant %+v", got, want)
	}
	// Truncation keeps the lengths of the full answer.
	r = prin(t, e.b, prinReadKeys, 8)
	if len(r.data) != 8 || binary.BigEndian.Uint32(r.data[4:]) != 16 {
		t.Fatalf("truncated READ KEYS %x", r.data)
	}
	if r = prin(t, e.b, prinReadKeys, 0); len(r.data) != 0 || r.status != scsi.StatusGood {
		t.Fatalf("zero allocation: %x %#x", r.data, r.status)
	}
}

func TestPRRegistrationsSurviveReconnect(t *testing.T) {
	e := newPREnv(t, "")
	prout(t, e.a, proutRegister, 0, 0, 0xa, 0)
	wantStatus(t, "reserve", prout(t, e.a, proutReserve, prExclusiveAccess, 0xa, 0, 0), scsi.StatusGood)
	e.a.Close()
	wantStatus(t, "others still refused", run(t, e.b, 0, read10()...), scsi.StatusReservationConflict)
	a2 := newPRSess(t, e.core, "iqn.2026-01.test:a", 0x23d000000001)
	wantStatus(t, "same I_T nexus is the holder again", run(t, a2, 0, write10()...), scsi.StatusGood)
	// Another ISID of the same initiator is another I_T nexus.
	a3 := newPRSess(t, e.core, "iqn.2026-01.test:a", 0x23d000000009)
	wantStatus(t, "other ISID refused", run(t, a3, 0, read10()...), scsi.StatusReservationConflict)
	// CHAP sessions are named user@initiator for group matching; the
	// reservation code sees the initiator port.
	a4 := newPRSess(t, e.core, "chapuser@iqn.2026-01.test:a", 0x23d000000001)
	wantStatus(t, "CHAP-named session", run(t, a4, 0, write10()...), scsi.StatusGood)
}

func TestPRPersistence(t *testing.T) {
	dir := t.TempDir()
	e := newPREnv(t, dir)
	wantStatus(t, "register APTPL", prout(t, e.a, proutRegister, 0, 0, 0xa, 0x01), scsi.StatusGood)
	prout(t, e.b, proutRegister, 0, 0, 0xb, 0x05) // APTPL, ALL_TG_PT
	wantStatus(t, "reserve", prout(t, e.a, proutReserve, prExclusiveAccess, 0xa, 0, 0), scsi.StatusGood)
	gen, _ := readKeys(t, e.a)

	// A new core on the same state directory: a daemon restart.
	e2 := newPREnv(t, dir)
	if key, typ := readResv(t, e2.c); key != 0xa || typ != prExclusiveAccess {
		t.Fatalf("after restart: reservation %x/%d", key, typ)
	}
	g2, keys := readKeys(t, e2.c)
	if g2 != gen || !reflect.DeepEqual(keys, []uint64{0xa, 0xb}) {
		t.Fatalf("after restart: gen %d keys %x, want %d [a b]", g2, keys, gen)
	}
	wantStatus(t, "holder writes", run(t, e2.a, 0, write10()...), scsi.StatusGood)
	wantStatus(t, "other refused", run(t, e2.b, 0, write10()...), scsi.StatusReservationConflict)
	r := prin(t, e2.a, prinReportCapabilities, 8)
	if r.data[3]&0x01 == 0 {
		t.Fatal("PTPL_A not set after restore")
	}

	// APTPL off: the state is not kept.
	wantStatus(t, "re-register without APTPL", prout(t, e2.a, proutRegister, 0, 0xa, 0xa1, 0), scsi.StatusGood)
	e3 := newPREnv(t, dir)
	if _, keys := readKeys(t, e3.a); len(keys) != 0 {
		t.Fatalf("state kept without APTPL: %x", keys)
	}
	if _, typ := readResv(t, e3.a); typ != 0 {
		t.Fatal("reservation kept without APTPL")
	}
}

func TestPRRestoreRejectsDamagedFile(t *testing.T) {
	dir := t.TempDir()
	e := newPREnv(t, dir)
	prout(t, e.a, proutRegister, 0, 0, 0xa, 0x01)
	path, _ := prPath(dir, "disk1")
	writeFile(t, path, "scstd-pr 1\ngeneration 3\nreservation 3\nregistrant a 0 - \"t\" \"i\"\n") // no holder
	e2 := newPREnv(t, dir)
	if _, keys := readKeys(t, e2.a); len(keys) != 0 {
		t.Fatalf("damaged state restored: %x", keys)
	}
}

// BenchmarkSubmitUnderReservation: a WRITE from a registrant of a
// registrants-only reservation, the data path's slowest reservation case.
func BenchmarkSubmitUnderReservation(b *testing.B) {
	core := NewCore(Options{})
	if err := core.AddDevice(&Device{Name: "d", Handler: nopHandler{}}); err != nil {
		b.Fatal(err)
	}
	if err := core.AddLUN(DefaultGroup, "d", 0, false); err != nil {
		b.Fatal(err)
	}
	var sessions []*Session
	for _, ini := range []string{"iqn.x:a", "iqn.x:b"} {
		s, err := core.NewSession(SessionInfo{Initiator: ini, Target: "t", ISID: 1})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(s.Close)
		sessions = append(sessions, s)
	}
	var status byte
	submit := func(s *Session, cdb, data []byte) byte {
		cmd := &Command{CDB: cdb, Attr: Simple, DataOut: data, Done: func(c *Command) { status = c.Status }}
		for i := 0; i < 3; i++ { // past the POWER ON unit attention
			s.Submit(cmd)
			if status != scsi.StatusCheckCondition {
				break
			}
		}
		return status
	}
	a, bs := sessions[0], sessions[1]
	if submit(a, proutCDB(proutRegister, 0, 24), proutParams(0, 0xa, 0)) != scsi.StatusGood ||
		submit(bs, proutCDB(proutRegister, 0, 24), proutParams(0, 0xb, 0)) != scsi.StatusGood ||
		submit(a, proutCDB(proutReserve, prWriteExclusiveRegsOnly, 24), proutParams(0xa, 0, 0)) != scsi.StatusGood {
		b.Fatal("setup failed")
	}
	cmd := &Command{CDB: write10(), Attr: Simple, Done: func(c *Command) { status = c.Status }}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bs.Submit(cmd)
	}
	b.StopTimer()
	if status != scsi.StatusGood {
		b.Fatalf("status %#x", status)
	}
}

func TestPRRegistrationLimit(t *testing.T) {
	var d prData
	for i := 0; i < maxRegistrants; i++ {
		d.regs = append(d.regs, registrant{key: uint64(i + 1), name: "iqn.x:i", isid: uint64(i + 1), target: prTarget})
	}
	r := proutReq{sa: proutRegisterIgnore, sark: 0x77}
	_, err := applyPROUT(&d, &r, nexusID{"iqn.x:new", 5, prTarget}, &portTable{}, false)
	var pe *prErr
	if !errorsAs(err, &pe) || pe.sense.ASC != scsi.ASCInsufficientRegistrationResources {
		t.Fatalf("err %v", err)
	}
	// An existing registrant can still change its key.
	if _, err := applyPROUT(&d, &r, nexusID{"iqn.x:i", 3, prTarget}, &portTable{}, false); err != nil {
		t.Fatal(err)
	}
}

func TestPRAllTargetPorts(t *testing.T) {
	e := newPREnv(t, "")
	other := func(ini string, isid uint64) *Session {
		s, err := e.core.NewSession(SessionInfo{Initiator: ini, Target: "iqn.2026-01.test:t2", ISID: isid})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		clearUAs(t, s, 0)
		return s
	}
	prout(t, e.a, proutRegister, 0, 0, 0xa, 0x04) // ALL_TG_PT
	prout(t, e.b, proutRegister, 0, 0, 0xb, 0)
	a2 := other("iqn.2026-01.test:a", 0x23d000000001)
	b2 := other("iqn.2026-01.test:b", 0x23d000000002)
	// a is registered through every target port, b only through t1.
	if r := prout(t, a2, proutReserve, prExclusiveAccess, 0xa, 0, 0); r.status != scsi.StatusGood {
		t.Fatalf("a via t2: %#x", r.status)
	}
	if r := prout(t, b2, proutRelease, prExclusiveAccess, 0xb, 0, 0); r.status != scsi.StatusReservationConflict {
		t.Fatalf("b via t2: %#x", r.status)
	}
	wantStatus(t, "a via t1 holds it too", run(t, e.a, 0, write10()...), scsi.StatusGood)
}

func errorsAs(err error, pe **prErr) bool { return errors.As(err, pe) }

// specIPT builds a REGISTER parameter list with SPEC_I_PT and TransportIDs.
func specIPT(key, sark uint64, flags byte, ports ...tidPort) []byte {
	p := proutParams(key, sark, flags|0x08)
	var tids []byte
	for _, pt := range ports {
		tids = appendTransportID(tids, pt.name, pt.isid)
	}
	p = binary.BigEndian.AppendUint32(p, uint32(len(tids)))
	return append(p, tids...)
}

func TestPRSpecifyInitiatorPorts(t *testing.T) {
	e := newPREnv(t, "")
	reg := func(s *Session, data []byte) *result {
		return runData(t, s, proutCDB(proutRegister, 0, uint32(len(data))), data)
	}
	b := tidPort{"iqn.2026-01.test:b", 0x23d000000002}
	c := tidPort{"iqn.2026-01.test:c", 0}
	self := tidPort{"iqn.2026-01.test:a", 0x23d000000001}
	// A TransportID list whose length disagrees with the parameter list.
	bad := specIPT(0, 0xa, 0, b)
	binary.BigEndian.PutUint32(bad[24:], 4)
	wantSense(t, "length mismatch", reg(e.a, bad), scsi.SenseIllegalRequest, scsi.ASCParameterListLengthError)
	wantSense(t, "port named twice", reg(e.a, specIPT(0, 0xa, 0, b, b)),
		scsi.SenseIllegalRequest, scsi.ASCInvalidFieldInParameterList)
	garbled := specIPT(0, 0xa, 0, b)
	garbled[28] = 0x06 // not iSCSI
	wantSense(t, "bad TransportID", reg(e.a, garbled), scsi.SenseIllegalRequest, scsi.ASCInvalidFieldInParameterList)
	if _, keys := readKeys(t, e.a); len(keys) != 0 {
		t.Fatalf("failed SPEC_I_PT registered %x", keys)
	}
	gen0, _ := readKeys(t, e.a)
	wantStatus(t, "SPEC_I_PT", reg(e.a, specIPT(0, 0xa, 0, self, b, c)), scsi.StatusGood)
	gen, keys := readKeys(t, e.a)
	if gen != gen0+1 || !reflect.DeepEqual(keys, []uint64{0xa, 0xa, 0xa}) {
		t.Fatalf("gen %d->%d keys %x", gen0, gen, keys)
	}
	// b and c are registered: they may reserve with the key.
	wantStatus(t, "c reserves", prout(t, e.c, proutReserve, prWriteExclusive, 0xa, 0, 0), scsi.StatusGood)
	wantStatus(t, "c releases", prout(t, e.c, proutRelease, prWriteExclusive, 0xa, 0, 0), scsi.StatusGood)
	wantStatus(t, "b changes its key", prout(t, e.b, proutRegister, 0, 0xa, 0xb, 0), scsi.StatusGood)
	wantSense(t, "SPEC_I_PT from a registered nexus", reg(e.a, specIPT(0xa, 0xa1, 0, c)),
		scsi.SenseIllegalRequest, scsi.ASCInvalidFieldInCDB)
	// A new registrant naming an already registered port: nothing is made.
	d := newPRSess(t, e.core, "iqn.2026-01.test:d", 0x23d000000004)
	wantSense(t, "already registered", reg(d, specIPT(0, 0xd, 0, b)),
		scsi.SenseIllegalRequest, scsi.ASCInvalidFieldInParameterList)
	if _, keys := readKeys(t, d); len(keys) != 3 {
		t.Fatalf("keys %x", keys)
	}
}

// TestPRConcurrent runs reservation changes (PREEMPT AND ABORT included)
// from several sessions against I/O on all of them: no deadlock, every
// command completes, and the state stays consistent.
func TestPRConcurrent(t *testing.T) {
	core := NewCore(Options{})
	if err := core.AddDevice(&Device{Name: "d", Handler: asyncHandler{}}); err != nil {
		t.Fatal(err)
	}
	if err := core.AddLUN(DefaultGroup, "d", 0, false); err != nil {
		t.Fatal(err)
	}
	const n = 4
	sess := make([]*Session, n)
	for i := range sess {
		sess[i] = newPRSess(t, core, "iqn.x:"+string(rune('a'+i)), uint64(i+1))
	}
	deadline := time.Now().Add(300 * time.Millisecond)
	done := make(chan struct{})
	for i, s := range sess {
		go func() {
			defer func() { done <- struct{}{} }()
			key := uint64(i + 1)
			for j := 0; time.Now().Before(deadline); j++ {
				var cdb, data []byte
				switch j % 6 {
				case 0:
					cdb, data = proutCDB(proutRegisterIgnore, 0, 24), proutParams(0, key, 0)
				case 1:
					cdb, data = proutCDB(proutReserve, byte([]byte{1, 3, 5, 6, 7, 8}[j%6]), 24), proutParams(key, 0, 0)
				case 2:
					cdb, data = proutCDB(proutPreemptAbort, prExclusiveAccess, 24), proutParams(key, uint64((i+1)%n+1), 0)
				case 3:
					cdb, data = proutCDB(proutRelease, prExclusiveAccess, 24), proutParams(key, 0, 0)
				case 4:
					cdb = reserve6()
				default:
					cdb = release6()
				}
				// Concurrent I/O that PREEMPT AND ABORT may abort.
				c, r := newCmd(0, uint32(j), Simple, write10()...)
				s.Submit(c)
				runData(t, s, cdb, data)
				select {
				case <-r.done:
				case <-time.After(10 * time.Second):
					t.Error("I/O never completed")
					return
				}
			}
		}()
	}
	for range sess {
		<-done
	}
	d := core.Device("d")
	d.pr.mu.Lock()
	data := d.pr.data.clone()
	d.pr.mu.Unlock()
	checkInvariants(t, &data)
}

func TestPRRegisterAndMoveByName(t *testing.T) {
	e := newPREnv(t, "")
	prout(t, e.a, proutRegister, 0, 0, 0xa, 0)
	wantStatus(t, "reserve", prout(t, e.a, proutReserve, prWriteExclusive, 0xa, 0, 0), scsi.StatusGood)
	// Format 00b names the initiator, not one of its ports: every ISID of
	// c is the new holder. UNREG is clear, so a stays registered.
	tid := appendTransportID(nil, "iqn.2026-01.test:c", 0)
	p := proutParams(0xa, 0xc, 0)
	binary.BigEndian.PutUint16(p[18:], e.core.ports.id(prTarget))
	binary.BigEndian.PutUint32(p[20:], uint32(len(tid)))
	p = append(p, tid...)
	wantStatus(t, "move", runData(t, e.a, proutCDB(proutRegisterMove, 0, uint32(len(p))), p), scsi.StatusGood)
	if _, keys := readKeys(t, e.b); !reflect.DeepEqual(keys, []uint64{0xa, 0xc}) {
		t.Fatalf("keys %x", keys)
	}
	c2 := newPRSess(t, e.core, "iqn.2026-01.test:c", 0x23d000000077)
	wantStatus(t, "c via another ISID writes", run(t, c2, 0, write10()...), scsi.StatusGood)
	wantStatus(t, "a no longer holds it", run(t, e.a, 0, write10()...), scsi.StatusReservationConflict)
	wantStatus(t, "a is still registered", prout(t, e.a, proutRegister, 0, 0xa, 0xa2, 0), scsi.StatusGood)
}
