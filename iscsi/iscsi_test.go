package iscsi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/scstd/scstd/iscsi/iscsitest"
	"github.com/scstd/scstd/iscsi/param"
	"github.com/scstd/scstd/iscsi/pdu"
	"github.com/scstd/scstd/target/scsi"
)

func TestLoginReadWrite(t *testing.T) {
	e := newEnv(t)
	c := e.login(t, iscsitest.Options{})
	if c.TSIH == 0 {
		t.Fatal("TSIH 0 after login")
	}
	if c.Answers["TargetPortalGroupTag"] != "1" {
		t.Errorf("TargetPortalGroupTag %q", c.Answers["TargetPortalGroupTag"])
	}
	res, err := c.Do(&iscsitest.Cmd{CDB: []byte{0x12, 0, 0, 0, 36, 0}, ReadLen: 36})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != 0 || !bytes.Contains(res.Data, []byte("RAMDISK")) {
		t.Fatalf("inquiry: status %d data %q", res.Status, res.Data)
	}
	data := pattern(8*blockSize, 3)
	res, err = c.Do(&iscsitest.Cmd{CDB: iscsitest.Write10(10, 8), Write: data})
	if err != nil || res.Status != 0 {
		t.Fatalf("write: %v %+v", err, res)
	}
	if got := e.disk.bytes(10*blockSize, len(data)); !bytes.Equal(got, data) {
		t.Fatal("disk content differs after write")
	}
	res, err = c.Do(&iscsitest.Cmd{CDB: iscsitest.Read10(10, 8), ReadLen: uint32(len(data))})
	if err != nil || res.Status != 0 || !bytes.Equal(res.Data, data) {
		t.Fatalf("read back: %v status %d equal %v", err, res.Status, bytes.Equal(res.Data, data))
	}
	if res.Flags != 0 || res.Residual != 0 {
		t.Errorf("unexpected residual flags %#x %d", res.Flags, res.Residual)
	}
	if r, err := c.Logout(0); err != nil || r != 0 {
		t.Fatalf("logout: %d %v", r, err)
	}
	if _, _, err := c.Recv(); err == nil {
		t.Fatal("connection still open after logout")
	}
}

// TestDataTransferModes writes and reads back with every combination of
// the data-out keys, with burst and segment sizes small enough to split.
func TestDataTransferModes(t *testing.T) {
	type mode struct {
		initialR2T, immediate bool
		firstBurst, maxBurst  uint32
		targetMRDSL           uint32 // target's MaxRecvDataSegmentLength
		initMRDSL             uint32 // initiator's MaxRecvDataSegmentLength
		maxR2T                uint32
		digest                bool
	}
	modes := []mode{
		{initialR2T: true, immediate: false, firstBurst: 65536, maxBurst: 262144, targetMRDSL: 8192, initMRDSL: 8192, maxR2T: 1},
		{initialR2T: true, immediate: true, firstBurst: 4096, maxBurst: 8192, targetMRDSL: 1024, initMRDSL: 512, maxR2T: 1},
		{initialR2T: false, immediate: true, firstBurst: 4096, maxBurst: 8192, targetMRDSL: 1024, initMRDSL: 1536, maxR2T: 4},
		{initialR2T: false, immediate: false, firstBurst: 2048, maxBurst: 4096, targetMRDSL: 512, initMRDSL: 4096, maxR2T: 2},
		{initialR2T: false, immediate: true, firstBurst: 65536, maxBurst: 65536, targetMRDSL: 65536, initMRDSL: 65536, maxR2T: 8, digest: true},
		{initialR2T: true, immediate: true, firstBurst: 512, maxBurst: 512, targetMRDSL: 512, initMRDSL: 512, maxR2T: 3, digest: true},
	}
	sizes := []int{blockSize, 3 * blockSize, 16 * blockSize, 129 * blockSize, 600 * blockSize}
	for i, m := range modes {
		t.Run(fmt.Sprintf("mode%d", i), func(t *testing.T) {
			e := newEnv(t, withParams(func(p *param.Config) {
				p.MaxRecvDataSegmentLength = m.targetMRDSL
				p.MaxOutstandingR2T = 32
			}))
			yn := func(b bool) string {
				if b {
					return "Yes"
				}
				return "No"
			}
			c := e.login(t, iscsitest.Options{HeaderDigest: m.digest, DataDigest: m.digest, Keys: []param.KV{
				{Key: "InitialR2T", Value: yn(m.initialR2T)},
				{Key: "ImmediateData", Value: yn(m.immediate)},
				{Key: "FirstBurstLength", Value: strconv.Itoa(int(m.firstBurst))},
				{Key: "MaxBurstLength", Value: strconv.Itoa(int(m.maxBurst))},
				{Key: "MaxRecvDataSegmentLength", Value: strconv.Itoa(int(m.initMRDSL))},
				{Key: "MaxOutstandingR2T", Value: strconv.Itoa(int(m.maxR2T))},
			}})
			if c.InitialR2T != m.initialR2T || c.ImmediateData != m.immediate || c.MaxBurst != m.maxBurst ||
				c.FirstBurst != m.firstBurst || c.TargetMRDSL != m.targetMRDSL || c.MaxOutstandingR2T != m.maxR2T {
				t.Fatalf("negotiated %+v", c.Answers)
			}
			for j, n := range sizes {
				data := pattern(n, byte(i*10+j))
				lba := uint32(j * 1000)
				res, err := c.Do(&iscsitest.Cmd{CDB: iscsitest.Write10(lba, uint16(n/blockSize)), Write: data})
				if err != nil || res.Status != 0 {
					t.Fatalf("write %d: %v %+v", n, err, res)
				}
				// Unsolicited data: immediate plus, without InitialR2T,
				// Data-Out up to FirstBurstLength; R2Ts for the rest in
				// MaxBurstLength pieces.
				unsol := 0
				if m.immediate {
					unsol = min(n, int(m.firstBurst), int(m.targetMRDSL))
				}
				if !m.initialR2T {
					unsol = min(n, int(m.firstBurst))
				}
				wantR2T := (n - unsol + int(m.maxBurst) - 1) / int(m.maxBurst)
				if res.R2Ts != wantR2T {
					t.Errorf("write %d: %d R2Ts, want %d", n, res.R2Ts, wantR2T)
				}
				if got := e.disk.bytes(int(lba)*blockSize, n); !bytes.Equal(got, data) {
					t.Fatalf("write %d: disk differs", n)
				}
				res, err = c.Do(&iscsitest.Cmd{CDB: iscsitest.Read10(lba, uint16(n/blockSize)), ReadLen: uint32(n)})
				if err != nil || res.Status != 0 || !bytes.Equal(res.Data, data) {
					t.Fatalf("read %d: %v", n, err)
				}
				seg := min(int(m.initMRDSL), 262144)
				want := 0
				for off := 0; off < n; off += int(m.maxBurst) {
					b := min(int(m.maxBurst), n-off)
					want += (b + seg - 1) / seg
				}
				if res.DataPDUs != want {
					t.Errorf("read %d: %d Data-In PDUs, want %d", n, res.DataPDUs, want)
				}
			}
		})
	}
}

func TestResiduals(t *testing.T) {
	e := newEnv(t)
	c := e.login(t, iscsitest.Options{})
	u32 := func(v uint32) *uint32 { return &v }
	tests := []struct {
		name     string
		cmd      iscsitest.Cmd
		flags    byte
		residual uint32
		dataLen  int
	}{
		{"read EDTL 0", iscsitest.Cmd{CDB: iscsitest.Read10(0, 1), ReadLen: 0, EDTL: u32(0)}, pdu.FlagOver, blockSize, 0},
		{"read EDTL 10000", iscsitest.Cmd{CDB: iscsitest.Read10(0, 1), ReadLen: 10000}, pdu.FlagUnder, 10000 - blockSize, blockSize},
		{"read EDTL 200", iscsitest.Cmd{CDB: iscsitest.Read10(0, 1), ReadLen: 200}, pdu.FlagOver, blockSize - 200, 200},
		{"read 2 blocks EDTL 1 block", iscsitest.Cmd{CDB: iscsitest.Read10(0, 2), ReadLen: blockSize}, pdu.FlagOver, blockSize, blockSize},
		{"write overflow", iscsitest.Cmd{CDB: iscsitest.Write10(0, 2), Write: make([]byte, blockSize)}, pdu.FlagOver, blockSize, 0},
		{"write underflow", iscsitest.Cmd{CDB: iscsitest.Write10(0, 1), Write: make([]byte, 2*blockSize)}, pdu.FlagUnder, blockSize, 0},
		{"inquiry short", iscsitest.Cmd{CDB: []byte{0x12, 0, 0, 0, 255, 0}, ReadLen: 255}, pdu.FlagUnder, 255 - 36, 36},
		{"exact", iscsitest.Cmd{CDB: iscsitest.Read10(0, 1), ReadLen: blockSize}, 0, 0, blockSize},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := c.Do(&tc.cmd)
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != 0 || res.Flags != tc.flags || res.Residual != tc.residual || len(res.Data) != tc.dataLen {
				t.Fatalf("status %d flags %#x residual %d data %d; want flags %#x residual %d data %d",
					res.Status, res.Flags, res.Residual, len(res.Data), tc.flags, tc.residual, tc.dataLen)
			}
		})
	}
}

func TestCheckConditionSense(t *testing.T) {
	e := newEnv(t)
	c := e.login(t, iscsitest.Options{})
	res, err := c.Do(&iscsitest.Cmd{CDB: iscsitest.Read10(1<<30, 1), ReadLen: blockSize})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != scsi.StatusCheckCondition || len(res.Sense) < 14 || res.Sense[2]&0xf != scsi.SenseIllegalRequest || res.Sense[12] != 0x21 {
		t.Fatalf("status %d sense %x", res.Status, res.Sense)
	}
	// Unmapped LUN: answered by the core.
	res, err = c.Do(&iscsitest.Cmd{LUN: 5 << 48, CDB: []byte{0, 0, 0, 0, 0, 0}})
	if err != nil || res.Status != scsi.StatusCheckCondition {
		t.Fatalf("unmapped LUN: %v %+v", err, res)
	}
}

func TestCmdSNWindow(t *testing.T) {
	e := newEnv(t, withParams(func(p *param.Config) { p.QueuedCommands = 8 }))
	c := e.login(t, iscsitest.Options{})
	if _, err := c.NOP(nil); err != nil {
		t.Fatal(err)
	}
	if c.MaxCmdSN != c.ExpCmdSN+7 {
		t.Fatalf("ExpCmdSN %d MaxCmdSN %d, want window of 8", c.ExpCmdSN, c.MaxCmdSN)
	}
	tur := []byte{0, 0, 0, 0, 0, 0}
	// Too high and too low: silently ignored.
	for _, sn := range []uint32{c.MaxCmdSN + 1, c.ExpCmdSN - 1} {
		saved := c.CmdSN
		c.CmdSN = sn
		if _, err := c.SendCommand(&iscsitest.Cmd{CDB: tur}); err != nil {
			t.Fatal(err)
		}
		c.CmdSN = saved
		c.Timeout = 300 * time.Millisecond
		if h, _, err := c.Recv(); err == nil {
			t.Fatalf("CmdSN %d answered with %v", sn, h.Opcode())
		}
		c.NC.SetReadDeadline(time.Time{})
		// A read timeout leaves the reader usable (nothing was consumed).
		c.Timeout = 10 * time.Second
	}
	res, err := c.Do(&iscsitest.Cmd{CDB: tur})
	if err != nil || res.Status != 0 {
		t.Fatalf("TUR after ignored commands: %v", err)
	}
	// Out of order: n+1 first, then n; both complete and ExpCmdSN covers both.
	n := c.CmdSN
	c.CmdSN = n + 1
	itt2, _ := c.SendCommand(&iscsitest.Cmd{CDB: tur})
	c.Timeout = 200 * time.Millisecond
	if _, _, err := c.Recv(); err == nil {
		t.Fatal("command ahead of ExpCmdSN executed early")
	}
	c.Timeout = 10 * time.Second
	c.CmdSN = n
	itt1, _ := c.SendCommand(&iscsitest.Cmd{CDB: tur})
	c.CmdSN = n + 2
	got := map[uint32]bool{}
	for range 2 {
		h, _, err := c.Recv()
		if err != nil {
			t.Fatal(err)
		}
		got[h.ITT()] = true
	}
	if !got[itt1] || !got[itt2] || c.ExpCmdSN != n+2 {
		t.Fatalf("got %v ExpCmdSN %d want %d", got, c.ExpCmdSN, n+2)
	}
}

func TestNOP(t *testing.T) {
	e := newEnv(t)
	c := e.login(t, iscsitest.Options{})
	data := []byte("are you there?")
	got, err := c.NOP(data)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("NOP echo %q %v", got, err)
	}
	// ITT 0xffffffff: no answer.
	var h pdu.BHS
	h.SetOpcode(pdu.OpNOPOut, true)
	h.SetFinal(true)
	h.SetITT(pdu.ReservedTag)
	h.SetTTT(pdu.ReservedTag)
	h.SetCmdSN(c.CmdSN)
	c.Send(&h, nil, nil)
	c.Timeout = 200 * time.Millisecond
	if rh, _, err := c.Recv(); err == nil {
		t.Fatalf("unsolicited NOP-Out answered with %v", rh.Opcode())
	}
}

// TestNOPUnderLoad checks a NOP-Out is answered at once while the window is
// full of slow commands (a reader that executes commands inline fails this).
func TestNOPUnderLoad(t *testing.T) {
	e := newEnv(t)
	e.disk.delay.Store(int64(time.Second))
	c := e.login(t, iscsitest.Options{})
	const n = 24
	for i := range n {
		if _, err := c.SendCommand(&iscsitest.Cmd{CDB: iscsitest.Read10(uint32(i), 8), ReadLen: 8 * blockSize}); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	var h pdu.BHS
	h.SetOpcode(pdu.OpNOPOut, true)
	h.SetFinal(true)
	h.SetITT(0xabcdef)
	h.SetTTT(pdu.ReservedTag)
	h.SetCmdSN(c.CmdSN)
	if err := c.Send(&h, nil, nil); err != nil {
		t.Fatal(err)
	}
	rh, _, err := c.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if rh.Opcode() != pdu.OpNOPIn || rh.ITT() != 0xabcdef {
		t.Fatalf("first PDU is %v ITT %#x, want the NOP-In", rh.Opcode(), rh.ITT())
	}
	if d := time.Since(start); d > 800*time.Millisecond {
		t.Fatalf("NOP-In took %v", d)
	}
	for done := 0; done < n; {
		rh, _, err := c.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if rh.Opcode() == pdu.OpDataIn && rh.Flags()&pdu.FlagStatus != 0 || rh.Opcode() == pdu.OpSCSIResp {
			done++
		}
	}
}

func TestTargetPing(t *testing.T) {
	e := newEnv(t, withParams(func(p *param.Config) { p.NopInInterval = 1; p.NopInTimeout = 2 }))
	c := e.login(t, iscsitest.Options{})
	// Answered pings keep the connection up.
	c.Timeout = 5 * time.Second
	if _, err := c.NOP(nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond)
	if _, err := c.NOP(nil); err != nil {
		t.Fatal(err)
	}
	if c.Pings == 0 {
		t.Fatal("no NOP-In ping seen")
	}
	// An unanswered ping closes the connection after NopInTimeout.
	c2 := e.login(t, iscsitest.Options{ISID: 0x400000000002})
	c2.Timeout = 8 * time.Second
	start := time.Now()
	for {
		h, _, err := c2.Recv()
		if err != nil {
			break
		}
		if h.Opcode() != pdu.OpNOPIn || h.TTT() == pdu.ReservedTag {
			t.Fatalf("unexpected %v", h.Opcode())
		}
	}
	if d := time.Since(start); d < 2*time.Second || d > 6*time.Second {
		t.Fatalf("connection closed after %v", d)
	}
}

func TestTaskManagement(t *testing.T) {
	e := newEnv(t)
	c := e.login(t, iscsitest.Options{})
	// ABORT TASK of a completed command: task does not exist.
	cmd := &iscsitest.Cmd{CDB: iscsitest.Read10(0, 1), ReadLen: blockSize}
	itt, _ := c.SendCommand(cmd)
	sn := c.CmdSN - 1
	if _, err := c.Complete(cmd, itt); err != nil {
		t.Fatal(err)
	}
	if r, err := c.TMF(1, 0, itt, sn); err != nil || r != 1 {
		t.Fatalf("abort of completed task: %d %v", r, err)
	}
	// ABORT TASK of a running command: complete, and no response for it.
	release := e.disk.hold()
	itt, _ = c.SendCommand(cmd)
	sn = c.CmdSN - 1
	waitFor(t, func() bool { return e.disk.execs.Load() >= 2 })
	tmfITT, _ := c.SendTMF(1, 0, itt, sn)
	time.AfterFunc(100*time.Millisecond, release)
	h, _, err := c.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if h.Opcode() != pdu.OpTMFResp || h.ITT() != tmfITT || h.Response() != 0 {
		t.Fatalf("got %v ITT %#x response %d, want TMF complete", h.Opcode(), h.ITT(), h.Response())
	}
	e.disk.gate.Store(nil)
	// ABORT TASK of a write still waiting for R2T data: aborted locally.
	w := &iscsitest.Cmd{CDB: iscsitest.Write10(0, 4), Write: make([]byte, 4*blockSize), NoImmediate: true, NoUnsolicited: true}
	c.ImmediateData = false
	itt, _ = c.SendCommand(w)
	sn = c.CmdSN - 1
	if h, _, err = c.Recv(); err != nil || h.Opcode() != pdu.OpR2T {
		t.Fatalf("want R2T: %v", err)
	}
	if r, err := c.TMF(1, 0, itt, sn); err != nil || r != 0 {
		t.Fatalf("abort of waiting write: %d %v", r, err)
	}
	// ABORT TASK for a CmdSN inside the window that never arrived.
	if r, err := c.TMF(1, 0, 0x7777, c.CmdSN); err != nil || r != 0 {
		t.Fatalf("abort of unreceived CmdSN: %d %v", r, err)
	}
	c.CmdSN++ // that CmdSN counts as received
	for _, fn := range []uint8{2, 4, 5, 6} {
		if r, err := c.TMF(fn, 0, 0, 0); err != nil || r != 0 {
			t.Fatalf("TMF %d: %d %v", fn, r, err)
		}
	}
	for fn, want := range map[uint8]byte{8: 4, 99: 255} { // 7, TARGET COLD RESET: tmf_test.go
		if r, err := c.TMF(fn, 0, 0, 0); err != nil || r != want {
			t.Fatalf("TMF %d: %d %v, want %d", fn, r, err, want)
		}
	}
	// The session still works and the window is intact (after the unit
	// attention the resets left).
	for i := 0; i < 4; i++ {
		if res, err := c.Do(&iscsitest.Cmd{CDB: make([]byte, 6)}); err != nil || res.Status == 0 {
			break
		}
	}
	res, err := c.Do(&iscsitest.Cmd{CDB: iscsitest.Read10(0, 1), ReadLen: blockSize})
	if err != nil || res.Status != 0 {
		t.Fatalf("read after TMFs: %v %+v", err, res)
	}
}

// expectClosed checks the target closed the connection (rather than just
// not answering).
func expectClosed(t *testing.T, c *iscsitest.Conn) {
	t.Helper()
	c.Timeout = 3 * time.Second
	for {
		h, _, err := c.Recv()
		if err == nil {
			if h.Opcode() == pdu.OpNOPIn || h.Opcode() == pdu.OpReject {
				continue
			}
			t.Fatalf("got %v, want the connection closed", h.Opcode())
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("connection still open")
		}
		return
	}
}

func waitFor(t *testing.T, f func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !f(); {
		if time.Now().After(deadline) {
			t.Fatal("timeout waiting for condition")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestDataSNErrors(t *testing.T) {
	e := newEnv(t)
	c := e.login(t, iscsitest.Options{Keys: []param.KV{{Key: "InitialR2T", Value: "Yes"}, {Key: "ImmediateData", Value: "No"}}})
	tests := []struct {
		name   string
		dataSN func(i uint32) uint32
		offset func(i uint32) uint32
	}{
		{"both DataSN 0", func(uint32) uint32 { return 0 }, func(i uint32) uint32 { return i * blockSize }},
		{"DataSN 27", func(i uint32) uint32 { return 27 }, func(i uint32) uint32 { return i * blockSize }},
		{"DataSN reversed", func(i uint32) uint32 { return 1 - i }, func(i uint32) uint32 { return i * blockSize }},
		{"bad offset", func(i uint32) uint32 { return i }, func(i uint32) uint32 { return 100 + i*blockSize }},
	}
	c.TargetMRDSL = blockSize
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := &iscsitest.Cmd{CDB: iscsitest.Write10(100, 2), Write: make([]byte, 2*blockSize)}
			itt, err := c.SendCommand(cmd)
			if err != nil {
				t.Fatal(err)
			}
			h, _, err := c.Recv()
			if err != nil || h.Opcode() != pdu.OpR2T {
				t.Fatalf("want R2T: %v", err)
			}
			for i := uint32(0); i < 2; i++ {
				var d pdu.BHS
				d.SetOpcode(pdu.OpDataOut, false)
				d.SetFinal(i == 1)
				d.SetITT(itt)
				d.SetTTT(h.TTT())
				d.SetDataSN(tc.dataSN(i))
				d.SetBufferOffset(tc.offset(i))
				c.Send(&d, nil, make([]byte, blockSize))
			}
			rh, data, err := c.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if rh.Opcode() != pdu.OpSCSIResp || rh.ITT() != itt || rh.Status() != scsi.StatusCheckCondition || len(data) < 16 || data[2+2]&0xf != scsi.SenseAbortedCommand {
				t.Fatalf("got %v status %d sense %x", rh.Opcode(), rh.Status(), data)
			}
		})
	}
	if res, err := c.Do(&iscsitest.Cmd{CDB: iscsitest.Read10(0, 1), ReadLen: blockSize}); err != nil || res.Status != 0 {
		t.Fatalf("session unusable after data errors: %v", err)
	}
}

func TestDiscovery(t *testing.T) {
	e := newEnv(t, func(f *configFile, _ *Options) {
		for i := 2; i <= 40; i++ {
			f.Targets = append(f.Targets, newTarget(uint32(i), fmt.Sprintf("iqn.2026-01.test:a-rather-long-target-name-number-%03d", i)))
		}
		f.Targets = append(f.Targets, newTarget(41, "iqn.2026-01.test:hidden"))
	})
	// Target-oriented group without LUNs hides the target (spec §2.5).
	if err := e.core.AddGroup("Default_iqn.2026-01.test:hidden", 0); err != nil {
		t.Fatal(err)
	}
	c, err := iscsitest.Dial(e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(iscsitest.Options{Keys: []param.KV{{Key: "MaxRecvDataSegmentLength", Value: "512"}}}); err != nil {
		t.Fatal(err)
	}
	kvs, err := c.Text([]param.KV{{Key: "SendTargets", Value: "All"}})
	if err != nil {
		t.Fatal(err)
	}
	names := 0
	for i, kv := range kvs {
		if kv.Key != "TargetName" {
			continue
		}
		names++
		if kv.Value == "iqn.2026-01.test:hidden" {
			t.Error("hidden target listed")
		}
		if i+1 >= len(kvs) || kvs[i+1].Key != "TargetAddress" || kvs[i+1].Value != e.addr+",1" {
			t.Fatalf("TargetAddress after %s: %v", kv.Value, kvs[i+1:])
		}
	}
	if names != 40 {
		t.Fatalf("%d targets listed, want 40", names)
	}
	kvs, err = c.Text([]param.KV{{Key: "SendTargets", Value: testTarget}})
	if err != nil || len(kvs) != 2 || kvs[0].Value != testTarget {
		t.Fatalf("SendTargets=<name>: %v %v", kvs, err)
	}
	// SCSI commands are not allowed in discovery sessions.
	if _, err := c.Do(&iscsitest.Cmd{CDB: []byte{0, 0, 0, 0, 0, 0}}); err == nil {
		t.Fatal("SCSI command accepted in discovery session")
	}
	if r, err := c.Logout(0); err != nil || r != 0 {
		t.Fatalf("logout %d %v", r, err)
	}
	// Login to the hidden target is refused as "not found".
	c2, _ := iscsitest.Dial(e.addr)
	defer c2.Close()
	err = c2.Login(iscsitest.Options{TargetName: "iqn.2026-01.test:hidden"})
	var le *iscsitest.LoginError
	if !errors.As(err, &le) || le.Status != 0x0203 {
		t.Fatalf("hidden target login: %v", err)
	}
	// In a normal session SendTargets lists only its target.
	c3 := e.login(t, iscsitest.Options{})
	kvs, err = c3.Text([]param.KV{{Key: "SendTargets", Value: "All"}})
	if err != nil || len(kvs) != 2 || kvs[0].Value != testTarget {
		t.Fatalf("normal-session SendTargets: %v %v", kvs, err)
	}
}

func TestLoginFailures(t *testing.T) {
	e := newEnv(t, func(f *configFile, _ *Options) {
		f.Targets = append(f.Targets, newTarget(2, "iqn.2026-01.test:limited"))
		f.Targets[1].Params.MaxSessions = 1
	})
	tests := []struct {
		name   string
		opts   iscsitest.Options
		status uint16
	}{
		{"unknown target", iscsitest.Options{TargetName: "iqn.2026-01.test:nope"}, 0x0203},
		{"bad TSIH", iscsitest.Options{TargetName: testTarget, TSIH: 77}, 0x020a},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := iscsitest.Dial(e.addr)
			defer c.Close()
			err := c.Login(tc.opts)
			var le *iscsitest.LoginError
			if !errors.As(err, &le) || le.Status != tc.status {
				t.Fatalf("got %v want status %#04x", err, tc.status)
			}
			if _, _, err := c.Recv(); err == nil {
				t.Fatal("connection open after failed login")
			}
		})
	}
	t.Run("missing InitiatorName", func(t *testing.T) {
		c, _ := iscsitest.Dial(e.addr)
		defer c.Close()
		var h pdu.BHS
		h.SetOpcode(pdu.OpLoginReq, true)
		h.SetLoginFlags(true, false, 0, 1)
		h.SetISID(1)
		c.Send(&h, nil, param.AppendText(nil, []param.KV{{Key: "TargetName", Value: testTarget}}))
		rh, _, err := c.Recv()
		if err != nil || rh.StatusClass() != 2 || rh.StatusDetail() != 7 {
			t.Fatalf("%v %v", rh, err)
		}
	})
	t.Run("MaxSessions", func(t *testing.T) {
		e.login(t, iscsitest.Options{TargetName: "iqn.2026-01.test:limited", ISID: 0x400000000010})
		c, _ := iscsitest.Dial(e.addr)
		defer c.Close()
		err := c.Login(iscsitest.Options{TargetName: "iqn.2026-01.test:limited", ISID: 0x400000000011})
		var le *iscsitest.LoginError
		if !errors.As(err, &le) || le.Status != 0x0302 {
			t.Fatalf("second session: %v", err)
		}
	})
}

func TestCHAP(t *testing.T) {
	e := newEnv(t, withAccounts(authAccounts("alice", "alicesecret12", "tgt", "targetsecret12")))
	c := e.login(t, iscsitest.Options{User: "alice", Secret: "alicesecret12"})
	if res, err := c.Do(&iscsitest.Cmd{CDB: []byte{0, 0, 0, 0, 0, 0}}); err != nil || res.Status != 0 {
		t.Fatalf("TUR after CHAP: %v", err)
	}
	found := false
	for _, s := range e.core.Sessions() {
		if s.Info.Initiator == "alice@iqn.2026-01.test:initiator" {
			found = true
		}
	}
	if !found {
		t.Errorf("core session not named chapuser@initiator: %+v", e.core.Sessions())
	}
	e.login(t, iscsitest.Options{ISID: 0x400000000002, User: "alice", Secret: "alicesecret12", TargetUser: "tgt", TargetSecret: "targetsecret12"})
	for _, o := range []iscsitest.Options{
		{ISID: 0x400000000003, User: "alice", Secret: "wrongsecret1234"},
		{ISID: 0x400000000004},
		{ISID: 0x400000000005, SkipSecurity: true},
	} {
		c, _ := iscsitest.Dial(e.addr)
		o.TargetName = testTarget
		err := c.Login(o)
		c.Close()
		var le *iscsitest.LoginError
		if !errors.As(err, &le) || le.Status != 0x0201 {
			t.Errorf("login %+v: %v, want auth failure", o, err)
		}
	}
}

func TestDigests(t *testing.T) {
	e := newEnv(t, withParams(func(p *param.Config) {
		p.HeaderDigest = []string{"CRC32C", "None"}
		p.DataDigest = []string{"CRC32C", "None"}
	}))
	c := e.login(t, iscsitest.Options{HeaderDigest: true, DataDigest: true})
	if c.Answers["HeaderDigest"] != "CRC32C" || c.Answers["DataDigest"] != "CRC32C" {
		t.Fatalf("digests %v", c.Answers)
	}
	data := pattern(64*blockSize, 9)
	if res, err := c.Do(&iscsitest.Cmd{CDB: iscsitest.Write10(0, 64), Write: data}); err != nil || res.Status != 0 {
		t.Fatalf("write: %v", err)
	}
	res, err := c.Do(&iscsitest.Cmd{CDB: iscsitest.Read10(0, 64), ReadLen: uint32(len(data))})
	if err != nil || !bytes.Equal(res.Data, data) {
		t.Fatalf("read: %v", err)
	}
	st := e.srv.Targets()
	if len(st) != 1 || len(st[0].Sessions) != 1 || st[0].Sessions[0].Conns[0].HeaderDigest != "crc32c" {
		t.Fatalf("Targets() %+v", st)
	}
	// A corrupted header digest drops the connection.
	var h pdu.BHS
	h.SetOpcode(pdu.OpNOPOut, true)
	h.SetFinal(true)
	h.SetITT(5)
	raw := append(h[:], 1, 2, 3, 4)
	c.SendRaw(raw)
	expectClosed(t, c)
}

func TestMalformedPDUs(t *testing.T) {
	e := newEnv(t, withParams(func(p *param.Config) { p.MaxRecvDataSegmentLength = 8192 }))
	good := e.login(t, iscsitest.Options{})
	var bad [][]byte
	{
		var h pdu.BHS // SCSI command with a data segment beyond MRDSL
		h.SetOpcode(pdu.OpSCSICmd, false)
		h.SetFlags(pdu.FlagFinal | pdu.FlagWrite)
		h.SetDataSegmentLength(65536)
		bad = append(bad, h[:])
	}
	{
		var h pdu.BHS // immediate data on a read
		h.SetOpcode(pdu.OpSCSICmd, false)
		h.SetFlags(pdu.FlagFinal | pdu.FlagRead)
		h.SetEDTL(512)
		h.SetDataSegmentLength(4)
		bad = append(bad, append(h[:], 1, 2, 3, 4))
	}
	{
		var h pdu.BHS // login in full feature phase
		h.SetOpcode(pdu.OpLoginReq, true)
		bad = append(bad, h[:])
	}
	{
		var h pdu.BHS // malformed AHS
		h.SetOpcode(pdu.OpSCSICmd, false)
		h.SetFlags(pdu.FlagFinal)
		h[4] = 1
		bad = append(bad, append(h[:], 0, 200, 1, 0))
	}
	for i, b := range bad {
		c := e.login(t, iscsitest.Options{ISID: 0x400000000100 + uint64(i)})
		c.SendRaw(b)
		expectClosed(t, c)
	}
	// An unknown opcode is rejected without closing.
	c := e.login(t, iscsitest.Options{ISID: 0x400000000200})
	var h pdu.BHS
	h.SetOpcode(0x1c, true)
	h.SetITT(9)
	c.Send(&h, nil, nil)
	rh, data, err := c.Recv()
	if err != nil || rh.Opcode() != pdu.OpReject || rh.Reason() != rejectNotSupported || len(data) != 48 || data[0]&0x3f != 0x1c {
		t.Fatalf("unknown opcode: %v %v", rh, err)
	}
	// SNACK at ERL 0 is rejected.
	h = pdu.BHS{}
	h.SetOpcode(pdu.OpSNACKReq, false)
	c.Send(&h, nil, nil)
	if rh, _, err = c.Recv(); err != nil || rh.Opcode() != pdu.OpReject {
		t.Fatalf("SNACK: %v", err)
	}
	if _, err := c.NOP([]byte("ok")); err != nil {
		t.Fatal(err)
	}
	// Garbage before login.
	raw, _ := iscsitest.Dial(e.addr)
	raw.SendRaw(bytes.Repeat([]byte{0xff}, 2000))
	expectClosed(t, raw)
	raw.Close()
	// The first session is unaffected.
	if res, err := good.Do(&iscsitest.Cmd{CDB: iscsitest.Read10(0, 1), ReadLen: blockSize}); err != nil || res.Status != 0 {
		t.Fatalf("good session broken: %v", err)
	}
}

func TestReinstatement(t *testing.T) {
	e := newEnv(t)
	c1 := e.login(t, iscsitest.Options{ISID: 0x400000000042})
	tsih1 := c1.TSIH
	c2 := e.login(t, iscsitest.Options{ISID: 0x400000000042})
	if c2.TSIH == tsih1 {
		t.Fatal("reinstated session kept the TSIH")
	}
	expectClosed(t, c1)
	if res, err := c2.Do(&iscsitest.Cmd{CDB: []byte{0, 0, 0, 0, 0, 0}}); err != nil || res.Status != 0 {
		t.Fatalf("new session: %v", err)
	}
	if st := e.srv.Targets(); len(st[0].Sessions) != 1 {
		t.Fatalf("%d sessions after reinstatement", len(st[0].Sessions))
	}
}

func TestShutdownInFlight(t *testing.T) {
	e := newEnv(t)
	e.disk.delay.Store(int64(300 * time.Millisecond))
	c := e.login(t, iscsitest.Options{})
	const n = 8
	for i := range n {
		c.SendCommand(&iscsitest.Cmd{CDB: iscsitest.Read10(uint32(i), 1), ReadLen: blockSize})
	}
	waitFor(t, func() bool { return e.disk.execs.Load() == n })
	done := make(chan error, 1)
	go func() {
		ctx, cancel := contextWithTimeout(5 * time.Second)
		defer cancel()
		done <- e.srv.Shutdown(ctx)
	}()
	got := 0
	for {
		h, _, err := c.Recv()
		if err != nil {
			break
		}
		if h.Opcode() == pdu.OpDataIn && h.Flags()&pdu.FlagStatus != 0 {
			got++
		}
	}
	if got != n {
		t.Fatalf("%d of %d responses before close", got, n)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := iscsitest.Dial(e.addr); err == nil {
		t.Fatal("still accepting after shutdown")
	}
}

func TestTargetsStat(t *testing.T) {
	e := newEnv(t)
	st := e.srv.Targets()
	if len(st) != 1 || st[0].TID != 1 || st[0].Name != testTarget || len(st[0].Sessions) != 0 {
		t.Fatalf("%+v", st)
	}
	c := e.login(t, iscsitest.Options{ISID: 0x23d000000007})
	st = e.srv.Targets()
	s := st[0].Sessions[0]
	if s.SID != 0x23d000000007<<16|uint64(c.TSIH) || s.Initiator != "iqn.2026-01.test:initiator" || s.Reinstating {
		t.Fatalf("%+v", s)
	}
	if cs := s.Conns[0]; cs.State != "established idle " || cs.RemoteIP.String() != "127.0.0.1" || cs.DataDigest != "none" {
		t.Fatalf("%+v", cs)
	}
}

// TestContinuation sends login and text requests split with the C bit.
func TestContinuation(t *testing.T) {
	e := newEnv(t)
	c, err := iscsitest.Dial(e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	text := param.AppendText(nil, []param.KV{
		{Key: "InitiatorName", Value: "iqn.2026-01.test:initiator"},
		{Key: "TargetName", Value: testTarget},
		{Key: "AuthMethod", Value: "None"},
	})
	split := 20 // in the middle of a key
	for i, part := range [][]byte{text[:split], text[split:]} {
		var h pdu.BHS
		h.SetOpcode(pdu.OpLoginReq, true)
		h.SetLoginFlags(i == 1, i == 0, pdu.StageSecurity, pdu.StageOperational)
		h.SetISID(0x400000000099)
		h.SetITT(1)
		h.SetCmdSN(1)
		if err := c.Send(&h, nil, part); err != nil {
			t.Fatal(err)
		}
		rh, data, err := c.Recv()
		if err != nil || rh.StatusClass() != 0 {
			t.Fatalf("part %d: %v %v", i, rh, err)
		}
		if i == 0 && (len(data) != 0 || rh.Transit()) {
			t.Fatalf("continuation answered with T=%v %q", rh.Transit(), data)
		}
		if i == 1 && (!rh.Transit() || rh.NSG() != pdu.StageOperational) {
			t.Fatalf("final part: T=%v NSG=%d", rh.Transit(), rh.NSG())
		}
	}
	var h pdu.BHS
	h.SetOpcode(pdu.OpLoginReq, true)
	h.SetLoginFlags(true, false, pdu.StageOperational, pdu.StageFullFeature)
	h.SetISID(0x400000000099)
	h.SetITT(1)
	h.SetCmdSN(1)
	c.Send(&h, nil, param.AppendText(nil, []param.KV{{Key: "MaxRecvDataSegmentLength", Value: "8192"}}))
	rh, _, err := c.Recv()
	if err != nil || !rh.Transit() || rh.NSG() != pdu.StageFullFeature || rh.TSIH() == 0 {
		t.Fatalf("login: %v %v", rh, err)
	}
	c.CmdSN = 1
	// A Text Request in two parts.
	req := param.AppendText(nil, []param.KV{{Key: "SendTargets", Value: "All"}})
	var th pdu.BHS
	th.SetOpcode(pdu.OpTextReq, false)
	th.SetContinue(true)
	th.SetITT(2)
	th.SetTTT(pdu.ReservedTag)
	th.SetCmdSN(c.CmdSN)
	c.Send(&th, nil, req[:5])
	rh, data, err := c.Recv()
	if err != nil || rh.Opcode() != pdu.OpTextResp || rh.Final() || len(data) != 0 || rh.TTT() == pdu.ReservedTag {
		t.Fatalf("text continuation ack: %v %q %v", rh, data, err)
	}
	c.CmdSN++
	th.SetContinue(false)
	th.SetFinal(true)
	th.SetTTT(rh.TTT())
	th.SetCmdSN(c.CmdSN)
	c.Send(&th, nil, req[5:])
	rh, data, err = c.Recv()
	if err != nil || !rh.Final() || !bytes.Contains(data, []byte("TargetName="+testTarget)) {
		t.Fatalf("text answer: %v %q %v", rh, data, err)
	}
}

// TestDataDigestError: a Data-Out with a bad data digest is rejected and
// its command fails; the connection survives.
func TestDataDigestError(t *testing.T) {
	e := newEnv(t, withParams(func(p *param.Config) {
		p.DataDigest = []string{"CRC32C"}
	}))
	c := e.login(t, iscsitest.Options{DataDigest: true, Keys: []param.KV{{Key: "InitialR2T", Value: "Yes"}, {Key: "ImmediateData", Value: "No"}}})
	cmd := &iscsitest.Cmd{CDB: iscsitest.Write10(0, 1), Write: make([]byte, blockSize)}
	itt, _ := c.SendCommand(cmd)
	r2t, _, err := c.Recv()
	if err != nil || r2t.Opcode() != pdu.OpR2T {
		t.Fatalf("want R2T: %v", err)
	}
	var d pdu.BHS
	d.SetOpcode(pdu.OpDataOut, false)
	d.SetFinal(true)
	d.SetITT(itt)
	d.SetTTT(r2t.TTT())
	d.SetDataSegmentLength(blockSize)
	raw := append(append(d[:], make([]byte, blockSize)...), 1, 2, 3, 4) // wrong digest
	c.SendRaw(raw)
	seen := map[pdu.Opcode]bool{}
	for range 2 {
		h, _, err := c.Recv()
		if err != nil {
			t.Fatal(err)
		}
		seen[h.Opcode()] = true
		if h.Opcode() == pdu.OpSCSIResp && h.Status() != scsi.StatusCheckCondition {
			t.Fatalf("status %d", h.Status())
		}
	}
	if !seen[pdu.OpReject] || !seen[pdu.OpSCSIResp] {
		t.Fatalf("got %v", seen)
	}
	if _, err := c.NOP(nil); err != nil {
		t.Fatal(err)
	}
}

// TestHostACL: initiators.deny hides a target from discovery and refuses
// logins; initiators.allow re-admits a host.
func TestHostACL(t *testing.T) {
	dir := t.TempDir()
	deny := filepath.Join(dir, "initiators.deny")
	allow := filepath.Join(dir, "initiators.allow")
	if err := os.WriteFile(deny, []byte(testTarget+" ALL\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(_ *configFile, o *Options) { o.InitiatorsAllow, o.InitiatorsDeny = allow, deny })
	c, _ := iscsitest.Dial(e.addr)
	defer c.Close()
	if err := c.Login(iscsitest.Options{}); err != nil {
		t.Fatal(err)
	}
	if kvs, err := c.Text([]param.KV{{Key: "SendTargets", Value: "All"}}); err != nil || len(kvs) != 0 {
		t.Fatalf("denied target listed: %v %v", kvs, err)
	}
	c2, _ := iscsitest.Dial(e.addr)
	defer c2.Close()
	var le *iscsitest.LoginError
	if err := c2.Login(iscsitest.Options{TargetName: testTarget}); !errors.As(err, &le) || le.Status != 0x0203 {
		t.Fatalf("denied login: %v", err)
	}
	// Files are re-read at each login.
	if err := os.WriteFile(allow, []byte(testTarget+" 127.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.login(t, iscsitest.Options{})
}

// TestTextNegotiation: keys other than SendTargets in a normal session go
// through the negotiation of full feature phase.
func TestTextNegotiation(t *testing.T) {
	e := newEnv(t)
	c := e.login(t, iscsitest.Options{})
	kvs, err := c.Text([]param.KV{{Key: "X-com.example.foo", Value: "1"}, {Key: "MaxBurstLength", Value: "4096"}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, kv := range kvs {
		got[kv.Key] = kv.Value
	}
	if got["X-com.example.foo"] != "NotUnderstood" || got["MaxBurstLength"] != "Reject" {
		t.Fatalf("answers %v", got)
	}
}

// TestOutstandingR2T: the target keeps MaxOutstandingR2T R2Ts in flight
// and issues the next one as each sequence completes.
func TestOutstandingR2T(t *testing.T) {
	e := newEnv(t)
	c := e.login(t, iscsitest.Options{Keys: []param.KV{
		{Key: "InitialR2T", Value: "Yes"}, {Key: "ImmediateData", Value: "No"},
		{Key: "MaxBurstLength", Value: "512"}, {Key: "FirstBurstLength", Value: "512"},
		{Key: "MaxOutstandingR2T", Value: "4"},
	}})
	data := pattern(8*blockSize, 77)
	cmd := &iscsitest.Cmd{CDB: iscsitest.Write10(0, 8), Write: data}
	itt, err := c.SendCommand(cmd)
	if err != nil {
		t.Fatal(err)
	}
	var r2ts []*pdu.Header
	for i := range 4 {
		h, _, err := c.Recv()
		if err != nil || h.Opcode() != pdu.OpR2T || h.R2TSN() != uint32(i) || h.BufferOffset() != uint32(i*blockSize) || h.DesiredLength() != blockSize {
			t.Fatalf("R2T %d: %v %v", i, h, err)
		}
		r2ts = append(r2ts, h)
	}
	c.Timeout = 200 * time.Millisecond
	if h, _, err := c.Recv(); err == nil {
		t.Fatalf("fifth PDU %v before any data", h.Opcode())
	}
	c.NC.SetReadDeadline(time.Time{})
	c.Timeout = 10 * time.Second
	// Answer the second R2T first: sequences may complete in any order.
	for _, i := range []int{1, 0} {
		var d pdu.BHS
		d.SetOpcode(pdu.OpDataOut, false)
		d.SetFinal(true)
		d.SetITT(itt)
		d.SetTTT(r2ts[i].TTT())
		d.SetBufferOffset(r2ts[i].BufferOffset())
		c.Send(&d, nil, data[i*blockSize:(i+1)*blockSize])
		h, _, err := c.Recv()
		if err != nil || h.Opcode() != pdu.OpR2T || h.R2TSN() != uint32(4+len(r2ts)-4) {
			t.Fatalf("R2T after data: %v %v", h, err)
		}
		r2ts = append(r2ts, h)
	}
	// Finish the remaining sequences through the normal path.
	res := &iscsitest.Result{R2Ts: len(r2ts)}
	for _, h := range r2ts[2:] {
		var d pdu.BHS
		d.SetOpcode(pdu.OpDataOut, false)
		d.SetFinal(true)
		d.SetITT(itt)
		d.SetTTT(h.TTT())
		d.SetBufferOffset(h.BufferOffset())
		c.Send(&d, nil, data[h.BufferOffset():h.BufferOffset()+blockSize])
	}
	for {
		h, _, err := c.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if h.Opcode() == pdu.OpR2T {
			res.R2Ts++
			var d pdu.BHS
			d.SetOpcode(pdu.OpDataOut, false)
			d.SetFinal(true)
			d.SetITT(itt)
			d.SetTTT(h.TTT())
			d.SetBufferOffset(h.BufferOffset())
			c.Send(&d, nil, data[h.BufferOffset():h.BufferOffset()+blockSize])
			continue
		}
		if h.Opcode() != pdu.OpSCSIResp || h.Status() != 0 || h.ExpDataSN() != 8 {
			t.Fatalf("response %v status %d ExpDataSN %d", h.Opcode(), h.Status(), h.ExpDataSN())
		}
		break
	}
	if res.R2Ts != 8 || !bytes.Equal(e.disk.bytes(0, len(data)), data) {
		t.Fatalf("%d R2Ts, data equal %v", res.R2Ts, bytes.Equal(e.disk.bytes(0, len(data)), data))
	}
}

// TestLogoutWaitsForCommands: the Logout Response comes after the
// responses of the commands still running.
func TestLogoutWaitsForCommands(t *testing.T) {
	e := newEnv(t)
	c := e.login(t, iscsitest.Options{})
	e.disk.delay.Store(int64(200 * time.Millisecond))
	itt, _ := c.SendCommand(&iscsitest.Cmd{CDB: iscsitest.Read10(0, 1), ReadLen: blockSize})
	var h pdu.BHS
	h.SetOpcode(pdu.OpLogoutReq, true)
	h.SetFlags(pdu.FlagFinal)
	h.SetITT(0x999)
	h.SetCmdSN(c.CmdSN)
	c.Send(&h, nil, nil)
	rh, _, err := c.Recv()
	if err != nil || rh.Opcode() != pdu.OpDataIn || rh.ITT() != itt {
		t.Fatalf("first: %v %v", rh, err)
	}
	rh, _, err = c.Recv()
	if err != nil || rh.Opcode() != pdu.OpLogoutResp || rh.ITT() != 0x999 || rh.Response() != 0 {
		t.Fatalf("second: %v %v", rh, err)
	}
	expectClosed(t, c)
	// Closing another CID is answered "CID not found" and keeps the
	// connection.
	c2 := e.login(t, iscsitest.Options{ISID: 0x400000000003})
	h = pdu.BHS{}
	h.SetOpcode(pdu.OpLogoutReq, true)
	h.SetFlags(pdu.FlagFinal | 1)
	h.SetITT(0x998)
	h.SetCID(7)
	h.SetCmdSN(c2.CmdSN)
	c2.Send(&h, nil, nil)
	if rh, _, err = c2.Recv(); err != nil || rh.Opcode() != pdu.OpLogoutResp || rh.Response() != 1 {
		t.Fatalf("CID 7 logout: %v %v", rh, err)
	}
	if _, err := c2.NOP(nil); err != nil {
		t.Fatal(err)
	}
}

func TestServeContextCancel(t *testing.T) {
	srv := NewServer(Options{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Serve returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(context.Background(), l); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
}

// TestITTReuse: an initiator may reuse a tag as soon as it has the
// response (Linux reuses task slots at once).
func TestITTReuse(t *testing.T) {
	e := newEnv(t)
	c := e.login(t, iscsitest.Options{})
	for i := range 300 {
		c.ITT = 4
		res, err := c.Do(&iscsitest.Cmd{CDB: iscsitest.Read10(uint32(i), 1), ReadLen: blockSize})
		if err != nil || res.Status != 0 {
			t.Fatalf("command %d: %v", i, err)
		}
	}
}

// TestWindowInFlight: MaxCmdSN leaves room for QueuedCommands commands in
// flight, never moves backwards and reopens as commands complete.
func TestWindowInFlight(t *testing.T) {
	e := newEnv(t, withParams(func(p *param.Config) { p.QueuedCommands = 4 }))
	c := e.login(t, iscsitest.Options{})
	release := e.disk.hold()
	exp0 := c.CmdSN
	for i := range 4 {
		c.SendCommand(&iscsitest.Cmd{CDB: iscsitest.Read10(uint32(i), 1), ReadLen: blockSize})
	}
	if _, err := c.NOP(nil); err != nil {
		t.Fatal(err)
	}
	if c.ExpCmdSN != exp0+4 || c.MaxCmdSN != exp0+3 {
		t.Fatalf("ExpCmdSN %d MaxCmdSN %d, want %d and %d (window closed)", c.ExpCmdSN, c.MaxCmdSN, exp0+4, exp0+3)
	}
	// Beyond the closed window: ignored.
	c.SendCommand(&iscsitest.Cmd{CDB: make([]byte, 6)})
	c.CmdSN--
	// The reader handles PDUs in order: once the NOP is answered the
	// command above has been judged.
	if _, err := c.NOP(nil); err != nil {
		t.Fatal(err)
	}
	release()
	last := c.MaxCmdSN
	for range 4 {
		h, _, err := c.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if serialLT(h.MaxCmdSN(), last) {
			t.Fatalf("MaxCmdSN went back from %d to %d", last, h.MaxCmdSN())
		}
		last = h.MaxCmdSN()
	}
	if last != exp0+7 {
		t.Fatalf("MaxCmdSN %d after completions, want %d", last, exp0+7)
	}
	e.disk.gate.Store(nil)
	if res, err := c.Do(&iscsitest.Cmd{CDB: make([]byte, 6)}); err != nil || res.Status != 0 {
		t.Fatalf("command after reopening: %v", err)
	}
}

// TestReinstatementAbortsCommands: the old session's running commands are
// aborted (no response) when the initiator logs in again with its ISID.
func TestReinstatementAbortsCommands(t *testing.T) {
	e := newEnv(t)
	c1 := e.login(t, iscsitest.Options{ISID: 0x400000000050})
	time.AfterFunc(500*time.Millisecond, e.disk.hold())
	before := e.disk.execs.Load()
	c1.SendCommand(&iscsitest.Cmd{CDB: iscsitest.Read10(0, 1), ReadLen: blockSize})
	waitFor(t, func() bool { return e.disk.execs.Load() > before })
	e.disk.gate.Store(nil)
	c2 := e.login(t, iscsitest.Options{ISID: 0x400000000050})
	expectClosed(t, c1)
	if res, err := c2.Do(&iscsitest.Cmd{CDB: iscsitest.Read10(0, 1), ReadLen: blockSize}); err != nil || res.Status != 0 {
		t.Fatalf("new session: %v %+v", err, res)
	}
}

// TestShutdownTimeout: commands that do not finish in time are aborted and
// Shutdown returns the context error without hanging on the backend.
func TestShutdownTimeout(t *testing.T) {
	e := newEnv(t)
	c := e.login(t, iscsitest.Options{})
	e.disk.hold()
	before := e.disk.execs.Load()
	c.SendCommand(&iscsitest.Cmd{CDB: iscsitest.Read10(0, 1), ReadLen: blockSize})
	waitFor(t, func() bool { return e.disk.execs.Load() > before })
	ctx, cancel := contextWithTimeout(200 * time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := e.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > abortGrace+2*time.Second {
		t.Fatalf("Shutdown took %v", d)
	}
	expectClosed(t, c)
}

// TestConcurrentSessions runs sessions with different data-out settings in
// parallel on disjoint LBA ranges and checks every byte.
func TestConcurrentSessions(t *testing.T) {
	e := newEnv(t, withParams(func(p *param.Config) { p.MaxRecvDataSegmentLength = 4096 }))
	settings := [][]param.KV{
		{{Key: "InitialR2T", Value: "Yes"}, {Key: "ImmediateData", Value: "No"}, {Key: "MaxBurstLength", Value: "8192"}},
		{{Key: "InitialR2T", Value: "No"}, {Key: "ImmediateData", Value: "Yes"}, {Key: "FirstBurstLength", Value: "4096"}},
		{{Key: "InitialR2T", Value: "No"}, {Key: "ImmediateData", Value: "No"}, {Key: "MaxOutstandingR2T", Value: "4"}, {Key: "MaxBurstLength", Value: "2048"}},
		{{Key: "MaxRecvDataSegmentLength", Value: "1024"}},
	}
	errs := make(chan error, len(settings))
	for i, kvs := range settings {
		c := e.login(t, iscsitest.Options{ISID: 0x400000001000 + uint64(i), Keys: kvs})
		go func() {
			base := uint32(i * 2000)
			for j := range 40 {
				blocks := 1 + (j*7+i)%64
				lba := base + uint32(j*16)%1000
				data := pattern(blocks*blockSize, byte(i*40+j))
				res, err := c.Do(&iscsitest.Cmd{CDB: iscsitest.Write10(lba, uint16(blocks)), Write: data})
				if err != nil || res.Status != 0 {
					errs <- fmt.Errorf("session %d write %d: %v %+v", i, j, err, res)
					return
				}
				res, err = c.Do(&iscsitest.Cmd{CDB: iscsitest.Read10(lba, uint16(blocks)), ReadLen: uint32(len(data))})
				if err != nil || res.Status != 0 || !bytes.Equal(res.Data, data) {
					errs <- fmt.Errorf("session %d read %d: %v", i, j, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for range settings {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// Immediate commands are outside the CmdSN window: beyond maxImmediate
// outstanding ones (here WRITEs whose data never comes) the next ends with
// TASK SET FULL, and a slot frees once a response is sent.
func TestImmediateCommandLimit(t *testing.T) {
	e := newEnv(t)
	c := e.login(t, iscsitest.Options{Keys: []param.KV{{Key: "InitialR2T", Value: "Yes"}, {Key: "ImmediateData", Value: "No"}}})
	immediate := func(cdb []byte, write bool, edtl uint32) uint32 {
		t.Helper()
		var h pdu.BHS
		h.SetOpcode(pdu.OpSCSICmd, true)
		flags := byte(pdu.FlagFinal | pdu.FlagRead)
		if write {
			flags = pdu.FlagFinal | pdu.FlagWrite
		}
		h.SetFlags(flags)
		itt := c.NextITT()
		h.SetITT(itt)
		h.SetEDTL(edtl)
		h.SetCmdSN(c.CmdSN)
		copy(h.CDB(), cdb)
		if err := c.Send(&h, nil, nil); err != nil {
			t.Fatal(err)
		}
		return itt
	}
	r2ts := map[uint32]*pdu.Header{}
	for i := 0; i < maxImmediate; i++ {
		itt := immediate(iscsitest.Write10(uint32(i), 1), true, blockSize)
		h, _, err := c.Recv()
		if err != nil || h.Opcode() != pdu.OpR2T || h.ITT() != itt {
			t.Fatalf("write %d: want R2T, got %v %v", i, h, err)
		}
		hc := *h
		r2ts[itt] = &hc
	}
	full := immediate(iscsitest.Read10(0, 1), false, blockSize)
	h, _, err := c.Recv()
	if err != nil || h.Opcode() != pdu.OpSCSIResp || h.ITT() != full || h.Status() != scsi.StatusTaskSetFull {
		t.Fatalf("immediate command %d: want TASK SET FULL, got %v %v", maxImmediate+1, h, err)
	}
	// Finishing one write frees its slot.
	for itt, r := range r2ts {
		var d pdu.BHS
		d.SetOpcode(pdu.OpDataOut, false)
		d.SetFinal(true)
		d.SetITT(itt)
		d.SetTTT(r.TTT())
		if err := c.Send(&d, nil, pattern(blockSize, 7)); err != nil {
			t.Fatal(err)
		}
		if h, _, err := c.Recv(); err != nil || h.Opcode() != pdu.OpSCSIResp || h.ITT() != itt || h.Status() != scsi.StatusGood {
			t.Fatalf("data for write %x: %v %v", itt, h, err)
		}
		break
	}
	itt := immediate(iscsitest.Read10(0, 1), false, blockSize)
	h, data, err := c.Recv()
	if err != nil || h.Opcode() != pdu.OpDataIn || h.ITT() != itt || len(data) != blockSize {
		t.Fatalf("immediate read after a slot freed: %v %v", h, err)
	}
}
