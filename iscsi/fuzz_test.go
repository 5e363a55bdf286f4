package iscsi

import (
	"fmt"
	"github.com/sirupsen/logrus"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scstd/scstd/iscsi/iscsitest"
	"github.com/scstd/scstd/iscsi/param"
	"github.com/scstd/scstd/iscsi/pdu"
)

// encodePDU renders one initiator PDU.
func encodePDU(h pdu.BHS, ahs, data []byte) []byte {
	var f pdu.Frame
	var out []byte
	for _, b := range pdu.NewEncoder().AppendWithAHS(nil, &f, &h, ahs, data) {
		out = append(out, b...)
	}
	return out
}

// FuzzConn feeds arbitrary bytes to a logged-in connection: the target
// must neither panic nor hang, whatever arrives.
func FuzzConn(f *testing.F) {
	e := newEnv(f)
	panics := &errorHook{}
	e.log.AddHook(panics)
	var login pdu.BHS
	login.SetOpcode(pdu.OpLoginReq, true)
	login.SetLoginFlags(true, false, pdu.StageOperational, pdu.StageFullFeature)
	login.SetISID(0x400000000777)
	login.SetITT(1)
	login.SetCmdSN(1)
	loginBytes := encodePDU(login, nil, param.AppendText(nil, []param.KV{
		{Key: "InitiatorName", Value: "iqn.2026-01.test:fuzz"},
		{Key: "TargetName", Value: testTarget},
		{Key: "InitialR2T", Value: "No"},
		{Key: "MaxRecvDataSegmentLength", Value: "4096"},
	}))

	cmd := func(flags byte, edtl, sn uint32, cdb []byte, data []byte) []byte {
		var h pdu.BHS
		h.SetOpcode(pdu.OpSCSICmd, false)
		h.SetFlags(flags)
		h.SetITT(sn + 10)
		h.SetEDTL(edtl)
		h.SetCmdSN(sn)
		copy(h.CDB(), cdb)
		return encodePDU(h, nil, data)
	}
	dataOut := func(itt, ttt, dsn, off uint32, final bool, data []byte) []byte {
		var h pdu.BHS
		h.SetOpcode(pdu.OpDataOut, false)
		h.SetFinal(final)
		h.SetITT(itt)
		h.SetTTT(ttt)
		h.SetDataSN(dsn)
		h.SetBufferOffset(off)
		return encodePDU(h, nil, data)
	}
	ctrl := func(op pdu.Opcode, flags byte, itt, sn uint32, data []byte) []byte {
		var h pdu.BHS
		h.SetOpcode(op, true)
		h.SetFlags(flags)
		h.SetITT(itt)
		h.SetTTT(pdu.ReservedTag)
		h.SetCmdSN(sn)
		return encodePDU(h, nil, data)
	}
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	f.Add(cmd(pdu.FlagFinal|pdu.FlagRead, 4096, 1, iscsitest.Read10(0, 8), nil))
	f.Add(cat(cmd(pdu.FlagWrite, 2048, 1, iscsitest.Write10(0, 4), make([]byte, 512)),
		dataOut(11, pdu.ReservedTag, 0, 512, false, make([]byte, 512)),
		dataOut(11, pdu.ReservedTag, 1, 1024, true, make([]byte, 1024))))
	f.Add(cat(cmd(pdu.FlagFinal|pdu.FlagWrite, 8192, 1, iscsitest.Write10(0, 16), nil),
		dataOut(11, 1, 0, 0, true, make([]byte, 4096))))
	f.Add(cat(cmd(pdu.FlagFinal|pdu.FlagRead, 512, 3, iscsitest.Read10(0, 1), nil),
		cmd(pdu.FlagFinal|pdu.FlagRead, 512, 2, iscsitest.Read10(0, 1), nil),
		cmd(pdu.FlagFinal, 0, 1, make([]byte, 6), nil)))
	f.Add(ctrl(pdu.OpNOPOut, pdu.FlagFinal, 5, 1, []byte("ping")))
	f.Add(ctrl(pdu.OpTextReq, pdu.FlagFinal, 5, 1, []byte("SendTargets=All\x00")))
	f.Add(ctrl(pdu.OpTextReq, pdu.FlagContinue, 5, 1, []byte("SendTar")))
	f.Add(cat(cmd(pdu.FlagFinal|pdu.FlagWrite, 8192, 1, iscsitest.Write10(0, 16), nil),
		ctrl(pdu.OpTMFReq, pdu.FlagFinal|1, 6, 2, nil)))
	f.Add(ctrl(pdu.OpTMFReq, pdu.FlagFinal|5, 6, 1, nil))
	f.Add(ctrl(pdu.OpLogoutReq, pdu.FlagFinal, 7, 1, nil))
	f.Add(ctrl(pdu.OpSNACKReq, pdu.FlagFinal, 7, 1, nil))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	// Seeds for the login phase itself (sent without the valid login,
	// marked by a leading 'L').
	for _, seed := range [][]byte{
		loginBytes,
		loginBytes[:60],
		ctrl(pdu.OpLoginReq, pdu.FlagContinue|1, 1, 1, []byte("InitiatorName=iqn.x\x00TargetName=")),
		ctrl(pdu.OpLoginReq, pdu.FlagTransit|0<<2|1, 1, 1, []byte("InitiatorName=iqn.x\x00SessionType=Discovery\x00AuthMethod=CHAP,None\x00")),
		ctrl(pdu.OpLoginReq, pdu.FlagTransit|0<<2|1, 1, 1, []byte("InitiatorName=iqn.x\x00TargetName="+testTarget+"\x00AuthMethod=CHAP\x00CHAP_A=5\x00")),
	} {
		f.Add(append([]byte{'L'}, seed...))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		prefix := loginBytes
		if len(b) > 0 && b[0] == 'L' {
			// Exercise the login state machine: no valid login first.
			prefix, b = nil, b[1:]
		}
		nc1, nc2 := net.Pipe()
		c := newConn(e.srv, nc1)
		e.srv.mu.Lock()
		e.srv.conns[c] = struct{}{}
		e.srv.connWG.Add(1)
		e.srv.mu.Unlock()
		done := make(chan struct{})
		go func() {
			c.serve()
			close(done)
		}()
		go io.Copy(io.Discard, nc2)
		nc2.SetWriteDeadline(time.Now().Add(2 * time.Second))
		nc2.Write(prefix)
		nc2.Write(b)
		nc2.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("connection did not end")
		}
		if n := panics.n.Swap(0); n > 0 {
			t.Fatalf("%d error-level log entries (recovered panics): %s", n, panics.last.Load())
		}
	})
}

// errorHook counts error-level log entries, which the reader emits when it
// recovers from a panic.
type errorHook struct {
	n    atomic.Int64
	last atomic.Value
}

func (h *errorHook) Levels() []logrus.Level {
	return []logrus.Level{logrus.ErrorLevel, logrus.PanicLevel}
}

func (h *errorHook) Fire(e *logrus.Entry) error {
	h.n.Add(1)
	h.last.Store(e.Message + " " + fmt.Sprint(e.Data["stack"]))
	return nil
}
