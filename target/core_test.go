package target

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/scstd/scstd/target/scsi"
)

func TestSubmitDispatchesToHandler(t *testing.T) {
	c, h := setup(t, 0)
	s := newSess(t, c, "iqn.ini")
	// First command gets the POWER ON/RESET unit attention.
	r := run(t, s, 0, tur()...)
	if r.status != scsi.StatusCheckCondition {
		t.Fatalf("status %#x, want CHECK CONDITION", r.status)
	}
	if k, asc := senseKeyASC(t, r.sense); k != scsi.SenseUnitAttention || asc != scsi.ASCPowerOnResetOccurred {
		t.Fatalf("sense %x/%04x", k, asc)
	}
	if n := len(h.execOrder()); n != 0 {
		t.Fatalf("handler saw %d commands during UA", n)
	}
	r = run(t, s, 0, tur()...)
	if r.status != scsi.StatusGood || len(h.execOrder()) != 1 {
		t.Fatalf("status %#x exec %v", r.status, h.execOrder())
	}
}

func TestHandlerSeesDeviceAndReadOnly(t *testing.T) {
	c := NewCore(Options{})
	var got *Device
	var ro bool
	h := &funcHandler{exec: func(cmd *Command) {
		got, ro = cmd.Device(), cmd.ReadOnly()
		cmd.Complete()
	}}
	d := &Device{Name: "d", Handler: h}
	if err := c.AddDevice(d); err != nil {
		t.Fatal(err)
	}
	if err := c.AddLUN(DefaultGroup, "d", 3, true); err != nil {
		t.Fatal(err)
	}
	s := newSess(t, c, "i")
	clearUAs(t, s, 3)
	if got != d || !ro {
		t.Fatalf("Device()=%v ReadOnly()=%v", got, ro)
	}
}

type funcHandler struct {
	exec func(*Command)
}

func (h *funcHandler) Exec(c *Command)     { h.exec(c) }
func (h *funcHandler) HandlerName() string { return "vdisk_fileio" }
func (h *funcHandler) Type() byte          { return 0 }
func (h *funcHandler) Close() error        { return nil }

func TestCheckConditionFormat(t *testing.T) {
	for _, desc := range []bool{false, true} {
		c := NewCore(Options{})
		h := &funcHandler{exec: func(cmd *Command) {
			cmd.CheckCondition(scsi.SenseLBAOutOfRange)
			cmd.Complete()
		}}
		d := &Device{Name: "d", Handler: h}
		if err := c.AddDevice(d); err != nil {
			t.Fatal(err)
		}
		d.SetDescriptorSense(desc)
		if err := c.AddLUN(DefaultGroup, "d", 0, false); err != nil {
			t.Fatal(err)
		}
		s := newSess(t, c, "i")
		r := run(t, s, 0, tur()...) // the UA is reported in the device's format too
		if (r.sense[0] == 0x72) != desc {
			t.Fatalf("desc=%v: UA sense %x", desc, r.sense)
		}
		r = run(t, s, 0, tur()...)
		if r.status != scsi.StatusCheckCondition {
			t.Fatalf("status %#x", r.status)
		}
		if (r.sense[0] == 0x72) != desc {
			t.Fatalf("desc=%v: sense %x", desc, r.sense)
		}
		if k, asc := senseKeyASC(t, r.sense); k != scsi.SenseIllegalRequest || asc != scsi.ASCLBAOutOfRange {
			t.Fatalf("sense %x/%04x", k, asc)
		}
	}
}

func TestUnmappedLUN(t *testing.T) {
	c, _ := setup(t, 0)
	s := newSess(t, c, "i")
	tests := []struct {
		name   string
		cdb    []byte
		status byte
		asc    scsi.ASC
		check  func(t *testing.T, r *result)
	}{
		{name: "tur", cdb: tur(), status: scsi.StatusCheckCondition, asc: scsi.ASCLogicalUnitNotSupported},
		{name: "read10", cdb: []byte{scsi.OpRead10, 0, 0, 0, 0, 0, 0, 0, 1, 0}, status: scsi.StatusCheckCondition, asc: scsi.ASCLogicalUnitNotSupported},
		{name: "inquiry", cdb: []byte{scsi.OpInquiry, 0, 0, 0, 255, 0}, status: scsi.StatusGood, check: func(t *testing.T, r *result) {
			if len(r.data) != 36 || r.data[0] != 0x7f || r.xfer != 36 {
				t.Fatalf("inquiry data %x xfer %d", r.data, r.xfer)
			}
		}},
		{name: "inquiry short alloc", cdb: []byte{scsi.OpInquiry, 0, 0, 0, 5, 0}, status: scsi.StatusGood, check: func(t *testing.T, r *result) {
			if len(r.data) != 5 || r.data[0] != 0x7f || r.data[4] != 31 {
				t.Fatalf("inquiry data %x", r.data)
			}
		}},
		{name: "inquiry evpd", cdb: []byte{scsi.OpInquiry, 1, 0x80, 0, 255, 0}, status: scsi.StatusCheckCondition, asc: scsi.ASCLogicalUnitNotSupported},
		{name: "inquiry bad page", cdb: []byte{scsi.OpInquiry, 0, 0x80, 0, 255, 0}, status: scsi.StatusCheckCondition, asc: scsi.ASCInvalidFieldInCDB},
		{name: "request sense", cdb: []byte{scsi.OpRequestSense, 0, 0, 0, 252, 0}, status: scsi.StatusGood, check: func(t *testing.T, r *result) {
			if k, asc := senseKeyASC(t, r.data); k != scsi.SenseIllegalRequest || asc != scsi.ASCLogicalUnitNotSupported {
				t.Fatalf("sense data %x", r.data)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, s, 7, tc.cdb...)
			if r.status != tc.status {
				t.Fatalf("status %#x want %#x (sense %x)", r.status, tc.status, r.sense)
			}
			if tc.status == scsi.StatusCheckCondition {
				if _, asc := senseKeyASC(t, r.sense); asc != tc.asc {
					t.Fatalf("asc %04x want %04x", asc, tc.asc)
				}
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

func TestBadLUNEncodings(t *testing.T) {
	c, _ := setup(t, 0)
	s := newSess(t, c, "i")
	for _, raw := range []uint64{
		0x0100_0000_0000_0000, // peripheral, bus 1
		0xc000_0000_0000_0000, // extended addressing
		0x0000_0001_0000_0000, // second level
	} {
		cmd, r := newCmd(0, 1, Simple, tur()...)
		cmd.LUN = raw
		s.Submit(cmd)
		<-r.done
		if _, asc := senseKeyASC(t, r.sense); r.status != scsi.StatusCheckCondition || asc != scsi.ASCLogicalUnitNotSupported {
			t.Fatalf("raw %#x: status %#x sense %x", raw, r.status, r.sense)
		}
	}
}

func decodeReport(t *testing.T, d []byte) []uint64 {
	t.Helper()
	if len(d) < 8 {
		t.Fatalf("short report %x", d)
	}
	n := binary.BigEndian.Uint32(d[:4]) / 8
	var out []uint64
	for i := 0; i < int(n) && 8+8*i+8 <= len(d); i++ {
		out = append(out, binary.BigEndian.Uint64(d[8+8*i:]))
	}
	return out
}

func TestReportLUNs(t *testing.T) {
	tests := []struct {
		name   string
		addr   AddrMethod
		luns   []uint64
		sel    byte
		alloc  uint32
		want   []uint64
		status byte
		field  uint16
	}{
		{name: "peripheral", addr: AddrPeripheral, luns: []uint64{5, 0, 1}, alloc: 4096,
			want: []uint64{0, 0x0001 << 48, 0x0005 << 48}},
		{name: "peripheral large uses flat", addr: AddrPeripheral, luns: []uint64{300},
			alloc: 4096, want: []uint64{(0x4000 | 300) << 48}},
		{name: "flat", addr: AddrFlat, luns: []uint64{0, 16383}, alloc: 4096,
			want: []uint64{0x4000 << 48, 0x7fff << 48}},
		{name: "lun method", addr: AddrLUN, luns: []uint64{2}, alloc: 4096, want: []uint64{0x8002 << 48}},
		{name: "select 2", addr: AddrPeripheral, luns: []uint64{1}, sel: 2, alloc: 4096, want: []uint64{1 << 48}},
		{name: "select 1 well known", addr: AddrPeripheral, luns: []uint64{1}, sel: 1, alloc: 4096, want: nil},
		{name: "nothing mapped reports LUN 0", addr: AddrPeripheral, alloc: 4096, want: []uint64{0}},
		{name: "bad select", addr: AddrPeripheral, luns: []uint64{1}, sel: 0x10, alloc: 4096,
			status: scsi.StatusCheckCondition, field: 2},
		{name: "alloc 15", addr: AddrPeripheral, luns: []uint64{1}, alloc: 15,
			status: scsi.StatusCheckCondition, field: 6},
		{name: "alloc 16 truncates", addr: AddrPeripheral, luns: []uint64{1, 2, 3}, alloc: 16,
			want: []uint64{1 << 48}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := NewCore(Options{})
			if err := c.AddDevice(&Device{Name: "d", Handler: &fakeHandler{}}); err != nil {
				t.Fatal(err)
			}
			if err := c.AddGroup("g", tc.addr); err != nil {
				t.Fatal(err)
			}
			if err := c.AddName("g", "ini"); err != nil {
				t.Fatal(err)
			}
			for _, l := range tc.luns {
				if err := c.AddLUN("g", "d", l, false); err != nil {
					t.Fatal(err)
				}
			}
			s := newSess(t, c, "ini")
			r := run(t, s, 0, reportLUNsCDB(tc.sel, tc.alloc)...)
			if r.status != tc.status {
				t.Fatalf("status %#x want %#x", r.status, tc.status)
			}
			if tc.status == scsi.StatusCheckCondition {
				if _, asc := senseKeyASC(t, r.sense); asc != scsi.ASCInvalidFieldInCDB {
					t.Fatalf("asc %04x", asc)
				}
				if fp := binary.BigEndian.Uint16(r.sense[16:18]); r.sense[15]&0xc0 != 0xc0 || fp != tc.field {
					t.Fatalf("field pointer %x %d want %d", r.sense[15], fp, tc.field)
				}
				return
			}
			if uint32(len(r.data)) > tc.alloc || r.xfer != uint32(len(r.data)) {
				t.Fatalf("len %d xfer %d alloc %d", len(r.data), r.xfer, tc.alloc)
			}
			got := decodeReport(t, r.data)
			wantLen := 8 * len(tc.want)
			if tc.name == "alloc 16 truncates" {
				wantLen = 8 * len(tc.luns)
			}
			if binary.BigEndian.Uint32(r.data[:4]) != uint32(wantLen) {
				t.Fatalf("list length %d want %d", binary.BigEndian.Uint32(r.data[:4]), wantLen)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("luns %x want %x", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("luns %x want %x", got, tc.want)
				}
			}
			// Every reported LUN must decode back and address a mapped LUN.
			for _, raw := range got {
				if _, ok := decodeLUN(raw); !ok {
					t.Fatalf("reported LUN %#x does not decode", raw)
				}
			}
		})
	}
}

func TestRequestSense(t *testing.T) {
	c, _ := setup(t, 0)
	s := newSess(t, c, "i")
	// The pending POWER ON UA is returned as data and cleared.
	r := run(t, s, 0, scsi.OpRequestSense, 0, 0, 0, 252, 0)
	if r.status != scsi.StatusGood {
		t.Fatalf("status %#x", r.status)
	}
	if k, asc := senseKeyASC(t, r.data); k != scsi.SenseUnitAttention || asc != scsi.ASCPowerOnResetOccurred || r.data[0] != 0x70 {
		t.Fatalf("data %x", r.data)
	}
	// Nothing pending: NO SENSE, descriptor format on request.
	r = run(t, s, 0, scsi.OpRequestSense, 1, 0, 0, 252, 0)
	if k, asc := senseKeyASC(t, r.data); r.data[0] != 0x72 || k != scsi.SenseNoSense || asc != 0 {
		t.Fatalf("data %x", r.data)
	}
	// Allocation length truncates.
	r = run(t, s, 0, scsi.OpRequestSense, 0, 0, 0, 4, 0)
	if len(r.data) != 4 || r.xfer != 4 {
		t.Fatalf("data %x", r.data)
	}
	// TUR now succeeds: the UA is gone.
	if r := run(t, s, 0, tur()...); r.status != scsi.StatusGood {
		t.Fatalf("status %#x", r.status)
	}
}

func TestInquiryAndReportLUNsIgnoreUA(t *testing.T) {
	c, h := setup(t, 0)
	s := newSess(t, c, "i")
	r := run(t, s, 0, scsi.OpInquiry, 0, 0, 0, 36, 0)
	if r.status != scsi.StatusGood || len(h.execOrder()) != 1 {
		t.Fatalf("INQUIRY with pending UA: status %#x", r.status)
	}
	r = run(t, s, 0, reportLUNsCDB(0, 64)...)
	if r.status != scsi.StatusGood {
		t.Fatalf("REPORT LUNS with pending UA: status %#x", r.status)
	}
	r = run(t, s, 0, tur()...)
	if _, asc := senseKeyASC(t, r.sense); asc != scsi.ASCPowerOnResetOccurred {
		t.Fatalf("UA lost: %x", r.sense)
	}
}

func TestBufferPool(t *testing.T) {
	var p bufPool
	for _, n := range []int{1, 36, 4096, 4097, 65536, 1 << 20, 1<<24 + 1} {
		b := p.get(n)
		if len(b) != n {
			t.Fatalf("get(%d) len %d", n, len(b))
		}
		if n >= pageSize && n <= 1<<maxClassShift {
			if addr := uintptrOf(b); addr%pageSize != 0 {
				t.Fatalf("get(%d) not page aligned: %#x", n, addr)
			}
		}
		pooled := p.put(b)
		if pooled != (n <= 1<<maxClassShift) {
			t.Fatalf("put(get(%d)) = %v", n, pooled)
		}
	}
	if p.put(make([]byte, 100)) {
		t.Fatal("foreign odd-sized buffer pooled")
	}
	big := make([]byte, 8192+1)
	if p.put(big[1:]) {
		t.Fatal("misaligned buffer pooled")
	}
	if !bytes.Equal(nil, p.get(0)) {
		t.Fatal("get(0) not empty")
	}
}

func TestDeferredError(t *testing.T) {
	c, _ := setup(t, 0)
	s := newSess(t, c, "i")
	d := c.Device("disk1")
	d.RaiseDeferredError(scsi.SenseWriteError)
	d.RaiseDeferredError(scsi.SenseInternalFailure) // the first one is kept
	// The UA goes first.
	r := run(t, s, 0, tur()...)
	if _, asc := senseKeyASC(t, r.sense); asc != scsi.ASCPowerOnResetOccurred {
		t.Fatalf("first: %x", r.sense)
	}
	r = run(t, s, 0, scsi.OpInquiry, 0, 0, 0, 36, 0)
	if r.status != scsi.StatusGood {
		t.Fatal("INQUIRY got the deferred error")
	}
	r = run(t, s, 0, tur()...)
	if r.status != scsi.StatusCheckCondition || r.sense[0] != 0x71 || r.sense[2] != scsi.SenseMediumError || r.sense[12] != 0x0c {
		t.Fatalf("deferred: %#x %x", r.status, r.sense)
	}
	if r := run(t, s, 0, tur()...); r.status != scsi.StatusGood {
		t.Fatal("deferred error reported twice")
	}
	// REQUEST SENSE returns it as data, descriptor format on request.
	d.RaiseDeferredError(scsi.SenseWriteError)
	r = run(t, s, 0, scsi.OpRequestSense, 1, 0, 0, 255, 0)
	if r.status != scsi.StatusGood || r.data[0] != 0x73 || r.data[1] != scsi.SenseMediumError {
		t.Fatalf("REQUEST SENSE: %#x %x", r.status, r.data)
	}
	if r := run(t, s, 0, tur()...); r.status != scsi.StatusGood {
		t.Fatal("deferred error survived REQUEST SENSE")
	}
}

func TestDoubleCompleteIgnored(t *testing.T) {
	c := NewCore(Options{})
	h := &funcHandler{exec: func(cmd *Command) {
		cmd.Complete()
		cmd.Complete()
	}}
	if err := c.AddDevice(&Device{Name: "d", Handler: h}); err != nil {
		t.Fatal(err)
	}
	if err := c.AddLUN(DefaultGroup, "d", 0, false); err != nil {
		t.Fatal(err)
	}
	s := newSess(t, c, "i")
	clearUAs(t, s, 0)
	calls := 0
	cmd := &Command{CDB: tur(), Done: func(*Command) { calls++ }}
	s.Submit(cmd)
	if calls != 1 {
		t.Fatalf("Done called %d times", calls)
	}
}
