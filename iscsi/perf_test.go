package iscsi

import (
	"net"
	"strconv"
	"testing"

	"github.com/scstd/scstd/iscsi/iscsitest"
	"github.com/scstd/scstd/iscsi/pdu"
)

// leanReader issues READ(10)s of n bytes over a logged-in session with
// preallocated buffers, so that the allocations counted while it runs are
// the target's (reader, core, handler, writer and Data-In assembly).
type leanReader struct {
	c   *iscsitest.Conn
	h   pdu.BHS
	f   pdu.Frame
	iov [][]byte
	wb  net.Buffers
	rh  pdu.Header
	buf []byte
	itt uint32
}

func newLeanReader(c *iscsitest.Conn, n int) *leanReader {
	r := &leanReader{c: c, buf: make([]byte, n), iov: make([][]byte, 0, 4), itt: 1000}
	r.h.SetOpcode(pdu.OpSCSICmd, false)
	r.h.SetEDTL(uint32(n))
	r.h.SetFlags(pdu.FlagFinal | pdu.FlagRead | 1)
	copy(r.h.CDB(), iscsitest.Read10(8, uint16(n/blockSize)))
	return r
}

// do runs one command to completion and returns the data bytes received.
func (r *leanReader) do(tb testing.TB) int {
	r.itt++
	r.h.SetITT(r.itt)
	r.h.SetCmdSN(r.c.CmdSN)
	r.c.CmdSN++
	r.wb = r.c.Enc.Append(r.iov[:0], &r.f, &r.h, nil)
	if _, err := r.wb.WriteTo(r.c.NC); err != nil {
		tb.Fatal(err)
	}
	got := 0
	for {
		if err := r.c.R.ReadHeader(&r.rh); err != nil {
			tb.Fatal(err)
		}
		n := int(r.c.R.Pending())
		if r.rh.Opcode() == pdu.OpDataIn {
			off := int(r.rh.BufferOffset())
			if off+n > len(r.buf) {
				tb.Fatalf("Data-In at %d+%d beyond %d", off, n, len(r.buf))
			}
			if err := r.c.R.ReadData(r.buf[off : off+n]); err != nil {
				tb.Fatal(err)
			}
			got += n
		} else if err := r.c.R.DiscardData(); err != nil {
			tb.Fatal(err)
		}
		if r.rh.Opcode() == pdu.OpSCSIResp || r.rh.Flags()&pdu.FlagStatus != 0 {
			if r.rh.Status() != 0 {
				tb.Fatalf("status %d", r.rh.Status())
			}
			return got
		}
	}
}

// BenchmarkReadSizes measures READ round trips whose Data-In is split into
// several PDUs (the test initiator declares MaxRecvDataSegmentLength 256 KiB,
// as libiscsi does), so it covers the writer's Data-In assembly.
func BenchmarkReadSizes(b *testing.B) {
	for _, n := range []int{64 << 10, 1 << 20} {
		b.Run(sizeName(n), func(b *testing.B) {
			e := newEnv(b)
			c := e.login(b, iscsitest.Options{})
			r := newLeanReader(c, n)
			b.ReportAllocs()
			b.SetBytes(int64(n))
			for b.Loop() {
				if got := r.do(b); got != n {
					b.Fatalf("got %d bytes", got)
				}
			}
		})
	}
}

// BenchmarkWriteSizes measures WRITE round trips with immediate data and
// R2T-solicited Data-Out (the data-out assembly into the command buffer).
// The test initiator allocates per command, so allocs/op include its own.
func BenchmarkWriteSizes(b *testing.B) {
	for _, n := range []int{64 << 10, 1 << 20} {
		b.Run(sizeName(n), func(b *testing.B) {
			e := newEnv(b)
			c := e.login(b, iscsitest.Options{})
			cmd := &iscsitest.Cmd{CDB: iscsitest.Write10(8, uint16(n/blockSize)), Write: make([]byte, n)}
			b.ReportAllocs()
			b.SetBytes(int64(n))
			for b.Loop() {
				res, err := c.Do(cmd)
				if err != nil || res.Status != 0 {
					b.Fatalf("write: %v %+v", err, res)
				}
			}
		})
	}
}

// TestRead4KSteadyStateAllocs is issue 5's allocation bound: once warm, a
// 4 KiB read costs the target less than one heap object per command.
func TestRead4KSteadyStateAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation count")
	}
	e := newEnv(t)
	c := e.login(t, iscsitest.Options{})
	r := newLeanReader(c, 4096)
	for range 500 { // warm the pools and the connection's slices
		r.do(t)
	}
	if n := testing.AllocsPerRun(2000, func() { r.do(t) }); n >= 1 {
		t.Errorf("%.2f allocations per 4 KiB read, want < 1", n)
	}
}

func sizeName(n int) string {
	if n >= 1<<20 {
		return strconv.Itoa(n>>20) + "M"
	}
	return strconv.Itoa(n>>10) + "K"
}
