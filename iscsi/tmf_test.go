package iscsi

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/scstd/scstd/iscsi/config"
	"github.com/scstd/scstd/iscsi/iscsitest"
	"github.com/scstd/scstd/iscsi/param"
	"github.com/scstd/scstd/iscsi/pdu"
)

// expectDropped reads until the target closes the connection; a NOP-In or
// the Asynchronous Message announcing the drop may come first.
func expectDropped(t *testing.T, c *iscsitest.Conn) {
	t.Helper()
	c.Timeout = 5 * time.Second
	for {
		h, _, err := c.Recv()
		if err == nil {
			if op := h.Opcode(); op == pdu.OpNOPIn || op == pdu.OpAsyncMsg {
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

// TARGET COLD RESET is answered "function complete", then every session of
// the target node is closed (RFC 7143 §11.5.1), the requester's included;
// sessions of other targets stay. Initiators can log in again at once.
func TestTargetColdReset(t *testing.T) {
	const other = "iqn.2026-01.test:other"
	e := newEnv(t, func(c *config.File, _ *Options) {
		c.Targets = append(c.Targets, &config.Target{TID: 2, Name: other, Params: param.DefaultConfig()})
	})
	a := e.login(t, iscsitest.Options{ISID: 0x400000000001})
	b := e.login(t, iscsitest.Options{ISID: 0x400000000002, InitiatorName: "iqn.2026-01.test:b"})
	o := e.login(t, iscsitest.Options{ISID: 0x400000000003, TargetName: other})
	if r, err := a.TMF(7, 0, 0, 0); err != nil || r != 0 {
		t.Fatalf("TARGET COLD RESET: response %d, %v; want 0 (function complete)", r, err)
	}
	expectDropped(t, a)
	expectDropped(t, b)
	waitFor(t, func() bool { return len(e.srv.Targets()[0].Sessions) == 0 })
	if res, err := o.Do(&iscsitest.Cmd{CDB: iscsitest.Read10(0, 1), ReadLen: blockSize}); err != nil {
		t.Fatalf("session of another target after the cold reset: %v", err)
	} else if res.Status != 0 {
		// The reset reached the LU it shares: a unit attention is fine.
		if res, err = o.Do(&iscsitest.Cmd{CDB: iscsitest.Read10(0, 1), ReadLen: blockSize}); err != nil || res.Status != 0 {
			t.Fatalf("read on the other target: %v %+v", err, res)
		}
	}
	c := e.login(t, iscsitest.Options{ISID: 0x400000000001})
	if res, err := c.Do(&iscsitest.Cmd{CDB: iscsitest.Read10(0, 1), ReadLen: blockSize}); err != nil || res.Status != 0 {
		t.Fatalf("read after logging in again: %v %+v", err, res)
	}
}
