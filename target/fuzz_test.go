package target

import (
	"encoding/binary"
	"regexp"
	"strings"
	"testing"

	"github.com/scstd/scstd/target/scsi"
)

func FuzzDecodeLUN(f *testing.F) {
	for _, raw := range []uint64{
		0, 1 << 48, 0x00ff << 48, 0x4000 << 48, 0x7fff << 48, 0x8001 << 48,
		0xc000 << 48, 0x0100 << 48, 1, 0x0000_0001_0000_0000, 0xffff_ffff_ffff_ffff,
	} {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw uint64) {
		lun, ok := decodeLUN(raw)
		if !ok {
			return
		}
		if lun > MaxLUN {
			t.Fatalf("decodeLUN(%#x) = %d beyond %d", raw, lun, MaxLUN)
		}
		// Whatever decodes must be what we would report for that method.
		var m AddrMethod
		switch raw >> 62 {
		case 0:
			m = AddrPeripheral
		case 1:
			m = AddrFlat
			if lun <= 255 {
				// Flat-encoded small LUNs are valid input too; they
				// re-encode as flat only in FLAT groups.
				if got := encodeLUN(lun, AddrFlat); got != raw {
					t.Fatalf("flat %#x re-encodes to %#x", raw, got)
				}
				return
			}
		case 2:
			m = AddrLUN
		default:
			t.Fatalf("extended addressing %#x accepted", raw)
		}
		if got := encodeLUN(lun, m); got != raw {
			t.Fatalf("decodeLUN(%#x) = %d, encodes back to %#x", raw, lun, got)
		}
		if back, ok := decodeLUN(encodeLUN(lun, m)); !ok || back != lun {
			t.Fatalf("round trip of %d failed", lun)
		}
	})
}

// FuzzCoreCommands feeds arbitrary CDBs and LUN fields through Submit. The
// core-handled opcodes (REPORT LUNS, REQUEST SENSE, INQUIRY to unmapped LUNs)
// parse the CDB themselves; nothing may panic, every command completes once,
// and replies respect the allocation length.
func FuzzCoreCommands(f *testing.F) {
	f.Add(uint64(0), reportLUNsCDB(0, 4096))
	f.Add(uint64(0), reportLUNsCDB(2, 16))
	f.Add(uint64(0), reportLUNsCDB(1, 15))
	f.Add(uint64(0), []byte{scsi.OpReportLuns})
	f.Add(uint64(5)<<48, []byte{scsi.OpInquiry, 0, 0, 0, 36, 0})
	f.Add(uint64(5)<<48, []byte{scsi.OpInquiry, 1, 0x83, 0, 36, 0})
	f.Add(uint64(5)<<48, []byte{scsi.OpInquiry, 0})
	f.Add(uint64(0), []byte{scsi.OpRequestSense, 1, 0, 0, 255, 0})
	f.Add(uint64(0x4001)<<48, []byte{scsi.OpRequestSense, 0, 0, 0, 3, 0})
	f.Add(uint64(0xc0)<<56, []byte{scsi.OpTestUnitReady, 0, 0, 0, 0, 0})
	f.Add(uint64(1)<<48, []byte{})
	f.Fuzz(func(t *testing.T, raw uint64, cdb []byte) {
		c := NewCore(Options{})
		if err := c.AddDevice(&Device{Name: "d", Handler: &fakeHandler{}}); err != nil {
			t.Fatal(err)
		}
		for _, l := range []uint64{0, 1, 300} {
			if err := c.AddLUN(DefaultGroup, "d", l, false); err != nil {
				t.Fatal(err)
			}
		}
		s, err := c.NewSession(SessionInfo{Initiator: "i", Target: "t"})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		for round := 0; round < 2; round++ { // the second round runs without the UA
			calls := 0
			cmd := &Command{LUN: raw, CDB: cdb, Attr: Simple}
			var status byte
			var data, sense []byte
			cmd.Done = func(cmd *Command) {
				calls++
				status = cmd.Status
				data = append([]byte(nil), cmd.DataIn...)
				sense = append([]byte(nil), cmd.Sense...)
				if int(cmd.TransferLen) < len(cmd.DataIn) {
					t.Fatalf("TransferLen %d < DataIn %d", cmd.TransferLen, len(cmd.DataIn))
				}
				cmd.Release()
			}
			s.Submit(cmd)
			if calls != 1 {
				t.Fatalf("Done called %d times", calls)
			}
			switch status {
			case scsi.StatusGood:
			case scsi.StatusCheckCondition:
				if len(sense) < 8 || (sense[0] != 0x70 && sense[0] != 0x72) {
					t.Fatalf("bad sense %x", sense)
				}
				continue
			default:
				t.Fatalf("status %#x", status)
			}
			if len(cdb) == 0 {
				t.Fatal("empty CDB succeeded")
			}
			switch cdb[0] {
			case scsi.OpReportLuns:
				alloc := binary.BigEndian.Uint32(cdb[6:10])
				if uint32(len(data)) > alloc || len(data) < 8 {
					t.Fatalf("REPORT LUNS returned %d bytes for allocation %d", len(data), alloc)
				}
				for _, l := range decodeReport(t, data) {
					if _, ok := decodeLUN(l); !ok {
						t.Fatalf("reported LUN %#x does not decode", l)
					}
				}
			case scsi.OpInquiry, scsi.OpRequestSense:
				var alloc int
				if cdb[0] == scsi.OpInquiry {
					alloc = int(binary.BigEndian.Uint16(cdb[3:5]))
				} else {
					alloc = int(cdb[4])
				}
				if len(data) > alloc {
					t.Fatalf("%d bytes for allocation %d", len(data), alloc)
				}
			}
		}
	})
}

// FuzzMatchPattern checks the wildcard matcher against a regexp translation
// of the same pattern (ASCII inputs, where both fold case the same way).
func FuzzMatchPattern(f *testing.F) {
	f.Add("iqn.*", "iqn.1993-08.org.debian:01:abc")
	f.Add("!iqn.*:01:?bc", "IQN.x:01:abc")
	f.Add("a*b*c*d", "aXbXcXdX")
	f.Add("*?*", "")
	f.Add("[.+]", "[.+]")
	f.Fuzz(func(t *testing.T, pattern, name string) {
		if !isASCII(pattern) || !isASCII(name) || len(pattern) > 64 || len(name) > 256 {
			return
		}
		p, invert := pattern, false
		if strings.HasPrefix(p, "!") {
			p, invert = p[1:], true
		}
		var re strings.Builder
		re.WriteString("(?is)^")
		for _, r := range p {
			switch r {
			case '*':
				re.WriteString(".*")
			case '?':
				re.WriteString(".")
			default:
				re.WriteString(regexp.QuoteMeta(string(r)))
			}
		}
		re.WriteString("$")
		want := regexp.MustCompile(re.String()).MatchString(name) != invert
		if got := matchPattern(pattern, name); got != want {
			t.Fatalf("matchPattern(%q, %q) = %v, want %v", pattern, name, got, want)
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
