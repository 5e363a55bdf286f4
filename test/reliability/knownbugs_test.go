//go:build scstd_known_bugs

// These tests fail until the bugs described in docs/reliability.md ("Known
// bugs") are fixed. Run them with
//
//	go test -tags scstd_known_bugs -run 'TestUnreadResponses|TestImmediateWrites|TestControlPlaneWithStuck' ./test/reliability/
//
// and move each to its file without the build tag once it passes.

package reliability

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/scstd/scstd/iscsi/iscsitest"
	"github.com/scstd/scstd/iscsi/pdu"
)

// Immediate READs whose responses are never read: see floodUnread.
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

// `close` of a device whose backing store hangs may wait for the commands
// inside, but it must not hold up the rest of the control plane: opening
// another device still works.
func TestControlPlaneWithStuckDevice(t *testing.T) {
	requireRoot(t)
	disk, path := mountFaultDisk(t, 16<<20, true)
	d := startDaemon(t, daemonConfig{Mount: true, Devices: []device{{Name: "disk0"}, {Name: "disk1", Path: path}}})
	c := login(t, d.Addr, iscsitest.Options{InitiatorName: initiatorName("stuck-ctl")})
	clearUA(t, c, lunField(1))
	release := disk.stall()
	defer release()
	if _, err := c.SendCommand(&iscsitest.Cmd{LUN: lunField(1), CDB: read16(0, 8), ReadLen: 8 * blockSize}); err != nil {
		t.Fatal(err)
	}
	if !eventually(5*time.Second, func() bool { return disk.waiting.Load() > 0 }) {
		t.Fatal("no request reached the stuck store")
	}
	closed := make(chan error, 1)
	go func() { closed <- d.ctl("vdisk/vdisk", "close disk1") }()
	time.Sleep(500 * time.Millisecond)
	spare := filepath.Join(d.Dir, "spare.img")
	if err := os.WriteFile(spare, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	opened := make(chan error, 1)
	go func() { opened <- d.ctl("vdisk/vdisk", "open spare "+spare) }()
	select {
	case err := <-opened:
		if err != nil {
			t.Errorf("open of another device while disk1 is stuck closing: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("open of another device blocked behind the close of a stuck one")
	}
	release()
	<-closed
	<-opened
}
