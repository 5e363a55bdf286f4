package target

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/scstd/scstd/target/scsi"
)

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestPRStoreRoundTrip(t *testing.T) {
	d := prData{gen: 7, aptpl: true, typ: prWriteExclusiveRegsOnly, regs: []registrant{
		{key: 0xa, name: "iqn.2026-01.test:a", isid: 0x23d000000001, target: "iqn.t", holder: true},
		{key: 0xffffffffffffffff, name: "iqn.2026-01.test:\"odd\" name\n", target: "", allTgPt: true},
	}}
	dir := t.TempDir()
	if err := savePR(dir, "dev", &d); err != nil {
		t.Fatal(err)
	}
	got, ok, err := loadPR(dir, "dev")
	if err != nil || !ok {
		t.Fatalf("load: %v %v", ok, err)
	}
	if !reflect.DeepEqual(got, d) {
		t.Fatalf("round trip\n got %+v\nwant %+v", got, d)
	}
	// No temporary files are left behind.
	ents, _ := os.ReadDir(filepath.Join(dir, "pr"))
	if len(ents) != 1 || ents[0].Name() != "dev" {
		t.Fatalf("pr dir holds %v", ents)
	}
	// Nothing to persist removes the file.
	d.aptpl = false
	if err := savePR(dir, "dev", &d); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := loadPR(dir, "dev"); ok || err != nil {
		t.Fatalf("after APTPL off: %v %v", ok, err)
	}
}

func TestPRStoreRejects(t *testing.T) {
	good := "scstd-pr 1\ngeneration 1\nreservation 1\nregistrant a 0 h \"t\" \"i\"\n"
	if _, err := decodePR([]byte(good)); err != nil {
		t.Fatalf("good file: %v", err)
	}
	tests := map[string]string{
		"empty":              "",
		"header":             "scstd-pr 2\ngeneration 1\n",
		"no generation":      "scstd-pr 1\n",
		"two generations":    "scstd-pr 1\ngeneration 1\ngeneration 2\n",
		"bad type":           "scstd-pr 1\ngeneration 1\nreservation 2\nregistrant a 0 h \"t\" \"i\"\n",
		"no holder":          "scstd-pr 1\ngeneration 1\nreservation 1\nregistrant a 0 - \"t\" \"i\"\n",
		"two holders":        "scstd-pr 1\ngeneration 1\nreservation 1\nregistrant a 0 h \"t\" \"i\"\nregistrant b 0 h \"t\" \"j\"\n",
		"holder without":     "scstd-pr 1\ngeneration 1\nregistrant a 0 h \"t\" \"i\"\n",
		"AR with holder":     "scstd-pr 1\ngeneration 1\nreservation 7\nregistrant a 0 h \"t\" \"i\"\n",
		"AR without regs":    "scstd-pr 1\ngeneration 1\nreservation 8\n",
		"zero key":           "scstd-pr 1\ngeneration 1\nregistrant 0 0 - \"t\" \"i\"\n",
		"big ISID":           "scstd-pr 1\ngeneration 1\nregistrant 1 1000000000000 - \"t\" \"i\"\n",
		"bad flags":          "scstd-pr 1\ngeneration 1\nregistrant 1 0 x \"t\" \"i\"\n",
		"repeated flag":      "scstd-pr 1\ngeneration 1\nregistrant 1 0 aa \"t\" \"i\"\n",
		"unquoted":           "scstd-pr 1\ngeneration 1\nregistrant 1 0 - t i\n",
		"trailing":           "scstd-pr 1\ngeneration 1\nregistrant 1 0 - \"t\" \"i\" x\n",
		"empty initiator":    "scstd-pr 1\ngeneration 1\nregistrant 1 0 - \"t\" \"\"\n",
		"unknown record":     "scstd-pr 1\ngeneration 1\nfoo\n",
		"generation too big": "scstd-pr 1\ngeneration 4294967296\n",
	}
	for name, s := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := decodePR([]byte(s)); err == nil {
				t.Fatalf("accepted %q", s)
			}
		})
	}
	if _, err := prPath("/x", "../y"); err == nil {
		t.Fatal("path escape accepted")
	}
}

func TestTransportID(t *testing.T) {
	tests := []struct {
		name string
		isid uint64
	}{
		{"iqn.2026-01.test:a", 0x23d000000001},
		{"iqn.2026-01.test:b", 0},
		{"eui.0123456789abcdef", 0x800000000001},
		{strings.Repeat("x", maxTransportIDName), 0x1},
	}
	for _, tc := range tests {
		b := appendTransportID([]byte{0xee}, tc.name, tc.isid)[1:]
		if len(b)%4 != 0 || len(b) < 24 || int(binary.BigEndian.Uint16(b[2:]))+4 != len(b) {
			t.Fatalf("%s: TransportID %q", tc.name, b)
		}
		wantFormat := byte(0x00)
		if tc.isid != 0 {
			wantFormat = 0x40
			if !bytes.Contains(b, []byte(",i,0x")) {
				t.Fatalf("no ISID in %q", b)
			}
		}
		if b[0] != wantFormat|protoISCSI {
			t.Fatalf("byte 0 %#x", b[0])
		}
		name, isid, n, err := parseTransportID(append(b, 0xff, 0xff))
		if err != nil || name != tc.name || isid != tc.isid || n != len(b) {
			t.Fatalf("parse %q: %q %x %d %v", b, name, isid, n, err)
		}
	}
	for _, bad := range [][]byte{
		nil,
		{0x05, 0, 0, 4, 'a', 'b', 'c', 'd'}, // no NUL
		{0x04, 0, 0, 4, 'a', 0, 0, 0},       // not iSCSI
		{0x05, 0, 0, 8, 'a', 0, 0, 0},       // longer than the buffer
		{0x45, 0, 0, 8, 'a', ',', 'i', ',', 0, 0, 0, 0},                    // no 0x
		{0x85, 0, 0, 4, 'a', 0, 0, 0},                                      // format 10b
		{0x05, 0, 0, 3, 'a', 0, 0},                                         // length not a multiple of 4
		{0x05, 0, 0, 4, 0, 0, 0, 0},                                        // empty name
		{0x45, 0, 0, 12, 'a', ',', 'i', ',', '0', 'x', 'g', 0, 0, 0, 0, 0}, // bad hex
	} {
		if _, _, _, err := parseTransportID(bad); err == nil {
			t.Fatalf("accepted %q", bad)
		}
	}
}

func TestCoreOpcodes(t *testing.T) {
	seen := map[[2]int]bool{}
	for _, o := range CoreOpcodes() {
		if len(o.Usage) != o.CDBLen || o.Usage[0] != o.Opcode {
			t.Fatalf("%s: usage %x for CDB length %d", o.Name, o.Usage, o.CDBLen)
		}
		if o.HasSA && o.Usage[1]&0x1f != o.ServiceAction {
			t.Fatalf("%s: usage byte 1 %#x does not hold the service action", o.Name, o.Usage[1])
		}
		k := [2]int{int(o.Opcode), -1}
		if o.HasSA {
			k[1] = int(o.ServiceAction)
		}
		if seen[k] {
			t.Fatalf("%s listed twice", o.Name)
		}
		seen[k] = true
	}
	// Every listed command really is executed by the core: none reaches
	// the handler.
	c, h := setup(t, 0)
	s := newSess(t, c, "i")
	clearUAs(t, s, 0)
	before := len(h.execOrder())
	for _, o := range CoreOpcodes() {
		cdb := make([]byte, o.CDBLen)
		cdb[0] = o.Opcode
		cdb[1] = o.ServiceAction
		if o.Opcode == scsi.OpReportLuns {
			cdb[9] = 16
		}
		run(t, s, 0, cdb...)
	}
	if n := len(h.execOrder()); n != before {
		t.Fatalf("handler saw %d core commands", n-before)
	}
	for _, op := range []byte{scsi.OpPersistentReserveIn, scsi.OpPersistentReserveOut, scsi.OpReserve6,
		scsi.OpRelease6, scsi.OpReserve10, scsi.OpRelease10, scsi.OpReportLuns, scsi.OpRequestSense} {
		found := false
		for k := range seen {
			found = found || k[0] == int(op)
		}
		if !found {
			t.Fatalf("opcode %#x missing", op)
		}
	}
}
