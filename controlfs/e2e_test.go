package controlfs

// End to end: the real core, vdisk manager and iSCSI server behind a real
// mount, an initiator logged in, and every change made through the mount
// (by a child process) seen by the initiator with the unit attentions SCST
// raises.

import (
	"context"
	"encoding/binary"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/scstd/scstd/iscsi"
	"github.com/scstd/scstd/iscsi/config"
	"github.com/scstd/scstd/iscsi/iscsitest"
	"github.com/scstd/scstd/target"
	"github.com/scstd/scstd/vdisk"
)

const (
	e2eTarget    = "iqn.2026-01.test.scstd:e2e-target"
	e2eInitiator = "iqn.2026-01.test.scstd:e2e-initiator"
)

type e2e struct {
	t    *testing.T
	dir  string
	addr string
	w    *writer
	c    *iscsitest.Conn
}

func startE2E(t *testing.T) *e2e {
	t.Helper()
	needFUSE(t)
	log := testLog()
	core := target.NewCore(target.Options{Log: log, StateDir: t.TempDir()})
	tun := target.NewTunables()
	vm := vdisk.NewManager(core, vdisk.ManagerOptions{Log: log, StateDir: t.TempDir(), VdiskID: uint32(tun.Param(target.ParamVdiskID))})
	cfg, errs := config.Parse(strings.NewReader("Target " + e2eTarget + "\n"))
	if len(errs) > 0 {
		t.Fatalf("config: %v", errs)
	}
	srv := iscsi.NewServer(iscsi.Options{Core: core, Config: cfg, Log: log})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { srv.Serve(ctx, l); close(served) }()
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		srv.Shutdown(sctx)
		cancel()
		<-served
		for _, d := range vm.Disks() {
			vm.Close(d.Name)
		}
	})
	dir := t.TempDir()
	m, err := Mount(ctx, dir, Options{Core: core, Vdisk: vm, ISCSI: srv, Log: log, Tunables: tun})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Unmount(); m.Wait() })
	e := &e2e{t: t, dir: dir, addr: l.Addr().String(), w: startWriter(t, nil)}
	t.Cleanup(e.w.close)
	return e
}

// cmd writes one command through the mount and fails the test on error.
func (e *e2e) cmd(file, data string) {
	e.t.Helper()
	if r := e.w.write(filepath.Join(e.dir, "scsi_tgt", file), []byte(data)); r.errno != 0 {
		e.t.Fatalf("%s <- %q: %v", file, data, r)
	}
}

func (e *e2e) read(file string) string {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.dir, "scsi_tgt", file))
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

func (e *e2e) login() {
	e.t.Helper()
	c, err := iscsitest.Dial(e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	c.Timeout = 10 * time.Second
	if err := c.Login(iscsitest.Options{InitiatorName: e2eInitiator, TargetName: e2eTarget, ISID: 0x400001370000}); err != nil {
		e.t.Fatalf("login: %v", err)
	}
	e.c = c
	e.t.Cleanup(func() { c.Logout(0); c.Close() })
}

// peripheralLUN is the 8-byte LUN field for LUN n (peripheral addressing).
func peripheralLUN(n uint64) uint64 { return n << 48 }

// reportLUNs returns the LUNs REPORT LUNS lists.
func (e *e2e) reportLUNs() []uint64 {
	e.t.Helper()
	cdb := make([]byte, 12)
	cdb[0] = 0xa0
	binary.BigEndian.PutUint32(cdb[6:], 4096)
	for i := 0; i < 4; i++ {
		r, err := e.c.Do(&iscsitest.Cmd{LUN: 0, CDB: cdb, ReadLen: 4096})
		if err != nil {
			e.t.Fatal(err)
		}
		if r.Status == 2 {
			continue // a unit attention reported on REPORT LUNS
		}
		if r.Status != 0 || len(r.Data) < 8 {
			e.t.Fatalf("REPORT LUNS: status %#x data %x", r.Status, r.Data)
		}
		n := binary.BigEndian.Uint32(r.Data) / 8
		var luns []uint64
		for j := uint32(0); j < n && int(8+8*j+8) <= len(r.Data); j++ {
			ent := r.Data[8+8*j:]
			luns = append(luns, uint64(ent[0]&0x3f)<<8|uint64(ent[1]))
		}
		slices.Sort(luns)
		return luns
	}
	e.t.Fatal("REPORT LUNS kept failing")
	return nil
}

// senseCode extracts ASC/ASCQ from fixed or descriptor sense.
func senseCode(s []byte) uint16 {
	switch {
	case len(s) >= 14 && s[0]&0x7e == 0x70:
		return uint16(s[12])<<8 | uint16(s[13])
	case len(s) >= 4 && s[0]&0x7e == 0x72:
		return uint16(s[2])<<8 | uint16(s[3])
	}
	return 0
}

// senseKey extracts the sense key from fixed or descriptor sense.
func senseKey(s []byte) byte {
	switch {
	case len(s) >= 3 && s[0]&0x7e == 0x70:
		return s[2] & 0x0f
	case len(s) >= 2 && s[0]&0x7e == 0x72:
		return s[1] & 0x0f
	}
	return 0
}

// drainUAs sends TEST UNIT READY to lun until it succeeds and returns the
// ASC/ASCQ of every unit attention on the way.
func (e *e2e) drainUAs(lun uint64) []uint16 {
	e.t.Helper()
	var uas []uint16
	for i := 0; i < 8; i++ {
		r, err := e.c.Do(&iscsitest.Cmd{LUN: peripheralLUN(lun), CDB: make([]byte, 6)})
		if err != nil {
			e.t.Fatal(err)
		}
		if r.Status == 0 {
			return uas
		}
		uas = append(uas, senseCode(r.Sense))
	}
	e.t.Fatalf("TEST UNIT READY never succeeded: %x", uas)
	return nil
}

const (
	uaReportedLUNsChanged = 0x3f0e
	uaCapacityChanged     = 0x2a09
)

func TestEndToEnd(t *testing.T) {
	e := startE2E(t)
	img0 := filepath.Join(t.TempDir(), "disk0.img")
	img1 := filepath.Join(t.TempDir(), "disk1.img")
	for _, f := range []string{img0, img1} {
		if err := os.WriteFile(f, make([]byte, 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e.cmd("vdisk/vdisk", "open disk0 "+img0+" 512\x00")
	e.cmd("vdisk/vdisk", "open disk1 "+img1+"  NV_CACHE\x00")
	e.cmd("vdisk/vdisk", "set_t10_dev_id disk0 D0\n\x00")
	e.cmd("groups/Default/devices", "add disk0 0 \n\x00")

	e.login()
	if got := e.reportLUNs(); !slices.Equal(got, []uint64{0}) {
		t.Errorf("REPORT LUNS %v, want [0]", got)
	}
	e.drainUAs(0) // power on / reset
	if s := e.read("sessions"); !strings.Contains(s, "\niscsi                "+e2eInitiator) || !strings.Contains(s, " Default ") {
		t.Errorf("sessions:\n%s", s)
	}
	is := e.read("iscsi/session")
	if !strings.HasPrefix(is, "tid:1 name:"+e2eTarget+"\n\tsid:") || !strings.Contains(is, "initiator:"+e2eInitiator+" (reinstating no)\n\t\tcid:0 ip:127.0.0.1 state:") {
		t.Errorf("iscsi/session:\n%s", is)
	}
	for _, l := range bodyLines([]byte(e.read("vdisk/vdisk"))) {
		m := reHandlerRow.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("vdisk row %q does not parse", l)
		}
		if m[1] == "disk0" && (m[2] != "1" || m[3] != "512" || strings.TrimSpace(m[4]) != "" || m[5] != img0 || strings.TrimSpace(m[6]) != "D0") {
			t.Errorf("disk0 row %q", m[1:])
		}
	}

	// A LUN added to the session's group: REPORTED LUNS DATA HAS CHANGED.
	e.cmd("groups/Default/devices", "add disk1 3 READ_ONLY\n\x00")
	if uas := e.drainUAs(0); !slices.Contains(uas, uaReportedLUNsChanged) {
		t.Errorf("after add: UAs %x, want 3f0e", uas)
	}
	if got := e.reportLUNs(); !slices.Equal(got, []uint64{0, 3}) {
		t.Errorf("REPORT LUNS %v, want [0 3]", got)
	}
	// The READ_ONLY mapping refuses writes (DATA PROTECT), LUN 0 takes them.
	e.drainUAs(3)
	w := &iscsitest.Cmd{LUN: peripheralLUN(3), CDB: iscsitest.Write10(0, 1), Write: make([]byte, 512)}
	if r, err := e.c.Do(w); err != nil || r.Status != 2 || len(r.Sense) < 3 || senseKey(r.Sense) != 7 {
		t.Errorf("WRITE to a READ_ONLY mapping: %+v %v", r, err)
	}
	w.LUN = peripheralLUN(0)
	if r, err := e.c.Do(w); err != nil || r.Status != 0 {
		t.Errorf("WRITE to LUN 0: %+v %v", r, err)
	}

	// The initiator's name moves it to another group.
	e.cmd("scsi_tgt", "add_group g1\n")
	e.cmd("groups/g1/devices", "add disk1 0 \n\x00")
	e.cmd("groups/g1/names", "add "+e2eInitiator+"\n\x00")
	e.drainUAs(0)
	if got := e.reportLUNs(); !slices.Equal(got, []uint64{0}) {
		t.Errorf("in g1: REPORT LUNS %v, want [0]", got)
	}
	if s := e.read("sessions"); !strings.Contains(s, " g1 ") {
		t.Errorf("sessions after moving to g1:\n%s", s)
	}
	// A group with a session cannot be deleted.
	if r := e.w.write(filepath.Join(e.dir, "scsi_tgt/scsi_tgt"), []byte("del_group g1\n")); r.errno == 0 {
		t.Error("del_group of a group with a session succeeded")
	}
	e.cmd("groups/g1/names", "move "+e2eInitiator+" Default\n\x00")
	e.drainUAs(0)
	if got := e.reportLUNs(); !slices.Equal(got, []uint64{0, 3}) {
		t.Errorf("back in Default: REPORT LUNS %v, want [0 3]", got)
	}
	e.cmd("scsi_tgt", "del_group g1\n")

	// resync_size after the image grew: CAPACITY DATA HAS CHANGED.
	if err := os.Truncate(img0, 2<<20); err != nil {
		t.Fatal(err)
	}
	e.cmd("vdisk/vdisk", "resync_size disk0\n\x00")
	if uas := e.drainUAs(0); !slices.Contains(uas, uaCapacityChanged) {
		t.Errorf("after resync_size: UAs %x, want 2a09", uas)
	}

	// iscsi-ls (a second initiator, resolving to Default) sees both LUNs.
	if _, err := exec.LookPath("iscsi-ls"); err == nil {
		out, err := exec.Command("iscsi-ls", "-s", "iscsi://"+e.addr).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Lun:0") || !strings.Contains(string(out), "Lun:3") {
			t.Errorf("iscsi-ls -s: %v\n%s", err, out)
		}
	}

	// A CD-ROM: peripheral type 5; eject and load through vcdrom/vcdrom.
	iso := filepath.Join(t.TempDir(), "cd.iso")
	if err := os.WriteFile(iso, make([]byte, 2048*64), 0o644); err != nil {
		t.Fatal(err)
	}
	e.cmd("vcdrom/vcdrom", "open cd0 "+iso+"\n")
	e.cmd("groups/Default/devices", "add cd0 7\n\x00")
	e.drainUAs(0)
	inq := []byte{0x12, 0, 0, 0, 96, 0}
	if r, err := e.c.Do(&iscsitest.Cmd{LUN: peripheralLUN(7), CDB: inq, ReadLen: 96}); err != nil || r.Status != 0 || len(r.Data) == 0 || r.Data[0]&0x1f != 5 {
		t.Errorf("INQUIRY of the CD-ROM: %+v %v", r, err)
	}
	e.drainUAs(7)
	e.cmd("vcdrom/vcdrom", "change cd0\n")
	if r, err := e.c.Do(&iscsitest.Cmd{LUN: peripheralLUN(7), CDB: make([]byte, 6)}); err != nil || r.Status == 0 {
		t.Errorf("TEST UNIT READY of an ejected CD-ROM succeeded: %+v %v", r, err)
	}
	if cd := e.read("vcdrom/vcdrom"); !strings.Contains(cd, "\ncd0               0         none\n") {
		t.Errorf("vcdrom/vcdrom after eject:\n%s", cd)
	}
	e.cmd("vcdrom/vcdrom", "change cd0 "+iso+"\n")
	e.drainUAs(7) // medium may have changed
	e.cmd("groups/Default/devices", "del cd0\n\x00")
	e.cmd("vcdrom/vcdrom", "close cd0\n")

	// Removing the LUN and closing the device.
	e.cmd("groups/Default/devices", "del disk1\n\x00")
	e.drainUAs(0)
	if got := e.reportLUNs(); !slices.Equal(got, []uint64{0}) {
		t.Errorf("after del: REPORT LUNS %v, want [0]", got)
	}
	e.cmd("vdisk/vdisk", "close disk0 \n\x00")
	// LUN 0 is gone (REPORT LUNS may still list a placeholder LUN 0).
	var asc []uint16
	for i := 0; i < 4; i++ {
		r, err := e.c.Do(&iscsitest.Cmd{LUN: 0, CDB: make([]byte, 6)})
		if err != nil {
			t.Fatal(err)
		}
		asc = append(asc, senseCode(r.Sense))
		if r.Status == 0 {
			break
		}
	}
	if !slices.Contains(asc, 0x2500) {
		t.Errorf("TEST UNIT READY after close: sense %x, want LOGICAL UNIT NOT SUPPORTED (2500)", asc)
	}
	if d := e.read("groups/Default/devices"); strings.Count(d, "\n") != 1 {
		t.Errorf("Default devices after close:\n%s", d)
	}
}
