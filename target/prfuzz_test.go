package target

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
)

// FuzzParsePROUT feeds arbitrary CDBs and parameter lists to the PROUT
// parser and, when they parse, applies them to a state with registrations:
// nothing may panic, errors are always SCSI outcomes, and the state keeps
// its invariants.
func FuzzParsePROUT(f *testing.F) {
	f.Add(proutCDB(proutRegister, 0, 24), proutParams(0, 0xa, 0))
	f.Add(proutCDB(proutReserve, prExclusiveAccess, 24), proutParams(0xa, 0, 0))
	f.Add(proutCDB(proutPreemptAbort, prWriteExclusiveAllRegs, 24), proutParams(0xa, 0xb, 0))
	f.Add(proutCDB(proutRegisterIgnore, 0, 24), proutParams(0, 0xa, 0x0d))
	f.Add(proutCDB(proutClear, 0, 24), proutParams(0xa, 0, 0))
	ram := proutParams(0xa, 0xb, 0)
	tid := appendTransportID(nil, "iqn.2026-01.test:b", 0x23d000000002)
	binary.BigEndian.PutUint16(ram[18:], 1)
	binary.BigEndian.PutUint32(ram[20:], uint32(len(tid)))
	ram = append(ram, tid...)
	f.Add(proutCDB(proutRegisterMove, 0, uint32(len(ram))), ram)
	spec := specIPT(0, 0xa, 0x04, tidPort{"iqn.2026-01.test:b", 2}, tidPort{"iqn.2026-01.test:c", 0})
	f.Add(proutCDB(proutRegister, 0, uint32(len(spec))), spec)
	f.Add([]byte{0x5f}, []byte{})
	f.Fuzz(func(t *testing.T, cdb, data []byte) {
		if len(cdb) == 0 {
			return
		}
		r, err := parsePROUT(cdb, data)
		if err != nil {
			var pe *prErr
			if !errors.As(err, &pe) {
				t.Fatalf("non-SCSI error %v", err)
			}
			return
		}
		if r.sa > proutRegisterMove || uint32(len(data)) < r.paramLen {
			t.Fatalf("accepted %+v with %d bytes", r, len(data))
		}
		var ports portTable
		ports.id(prTarget)
		d := prData{typ: prExclusiveAccess, regs: []registrant{
			{key: 0xa, name: "iqn.2026-01.test:a", isid: 1, target: prTarget, holder: true},
			{key: 0xb, name: "iqn.2026-01.test:b", isid: 2, target: prTarget},
		}}
		for _, id := range []nexusID{{"iqn.2026-01.test:a", 1, prTarget}, {"iqn.2026-01.test:x", 0, prTarget}} {
			nd := d.clone()
			if _, err := applyPROUT(&nd, &r, id, &ports, true); err != nil {
				continue
			}
			checkInvariants(t, &nd)
		}
	})
}

func checkInvariants(t *testing.T, d *prData) {
	t.Helper()
	holders := 0
	for _, r := range d.regs {
		if r.key == 0 {
			t.Fatalf("zero key registered: %+v", d)
		}
		if r.holder {
			holders++
		}
	}
	switch {
	case d.typ == 0 && holders != 0,
		d.typ != 0 && !validPRType(d.typ),
		d.typ != 0 && allRegistrantsType(d.typ) && holders != 0,
		d.typ != 0 && !allRegistrantsType(d.typ) && holders != 1:
		t.Fatalf("inconsistent state %+v", d)
	}
	// What the state machine can reach, the store can keep.
	if len(d.regs) > 0 {
		d2 := *d
		d2.aptpl = true
		got, err := decodePR(encodePR(&d2))
		if err != nil || !reflect.DeepEqual(got, d2) {
			t.Fatalf("store round trip of %+v: %+v %v", d2, got, err)
		}
	}
}

// FuzzDecodePR: the state file parser never panics, and what it accepts
// is consistent and re-encodes to itself.
func FuzzDecodePR(f *testing.F) {
	f.Add([]byte("scstd-pr 1\ngeneration 1\nreservation 1\nregistrant a 0 h \"t\" \"i\"\n"))
	f.Add([]byte("scstd-pr 1\ngeneration 4294967295\nreservation 8\nregistrant ffffffffffffffff ffffffffffff a \"\" \"\\x00\"\n"))
	f.Add(encodePR(&prData{gen: 3, typ: prWriteExclusiveRegsOnly, regs: []registrant{
		{key: 1, name: "iqn.a", isid: 5, target: "iqn.t", holder: true}, {key: 2, name: "iqn.b", allTgPt: true}}}))
	f.Add([]byte("scstd-pr 1\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := decodePR(data)
		if err != nil {
			return
		}
		if !d.aptpl {
			t.Fatal("restored state without APTPL")
		}
		checkInvariants(t, &d)
		again, err := decodePR(encodePR(&d))
		if err != nil || !reflect.DeepEqual(again, d) {
			t.Fatalf("re-encode: %+v %v", again, err)
		}
	})
}

// FuzzTransportID: parsing never panics or reads past the TransportID, and
// whatever parses re-encodes to a TransportID naming the same port.
func FuzzTransportID(f *testing.F) {
	f.Add(appendTransportID(nil, "iqn.2026-01.test:a", 0x23d000000001))
	f.Add(appendTransportID(nil, "iqn.2026-01.test:a", 0))
	f.Add([]byte{0x45, 0, 0, 8, 'a', ',', 'I', ',', '0', 'X', '1', 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		name, isid, n, err := parseTransportID(b)
		if err != nil {
			return
		}
		if n > len(b) || n < 4 {
			t.Fatalf("length %d of %d", n, len(b))
		}
		enc := appendTransportID(nil, name, isid)
		n2, i2, l2, err := parseTransportID(enc)
		if err != nil || n2 != name || i2 != isid || l2 != len(enc) {
			t.Fatalf("re-parse %q: %q %x %d %v", enc, n2, i2, l2, err)
		}
		if !bytes.HasPrefix(enc[4:], []byte(name)) {
			t.Fatalf("encoding %q lost the name", enc)
		}
	})
}
