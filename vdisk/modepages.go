package vdisk

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/scstd/scstd/target"
	"github.com/scstd/scstd/target/scsi"
)

// Mode parameter bits a device keeps (the changeable ones).
const (
	mWCE    uint32 = 1 << iota // caching page: write cache enabled
	mDSense                    // control page: descriptor sense
	mSWP                       // control page: software write protect
	mAll    = mWCE | mDSense | mSWP
)

// modeState holds current and saved mode parameters as bit sets, read
// lock-free on the data path (WCE decides FUA, SWP write protection).
type modeState struct {
	cur   atomic.Uint32
	saved atomic.Uint32
	def   uint32
}

func (m *modeState) wce() bool { return m.cur.Load()&mWCE != 0 }
func (m *modeState) swp() bool { return m.cur.Load()&mSWP != 0 }

// Page control values of MODE SENSE.
const (
	pcCurrent    = 0
	pcChangeable = 1
	pcDefault    = 2
	pcSaved      = 3
)

// modePage describes one mode page: its code, total length and a builder
// that writes the page for a parameter set (or the changeable mask).
type modePage struct {
	code   byte
	length int // including the 2-byte header
	// build writes the page into b[:length]; changeable selects the mask
	// of changeable bits, otherwise bits are the values to show.
	build func(d *vdev, b []byte, bits uint32, changeable bool)
	// apply returns bits updated from an accepted MODE SELECT page.
	apply func(bits uint32, p []byte) uint32
}

func bit(cond bool, v byte) byte {
	if cond {
		return v
	}
	return 0
}

func (d *vdev) modePages() []modePage { return d.table.pages }

// diskModePages lists the disk pages in page-code order. The non-changeable
// pages carry fixed values that describe a plausible disk to old initiators.
func diskModePages() []modePage {
	return []modePage{
		{code: 0x01, length: 12, build: pageErrRecovery},
		{code: 0x03, length: 24, build: pageFormat},
		{code: 0x04, length: 24, build: pageGeometry},
		{code: 0x08, length: 20, build: pageCaching, apply: applyCaching},
		{code: 0x0a, length: 12, build: pageControl, apply: applyControl},
		{code: 0x1c, length: 12, build: pageIEC},
	}
}

func cdModePages() []modePage {
	return []modePage{
		{code: 0x01, length: 12, build: pageErrRecovery},
		{code: 0x0a, length: 12, build: pageControl, apply: applyControl},
		{code: 0x1c, length: 12, build: pageIEC},
		{code: 0x2a, length: 28, build: pageCDCapabilities},
	}
}

func pageErrRecovery(d *vdev, b []byte, bits uint32, ch bool) {
	b[0], b[1] = 0x01, 0x0a
	if !ch {
		b[2] = 0xc0 // AWRE, ARRE: automatic reallocation
	}
}

func pageFormat(d *vdev, b []byte, bits uint32, ch bool) {
	b[0], b[1] = 0x03, 0x16
	if ch {
		return
	}
	binary.BigEndian.PutUint16(b[10:], geoSectors)
	binary.BigEndian.PutUint16(b[12:], uint16(d.blockSize))
	b[20] = 0x40 // HSEC: hard sectored
	if d.removable() {
		b[20] |= 0x20
	}
}

const (
	geoSectors = 56
	geoHeads   = 255
)

func pageGeometry(d *vdev, b []byte, bits uint32, ch bool) {
	b[0], b[1] = 0x04, 0x16
	if ch {
		return
	}
	cyl := d.nblocks() / (geoSectors * geoHeads)
	if cyl > 0xffffff {
		cyl = 0xffffff
	}
	b[2], b[3], b[4] = byte(cyl>>16), byte(cyl>>8), byte(cyl)
	b[5] = geoHeads
	binary.BigEndian.PutUint16(b[20:], 15000) // rotation rate
}

func pageCaching(d *vdev, b []byte, bits uint32, ch bool) {
	b[0], b[1] = 0x08, 0x12
	if ch {
		// WCE can be changed unless the cache is non-volatile.
		b[2] = bit(!d.flags.NVCache && !d.flags.NullIO, 0x04)
		return
	}
	b[2] = bit(bits&mWCE != 0, 0x04)
	b[12] = 0x80 // FSW: writes are not reordered across a flush
	b[13] = 0x14 // number of cache segments
}

func applyCaching(bits uint32, p []byte) uint32 {
	bits &^= mWCE
	if p[2]&0x04 != 0 {
		bits |= mWCE
	}
	return bits
}

func pageControl(d *vdev, b []byte, bits uint32, ch bool) {
	b[0], b[1] = 0x0a, 0x0a
	if ch {
		b[2] = 0x04 // D_SENSE
		b[4] = 0x08 // SWP
		return
	}
	b[2] = bit(bits&mDSense != 0, 0x04)
	b[3] = 0x10 // QUEUE ALGORITHM MODIFIER 1: unrestricted reordering
	b[4] = bit(bits&mSWP != 0, 0x08)
	binary.BigEndian.PutUint16(b[8:], 0xffff) // BUSY TIMEOUT PERIOD: unlimited
}

func applyControl(bits uint32, p []byte) uint32 {
	bits &^= mDSense | mSWP
	if p[2]&0x04 != 0 {
		bits |= mDSense
	}
	if p[4]&0x08 != 0 {
		bits |= mSWP
	}
	return bits
}

func pageIEC(d *vdev, b []byte, bits uint32, ch bool) {
	b[0], b[1] = 0x1c, 0x0a
	if !ch {
		b[2] = 0x08 // DEXCPT: no informational exceptions reporting
	}
}

// pageCDCapabilities is the MMC CD/DVD capabilities and mechanical status
// page: a read-only CD-ROM drive with a lockable, ejectable tray.
func pageCDCapabilities(d *vdev, b []byte, bits uint32, ch bool) {
	b[0], b[1] = 0x2a, 0x1a
	if ch {
		return
	}
	b[6] = 0x29 // tray loading mechanism (001b), EJECT, LOCK
	if d.prevent.Load() {
		b[6] |= 0x02 // LOCK STATE
	}
	binary.BigEndian.PutUint16(b[8:], 706)  // maximum read speed (kB/s, obsolete)
	binary.BigEndian.PutUint16(b[14:], 706) // current read speed
}

func (d *vdev) findPage(code byte) *modePage {
	pages := d.modePages()
	for i := range pages {
		if pages[i].code == code {
			return &pages[i]
		}
	}
	return nil
}

// savedSupported reports whether saved pages exist (they persist in the
// state directory).
func (d *vdev) savedSupported() bool { return d.stateDir != "" }

func execModeSense(d *vdev, c *target.Command) (outcome, scsi.Sense) {
	cdb := c.CDB
	six := cdb[0] == scsi.OpModeSense6
	dbd := cdb[1]&0x08 != 0
	llbaa := !six && cdb[1]&0x10 != 0
	pc := cdb[2] >> 6
	code := cdb[2] & 0x3f
	sub := cdb[3]
	var alloc uint32
	if six {
		alloc = uint32(cdb[4])
	} else {
		alloc = uint32(binary.BigEndian.Uint16(cdb[7:]))
	}
	if pc == pcSaved && !d.savedSupported() {
		return check, scsi.Sense{Key: scsi.SenseIllegalRequest, ASC: scsi.ASCSavingParametersNotSupported}
	}
	if sub != 0 && sub != 0xff {
		return invalidField(3, 7) // no subpages besides "all"
	}
	var bits uint32
	switch pc {
	case pcCurrent:
		bits = d.mode.cur.Load()
	case pcDefault:
		bits = d.mode.def
	case pcSaved:
		bits = d.mode.saved.Load()
	}

	var buf [512]byte
	hdr := 4
	if !six {
		hdr = 8
	}
	devSpec := byte(0)
	if d.writeProtected(c) {
		devSpec |= 0x80 // WP
	}
	if d.devType == scsi.TypeDisk {
		devSpec |= 0x10 // DPOFUA
	}
	p := hdr
	if !dbd {
		nb := d.nblocks()
		if llbaa {
			binary.BigEndian.PutUint64(buf[p:], nb)
			binary.BigEndian.PutUint32(buf[p+12:], d.blockSize)
			p += 16
		} else {
			if nb > 0xffffffff {
				nb = 0xffffffff
			}
			binary.BigEndian.PutUint32(buf[p:], uint32(nb))
			binary.BigEndian.PutUint32(buf[p+4:], d.blockSize&0xffffff)
			p += 8
		}
	}
	bdl := p - hdr
	if code == 0x3f {
		for _, pg := range d.modePages() {
			pg.build(d, buf[p:p+pg.length], bits, pc == pcChangeable)
			p += pg.length
		}
	} else {
		pg := d.findPage(code)
		if pg == nil {
			return invalidField(2, 5)
		}
		pg.build(d, buf[p:p+pg.length], bits, pc == pcChangeable)
		p += pg.length
	}
	if six {
		buf[0] = byte(p - 1)
		buf[2] = devSpec
		buf[3] = byte(bdl)
	} else {
		binary.BigEndian.PutUint16(buf[0:], uint16(p-2))
		buf[3] = devSpec
		if llbaa && !dbd {
			buf[4] = 0x01 // LONGLBA
		}
		binary.BigEndian.PutUint16(buf[6:], uint16(bdl))
	}
	setDataIn(c, buf[:p], alloc)
	return done, scsi.Sense{}
}

func paramError(byteOff uint16, bitOff uint8) (outcome, scsi.Sense) {
	return check, scsi.Sense{Key: scsi.SenseIllegalRequest, ASC: scsi.ASCInvalidFieldInParameterList,
		FieldPointer: byteOff, BitPointer: bitOff, FieldPointerValid: true}
}

func execModeSelect(d *vdev, c *target.Command) (outcome, scsi.Sense) {
	cdb := c.CDB
	six := cdb[0] == scsi.OpModeSelect6
	var plen uint32
	if six {
		plen = uint32(cdb[4])
	} else {
		plen = uint32(binary.BigEndian.Uint16(cdb[7:]))
	}
	c.TransferLen = plen
	sp := cdb[1]&0x01 != 0
	if sp && !d.savedSupported() {
		return invalidField(1, 0)
	}
	if plen == 0 {
		return done, scsi.Sense{}
	}
	if cdb[1]&0x10 == 0 {
		return invalidField(1, 4) // PF=0: vendor-specific pages unsupported
	}
	if uint32(len(c.DataOut)) < plen {
		return check, scsi.SenseParamListLength
	}
	return d.modeSelect(c, c.DataOut[:plen], six, sp)
}

// modeSelect validates and applies a MODE SELECT parameter list. It is
// all-or-nothing: the first bad field rejects the whole list.
func (d *vdev) modeSelect(c *target.Command, data []byte, six, sp bool) (outcome, scsi.Sense) {
	hdr := 8
	if six {
		hdr = 4
	}
	if len(data) < hdr {
		return check, scsi.SenseParamListLength
	}
	var bdl int
	longLBA := false
	if six {
		bdl = int(data[3])
	} else {
		bdl = int(binary.BigEndian.Uint16(data[6:]))
		longLBA = data[4]&0x01 != 0
	}
	if hdr+bdl > len(data) {
		return check, scsi.SenseParamListLength
	}
	switch {
	case bdl == 0:
	case bdl == 8 && !longLBA:
		if bl := binary.BigEndian.Uint32(data[hdr+4:]) & 0xffffff; bl != 0 && bl != d.blockSize {
			return paramError(uint16(hdr+5), 7)
		}
	case bdl == 16 && longLBA:
		if bl := binary.BigEndian.Uint32(data[hdr+12:]); bl != 0 && bl != d.blockSize {
			return paramError(uint16(hdr+12), 7)
		}
	default:
		if six {
			return paramError(3, 7)
		}
		return paramError(6, 7)
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.mode.cur.Load()
	bits := old
	var cur, msk [64]byte
	for p := hdr + bdl; p < len(data); {
		if data[p]&0x40 != 0 {
			return paramError(uint16(p), 6) // SPF: no subpages
		}
		if p+2 > len(data) {
			return check, scsi.SenseParamListLength
		}
		pg := d.findPage(data[p] & 0x3f)
		if pg == nil {
			return paramError(uint16(p), 5)
		}
		l := 2 + int(data[p+1])
		if l != pg.length {
			return paramError(uint16(p+1), 7)
		}
		if p+l > len(data) {
			return check, scsi.SenseParamListLength
		}
		clear(cur[:l])
		clear(msk[:l])
		pg.build(d, cur[:l], bits, false)
		pg.build(d, msk[:l], bits, true)
		in := data[p : p+l]
		for i := 2; i < l; i++ {
			if diff := (in[i] ^ cur[i]) &^ msk[i]; diff != 0 {
				return paramError(uint16(p+i), highBit(diff))
			}
		}
		if pg.apply != nil {
			bits = pg.apply(bits, in)
		}
		p += l
	}
	if sp {
		if err := d.saveMode(bits); err != nil {
			d.log.WithError(err).Warn("saving mode pages failed")
			return check, scsi.SenseInternalFailure
		}
		d.mode.saved.Store(bits)
	}
	if bits != old {
		d.mode.cur.Store(bits)
		if (bits^old)&mDSense != 0 {
			d.hooks.SetDescriptorSense(bits&mDSense != 0)
		}
		// SPC-4 7.5.2: every other I_T nexus learns of the change.
		c.RaiseUAOthers(scsi.ASCModeParametersChanged)
	}
	return done, scsi.Sense{}
}

func highBit(b byte) uint8 {
	for i := uint8(7); i > 0; i-- {
		if b&(1<<i) != 0 {
			return i
		}
	}
	return 0
}

// modeFile is where saved mode parameters persist.
func (d *vdev) modeFile() string {
	return filepath.Join(d.stateDir, "vdev_mode_pages", d.name)
}

func (d *vdev) saveMode(bits uint32) error {
	p := d.modeFile()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("save mode pages: %w", err)
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatUint(uint64(bits), 16)+"\n"), 0o644); err != nil {
		return fmt.Errorf("save mode pages: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("save mode pages: %w", err)
	}
	return nil
}

// loadMode initializes current/saved parameters: defaults, overridden by
// the saved file when there is one.
func (d *vdev) loadMode() {
	d.mode.cur.Store(d.mode.def)
	d.mode.saved.Store(d.mode.def)
	if !d.savedSupported() {
		return
	}
	b, err := os.ReadFile(d.modeFile())
	if err != nil {
		return
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 16, 32)
	if err != nil {
		d.log.WithError(err).Warn("ignoring unreadable saved mode pages")
		return
	}
	bits := uint32(v) & mAll
	if d.flags.NVCache || d.flags.NullIO {
		bits &^= mWCE
	}
	d.mode.cur.Store(bits)
	d.mode.saved.Store(bits)
}
