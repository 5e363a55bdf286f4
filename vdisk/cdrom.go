package vdisk

import (
	"encoding/binary"
	"fmt"
	"strings"
	"syscall"

	"github.com/scstd/scstd/target"
	"github.com/scstd/scstd/target/scsi"
	"github.com/sirupsen/logrus"
)

const cdBlockSize = 2048

// Media event codes of GET EVENT STATUS NOTIFICATION (MMC-6 table 150).
const (
	mediaNoChange = 0
	mediaNew      = 2
	mediaRemoval  = 3
)

// newCDTable builds the vcdrom command set: SPC plus the MMC commands an
// initiator needs to mount a data CD.
func newCDTable() *opTable {
	t := &opTable{pages: cdModePages()}
	t.addSPC()
	for _, e := range []*opEntry{
		{name: "READ CAPACITY", op: scsi.OpReadCapacity10, cdbLen: 10,
			usage: usage(0x25, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0x01, 0), flags: fMedium, exec: execReadCapacity10},
		{name: "READ(10)", op: scsi.OpRead10, cdbLen: 10, usage: rw10(scsi.OpRead10, 0xf8), flags: fMedium, exec: execRead},
		{name: "READ(12)", op: scsi.OpRead12, cdbLen: 12, usage: rw12(scsi.OpRead12, 0xf8), flags: fMedium, exec: execRead},
		{name: "READ TOC/PMA/ATIP", op: scsi.OpReadTOC, cdbLen: 10,
			usage: usage(0x43, 0x02, 0x0f, 0, 0, 0, 0xff, 0xff, 0xff, 0xc0), flags: fMedium, exec: execReadTOC},
		{name: "GET CONFIGURATION", op: scsi.OpGetConfiguration, cdbLen: 10,
			usage: usage(0x46, 0x03, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0), exec: execGetConfiguration},
		{name: "GET EVENT STATUS NOTIFICATION", op: scsi.OpGetEventStatusNotification, cdbLen: 10,
			usage: usage(0x4a, 0x01, 0, 0, 0xff, 0, 0, 0xff, 0xff, 0), exec: execGetEventStatus},
		{name: "READ DISC INFORMATION", op: scsi.OpReadDiscInformation, cdbLen: 10,
			usage: usage(0x51, 0x07, 0, 0, 0, 0, 0, 0xff, 0xff, 0), flags: fMedium, exec: execReadDiscInfo},
	} {
		e.timeout = toIO
		t.add(e)
	}
	return t
}

// msf converts a logical block address to MSF (75 frames per second,
// 2-second lead-in).
func msf(lba uint64) (m, s, f byte) {
	fr := lba + 150
	return byte(fr / (60 * 75)), byte(fr / 75 % 60), byte(fr % 75)
}

func putAddr(b []byte, lba uint64, useMSF bool) {
	if useMSF {
		m, s, f := msf(lba)
		b[0], b[1], b[2], b[3] = 0, m, s, f
		return
	}
	binary.BigEndian.PutUint32(b, uint32(lba))
}

func execReadTOC(d *vdev, c *target.Command) (outcome, scsi.Sense) {
	cdb := c.CDB
	useMSF := cdb[1]&0x02 != 0
	format := cdb[2] & 0x0f
	if format == 0 && cdb[9]>>6 != 0 {
		format = cdb[9] >> 6 // pre-MMC drives put the format in the control byte
	}
	track := cdb[6]
	alloc := uint32(binary.BigEndian.Uint16(cdb[7:]))
	var b [32]byte
	n := 4
	switch format {
	case 0: // formatted TOC: one data track and the lead-out
		if track > 1 && track != 0xaa {
			return invalidField(6, 7)
		}
		b[2], b[3] = 1, 1 // first, last track
		if track <= 1 {
			b[n+1] = 0x14 // ADR 1, CONTROL 4: data track
			b[n+2] = 1
			putAddr(b[n+4:], 0, useMSF)
			n += 8
		}
		b[n+1] = 0x14
		b[n+2] = 0xaa
		putAddr(b[n+4:], d.nblocks(), useMSF)
		n += 8
	case 1: // multi-session information: a single session
		b[2], b[3] = 1, 1
		b[n+1] = 0x14
		b[n+2] = 1
		putAddr(b[n+4:], 0, useMSF)
		n += 8
	default:
		return invalidField(2, 3)
	}
	binary.BigEndian.PutUint16(b[0:], uint16(n-2))
	setDataIn(c, b[:n], alloc)
	return done, scsi.Sense{}
}

// feature writes one GET CONFIGURATION feature descriptor.
func feature(b []byte, code uint16, version byte, persistent, current bool, data ...byte) int {
	binary.BigEndian.PutUint16(b, code)
	b[2] = version<<2 | bit(persistent, 0x02) | bit(current, 0x01)
	b[3] = byte(len(data))
	copy(b[4:], data)
	return 4 + len(data)
}

func execGetConfiguration(d *vdev, c *target.Command) (outcome, scsi.Sense) {
	cdb := c.CDB
	rt := cdb[1] & 0x03
	if rt == 3 {
		return invalidField(1, 1)
	}
	start := binary.BigEndian.Uint16(cdb[2:])
	alloc := uint32(binary.BigEndian.Uint16(cdb[7:]))
	present := d.mediumPresent()
	var b [128]byte
	if present {
		binary.BigEndian.PutUint16(b[6:], 0x0008) // current profile: CD-ROM
	}
	n := 8
	type feat struct {
		code    uint16
		version byte
		persist bool
		current bool
		data    []byte
	}
	var bsz [4]byte
	binary.BigEndian.PutUint32(bsz[:], cdBlockSize)
	feats := [...]feat{
		{0x0000, 0, true, true, []byte{0x00, 0x08, bit(present, 0x01), 0}},              // profile list
		{0x0001, 2, true, true, []byte{0, 0, 0, 0, 0x01, 0, 0, 0}},                      // core: DBE
		{0x0002, 1, true, true, []byte{0, 0, 0, 0}},                                     // morphing
		{0x0003, 2, true, true, []byte{0x29, 0, 0, 0}},                                  // removable medium: tray, eject, lock
		{0x0010, 0, false, present, []byte{bsz[0], bsz[1], bsz[2], bsz[3], 0, 1, 0, 0}}, // random readable
		{0x001e, 2, false, present, []byte{0, 0, 0, 0}},                                 // CD read
	}
	for _, f := range feats {
		if f.code < start || (rt == 1 && !f.current) || (rt == 2 && f.code != start) {
			continue
		}
		n += feature(b[n:], f.code, f.version, f.persist, f.current, f.data...)
	}
	binary.BigEndian.PutUint32(b[0:], uint32(n-4))
	setDataIn(c, b[:n], alloc)
	return done, scsi.Sense{}
}

func execGetEventStatus(d *vdev, c *target.Command) (outcome, scsi.Sense) {
	cdb := c.CDB
	if cdb[1]&0x01 == 0 {
		return invalidField(1, 0) // asynchronous notification unsupported
	}
	classes := cdb[4]
	alloc := uint32(binary.BigEndian.Uint16(cdb[7:]))
	var b [8]byte
	b[3] = 0x10 // supported classes: media
	if classes&0x10 == 0 {
		b[2] = 0x80 // NEA: no event available of the requested classes
		binary.BigEndian.PutUint16(b[0:], 2)
		setDataIn(c, b[:4], alloc)
		return done, scsi.Sense{}
	}
	b[2] = 0x04 // media class
	binary.BigEndian.PutUint16(b[0:], 6)
	b[4] = byte(d.mediaEvent.Swap(mediaNoChange))
	if d.mediumPresent() {
		b[5] = 0x02 // media present
	} else if d.ejected.Load() {
		b[5] = 0x01 // tray open
	}
	setDataIn(c, b[:8], alloc)
	return done, scsi.Sense{}
}

func execReadDiscInfo(d *vdev, c *target.Command) (outcome, scsi.Sense) {
	cdb := c.CDB
	if cdb[1]&0x07 != 0 {
		return invalidField(1, 2) // only standard disc information
	}
	alloc := uint32(binary.BigEndian.Uint16(cdb[7:]))
	var b [34]byte
	binary.BigEndian.PutUint16(b[0:], 32)
	b[2] = 0x0e // last session complete, disc complete
	b[3] = 1    // first track on disc
	b[4] = 1    // sessions
	b[5] = 1    // first track in last session
	b[6] = 1    // last track in last session
	b[7] = 0x20 // URU: unrestricted use
	b[8] = 0x00 // CD-DA or CD-ROM disc
	for i := 16; i < 24; i++ {
		b[i] = 0xff // lead-in / lead-out start times: not applicable
	}
	setDataIn(c, b[:], alloc)
	return done, scsi.Sense{}
}

// --- vcdrom management (spec §1.16) ---

// OpenCDROM implements vcdrom `open NAME [FILE]`.
func (m *Manager) OpenCDROM(name, path string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.checkName(name); err != nil {
		return err
	}
	path = strings.TrimSpace(path)
	if path != "" && !strings.HasPrefix(path, "/") {
		return errnof(syscall.EINVAL, "open %s: file name %q is not absolute", name, path)
	}
	v := m.newVdev(name, handlerCDROM, scsi.TypeCDROM, cdBlockSize, Flags{ReadOnly: true, Removable: true})
	if path != "" {
		med, err := m.openMedium(v, path, true, false)
		if err != nil {
			return fmt.Errorf("open %s: %w", name, err)
		}
		v.med.Store(med)
	}
	if err := m.register(v); err != nil {
		return err
	}
	v.log.WithField("file", path).Info("virtual CD-ROM opened")
	return nil
}

// ChangeCDROM implements vcdrom `change NAME [FILE]`: an empty FILE ejects.
func (m *Manager) ChangeCDROM(name, path string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, err := m.lookup(name, scsi.TypeCDROM)
	if err != nil {
		return err
	}
	path = strings.TrimSpace(path)
	if path != "" && !strings.HasPrefix(path, "/") {
		return errnof(syscall.EINVAL, "change %s: file name %q is not absolute", name, path)
	}
	if v.prevent.Load() {
		return errnof(syscall.EBUSY, "change %s: medium removal prevented", name)
	}
	var med *medium
	if path != "" {
		if med, err = m.openMedium(v, path, true, false); err != nil {
			return fmt.Errorf("change %s: %w", name, err)
		}
	}
	v.mu.Lock()
	old := v.med.Swap(med)
	v.ejected.Store(false)
	v.mu.Unlock()
	if old != nil {
		old.retire()
	}
	if med != nil {
		v.mediaEvent.Store(mediaNew)
	} else {
		v.mediaEvent.Store(mediaRemoval)
	}
	v.hooks.RaiseUA(scsi.ASCNotReadyToReadyChange)
	v.log.WithFields(logrus.Fields{"file": path}).Info("virtual CD-ROM medium changed")
	return nil
}

// CloseCDROM implements vcdrom `close NAME`.
func (m *Manager) CloseCDROM(name string) error {
	return detachAndFinish(m.DetachCDROM(name))
}

// DetachCDROM is CloseCDROM in two halves, as Detach.
func (m *Manager) DetachCDROM(name string) (finish func() error, err error) {
	return m.detach(name, scsi.TypeCDROM, "virtual CD-ROM closed")
}

// CDROMInfo is one vcdrom row.
type CDROMInfo struct {
	Name string
	Size int64
	Path string
}

// CDROMs lists CD-ROM devices in creation order.
func (m *Manager) CDROMs() []CDROMInfo {
	var out []CDROMInfo
	for _, dev := range m.core.Devices() {
		v, ok := dev.Handler.(*vdev)
		if !ok || v.devType != scsi.TypeCDROM {
			continue
		}
		info := CDROMInfo{Name: v.name}
		if med := v.med.Load(); med != nil {
			info.Path = med.path
			info.Size = int64(med.nblocks.Load() << v.shift)
		}
		out = append(out, info)
	}
	return out
}
