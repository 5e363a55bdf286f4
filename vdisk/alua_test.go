package vdisk

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/scstd/scstd/target/scsi"
)

func rtpgCDB(format byte, alloc uint32) []byte {
	c := make([]byte, 12)
	c[0], c[1] = scsi.OpMaintenanceIn, format<<5|scsi.SAReportTargetPortGroups
	binary.BigEndian.PutUint32(c[6:], alloc)
	return c
}

// portDesigs returns the target port designators (association 01b) of a
// VPD 0x83 page as type -> value.
func portDesigs(t *testing.T, page []byte) map[byte]uint16 {
	t.Helper()
	out := map[byte]uint16{}
	for p := 4; p+4 <= len(page); p += 4 + int(page[p+3]) {
		if page[p+1]>>4&3 == 1 {
			if page[p+3] != 4 {
				t.Fatalf("target port designator length %d", page[p+3])
			}
			out[page[p+1]&0x0f] = binary.BigEndian.Uint16(page[p+6:])
		}
	}
	return out
}

func TestALUAIdentity(t *testing.T) {
	tests := []struct {
		name  string
		ports *PortIdentity
		// wantRTPG is the group list of REPORT TARGET PORT GROUPS
		// (format 0), nil when the command is not supported.
		wantRTPG []byte
	}{
		{"single node", nil, nil},
		{"node 2 of 2", &PortIdentity{RelPort: 2, Group: 20, Peers: []PortGroup{{ID: 10, RelPorts: []uint16{1}}}},
			[]byte{0, 0, 0, 24,
				0x00, 0x01, 0, 10, 0, 0, 0, 1, 0, 0, 0, 1,
				0x00, 0x01, 0, 20, 0, 0, 0, 1, 0, 0, 0, 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, ManagerOptions{Ports: tc.ports})
			lun, _ := h.disk("d", 1<<20, 512, Flags{})
			s := h.session("iqn.init")
			s.clearUA(lun)

			r := s.run(lun, inquiry(false, 0, 96), 96, nil)
			good(t, "inquiry", r)
			wantTPGS := byte(0)
			if tc.ports != nil {
				wantTPGS = 0x10
			}
			if r.data[5]&0x30 != wantTPGS {
				t.Fatalf("TPGS bits %#x, want %#x", r.data[5]&0x30, wantTPGS)
			}

			r = s.run(lun, inquiry(true, 0x83, 255), 255, nil)
			good(t, "vpd 0x83", r)
			d := portDesigs(t, r.data)
			if tc.ports == nil {
				if len(d) != 0 {
					t.Fatalf("single-node target reports port designators %v", d)
				}
			} else if d[4] != tc.ports.RelPort || d[5] != tc.ports.Group {
				t.Fatalf("port designators %v, want relative port %d, group %d", d, tc.ports.RelPort, tc.ports.Group)
			}

			r = s.run(lun, rtpgCDB(0, 512), 512, nil)
			if tc.wantRTPG == nil {
				expect(t, "rtpg", r, scsi.SenseIllegalRequest, scsi.ASCInvalidFieldInCDB)
				return
			}
			good(t, "rtpg", r)
			if !bytes.Equal(r.data, tc.wantRTPG) {
				t.Fatalf("REPORT TARGET PORT GROUPS\n got %x\nwant %x", r.data, tc.wantRTPG)
			}
			r = s.run(lun, rtpgCDB(1, 512), 512, nil)
			good(t, "rtpg extended", r)
			if len(r.data) != len(tc.wantRTPG)+4 || r.data[4] != 0x10 || !bytes.Equal(r.data[8:], tc.wantRTPG[4:]) ||
				binary.BigEndian.Uint32(r.data) != uint32(len(r.data)-4) {
				t.Fatalf("extended REPORT TARGET PORT GROUPS %x", r.data)
			}
			r = s.run(lun, rtpgCDB(1, 6), 6, nil)
			good(t, "rtpg short allocation", r)
			if len(r.data) != 6 {
				t.Fatalf("allocation length 6 returned %d bytes", len(r.data))
			}
			expect(t, "rtpg bad format", s.run(lun, rtpgCDB(2, 512), 512, nil), scsi.SenseIllegalRequest, scsi.ASCInvalidFieldInCDB)
		})
	}
}
