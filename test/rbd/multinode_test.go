//go:build rbd

package rbd

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scstd/scstd/iscsi/iscsitest"
	"github.com/scstd/scstd/iscsi/pdu"
)

// twoNodes starts two daemons serving imgs as LUNs 0, 1, ... of the same
// target, node A as relative port / group 1 and node B as 2, each naming
// the other.
func twoNodes(t *testing.T, imgs ...string) (a, b *daemon) {
	t.Helper()
	var luns []lunSpec
	for _, img := range imgs {
		luns = append(luns, lunSpec{Image: img})
	}
	a = startDaemon(t, daemonConfig{LUNs: luns, Args: []string{"--rel-port", "1", "--tpg-peers", "2:2"}})
	b = startDaemon(t, daemonConfig{LUNs: luns, Args: []string{"--rel-port", "2", "--tpg-peers", "1:1"}})
	return a, b
}

// login opens a session to d's target and consumes the power-on unit
// attention.
func login(t *testing.T, d *daemon, initiator string) *iscsitest.Conn {
	t.Helper()
	c, err := iscsitest.Dial(d.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(iscsitest.Options{InitiatorName: initiator, TargetName: targetIQN}); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		res, err := c.Do(&iscsitest.Cmd{CDB: make([]byte, 6), Attr: 1})
		if err != nil {
			t.Fatal(err)
		}
		if res.Status == 0 {
			return c
		}
		if i == 8 {
			t.Fatalf("TEST UNIT READY status %#x", res.Status)
		}
	}
}

// do runs one command and fails the test unless it returns GOOD.
func do(t *testing.T, c *iscsitest.Conn, cmd *iscsitest.Cmd) []byte {
	t.Helper()
	res, err := c.Do(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != 0 {
		t.Fatalf("CDB %x: status %#x sense %x", cmd.CDB, res.Status, res.Sense)
	}
	return res.Data
}

func rw16(op byte, lba uint64, blocks uint32) []byte {
	c := make([]byte, 16)
	c[0] = op
	binary.BigEndian.PutUint64(c[2:], lba)
	binary.BigEndian.PutUint32(c[10:], blocks)
	return c
}

// designators splits a VPD 0x83 page into its designators by association.
func designators(page []byte) (lu [][]byte, port map[byte][]byte) {
	port = map[byte][]byte{}
	for p := 4; p+4 <= len(page); p += 4 + int(page[p+3]) {
		d := page[p : p+4+int(page[p+3])]
		if d[1]>>4&3 == 0 {
			lu = append(lu, d)
		} else {
			port[d[1]&0x0f] = d[4:]
		}
	}
	return lu, port
}

// TestTwoNodesOneImage: two daemons export one image under one target
// name. Data written through A reads back through B, both report the same
// logical unit through different relative ports and groups, both groups
// active/optimized, and libiscsi's MultipathIO suite passes with one URL
// per node.
func TestTwoNodesOneImage(t *testing.T) {
	// LUN 1 is a fresh image for MultipathIO, whose COMPARE AND WRITE test
	// expects zeros beyond the blocks it initialises.
	img := newImage(t, "64M")
	a, b := twoNodes(t, img, newImage(t, "64M"))

	dir := t.TempDir()
	src, back := filepath.Join(dir, "src.raw"), filepath.Join(dir, "back.raw")
	writeRandomFile(t, src, 64<<20)
	mustRun(t, 5*time.Minute, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", "-t", "none", src, a.URL(0))
	mustRun(t, 5*time.Minute, "qemu-img", "convert", "-f", "raw", "-O", "raw", b.URL(0), back)
	sameFiles(t, src, back)

	ca, cb := login(t, a, "iqn.2026-11.test:init"), login(t, b, "iqn.2026-11.test:init")
	inq := func(c *iscsitest.Conn, evpd byte, page byte) []byte {
		return do(t, c, &iscsitest.Cmd{CDB: []byte{0x12, evpd, page, 1, 0, 0}, ReadLen: 256, Attr: 1})
	}
	luA, portA := designators(inq(ca, 1, 0x83))
	luB, portB := designators(inq(cb, 1, 0x83))
	if len(luA) == 0 || fmt.Sprint(luA) != fmt.Sprint(luB) {
		t.Fatalf("the nodes identify the LU differently:\nA %x\nB %x", luA, luB)
	}
	for _, tc := range []struct {
		name       string
		port       map[byte][]byte
		rel, group uint16
	}{{"A", portA, 1, 1}, {"B", portB, 2, 2}} {
		if len(tc.port[4]) != 4 || binary.BigEndian.Uint16(tc.port[4][2:]) != tc.rel ||
			len(tc.port[5]) != 4 || binary.BigEndian.Uint16(tc.port[5][2:]) != tc.group {
			t.Errorf("node %s port designators %x, want relative port %d, group %d", tc.name, tc.port, tc.rel, tc.group)
		}
	}
	if !bytes.Equal(inq(ca, 1, 0x80), inq(cb, 1, 0x80)) {
		t.Error("the nodes report different unit serial numbers")
	}
	for _, c := range []*iscsitest.Conn{ca, cb} {
		if tpgs := inq(c, 0, 0)[5] & 0x30; tpgs != 0x10 {
			t.Errorf("TPGS %#x, want implicit ALUA", tpgs)
		}
		rtpg := do(t, c, &iscsitest.Cmd{CDB: []byte{0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}, ReadLen: 256, Attr: 1})
		want := []byte{0, 0, 0, 24, 0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 1, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2}
		if !bytes.Equal(rtpg, want) {
			t.Errorf("REPORT TARGET PORT GROUPS %x, want %x (both groups active/optimized)", rtpg, want)
		}
	}

	// Reservations are not kept across nodes, so both nodes refuse them
	// (BUGS.txt) rather than enforce them on one node only.
	for name, c := range map[string]*iscsitest.Conn{"A": ca, "B": cb} {
		res, err := c.Do(&iscsitest.Cmd{CDB: []byte{0x5e, 0, 0, 0, 0, 0, 0, 0, 64, 0}, ReadLen: 64, Attr: 1})
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != 2 || len(res.Sense) < 14 || res.Sense[2]&0x0f != 5 || res.Sense[12] != 0x20 {
			t.Errorf("node %s: PERSISTENT RESERVE IN status %#x sense %x, want INVALID COMMAND OPERATION CODE", name, res.Status, res.Sense)
		}
	}

	got := runMultipath(t, a.URL(1), b.URL(1))["SCSI.MultipathIO"]
	if got.Fail != 0 || got.NotRun != 0 || got.Pass == 0 {
		t.Fatalf("SCSI.MultipathIO over both nodes: pass=%d fail=%d skip=%d notrun=%d %v", got.Pass, got.Fail, got.Skip, got.NotRun, got.Bad)
	}
}

// TestNodeFailover writes distinct blocks through node A at QD16, kills A
// (SIGKILL) in the middle, and reads every block through node B: each
// acknowledged write is there, each write in flight at the kill is either
// wholly there or not at all; B keeps serving reads and writes.
func TestNodeFailover(t *testing.T) {
	const blocks = 32768 // 16 MiB of 512-byte blocks; 8 per write
	img := newImage(t, "64M")
	a, b := twoNodes(t, img)
	ca := login(t, a, "iqn.2026-11.test:init")

	pattern := func(lba uint64) []byte {
		p := make([]byte, 4096)
		for i := 0; i < len(p); i += 16 {
			binary.BigEndian.PutUint64(p[i:], lba)
			binary.BigEndian.PutUint64(p[i+8:], ^lba)
		}
		return p
	}
	acked := map[uint64]bool{}
	inflight := map[uint32]uint64{} // ITT -> LBA
	next := uint64(0)
	send := func() {
		itt, err := ca.SendCommand(&iscsitest.Cmd{CDB: rw16(0x8a, next, 8), Write: pattern(next), Attr: 1})
		if err != nil {
			t.Fatal(err)
		}
		inflight[itt] = next
		next += 8
	}
	killAt := time.Now().Add(2 * time.Second)
	for len(inflight) < 16 {
		send()
	}
	for time.Now().Before(killAt) && next < blocks {
		h, _, err := ca.RecvSkipPings()
		if err != nil {
			t.Fatal(err)
		}
		if h.Opcode() != pdu.OpSCSIResp || h.Status() != 0 {
			t.Fatalf("write: %v status %#x", h.Opcode(), h.Status())
		}
		acked[inflight[h.ITT()]] = true
		delete(inflight, h.ITT())
		send()
	}
	a.Kill()
	if len(acked) < 64 {
		t.Fatalf("only %d writes acknowledged before the kill", len(acked))
	}
	t.Logf("killed node A with %d writes acknowledged and %d in flight", len(acked), len(inflight))

	cb := login(t, b, "iqn.2026-11.test:init")
	maybe := map[uint64]bool{}
	for _, lba := range inflight {
		maybe[lba] = true
	}
	zero := make([]byte, 4096)
	for lba := uint64(0); lba < next; lba += 8 {
		got := do(t, cb, &iscsitest.Cmd{CDB: rw16(0x88, lba, 8), ReadLen: 4096, Attr: 1})
		switch {
		case bytes.Equal(got, pattern(lba)):
		case maybe[lba] && bytes.Equal(got, zero):
		case acked[lba]:
			t.Fatalf("acknowledged write at LBA %d lost or damaged after node A died", lba)
		default:
			t.Fatalf("LBA %d (in flight at the kill) holds neither the old nor the new data", lba)
		}
	}
	// B still serves writes.
	do(t, cb, &iscsitest.Cmd{CDB: rw16(0x8a, blocks, 8), Write: pattern(blocks), Attr: 1})
	if got := do(t, cb, &iscsitest.Cmd{CDB: rw16(0x88, blocks, 8), ReadLen: 4096, Attr: 1}); !bytes.Equal(got, pattern(blocks)) {
		t.Fatal("node B read back other data than it wrote")
	}
	if strings.Contains(a.log.String(), "panic") {
		t.Fatal("node A panicked")
	}
}
