package iscsi

import (
	"bytes"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/scstd/scstd/iscsi/iscsitest"
	"github.com/scstd/scstd/iscsi/param"
	"github.com/scstd/scstd/iscsi/pdu"
)

// TestInlineSendLeftover: responses completed while the initiator does not
// read fill the socket, so that the completing goroutines' inline sends
// stop part-way and leave the rest to the writer. Every byte must still
// arrive, in order, with StatSN counting up without a gap.
func TestInlineSendLeftover(t *testing.T) {
	e := newEnv(t)
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range e.disk.data {
		e.disk.data[i] = byte(rng.Uint32())
	}
	c := e.login(t, iscsitest.Options{})
	// A receive buffer the 8 MiB below overflows (at least one segment
	// large: below that, TCP avoids the silly window and stalls).
	if err := c.NC.(*net.TCPConn).SetReadBuffer(256 << 10); err != nil {
		t.Fatal(err)
	}
	const n, blocks = 32, 512 // 32 reads of 256 KiB: the whole disk
	release := e.disk.hold()
	lbaOf := map[uint32]uint32{}
	for i := range n {
		itt, err := c.SendCommand(&iscsitest.Cmd{CDB: iscsitest.Read10(uint32(i*blocks), blocks), ReadLen: blocks * blockSize})
		if err != nil {
			t.Fatal(err)
		}
		lbaOf[itt] = uint32(i * blocks)
	}
	release()
	// Let every command complete into a socket nobody reads.
	time.Sleep(300 * time.Millisecond)

	got := map[uint32][]byte{}
	var statSN uint32
	first := true
	for done := 0; done < n; {
		h, data, err := c.Recv()
		if err != nil {
			t.Fatal(err)
		}
		itt := h.ITT()
		if _, ok := lbaOf[itt]; !ok {
			t.Fatalf("%v for unknown ITT %#x", h.Opcode(), itt)
		}
		switch h.Opcode() {
		case pdu.OpDataIn:
			if off := h.BufferOffset(); int(off) != len(got[itt]) {
				t.Fatalf("ITT %#x: Data-In at offset %d after %d bytes", itt, off, len(got[itt]))
			}
			got[itt] = append(got[itt], data...)
			if h.Flags()&pdu.FlagStatus == 0 {
				continue
			}
		case pdu.OpSCSIResp:
		default:
			t.Fatalf("unexpected %v", h.Opcode())
		}
		if h.Status() != 0 {
			t.Fatalf("ITT %#x: status %#x", itt, h.Status())
		}
		if !first && h.StatSN() != statSN+1 {
			t.Fatalf("StatSN %d after %d", h.StatSN(), statSN)
		}
		first, statSN = false, h.StatSN()
		done++
	}
	for itt, lba := range lbaOf {
		want := e.disk.data[lba*blockSize : (lba+blocks)*blockSize]
		if !bytes.Equal(got[itt], want) {
			t.Fatalf("ITT %#x (LBA %d): %d bytes differ from the disk", itt, lba, len(got[itt]))
		}
	}
	// The connection goes on serving.
	if res, err := c.Do(&iscsitest.Cmd{CDB: iscsitest.Read10(3, 1), ReadLen: blockSize}); err != nil || !bytes.Equal(res.Data, e.disk.data[3*blockSize:4*blockSize]) {
		t.Fatalf("read after the burst: %v", err)
	}
}

// TestInlineSendAfterIdle: a response sent inline after the connection was
// idle for longer than RspTimeout, so that the write deadline the writer
// last set has passed, must still go out.
func TestInlineSendAfterIdle(t *testing.T) {
	e := newEnv(t, withParams(func(p *param.Config) { p.RspTimeout = 1 }))
	// Completed on a timer goroutine, as an engine would: inline.
	e.disk.delay.Store(int64(time.Millisecond))
	c := e.login(t, iscsitest.Options{})
	for i := range 3 {
		if i > 0 {
			// A NOP-In goes through the writer, which arms the deadline.
			if _, err := c.NOP(nil); err != nil {
				t.Fatal(err)
			}
			time.Sleep(1500 * time.Millisecond)
		}
		if res, err := c.Do(&iscsitest.Cmd{CDB: iscsitest.Read10(1, 1), ReadLen: blockSize}); err != nil || res.Status != 0 {
			t.Fatalf("read %d: %v", i, err)
		}
	}
}
