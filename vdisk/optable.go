package vdisk

import (
	"encoding/binary"

	"github.com/scstd/scstd/target"
	"github.com/scstd/scstd/target/scsi"
)

// opFlags describe what the dispatcher checks before calling exec.
type opFlags uint8

const (
	// fMedium: the command accesses the medium (NOT READY without one).
	fMedium opFlags = 1 << iota
	// fWrite: the command modifies the medium (DATA PROTECT when
	// write-protected).
	fWrite
	// fCore: the core answers this opcode itself; the entry exists only
	// so that REPORT SUPPORTED OPERATION CODES lists it.
	fCore
)

// opEntry is one row of an opcode table. Adding a command is one entry.
type opEntry struct {
	name   string
	op     byte
	sa     byte // service action (valid when the parent has subs)
	hasSA  bool
	cdbLen int
	// usage is the CDB USAGE DATA of REPORT SUPPORTED OPERATION CODES:
	// a bit set for every CDB bit the device server examines. usage[0] is
	// the opcode; for service-action commands the SA bits are in usage[1].
	usage []byte
	flags opFlags
	// timeout is the nominal command timeout in seconds (RCTD).
	timeout uint32
	exec    func(d *vdev, c *target.Command) (outcome, scsi.Sense)
	// avail, if set, reports whether the device supports the command
	// (e.g. PREVENT ALLOW only on removable media).
	avail func(d *vdev) bool
}

// saSet is the service-action sub-table of an opcode; the SA is in the low
// five bits of CDB byte 1.
type saSet [32]*opEntry

// opTable maps opcodes to entries; built once per device type by the
// Manager and shared (read-only) by its devices.
type opTable struct {
	ops   [256]*opEntry
	subs  [256]*saSet
	pages []modePage // mode pages in page-code order
}

func (t *opTable) add(e *opEntry) {
	if len(e.usage) != e.cdbLen {
		panic("vdisk: usage data length mismatch for " + e.name)
	}
	if e.hasSA {
		if t.subs[e.op] == nil {
			t.subs[e.op] = new(saSet)
		}
		t.subs[e.op][e.sa&0x1f] = e
		return
	}
	t.ops[e.op] = e
}

// lookup returns the entry for cdb, or nil for an unsupported command.
func (t *opTable) lookup(cdb []byte) *opEntry {
	op := cdb[0]
	if s := t.subs[op]; s != nil {
		if len(cdb) < 2 {
			return nil
		}
		if e := s[cdb[1]&0x1f]; e != nil && e.flags&fCore == 0 {
			return e
		}
		return nil
	}
	if e := t.ops[op]; e != nil && e.flags&fCore == 0 {
		return e
	}
	return nil
}

// each calls fn for every entry (opcode order, service actions ascending).
func (t *opTable) each(fn func(e *opEntry)) {
	for op := 0; op < 256; op++ {
		if s := t.subs[op]; s != nil {
			for _, e := range s {
				if e != nil {
					fn(e)
				}
			}
			continue
		}
		if e := t.ops[op]; e != nil {
			fn(e)
		}
	}
}

// find returns the entry for (op, sa) in REPORT SUPPORTED OPERATION CODES
// terms: hasSA tells whether op has service actions at all.
func (t *opTable) find(op byte, sa uint16) (e *opEntry, hasSA bool) {
	if s := t.subs[op]; s != nil {
		if sa < 32 {
			return s[sa], true
		}
		return nil, true
	}
	return t.ops[op], false
}

// Helpers to build usage data.
func usage(b ...byte) []byte { return b }

// --- REPORT SUPPORTED OPERATION CODES (SPC-4 6.35) ---

const timeoutDescLen = 12

func putTimeoutDesc(b []byte, e *opEntry) {
	binary.BigEndian.PutUint16(b[0:], 0x0a)
	binary.BigEndian.PutUint32(b[4:], e.timeout)
	binary.BigEndian.PutUint32(b[8:], e.timeout)
}

func execReportOpcodes(d *vdev, c *target.Command) (outcome, scsi.Sense) {
	cdb := c.CDB
	rctd := cdb[2]&0x80 != 0
	opts := cdb[2] & 0x07
	reqOp := cdb[3]
	reqSA := binary.BigEndian.Uint16(cdb[4:])
	alloc := binary.BigEndian.Uint32(cdb[6:])
	supported := func(e *opEntry) bool { return e != nil && (e.avail == nil || e.avail(d)) }

	switch opts {
	case 0:
		n := 0
		d.table.each(func(e *opEntry) {
			if supported(e) {
				n++
			}
		})
		per := 8
		if rctd {
			per += timeoutDescLen
		}
		total := 4 + n*per
		buf := d.bufs.Get(total)
		defer d.bufs.Put(buf)
		b := *buf
		clear(b)
		binary.BigEndian.PutUint32(b, uint32(total-4))
		p := 4
		d.table.each(func(e *opEntry) {
			if !supported(e) {
				return
			}
			b[p] = e.op
			if e.hasSA {
				binary.BigEndian.PutUint16(b[p+2:], uint16(e.sa))
				b[p+5] |= 0x01 // SERVACTV
			}
			binary.BigEndian.PutUint16(b[p+6:], uint16(e.cdbLen))
			if rctd {
				b[p+5] |= 0x02 // CTDP
				putTimeoutDesc(b[p+8:], e)
			}
			p += per
		})
		setDataIn(c, b, alloc)
		return done, scsi.Sense{}
	case 1, 2, 3:
		e, hasSA := d.table.find(reqOp, reqSA)
		if opts == 1 && hasSA {
			return invalidField(2, 0)
		}
		if opts == 2 && !hasSA {
			return invalidField(2, 0)
		}
		var out [4 + 16 + timeoutDescLen]byte
		if !supported(e) {
			out[1] = 0x01 // not supported
			setDataIn(c, out[:4], alloc)
			return done, scsi.Sense{}
		}
		out[1] = 0x03 // supported, conforming to the standard
		binary.BigEndian.PutUint16(out[2:], uint16(e.cdbLen))
		copy(out[4:], e.usage)
		n := 4 + e.cdbLen
		if rctd {
			out[1] |= 0x80
			putTimeoutDesc(out[n:], e)
			n += timeoutDescLen
		}
		setDataIn(c, out[:n], alloc)
		return done, scsi.Sense{}
	}
	return invalidField(2, 2)
}
