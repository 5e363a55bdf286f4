package pdu

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
)

// AHS types (RFC 7143 §11.2.2).
const (
	AHSExtendedCDB    = 1
	AHSBidiReadLength = 2
)

// Errors returned by the Reader. Header digest errors and malformed headers
// leave the stream unusable (the connection must be dropped); a data digest
// error is reported after the whole PDU was consumed, so the caller may
// reject the PDU and continue.
var (
	ErrHeaderDigest = errors.New("iscsi: header digest mismatch")
	ErrDataDigest   = errors.New("iscsi: data digest mismatch")
	ErrTooLong      = errors.New("iscsi: data segment exceeds MaxRecvDataSegmentLength")
	ErrAHS          = errors.New("iscsi: malformed AHS")
)

// Header is a received BHS with its AHS.
type Header struct {
	BHS
	// AHS holds the raw AHS bytes; it aliases the Reader's buffer and is
	// valid until the next ReadHeader.
	AHS []byte
}

// ExtendedCDB returns the bytes of an Extended CDB AHS (the CDB beyond its
// first 16 bytes), or nil if there is none.
func (h *Header) ExtendedCDB() ([]byte, error) {
	b, err := findAHS(h.AHS, AHSExtendedCDB)
	if err != nil || b == nil {
		return nil, err
	}
	if len(b) < 1 {
		return nil, ErrAHS
	}
	return b[1:], nil // skip the reserved byte
}

// BidiReadLength returns the Expected Bidirectional Read Data Length AHS.
func (h *Header) BidiReadLength() (uint32, bool, error) {
	b, err := findAHS(h.AHS, AHSBidiReadLength)
	if err != nil || b == nil {
		return 0, false, err
	}
	if len(b) != 5 {
		return 0, false, ErrAHS
	}
	return binary.BigEndian.Uint32(b[1:]), true, nil
}

// findAHS walks the AHS list; it returns the AHS-specific bytes (including
// the reserved byte after the type) of the first AHS of type t.
func findAHS(ahs []byte, t byte) ([]byte, error) {
	for len(ahs) > 0 {
		if len(ahs) < 4 {
			return nil, ErrAHS
		}
		n := int(binary.BigEndian.Uint16(ahs))
		total := 3 + n
		total += -total & 3
		if n == 0 || total > len(ahs) {
			return nil, ErrAHS
		}
		if ahs[2]&0x3f == t {
			return ahs[3 : 3+n], nil
		}
		ahs = ahs[total:]
	}
	return nil, nil
}

// AppendAHS appends one AHS of type t with the specific bytes b (which
// must start with the reserved byte) padded to 4.
func AppendAHS(dst []byte, t byte, b []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(b)))
	dst = append(dst, t)
	dst = append(dst, b...)
	for pad := -(3 + len(b)) & 3; pad > 0; pad-- {
		dst = append(dst, 0)
	}
	return dst
}

// Digest computes CRC32C (Castagnoli) digests. The table is built once per
// codec; the stdlib selects the SSE4.2 path for it.
type Digest struct{ tab *crc32.Table }

// NewDigest returns a CRC32C digester.
func NewDigest() Digest { return Digest{tab: crc32.MakeTable(crc32.Castagnoli)} }

// Update continues a CRC32C over b.
func (d Digest) Update(crc uint32, b []byte) uint32 { return crc32.Update(crc, d.tab, b) }

// Sum returns the CRC32C of b.
func (d Digest) Sum(b []byte) uint32 { return crc32.Update(0, d.tab, b) }

// Digests are stored little-endian on the wire (RFC 7143 §11.1, as the
// CRC32C value is transmitted least significant byte first).
func putDigest(b []byte, v uint32) { binary.LittleEndian.PutUint32(b, v) }
func getDigest(b []byte) uint32    { return binary.LittleEndian.Uint32(b) }

// Reader reads PDUs from a stream. It is not safe for concurrent use.
type Reader struct {
	r      *bufio.Reader
	src    io.Reader
	dig    Digest
	hdrDig bool
	datDig bool
	// MaxData bounds the data segment length accepted (our declared
	// MaxRecvDataSegmentLength; login PDUs use 8192 before negotiation).
	MaxData uint32
	pending uint32 // data segment length of the current PDU not yet read
	ahsBuf  [MaxAHSLen + DigestLen]byte
	tailBuf [8]byte // pad and digest after a data segment
	scratch [4096]byte
}

// NewReader wraps r (typically the net.Conn) in a bufio.Reader of size bufSize.
func NewReader(r io.Reader, bufSize int) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, bufSize), src: r, dig: NewDigest(), MaxData: 8192}
}

// Grow enlarges the read buffer to size, keeping the bytes already
// buffered. A connection reads its login with a small buffer, so that
// connections that never log in cost little, and grows it for the full
// feature phase.
func (r *Reader) Grow(size int) {
	if r.r.Size() >= size {
		return
	}
	var rest io.Reader = r.src
	if n := r.r.Buffered(); n > 0 {
		b, _ := r.r.Peek(n)
		rest = &prefixReader{p: bytes.Clone(b), r: r.src}
	}
	r.r = bufio.NewReaderSize(rest, size)
}

// prefixReader returns p, then reads from r.
type prefixReader struct {
	p []byte
	r io.Reader
}

func (pr *prefixReader) Read(b []byte) (int, error) {
	if len(pr.p) > 0 {
		n := copy(b, pr.p)
		pr.p = pr.p[n:]
		return n, nil
	}
	return pr.r.Read(b)
}

// SetDigests enables CRC32C header and/or data digests (after login).
func (r *Reader) SetDigests(header, data bool) { r.hdrDig, r.datDig = header, data }

// Buffered returns the number of bytes already buffered.
func (r *Reader) Buffered() int { return r.r.Buffered() }

// ReadHeader reads the BHS, the AHS and the header digest of the next PDU.
// The data segment must then be consumed with ReadData or DiscardData
// before the next ReadHeader.
func (r *Reader) ReadHeader(h *Header) error {
	if r.pending != 0 {
		if err := r.DiscardData(); err != nil {
			return err
		}
	}
	if _, err := io.ReadFull(r.r, h.BHS[:]); err != nil {
		return err
	}
	ahsLen := h.TotalAHSLength()
	h.AHS = nil
	extra := ahsLen
	if r.hdrDig {
		extra += DigestLen
	}
	if extra > 0 {
		if _, err := io.ReadFull(r.r, r.ahsBuf[:extra]); err != nil {
			return unexpected(err)
		}
		if ahsLen > 0 {
			h.AHS = r.ahsBuf[:ahsLen:ahsLen]
		}
		if r.hdrDig {
			crc := r.dig.Update(r.dig.Sum(h.BHS[:]), r.ahsBuf[:ahsLen])
			if crc != getDigest(r.ahsBuf[ahsLen:]) {
				return ErrHeaderDigest
			}
		}
	}
	n := h.DataSegmentLength()
	if n > r.MaxData {
		return fmt.Errorf("%w: %d > %d (%v)", ErrTooLong, n, r.MaxData, h.Opcode())
	}
	r.pending = n
	return nil
}

// Pending is the data segment length still to be consumed.
func (r *Reader) Pending() uint32 { return r.pending }

// ReadData reads the whole data segment of the current PDU into dst, which
// must be exactly Pending() bytes, then its padding and digest. On
// ErrDataDigest the PDU was consumed completely.
func (r *Reader) ReadData(dst []byte) error {
	if uint32(len(dst)) != r.pending {
		return fmt.Errorf("iscsi: ReadData of %d bytes, segment has %d", len(dst), r.pending)
	}
	r.pending = 0
	if len(dst) == 0 {
		return nil
	}
	if _, err := io.ReadFull(r.r, dst); err != nil {
		return unexpected(err)
	}
	pad := Pad(uint32(len(dst)))
	tail := pad
	if r.datDig {
		tail += DigestLen
	}
	if tail == 0 {
		return nil
	}
	t := r.tailBuf[:tail]
	if _, err := io.ReadFull(r.r, t); err != nil {
		return unexpected(err)
	}
	if r.datDig {
		crc := r.dig.Update(r.dig.Sum(dst), t[:pad])
		if crc != getDigest(t[pad:]) {
			return ErrDataDigest
		}
	}
	return nil
}

// DiscardData skips the current data segment (checking its digest).
func (r *Reader) DiscardData() error {
	n := r.pending
	r.pending = 0
	total := n + Pad(n)
	if !r.datDig {
		_, err := r.r.Discard(int(total))
		return unexpected(err)
	}
	var crc uint32
	for total > 0 {
		c := min(total, uint32(len(r.scratch)))
		if _, err := io.ReadFull(r.r, r.scratch[:c]); err != nil {
			return unexpected(err)
		}
		crc = r.dig.Update(crc, r.scratch[:c])
		total -= c
	}
	if n > 0 {
		if _, err := io.ReadFull(r.r, r.tailBuf[:DigestLen]); err != nil {
			return unexpected(err)
		}
		if crc != getDigest(r.tailBuf[:]) {
			return ErrDataDigest
		}
	}
	return nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Frame is the per-PDU storage the Encoder needs besides the data: the BHS
// with its header digest, and the padding with the data digest. It must stay
// alive (and unmodified) until the iovecs referencing it are written.
type Frame struct {
	hdr  [BHSLen + DigestLen]byte
	tail [3 + DigestLen]byte
}

// Encoder lays out PDUs as iovecs.
type Encoder struct {
	dig    Digest
	hdrDig bool
	datDig bool
}

// NewEncoder returns an encoder without digests.
func NewEncoder() *Encoder { return &Encoder{dig: NewDigest()} }

// SetDigests enables CRC32C header and/or data digests.
func (e *Encoder) SetDigests(header, data bool) { e.hdrDig, e.datDig = header, data }

// Append sets h's DataSegmentLength to len(data) (and TotalAHSLength to 0;
// targets send no AHS), copies h into f and appends the iovecs of the PDU
// to iov. data is referenced, not copied.
func (e *Encoder) Append(iov net.Buffers, f *Frame, h *BHS, data []byte) net.Buffers {
	h.SetDataSegmentLength(uint32(len(data)))
	h[4] = 0
	copy(f.hdr[:], h[:])
	hl := BHSLen
	if e.hdrDig {
		putDigest(f.hdr[BHSLen:], e.dig.Sum(f.hdr[:BHSLen]))
		hl += DigestLen
	}
	iov = append(iov, f.hdr[:hl])
	if len(data) == 0 {
		return iov
	}
	iov = append(iov, data)
	pad := int(Pad(uint32(len(data))))
	clear(f.tail[:pad])
	tl := pad
	if e.datDig {
		crc := e.dig.Update(e.dig.Sum(data), f.tail[:pad])
		putDigest(f.tail[pad:], crc)
		tl += DigestLen
	}
	if tl > 0 {
		iov = append(iov, f.tail[:tl])
	}
	return iov
}

// AppendWithAHS is Append for initiators, which may send an AHS. ahs must be
// a multiple of 4 bytes long.
func (e *Encoder) AppendWithAHS(iov net.Buffers, f *Frame, h *BHS, ahs, data []byte) net.Buffers {
	if len(ahs) == 0 {
		return e.Append(iov, f, h, data)
	}
	h.SetDataSegmentLength(uint32(len(data)))
	h.SetTotalAHSLength(len(ahs))
	copy(f.hdr[:], h[:])
	iov = append(iov, f.hdr[:BHSLen], ahs)
	if e.hdrDig {
		crc := e.dig.Update(e.dig.Sum(f.hdr[:BHSLen]), ahs)
		putDigest(f.hdr[BHSLen:], crc)
		iov = append(iov, f.hdr[BHSLen:])
	}
	if len(data) == 0 {
		return iov
	}
	iov = append(iov, data)
	pad := int(Pad(uint32(len(data))))
	clear(f.tail[:pad])
	tl := pad
	if e.datDig {
		putDigest(f.tail[pad:], e.dig.Update(e.dig.Sum(data), f.tail[:pad]))
		tl += DigestLen
	}
	if tl > 0 {
		iov = append(iov, f.tail[:tl])
	}
	return iov
}

// WritePDU writes one PDU to w (used for login and by test initiators; the
// full-feature writer batches with Append instead).
func (e *Encoder) WritePDU(w io.Writer, h *BHS, data []byte) error {
	var f Frame
	var arr [3][]byte
	iov := e.Append(arr[:0], &f, h, data)
	_, err := iov.WriteTo(w)
	return err
}
