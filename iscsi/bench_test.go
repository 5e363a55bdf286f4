package iscsi

import (
	"net"
	"testing"

	"github.com/scstd/scstd/iscsi/iscsitest"
	"github.com/scstd/scstd/iscsi/pdu"
)

// benchRoundTrip runs one 4 KiB command per iteration over a logged-in
// session with a lean client loop (preallocated buffers), so the reported
// allocations are the target's.
func benchRoundTrip(b *testing.B, write bool) {
	e := newEnv(b)
	c := e.login(b, iscsitest.Options{})
	const n = 4096
	buf := make([]byte, n)
	var h pdu.BHS
	h.SetOpcode(pdu.OpSCSICmd, false)
	h.SetLUN(0)
	h.SetEDTL(n)
	if write {
		h.SetFlags(pdu.FlagFinal | pdu.FlagWrite | 1)
		copy(h.CDB(), iscsitest.Write10(8, n/blockSize))
	} else {
		h.SetFlags(pdu.FlagFinal | pdu.FlagRead | 1)
		copy(h.CDB(), iscsitest.Read10(8, n/blockSize))
	}
	var f pdu.Frame
	iov := make([][]byte, 0, 4)
	wb := new(net.Buffers)
	var rh pdu.Header
	b.ReportAllocs()
	b.SetBytes(n)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		h.SetITT(uint32(i + 100))
		h.SetCmdSN(c.CmdSN)
		c.CmdSN++
		var data []byte
		if write {
			data = buf
		}
		*wb = c.Enc.Append(iov[:0], &f, &h, data)
		if _, err := wb.WriteTo(c.NC); err != nil {
			b.Fatal(err)
		}
		for {
			if err := c.R.ReadHeader(&rh); err != nil {
				b.Fatal(err)
			}
			if err := c.R.ReadData(buf[:c.R.Pending()]); err != nil {
				b.Fatal(err)
			}
			if rh.Opcode() == pdu.OpSCSIResp || rh.Flags()&pdu.FlagStatus != 0 {
				if rh.Status() != 0 {
					b.Fatalf("status %d", rh.Status())
				}
				break
			}
		}
	}
}

func BenchmarkRead4K(b *testing.B)  { benchRoundTrip(b, false) }
func BenchmarkWrite4K(b *testing.B) { benchRoundTrip(b, true) }
