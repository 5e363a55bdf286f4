package target

import (
	"reflect"
	"testing"

	"github.com/scstd/scstd/target/scsi"
)

func reserve6() []byte  { return []byte{scsi.OpReserve6, 0, 0, 0, 0, 0} }
func release6() []byte  { return []byte{scsi.OpRelease6, 0, 0, 0, 0, 0} }
func reserve10() []byte { return []byte{scsi.OpReserve10, 0, 0, 0, 0, 0, 0, 0, 0, 0} }
func release10() []byte { return []byte{scsi.OpRelease10, 0, 0, 0, 0, 0, 0, 0, 0, 0} }

func TestSPC2ReserveRelease(t *testing.T) {
	const (
		ok = scsi.StatusGood
		rc = scsi.StatusReservationConflict
	)
	for _, v := range []struct {
		name             string
		reserve, release []byte
	}{{"6", reserve6(), release6()}, {"10", reserve10(), release10()}} {
		t.Run(v.name, func(t *testing.T) {
			e := newPREnv(t, "")
			wantStatus(t, "reserve", run(t, e.a, 0, v.reserve...), ok)
			wantStatus(t, "reserve again", run(t, e.a, 0, v.reserve...), ok)
			wantStatus(t, "holder reads", run(t, e.a, 0, read10()...), ok)
			wantStatus(t, "holder writes", run(t, e.a, 0, write10()...), ok)
			wantStatus(t, "other reserves", run(t, e.b, 0, v.reserve...), rc)
			for _, cdb := range [][]byte{read10(), write10(), tur(), {scsi.OpModeSense6, 0, 0x3f, 0, 0xff, 0},
				{scsi.OpPersistentReserveIn, 0, 0, 0, 0, 0, 0, 0, 100, 0}} {
				wantStatus(t, "other", run(t, e.b, 0, cdb...), rc)
			}
			for _, cdb := range [][]byte{{scsi.OpInquiry, 0, 0, 0, 36, 0}, reportLUNsCDB(0, 64),
				{scsi.OpRequestSense, 0, 0, 0, 18, 0}, {scsi.OpPreventAllowMediumRemoval, 0, 0, 0, 0, 0}} {
				wantStatus(t, "other, allowed command", run(t, e.b, 0, cdb...), ok)
			}
			wantStatus(t, "other releases: no-op", run(t, e.b, 0, v.release...), ok)
			wantStatus(t, "still reserved", run(t, e.b, 0, read10()...), rc)
			wantStatus(t, "release", run(t, e.a, 0, v.release...), ok)
			wantStatus(t, "released", run(t, e.b, 0, read10()...), ok)
			wantStatus(t, "other reserves now", run(t, e.b, 0, v.reserve...), ok)
			wantStatus(t, "first refused now", run(t, e.a, 0, write10()...), rc)
			wantStatus(t, "release", run(t, e.b, 0, v.release...), ok)
			wantStatus(t, "release unreserved", run(t, e.b, 0, v.release...), ok)
		})
	}
}

func TestSPC2ReleasedBy(t *testing.T) {
	tests := []struct {
		name string
		do   func(t *testing.T, e *prEnv)
		ua   []scsi.ASC // what b sees afterwards
	}{
		{"LUN reset", func(t *testing.T, e *prEnv) {
			if r := e.b.TaskMgmt(TMFLUNReset, rawLUN(0), 0); r != TMFComplete {
				t.Fatalf("LUN reset: %d", r)
			}
		}, []scsi.ASC{scsi.ASCBusDeviceResetFunctionOccurred}},
		{"target reset", func(t *testing.T, e *prEnv) {
			if r := e.a.TaskMgmt(TMFTargetWarmReset, 0, 0); r != TMFComplete {
				t.Fatalf("target reset: %d", r)
			}
		}, []scsi.ASC{scsi.ASCPowerOnResetOccurred}},
		{"target cold reset", func(t *testing.T, e *prEnv) {
			if r := e.a.TaskMgmt(TMFTargetColdReset, 0, 0); r != TMFComplete {
				t.Fatalf("cold reset: %d", r)
			}
		}, []scsi.ASC{scsi.ASCPowerOnResetOccurred}},
		{"logout", func(t *testing.T, e *prEnv) { e.a.Close() }, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newPREnv(t, "")
			wantStatus(t, "reserve", run(t, e.a, 0, reserve6()...), scsi.StatusGood)
			wantStatus(t, "conflict", run(t, e.b, 0, reserve6()...), scsi.StatusReservationConflict)
			tc.do(t, e)
			if got := pendingUAs(t, e.b, 0); !reflect.DeepEqual(got, tc.ua) {
				t.Fatalf("b UAs %04x, want %04x", got, tc.ua)
			}
			wantStatus(t, "reserve after", run(t, e.b, 0, reserve6()...), scsi.StatusGood)
			wantStatus(t, "release", run(t, e.b, 0, release6()...), scsi.StatusGood)
		})
	}
}

func TestSPC2WithPersistentReservations(t *testing.T) {
	const (
		ok = scsi.StatusGood
		rc = scsi.StatusReservationConflict
	)
	e := newPREnv(t, "")
	prout(t, e.a, proutRegister, 0, 0, 0xa, 0)
	wantStatus(t, "RESERVE while registrations exist", run(t, e.b, 0, reserve6()...), rc)
	wantStatus(t, "RESERVE by a registrant without reservation", run(t, e.a, 0, reserve6()...), rc)
	wantStatus(t, "PR reserve", prout(t, e.a, proutReserve, prWriteExclusive, 0xa, 0, 0), ok)
	// SPC-4 5.13.3: the holder's RESERVE and RELEASE succeed without effect.
	wantStatus(t, "holder RESERVE", run(t, e.a, 0, reserve10()...), ok)
	wantStatus(t, "holder RELEASE", run(t, e.a, 0, release10()...), ok)
	if key, typ := readResv(t, e.b); key != 0xa || typ != prWriteExclusive {
		t.Fatalf("persistent reservation changed: %x/%d", key, typ)
	}
	wantStatus(t, "other still reads (no SPC-2 reservation)", run(t, e.b, 0, read10()...), ok)
	wantStatus(t, "non-holder RELEASE", run(t, e.b, 0, release6()...), rc)
	// Registrants of a registrants-only reservation share the exception.
	prout(t, e.b, proutRegister, 0, 0, 0xb, 0)
	wantStatus(t, "PR release", prout(t, e.a, proutRelease, prWriteExclusive, 0xa, 0, 0), ok)
	wantStatus(t, "PR reserve RO", prout(t, e.a, proutReserve, prWriteExclusiveRegsOnly, 0xa, 0, 0), ok)
	wantStatus(t, "registrant RESERVE", run(t, e.b, 0, reserve6()...), ok)
	wantStatus(t, "unregistered RESERVE", run(t, e.c, 0, reserve6()...), rc)

	// An SPC-2 reservation refuses PERSISTENT RESERVE commands of others.
	f := newPREnv(t, "")
	wantStatus(t, "reserve", run(t, f.a, 0, reserve6()...), ok)
	wantStatus(t, "other PROUT", prout(t, f.b, proutRegister, 0, 0, 0xb, 0), rc)
	wantStatus(t, "holder PRIN", prin(t, f.a, prinReadKeys, 100), ok)
}

func TestSPC2CDBChecks(t *testing.T) {
	e := newPREnv(t, "")
	for _, cdb := range [][]byte{
		{scsi.OpReserve6, 0x01, 0, 0, 0, 0},              // extent
		{scsi.OpReserve6, 0x10, 0, 0, 0, 0},              // third party
		{scsi.OpReserve10, 0x10, 0, 5, 0, 0, 0, 0, 0, 0}, // 3RDPTY
		{scsi.OpRelease10, 0x02, 0, 0, 0, 0, 0, 0, 0, 0}, // LONGID
		{scsi.OpRelease6, 0x10, 0, 0, 0, 0},              // third party
	} {
		wantSense(t, "CDB", run(t, e.a, 0, cdb...), scsi.SenseIllegalRequest, scsi.ASCInvalidFieldInCDB)
	}
	wantStatus(t, "nothing reserved", run(t, e.b, 0, write10()...), scsi.StatusGood)
}

// TestReservationFastPath: without reservations the snapshot stays nil, so
// the data path does one atomic load.
func TestReservationFastPath(t *testing.T) {
	e := newPREnv(t, "")
	d := e.core.Device("disk1")
	if d.pr.snap.Load() != nil {
		t.Fatal("snapshot set on a fresh device")
	}
	prout(t, e.a, proutRegister, 0, 0, 0xa, 0)
	if d.pr.snap.Load() != nil {
		t.Fatal("registration alone published a snapshot")
	}
	prout(t, e.a, proutReserve, prWriteExclusive, 0xa, 0, 0)
	if d.pr.snap.Load() == nil {
		t.Fatal("reservation not published")
	}
	prout(t, e.a, proutRelease, prWriteExclusive, 0xa, 0, 0)
	run(t, e.a, 0, reserve6()...) // refused: registrations exist
	if d.pr.snap.Load() != nil {
		t.Fatal("snapshot left after release")
	}
}

func TestSPC2ReleasedWhenLUNUnmapped(t *testing.T) {
	e := newPREnv(t, "")
	if err := e.core.AddGroup("g", AddrPeripheral); err != nil {
		t.Fatal(err)
	}
	if err := e.core.AddLUN("g", "disk1", 5, false); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, "reserve", run(t, e.a, 0, reserve6()...), scsi.StatusGood)
	// a moves to a group that maps the device at another LUN: still held.
	if err := e.core.AddName("g", "iqn.2026-01.test:a"); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, "still reserved", run(t, e.b, 0, read10()...), scsi.StatusReservationConflict)
	// The device leaves a's view: the reservation goes with it.
	if err := e.core.DelLUN("g", "disk1"); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, "released", run(t, e.b, 0, read10()...), scsi.StatusGood)
}

// refusingHandler serves a logical unit shared with other nodes.
type refusingHandler struct{ fakeHandler }

func (*refusingHandler) RefuseReservations() bool { return true }

// A handler that refuses reservations gets INVALID COMMAND OPERATION CODE
// for every reservation command; other commands reach it as usual.
func TestReservationsRefusedBySharedLU(t *testing.T) {
	core := NewCore(Options{})
	if err := core.AddDevice(&Device{Name: "shared", Handler: &refusingHandler{}}); err != nil {
		t.Fatal(err)
	}
	if err := core.AddLUN(DefaultGroup, "shared", 0, false); err != nil {
		t.Fatal(err)
	}
	s := newPRSess(t, core, "iqn.2026-01.test:a", 0x23d000000001)
	prout := []byte{scsi.OpPersistentReserveOut, 0, 0, 0, 0, 0, 0, 0, 24, 0}
	prin := []byte{scsi.OpPersistentReserveIn, 0, 0, 0, 0, 0, 0, 0, 100, 0}
	for _, cdb := range [][]byte{prin, prout, reserve6(), release6(), reserve10(), release10()} {
		c := run(t, s, 0, cdb...)
		wantStatus(t, "reservation command", c, scsi.StatusCheckCondition)
		if len(c.sense) < 14 || c.sense[2]&0x0f != scsi.SenseIllegalRequest || scsi.ASC(c.sense[12])<<8|scsi.ASC(c.sense[13]) != scsi.ASCInvalidCommandOperationCode {
			t.Fatalf("CDB %x: sense %x, want INVALID COMMAND OPERATION CODE", cdb[0], c.sense)
		}
	}
	wantStatus(t, "read", run(t, s, 0, read10()...), scsi.StatusGood)
}
