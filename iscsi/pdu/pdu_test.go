package pdu

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"testing"
)

func TestDigestKnownAnswers(t *testing.T) {
	// RFC 7143 Appendix B.4 (wire byte order).
	inc := make([]byte, 32)
	dec := make([]byte, 32)
	ones := bytes.Repeat([]byte{0xff}, 32)
	for i := range inc {
		inc[i] = byte(i)
		dec[i] = byte(31 - i)
	}
	read := []byte{
		0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18,
		0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	}
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"zeros", make([]byte, 32), "aa36918a"},
		{"ones", ones, "43aba862"},
		{"incrementing", inc, "4e79dd46"},
		{"decrementing", dec, "5cdb3f11"},
		{"scsi read", read, "563a96d9"},
	}
	d := NewDigest()
	for _, tc := range tests {
		var b [4]byte
		putDigest(b[:], d.Sum(tc.in))
		if got := hex.EncodeToString(b[:]); got != tc.want {
			t.Errorf("%s: got %s want %s", tc.name, got, tc.want)
		}
	}
}

// pduCase builds one PDU of each type with distinctive field values.
type pduCase struct {
	name  string
	build func(h *BHS)
	check func(t *testing.T, h *BHS)
	ahs   []byte
	data  []byte
}

func pduCases() []pduCase {
	return []pduCase{
		{"NOP-Out", func(h *BHS) {
			h.SetOpcode(OpNOPOut, true)
			h.SetFinal(true)
			h.SetLUN(0x0001000000000000)
			h.SetITT(7)
			h.SetTTT(ReservedTag)
			h.SetCmdSN(11)
			h.SetExpStatSN(12)
		}, func(t *testing.T, h *BHS) {
			eq(t, h.Opcode(), OpNOPOut)
			eq(t, h.Immediate(), true)
			eq(t, h.LUN(), uint64(0x0001000000000000))
			eq(t, h.ITT(), uint32(7))
			eq(t, h.TTT(), uint32(ReservedTag))
			eq(t, h.CmdSN(), uint32(11))
			eq(t, h.ExpStatSN(), uint32(12))
		}, nil, []byte("ping")},
		{"SCSI-Command", func(h *BHS) {
			h.SetOpcode(OpSCSICmd, false)
			h.SetFlags(FlagFinal | FlagWrite | FlagRead | 2)
			h.SetITT(0x1234)
			h.SetEDTL(4096)
			h.SetCmdSN(99)
			copy(h.CDB(), []byte{0x2a, 0, 0, 0, 0, 1, 0, 0, 8, 0})
		}, func(t *testing.T, h *BHS) {
			eq(t, h.Opcode(), OpSCSICmd)
			eq(t, h.Immediate(), false)
			eq(t, h.Final(), true)
			eq(t, h.Flags()&FlagRead != 0, true)
			eq(t, h.Flags()&FlagWrite != 0, true)
			eq(t, h.Attr(), uint8(2))
			eq(t, h.EDTL(), uint32(4096))
			eq(t, h.CDB()[0], byte(0x2a))
			eq(t, h.CDB()[8], byte(8))
		}, AppendAHS(AppendAHS(nil, AHSExtendedCDB, []byte{0, 1, 2, 3, 4}), AHSBidiReadLength, []byte{0, 0, 0, 2, 0}), []byte("immediate data!")},
		{"TMF-Request", func(h *BHS) {
			h.SetOpcode(OpTMFReq, true)
			h.SetFlags(FlagFinal | 1)
			h.SetRefTaskTag(55)
			h.SetRefCmdSN(66)
			h.SetExpDataSN(3)
		}, func(t *testing.T, h *BHS) {
			eq(t, h.Function(), uint8(1))
			eq(t, h.RefTaskTag(), uint32(55))
			eq(t, h.RefCmdSN(), uint32(66))
			eq(t, h.ExpDataSN(), uint32(3))
		}, nil, nil},
		{"Login-Request", func(h *BHS) {
			h.SetOpcode(OpLoginReq, true)
			h.SetLoginFlags(true, false, StageSecurity, StageOperational)
			h.SetVersions(0, 0)
			h.SetISID(0x23d000000001)
			h.SetTSIH(0)
			h.SetCID(1)
			h.SetCmdSN(1)
		}, func(t *testing.T, h *BHS) {
			eq(t, h.Transit(), true)
			eq(t, h.Continue(), false)
			eq(t, h.CSG(), uint8(StageSecurity))
			eq(t, h.NSG(), uint8(StageOperational))
			eq(t, h.ISID(), uint64(0x23d000000001))
			eq(t, h.CID(), uint16(1))
		}, nil, []byte("InitiatorName=iqn.x\x00")},
		{"Text-Request", func(h *BHS) {
			h.SetOpcode(OpTextReq, false)
			h.SetFlags(FlagFinal)
			h.SetTTT(ReservedTag)
		}, func(t *testing.T, h *BHS) {
			eq(t, h.Final(), true)
			eq(t, h.TTT(), uint32(ReservedTag))
		}, nil, []byte("SendTargets=All\x00")},
		{"Data-Out", func(h *BHS) {
			h.SetOpcode(OpDataOut, false)
			h.SetFlags(FlagFinal)
			h.SetTTT(9)
			h.SetDataSN(2)
			h.SetBufferOffset(8192)
		}, func(t *testing.T, h *BHS) {
			eq(t, h.TTT(), uint32(9))
			eq(t, h.DataSN(), uint32(2))
			eq(t, h.BufferOffset(), uint32(8192))
		}, nil, bytes.Repeat([]byte{0xa6}, 513)},
		{"Logout-Request", func(h *BHS) {
			h.SetOpcode(OpLogoutReq, true)
			h.SetFlags(FlagFinal | 1)
			h.SetCID(3)
		}, func(t *testing.T, h *BHS) {
			eq(t, h.ReasonCode(), uint8(1))
			eq(t, h.CID(), uint16(3))
		}, nil, nil},
		{"SNACK", func(h *BHS) {
			h.SetOpcode(OpSNACKReq, false)
			h.SetFlags(FlagFinal | 1)
			h.put32(40, 5)
			h.put32(44, 6)
		}, func(t *testing.T, h *BHS) {
			eq(t, h.BegRun(), uint32(5))
			eq(t, h.RunLength(), uint32(6))
		}, nil, nil},
		{"NOP-In", func(h *BHS) {
			h.SetOpcode(OpNOPIn, false)
			h.SetFinal(true)
			h.SetStatSN(1)
			h.SetExpCmdSN(2)
			h.SetMaxCmdSN(33)
		}, func(t *testing.T, h *BHS) {
			eq(t, h.StatSN(), uint32(1))
			eq(t, h.ExpCmdSN(), uint32(2))
			eq(t, h.MaxCmdSN(), uint32(33))
		}, nil, nil},
		{"SCSI-Response", func(h *BHS) {
			h.SetOpcode(OpSCSIResp, false)
			h.SetFlags(FlagFinal | FlagUnder)
			h.SetStatus(2)
			h.SetExpDataSN(4)
			h.SetBidiResidualCount(7)
			h.SetResidualCount(512)
		}, func(t *testing.T, h *BHS) {
			eq(t, h.Status(), byte(2))
			eq(t, h.Flags()&FlagUnder != 0, true)
			eq(t, h.ExpDataSN(), uint32(4))
			eq(t, h.BidiResidualCount(), uint32(7))
			eq(t, h.ResidualCount(), uint32(512))
		}, nil, []byte{0, 18, 0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0, 0, 0, 0, 0}},
		{"TMF-Response", func(h *BHS) {
			h.SetOpcode(OpTMFResp, false)
			h.SetFinal(true)
			h.SetResponse(1)
		}, func(t *testing.T, h *BHS) { eq(t, h.Response(), byte(1)) }, nil, nil},
		{"Login-Response", func(h *BHS) {
			h.SetOpcode(OpLoginResp, false)
			h.SetLoginFlags(true, false, StageOperational, StageFullFeature)
			h.SetTSIH(5)
			h.SetLoginStatus(0x0203)
		}, func(t *testing.T, h *BHS) {
			eq(t, h.NSG(), uint8(StageFullFeature))
			eq(t, h.TSIH(), uint16(5))
			eq(t, h.StatusClass(), byte(2))
			eq(t, h.StatusDetail(), byte(3))
		}, nil, []byte("TargetPortalGroupTag=1\x00")},
		{"Text-Response", func(h *BHS) {
			h.SetOpcode(OpTextResp, false)
			h.SetFlags(FlagContinue)
			h.SetTTT(77)
		}, func(t *testing.T, h *BHS) {
			eq(t, h.Continue(), true)
			eq(t, h.Final(), false)
		}, nil, []byte("TargetName=iqn")},
		{"Data-In", func(h *BHS) {
			h.SetOpcode(OpDataIn, false)
			h.SetFlags(FlagFinal | FlagStatus | FlagOver)
			h.SetDataSN(8)
			h.SetBufferOffset(65536)
			h.SetResidualCount(100)
		}, func(t *testing.T, h *BHS) {
			eq(t, h.Flags(), byte(FlagFinal|FlagStatus|FlagOver))
			eq(t, h.DataSN(), uint32(8))
			eq(t, h.BufferOffset(), uint32(65536))
		}, nil, bytes.Repeat([]byte{1, 2, 3}, 100)},
		{"Logout-Response", func(h *BHS) {
			h.SetOpcode(OpLogoutResp, false)
			h.SetFinal(true)
			h.SetTime2Wait(2)
			h.SetTime2Retain(20)
		}, func(t *testing.T, h *BHS) {
			eq(t, h.Time2Wait(), uint16(2))
			eq(t, h.Time2Retain(), uint16(20))
		}, nil, nil},
		{"R2T", func(h *BHS) {
			h.SetOpcode(OpR2T, false)
			h.SetFinal(true)
			h.SetR2TSN(3)
			h.SetBufferOffset(4096)
			h.SetDesiredLength(262144)
		}, func(t *testing.T, h *BHS) {
			eq(t, h.R2TSN(), uint32(3))
			eq(t, h.DesiredLength(), uint32(262144))
		}, nil, nil},
		{"Async-Message", func(h *BHS) {
			h.SetOpcode(OpAsyncMsg, false)
			h.SetFinal(true)
			h.SetAsyncEvent(1)
			h.SetParameter3(5)
		}, func(t *testing.T, h *BHS) {
			eq(t, h.AsyncEvent(), byte(1))
			eq(t, h.Parameter3(), uint16(5))
		}, nil, nil},
		{"Reject", func(h *BHS) {
			h.SetOpcode(OpReject, false)
			h.SetFinal(true)
			h.SetReason(4)
		}, func(t *testing.T, h *BHS) { eq(t, h.Reason(), byte(4)) }, nil, make([]byte, 48)},
	}
}

func eq[T comparable](t *testing.T, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("got %v want %v", got, want)
	}
}

func TestRoundTrip(t *testing.T) {
	for _, digests := range []bool{false, true} {
		for _, tc := range pduCases() {
			t.Run(tc.name, func(t *testing.T) {
				var h BHS
				tc.build(&h)
				enc := NewEncoder()
				enc.SetDigests(digests, digests)
				var f Frame
				var out bytes.Buffer
				iov := enc.AppendWithAHS(nil, &f, &h, tc.ahs, tc.data)
				if _, err := iov.WriteTo(&out); err != nil {
					t.Fatal(err)
				}
				wire := 48 + len(tc.ahs) + len(tc.data) + int(Pad(uint32(len(tc.data))))
				if digests {
					wire += 4
					if len(tc.data) > 0 {
						wire += 4
					}
				}
				if out.Len() != wire {
					t.Fatalf("wire length %d want %d", out.Len(), wire)
				}
				r := NewReader(&out, 4096)
				r.MaxData = 1 << 20
				r.SetDigests(digests, digests)
				var got Header
				if err := r.ReadHeader(&got); err != nil {
					t.Fatal(err)
				}
				tc.check(t, &got.BHS)
				if !bytes.Equal(got.AHS, tc.ahs) {
					t.Errorf("AHS %x want %x", got.AHS, tc.ahs)
				}
				data := make([]byte, r.Pending())
				if err := r.ReadData(data); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(data, tc.data) {
					t.Errorf("data %q want %q", data, tc.data)
				}
				if got.BHS != h {
					t.Errorf("BHS differs:\n%x\n%x", got.BHS, h)
				}
				if _, err := r.r.ReadByte(); err != io.EOF {
					t.Errorf("trailing bytes: %v", err)
				}
			})
		}
	}
}

func TestAHSAccessors(t *testing.T) {
	ahs := AppendAHS(nil, AHSBidiReadLength, []byte{0, 0, 0, 0x10, 0})
	ahs = AppendAHS(ahs, AHSExtendedCDB, []byte{0, 9, 8, 7, 6, 5, 4, 3, 2})
	h := Header{AHS: ahs}
	cdb, err := h.ExtendedCDB()
	if err != nil || !bytes.Equal(cdb, []byte{9, 8, 7, 6, 5, 4, 3, 2}) {
		t.Fatalf("ExtendedCDB %x %v", cdb, err)
	}
	n, ok, err := h.BidiReadLength()
	if err != nil || !ok || n != 0x1000 {
		t.Fatalf("BidiReadLength %d %v %v", n, ok, err)
	}
	bad := []Header{{AHS: []byte{0, 0, 1, 0}}, {AHS: []byte{0, 9, 1, 0}}, {AHS: []byte{0, 1}}}
	for i, h := range bad {
		if _, err := h.ExtendedCDB(); !errors.Is(err, ErrAHS) {
			t.Errorf("bad %d: %v", i, err)
		}
	}
}

func TestDigestErrors(t *testing.T) {
	var h BHS
	h.SetOpcode(OpNOPOut, true)
	h.SetFinal(true)
	enc := NewEncoder()
	enc.SetDigests(true, true)
	var f Frame
	var out bytes.Buffer
	iov := enc.Append(nil, &f, &h, []byte("abcdef"))
	iov.WriteTo(&out)
	wire := out.Bytes()

	corrupt := func(i int) *Reader {
		b := append([]byte(nil), wire...)
		b[i] ^= 1
		r := NewReader(bytes.NewReader(b), 4096)
		r.SetDigests(true, true)
		return r
	}
	var got Header
	if err := corrupt(20).ReadHeader(&got); !errors.Is(err, ErrHeaderDigest) {
		t.Errorf("header corruption: %v", err)
	}
	r := corrupt(52 + 2)
	if err := r.ReadHeader(&got); err != nil {
		t.Fatal(err)
	}
	if err := r.ReadData(make([]byte, 6)); !errors.Is(err, ErrDataDigest) {
		t.Errorf("data corruption: %v", err)
	}
	r = corrupt(52 + 2)
	r.ReadHeader(&got)
	if err := r.DiscardData(); !errors.Is(err, ErrDataDigest) {
		t.Errorf("discard with bad digest: %v", err)
	}
}

func TestMaxData(t *testing.T) {
	var h BHS
	h.SetOpcode(OpDataOut, false)
	h.SetDataSegmentLength(8193)
	r := NewReader(bytes.NewReader(h[:]), 4096)
	var got Header
	if err := r.ReadHeader(&got); !errors.Is(err, ErrTooLong) {
		t.Fatalf("got %v", err)
	}
}

func FuzzReadPDU(f *testing.F) {
	for _, tc := range pduCases() {
		var h BHS
		tc.build(&h)
		var fr Frame
		var out bytes.Buffer
		iov := NewEncoder().AppendWithAHS(nil, &fr, &h, tc.ahs, tc.data)
		iov.WriteTo(&out)
		f.Add(out.Bytes(), false)
		enc := NewEncoder()
		enc.SetDigests(true, true)
		out.Reset()
		iov = enc.AppendWithAHS(nil, &fr, &h, tc.ahs, tc.data)
		iov.WriteTo(&out)
		f.Add(out.Bytes(), true)
	}
	f.Add([]byte{0x01, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}, false)
	f.Fuzz(func(t *testing.T, b []byte, digests bool) {
		r := NewReader(bytes.NewReader(b), 512)
		r.SetDigests(digests, digests)
		r.MaxData = 65536
		for i := 0; i < 8; i++ {
			var h Header
			if err := r.ReadHeader(&h); err != nil {
				return
			}
			if h.DataSegmentLength() > r.MaxData {
				t.Fatalf("accepted oversize segment %d", h.DataSegmentLength())
			}
			h.ExtendedCDB()
			h.BidiReadLength()
			var err error
			if i%2 == 0 {
				err = r.ReadData(make([]byte, r.Pending()))
			} else {
				err = r.DiscardData()
			}
			if err != nil && !errors.Is(err, ErrDataDigest) {
				return
			}
		}
	})
}

func BenchmarkEncodeDataIn(b *testing.B) {
	enc := NewEncoder()
	data := make([]byte, 4096)
	var f Frame
	var h BHS
	h.SetOpcode(OpDataIn, false)
	iov := make(net.Buffers, 0, 4)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		h.SetDataSN(1)
		iov = enc.Append(iov[:0], &f, &h, data)
	}
}

func BenchmarkEncodeDataInDigest(b *testing.B) {
	enc := NewEncoder()
	enc.SetDigests(true, true)
	data := make([]byte, 4096)
	var f Frame
	var h BHS
	h.SetOpcode(OpDataIn, false)
	iov := make(net.Buffers, 0, 4)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		iov = enc.Append(iov[:0], &f, &h, data)
	}
}

// loopReader replays the same bytes forever.
type loopReader struct {
	b   []byte
	off int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], l.b[l.off:])
		n += c
		l.off = (l.off + c) % len(l.b)
	}
	return n, nil
}

func BenchmarkDecodeDataOut(b *testing.B) {
	var h BHS
	h.SetOpcode(OpDataOut, false)
	h.SetFinal(true)
	var f Frame
	var out bytes.Buffer
	iov := NewEncoder().Append(nil, &f, &h, make([]byte, 4096))
	iov.WriteTo(&out)
	r := NewReader(&loopReader{b: out.Bytes()}, 64<<10)
	buf := make([]byte, 4096)
	var got Header
	b.ReportAllocs()
	b.SetBytes(4096)
	for b.Loop() {
		if err := r.ReadHeader(&got); err != nil {
			b.Fatal(err)
		}
		if err := r.ReadData(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// Grow keeps what the small login buffer already holds: an initiator may
// send full-feature PDUs right behind its last login request.
func TestReaderGrowKeepsBuffered(t *testing.T) {
	enc := NewEncoder()
	var out bytes.Buffer
	const n = 5
	for i := 0; i < n; i++ {
		var h BHS
		h.SetOpcode(OpNOPOut, true)
		h.SetITT(uint32(i))
		var f Frame
		iov := enc.Append(nil, &f, &h, bytes.Repeat([]byte{byte(i)}, 3000))
		if _, err := iov.WriteTo(&out); err != nil {
			t.Fatal(err)
		}
	}
	r := NewReader(&out, 4096) // the minimum bufio size: holds the first PDU and part of the next
	r.MaxData = 1 << 20
	for i := 0; i < n; i++ {
		var h Header
		if err := r.ReadHeader(&h); err != nil {
			t.Fatalf("PDU %d: %v", i, err)
		}
		if i == 0 {
			if r.Buffered() == 0 {
				t.Fatal("test needs bytes buffered across the Grow")
			}
			r.Grow(64 << 10)
		}
		data := make([]byte, r.Pending())
		if err := r.ReadData(data); err != nil {
			t.Fatal(err)
		}
		if h.ITT() != uint32(i) || !bytes.Equal(data, bytes.Repeat([]byte{byte(i)}, 3000)) {
			t.Fatalf("PDU %d after Grow: itt %d data %x...", i, h.ITT(), data[:4])
		}
	}
	if r.r.Size() != 64<<10 {
		t.Errorf("buffer size %d after Grow", r.r.Size())
	}
}
