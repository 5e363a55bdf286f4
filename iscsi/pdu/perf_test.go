package pdu

import (
	"bytes"
	"net"
	"testing"
)

// BenchmarkDecodeSCSICmd reads the header of a SCSI Command PDU (no data)
// and the fields the connection reader looks at, as for every 4 KiB read.
func BenchmarkDecodeSCSICmd(b *testing.B) {
	var h BHS
	h.SetOpcode(OpSCSICmd, false)
	h.SetFlags(FlagFinal | FlagRead | 1)
	h.SetEDTL(4096)
	copy(h.CDB(), []byte{0x28, 0, 0, 0, 0x10, 0, 0, 0, 8, 0})
	var f Frame
	var out bytes.Buffer
	iov := NewEncoder().AppendWithAHS(nil, &f, &h, nil, nil)
	iov.WriteTo(&out)
	r := NewReader(&loopReader{b: out.Bytes()}, 64<<10)
	var got Header
	b.ReportAllocs()
	for b.Loop() {
		if err := r.ReadHeader(&got); err != nil {
			b.Fatal(err)
		}
		if _, err := got.ExtendedCDB(); err != nil {
			b.Fatal(err)
		}
		if got.EDTL() != 4096 || got.CDB()[0] != 0x28 || got.Flags()&FlagRead == 0 {
			b.Fatal("bad decode")
		}
		if err := r.DiscardData(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeDataIn1M lays out a 1 MiB read as Data-In PDUs of 256 KiB
// (libiscsi's MaxRecvDataSegmentLength), the last one carrying the status.
func BenchmarkEncodeDataIn1M(b *testing.B) {
	for _, dig := range []bool{false, true} {
		name := "nodigest"
		if dig {
			name = "crc32c"
		}
		b.Run(name, func(b *testing.B) {
			enc := NewEncoder()
			enc.SetDigests(dig, dig)
			data := make([]byte, 1<<20)
			const seg = 256 << 10
			var frames [4]Frame
			iov := make(net.Buffers, 0, 16)
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				iov = iov[:0]
				for i := range frames {
					var h BHS
					h.SetOpcode(OpDataIn, false)
					h.SetDataSN(uint32(i))
					h.SetBufferOffset(uint32(i * seg))
					if i == len(frames)-1 {
						h.SetFlags(FlagFinal | FlagStatus)
					}
					iov = enc.Append(iov, &frames[i], &h, data[i*seg:(i+1)*seg])
				}
			}
		})
	}
}

// BenchmarkEncodeSCSIResp encodes the SCSI Response of a write.
func BenchmarkEncodeSCSIResp(b *testing.B) {
	enc := NewEncoder()
	var f Frame
	iov := make(net.Buffers, 0, 4)
	b.ReportAllocs()
	for b.Loop() {
		var h BHS
		h.SetOpcode(OpSCSIResp, false)
		h.SetFlags(FlagFinal)
		h.SetStatSN(7)
		iov = enc.Append(iov[:0], &f, &h, nil)
	}
}
