package conformance

import (
	"encoding/binary"
	"path/filepath"
	"testing"

	"github.com/scstd/scstd/iscsi/iscsitest"
	"github.com/scstd/scstd/target/scsi"
)

// SPC-4 PERSISTENT RESERVE OUT service actions and IN service actions.
const (
	proutRegister = 0x00
	proutReserve  = 0x01
	prinReadKeys  = 0x00
	prinReadResv  = 0x01
)

// prout builds PERSISTENT RESERVE OUT with its 24-byte parameter list.
func prout(sa, typ byte, key, sarKey uint64, aptpl bool) (cdb, param []byte) {
	cdb = make([]byte, 10)
	cdb[0], cdb[1], cdb[2] = scsi.OpPersistentReserveOut, sa, typ
	binary.BigEndian.PutUint32(cdb[5:], 24)
	param = make([]byte, 24)
	binary.BigEndian.PutUint64(param[0:], key)
	binary.BigEndian.PutUint64(param[8:], sarKey)
	if aptpl {
		param[20] = 0x01
	}
	return cdb, param
}

func prin(sa byte, alloc uint16) []byte {
	cdb := make([]byte, 10)
	cdb[0], cdb[1] = scsi.OpPersistentReserveIn, sa
	binary.BigEndian.PutUint16(cdb[7:], alloc)
	return cdb
}

// session logs in to the daemon with the in-repo initiator and consumes
// the unit attention of the new I_T nexus.
func session(t *testing.T, d *daemon, initiator string, isid uint64) *iscsitest.Conn {
	t.Helper()
	c, err := iscsitest.Dial(d.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(iscsitest.Options{InitiatorName: initiator, TargetName: targetIQN, ISID: isid}); err != nil {
		t.Fatalf("login as %s: %v", initiator, err)
	}
	for i := 0; ; i++ {
		res, err := c.Do(&iscsitest.Cmd{CDB: make([]byte, 6)})
		if err != nil {
			t.Fatalf("TEST UNIT READY: %v", err)
		}
		if res.Status == scsi.StatusGood {
			return c
		}
		if i == 8 {
			t.Fatalf("unit attentions do not clear: status %#x sense %x", res.Status, res.Sense)
		}
	}
}

func do(t *testing.T, c *iscsitest.Conn, what string, cmd *iscsitest.Cmd) *iscsitest.Result {
	t.Helper()
	res, err := c.Do(cmd)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if res.Status != scsi.StatusGood {
		t.Fatalf("%s: status %#x sense %x", what, res.Status, res.Sense)
	}
	return res
}

// A persistent reservation taken with APTPL before a daemon restart is
// reported by READ RESERVATION (and its registrations by READ KEYS) after
// it, and still keeps a non-registrant from writing.
func TestReservationSurvivesRestart(t *testing.T) {
	const (
		holder   = "iqn.2026-11.test:pr-holder"
		outsider = "iqn.2026-11.test:pr-outsider"
		key      = 0x5c57d00000000001
		typ      = 0x03 // EXCLUSIVE ACCESS
	)
	dir := t.TempDir()
	cfg := daemonConfig{Dir: dir, Initiators: []string{holder, outsider}, Devices: []device{
		{Name: "prdisk", Path: filepath.Join(dir, "prdisk.img"), Size: 64 << 20, BlockSize: 512},
	}}
	d := startDaemon(t, cfg)
	c := session(t, d, holder, 0x400000000011)
	cdb, p := prout(proutRegister, 0, 0, key, true)
	do(t, c, "REGISTER with APTPL", &iscsitest.Cmd{CDB: cdb, Write: p})
	cdb, p = prout(proutReserve, typ, key, 0, false)
	do(t, c, "RESERVE", &iscsitest.Cmd{CDB: cdb, Write: p})
	c.Close()
	if !d.Stop() {
		t.Fatal("daemon did not exit cleanly")
	}

	d = startDaemon(t, cfg)
	o := session(t, d, outsider, 0x400000000012)
	res := do(t, o, "READ RESERVATION", &iscsitest.Cmd{CDB: prin(prinReadResv, 64), ReadLen: 64})
	if len(res.Data) < 24 || binary.BigEndian.Uint32(res.Data[4:]) != 16 {
		t.Fatalf("READ RESERVATION after restart reports no reservation: %x", res.Data)
	}
	if k, ty := binary.BigEndian.Uint64(res.Data[8:]), res.Data[21]&0x0f; k != key || ty != typ {
		t.Fatalf("reservation key %#x type %d after restart, want %#x type %d", k, ty, uint64(key), typ)
	}
	res = do(t, o, "READ KEYS", &iscsitest.Cmd{CDB: prin(prinReadKeys, 64), ReadLen: 64})
	if len(res.Data) < 16 || binary.BigEndian.Uint32(res.Data[4:]) != 8 || binary.BigEndian.Uint64(res.Data[8:]) != key {
		t.Fatalf("READ KEYS after restart: %x, want the one key %#x", res.Data, uint64(key))
	}
	// EXCLUSIVE ACCESS: a non-registrant's write is a conflict.
	w, err := o.Do(&iscsitest.Cmd{CDB: iscsitest.Write10(0, 1), Write: make([]byte, 512)})
	if err != nil {
		t.Fatal(err)
	}
	if w.Status != scsi.StatusReservationConflict {
		t.Fatalf("write by a non-registrant after restart: status %#x, want RESERVATION CONFLICT", w.Status)
	}
}
