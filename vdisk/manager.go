// Package vdisk is SCST's virtual-disk dev handler: vdisk_fileio,
// vdisk_blockio, vdisk_nullio and vcdrom devices, the SCSI command sets they
// execute (SPC, SBC, MMC) and the asynchronous backends that move bytes to
// and from files and block devices.
//
// API CONTRACT (used by cmd/scstd and controlfs; change only together).
package vdisk

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"

	"github.com/scstd/scstd/target"
	"github.com/scstd/scstd/target/scsi"
	"github.com/scstd/scstd/vdisk/backend"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Flags are the open options of spec §1.15.
type Flags struct {
	WriteThrough, NVCache, ReadOnly, ODirect, NullIO, BlockIO, Removable bool
}

// ManagerOptions configures a Manager.
type ManagerOptions struct {
	Log *logrus.Entry
	// VdiskID is the scst_vdisk_ID module parameter (high 32 bits of default T10 ids).
	VdiskID uint32
	// StateDir holds per-device state such as saved mode pages.
	StateDir string
	// Stores opens the FILE paths that name library-backed stores (Ceph
	// RBD images); nil: every FILE is a file or block device.
	Stores StoreOpener
	// Ports, when set, is this node's ALUA identity among several nodes
	// exporting the same LUs (alua.go); nil: a single-node target.
	Ports *PortIdentity
}

// Manager creates and removes vdisk/vcdrom devices in a target.Core. It keeps
// no device list of its own: devices live in the core.
type Manager struct {
	core      *target.Core
	opts      ManagerOptions
	log       *logrus.Entry
	diskTable *opTable
	cdTable   *opTable
	bufs      *backend.BufPool
	crcTab    *crc32.Table
	slow      *slowPool
	// mu serializes configuration changes (never taken on the data path).
	mu sync.Mutex
}

// Limits and fixed sizes of spec §1.15.
const (
	maxNameLen   = 64
	maxT10IDLen  = 25
	maxProductID = 16
	nullIOSize   = 5 << 40 / 2 // 2.5 TiB
	devZeroSize  = 1 << 40     // /dev/zero is faked as 1 TiB
	productRev   = "3110"
	vendorFileIO = "SCST_FIO"
	vendorBlkIO  = "SCST_BIO"
	aioDepth     = 128
	poolWorkers  = 8
	// maxMapped bounds the file size that is mapped for zero-copy reads,
	// so that several large LUNs fit in the 128 TiB of user address space.
	maxMapped = 16 << 40
	// Slow-path commands (UNMAP, WRITE SAME, COMPARE AND WRITE, ...)
	// run on at most slowWorkers goroutines shared by all devices.
	slowWorkers = 4
	slowQueue   = 1024
)

// NewManager returns a manager for core.
func NewManager(core *target.Core, o ManagerOptions) *Manager {
	log := o.Log
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = logrus.NewEntry(l)
	}
	return &Manager{
		core:      core,
		opts:      o,
		log:       log,
		diskTable: newDiskTable(),
		cdTable:   newCDTable(),
		bufs:      backend.NewBufPool(4096),
		crcTab:    crc32.MakeTable(crc32.Castagnoli),
		slow:      newSlowPool(slowWorkers, slowQueue),
	}
}

func errnof(e syscall.Errno, format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), e)
}

// checkName applies the name rules shared by vdisk and vcdrom.
func (m *Manager) checkName(name string) error {
	switch {
	case name == "":
		return errnof(syscall.EINVAL, "missing device name")
	case len(name) > maxNameLen:
		return errnof(syscall.EINVAL, "device name %q longer than %d", name, maxNameLen)
	case strings.ContainsAny(name, "/."):
		return errnof(syscall.EINVAL, "device name %q contains '/' or '.'", name)
	case m.core.Device(name) != nil:
		return errnof(syscall.EEXIST, "device %q exists", name)
	}
	return nil
}

// devIDNum is SCST's id number: VdiskID in the high half, the kernel's raw
// crc32c (seed 0, no final inversion) of the name and its NUL in the low.
func (m *Manager) devIDNum(name string) uint64 {
	b := make([]byte, len(name)+1)
	copy(b, name)
	raw := ^crc32.Update(0xffffffff, m.crcTab, b)
	return uint64(m.opts.VdiskID)<<32 | uint64(raw)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// newVdev fills the identity of a device; the medium is attached later.
func (m *Manager) newVdev(name, handler string, devType byte, bs uint32, f Flags) *vdev {
	shift := uint(0)
	for 1<<shift < bs {
		shift++
	}
	v := &vdev{
		name:      name,
		handler:   handler,
		devType:   devType,
		table:     m.diskTable,
		log:       m.log.WithField("device", name),
		blockSize: bs,
		shift:     shift,
		flags:     f,
		vendor:    vendorFileIO,
		product:   truncate(name, maxProductID),
		rev:       productRev,
		stateDir:  m.opts.StateDir,
		bufs:      m.bufs,
	}
	if devType == scsi.TypeCDROM {
		v.table = m.cdTable
	}
	if f.BlockIO && !f.NullIO {
		v.vendor = vendorBlkIO
	}
	id := m.devIDNum(name)
	t10 := truncate(fmt.Sprintf("%x-%s", id, name), maxT10IDLen)
	v.t10id.Store(&t10)
	v.usn = fmt.Sprintf("%x", id)
	if devType == scsi.TypeDisk && !f.WriteThrough && !f.NVCache && !f.NullIO {
		v.mode.def = mWCE
	}
	v.loadMode()
	v.initTasks()
	v.gate.init()
	v.slow = m.slow
	v.mgr = m
	v.hooks = coreHooks{v}
	return v
}

// register adds v to the core and records the core's device for UAs.
func (m *Manager) register(v *vdev) error {
	dev := &target.Device{Name: v.name, Handler: v}
	if err := m.core.AddDevice(dev); err != nil {
		v.Close()
		return err
	}
	v.dev.Store(dev)
	if v.mode.cur.Load()&mDSense != 0 {
		v.hooks.SetDescriptorSense(true)
	}
	return nil
}

// Open implements `open NAME FILE [BLOCK_SIZE] [FLAGS]` of vdisk/vdisk with the
// validation and errnos of spec §1.15 (blockSize 0 = default 512).
func (m *Manager) Open(name, path string, blockSize uint32, f Flags) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.checkName(name); err != nil {
		return err
	}
	if path == "" {
		return errnof(syscall.EINVAL, "open %s: missing file name", name)
	}
	if !f.NullIO && !strings.HasPrefix(path, "/") {
		return errnof(syscall.EINVAL, "open %s: file name %q is not absolute", name, path)
	}
	bs := uint32(512)
	if blockSize != 0 {
		bs = 1
		for bs<<1 <= blockSize {
			bs <<= 1
		}
		if bs < 512 || bs > 4096 {
			return errnof(syscall.EINVAL, "open %s: unsupported block size %d", name, blockSize)
		}
	}
	handler := handlerFileIO
	switch {
	case f.NullIO:
		handler = handlerNullIO
	case f.BlockIO:
		handler = handlerBlockIO
	}
	v := m.newVdev(name, handler, scsi.TypeDisk, bs, f)
	var med *medium
	if f.NullIO {
		med = &medium{path: path, eng: backend.Null{}}
		med.nblocks.Store(nullIOSize >> v.shift)
	} else {
		var err error
		if med, err = m.openBacking(v, path, f); err != nil {
			return fmt.Errorf("open %s: %w", name, err)
		}
	}
	v.med.Store(med)
	v.setThin(med)
	if err := m.register(v); err != nil {
		return err
	}
	v.log.WithFields(logrus.Fields{"handler": handler, "file": path, "block_size": bs,
		"engine": med.eng.Name(), "thin": v.thin.Load()}).Info("virtual disk opened")
	return nil
}

// sizeOf returns the usable size of an open backing file.
func sizeOf(f *os.File, fi os.FileInfo) (int64, error) {
	switch {
	case fi.Mode().IsRegular():
		return fi.Size(), nil
	case fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0:
		n, err := unix.Seek(int(f.Fd()), 0, io.SeekEnd)
		if err != nil {
			return 0, fmt.Errorf("size of %s: %w", f.Name(), err)
		}
		return n, nil
	}
	return 0, errnof(syscall.EINVAL, "%s: unsupported file type", f.Name())
}

// isDevZero reports whether fi is the /dev/zero character device (1:5).
func isDevZero(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && fi.Mode()&os.ModeCharDevice != 0 && unix.Major(st.Rdev) == 1 && unix.Minor(st.Rdev) == 5
}

// openMedium opens path for v: regular files, block devices and /dev/zero;
// with direct set, O_DIRECT and the AIO engine when the file supports it.
func (m *Manager) openMedium(v *vdev, path string, readOnly, direct bool) (*medium, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	zero := isDevZero(fi)
	if !zero && !fi.Mode().IsRegular() && (fi.Mode()&os.ModeDevice == 0 || fi.Mode()&os.ModeCharDevice != 0) {
		return nil, errnof(syscall.EINVAL, "%s: unsupported file type %s", path, fi.Mode().Type())
	}
	flags := os.O_RDWR
	if readOnly {
		flags = os.O_RDONLY
	}
	if zero {
		direct = false
	}
	if direct && !dioOK(path, v.blockSize) {
		v.log.WithField("file", path).Warn("O_DIRECT not usable with this block size; using buffered I/O")
		direct = false
	}
	var f *os.File
	if direct {
		f, err = os.OpenFile(path, flags|unix.O_DIRECT, 0)
		if errors.Is(err, syscall.EINVAL) {
			v.log.WithField("file", path).Warn("O_DIRECT refused; using buffered I/O")
			direct = false
		} else if err != nil {
			return nil, err
		}
	}
	if !direct {
		if f, err = os.OpenFile(path, flags, 0); err != nil {
			return nil, err
		}
	}
	var size int64 = devZeroSize
	if !zero {
		if size, err = sizeOf(f, fi); err != nil {
			f.Close()
			return nil, err
		}
	}
	med := &medium{path: path, file: f, direct: direct, blockDev: !zero && !fi.Mode().IsRegular()}
	med.nblocks.Store(uint64(size) >> v.shift)
	fd := int(f.Fd())
	if !direct && !zero && size > 0 && size <= maxMapped {
		// Only the kernel reads the mapping (writev to the socket), so a
		// page that vanished under it fails that writev with EFAULT
		// instead of raising SIGBUS in the daemon.
		if b, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ, unix.MAP_SHARED); err == nil {
			med.mapped = b
		} else {
			v.log.WithError(err).WithField("file", path).Debug("mmap failed; reads copy through pread")
		}
	}
	if direct {
		if a, err := backend.NewAIO(fd, backend.AIOOptions{Depth: aioDepth, Bufs: m.bufs}); err == nil {
			med.eng = a
		} else {
			v.log.WithError(err).Warn("Linux AIO unavailable; using the pread/pwrite pool")
		}
	}
	if med.eng == nil {
		med.eng = backend.NewPool(fd, backend.PoolOptions{Workers: poolWorkers, Direct: direct, Bufs: m.bufs})
	}
	return med, nil
}

// dioOK reports whether O_DIRECT I/O in units of bs is possible on path
// (statx DIOALIGN; kernels without it are assumed to need 512 bytes).
func dioOK(path string, bs uint32) bool {
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, 0, unix.STATX_DIOALIGN, &st); err != nil || st.Mask&unix.STATX_DIOALIGN == 0 {
		return bs >= 512
	}
	if st.Dio_offset_align == 0 {
		return false // the file does not support direct I/O
	}
	return bs%st.Dio_offset_align == 0 && st.Dio_mem_align <= 4096
}

// lookup returns the named vdisk device of type devType.
func (m *Manager) lookup(name string, devType byte) (*vdev, error) {
	dev := m.core.Device(name)
	if dev == nil {
		return nil, errnof(syscall.EINVAL, "no device %q", name)
	}
	v, ok := dev.Handler.(*vdev)
	if !ok || v.devType != devType {
		kind := "virtual disk"
		if devType == scsi.TypeCDROM {
			kind = "virtual CD-ROM"
		}
		return nil, errnof(syscall.EINVAL, "device %q is not a %s", name, kind)
	}
	return v, nil
}

// Close implements vdisk `close NAME` (unknown or not a disk: EINVAL).
func (m *Manager) Close(name string) error {
	return detachAndFinish(m.Detach(name))
}

// Detach is Close in two halves (see target.Core.DetachDevice): the disk
// leaves the configuration before Detach returns; finish waits for its
// commands and closes the backing file.
func (m *Manager) Detach(name string) (finish func() error, err error) {
	return m.detach(name, scsi.TypeDisk, "virtual disk closed")
}

// detach removes a device of devType. The manager lock covers only the
// lookup: the drain must not hold up every other open and close, and the
// core makes the removal atomic (a concurrent second close gets EINVAL).
func (m *Manager) detach(name string, devType byte, msg string) (func() error, error) {
	m.mu.Lock()
	_, err := m.lookup(name, devType)
	m.mu.Unlock()
	if err != nil {
		return nil, err
	}
	finish, err := m.core.DetachDevice(name)
	if err != nil {
		return nil, err
	}
	return func() error {
		if err := finish(); err != nil {
			return err
		}
		m.log.WithField("device", name).Info(msg)
		return nil
	}, nil
}

func detachAndFinish(finish func() error, err error) error {
	if err != nil {
		return err
	}
	return finish()
}

// ResyncSize implements `resync_size NAME` (capacity changed UA).
func (m *Manager) ResyncSize(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, err := m.lookup(name, scsi.TypeDisk)
	if err != nil {
		return err
	}
	med := v.med.Load()
	if med != nil && med.ext != nil {
		return v.resyncStore(med)
	}
	if v.flags.NullIO || med == nil || med.file == nil {
		return errnof(syscall.EINVAL, "resync_size %s: no backing file", name)
	}
	fi, err := med.file.Stat()
	if err != nil {
		return fmt.Errorf("resync_size %s: %w", name, err)
	}
	if !isDevZero(fi) {
		size, err := sizeOf(med.file, fi)
		if err != nil {
			return fmt.Errorf("resync_size %s: %w", name, err)
		}
		med.nblocks.Store(uint64(size) >> v.shift)
	}
	v.hooks.RaiseUA(scsi.ASCCapacityDataHasChanged)
	return nil
}

// SetT10ID implements `set_t10_dev_id NAME ID` (ID truncated to 25 chars).
func (m *Manager) SetT10ID(name, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, err := m.lookup(name, scsi.TypeDisk)
	if err != nil {
		return err
	}
	if id == "" {
		return errnof(syscall.EINVAL, "set_t10_dev_id %s: missing id", name)
	}
	id = truncate(id, maxT10IDLen)
	v.t10id.Store(&id)
	v.hooks.RaiseUA(scsi.ASCInquiryDataHasChanged)
	return nil
}

// DiskInfo is one vdisk row (spec §1.15 read format).
type DiskInfo struct {
	Name      string
	Size      int64 // bytes
	BlockSize uint32
	Flags     Flags
	Path      string // "" shown as "none"
	T10ID     string
	Handler   string // vdisk_fileio, vdisk_blockio, vdisk_nullio
	// Thin reports whether thin provisioning is in effect.
	Thin bool
}

// Disks lists disk devices in creation order.
func (m *Manager) Disks() []DiskInfo {
	var out []DiskInfo
	for _, dev := range m.core.Devices() {
		v, ok := dev.Handler.(*vdev)
		if !ok || v.devType != scsi.TypeDisk {
			continue
		}
		info := DiskInfo{Name: v.name, BlockSize: v.blockSize, Flags: v.flags, T10ID: *v.t10id.Load(), Handler: v.handler, Thin: v.thin.Load()}
		if med := v.med.Load(); med != nil {
			info.Path = med.path
			info.Size = int64(med.nblocks.Load() << v.shift)
		}
		out = append(out, info)
	}
	return out
}

// setThin decides logical block provisioning for a disk's medium from
// v.thinMode (v.mu held, or v not yet registered): holes in regular files
// read as zeros (LBPRZ); discarded block device sectors may not, and
// /dev/zero, NULLIO and read-only disks have nothing to free.
func (v *vdev) setThin(m *medium) {
	thin, lbprz := false, false
	defer func() { v.thin.Store(thin); v.lbprz.Store(lbprz) }()
	if m != nil && m.ext != nil {
		thin, lbprz = v.setStoreThin(m)
		return
	}
	if v.thinMode == ThinOff || m == nil || m.file == nil || v.flags.ReadOnly {
		return
	}
	fi, err := m.file.Stat()
	if err != nil || isDevZero(fi) {
		return
	}
	switch {
	case m.blockDev:
		thin = v.thinMode == ThinOn
	case canPunch(int(m.file.Fd()), fi.Size()):
		thin, lbprz = true, true
	case v.thinMode == ThinOn:
		v.log.WithField("file", m.path).Warn("thin provisioning requested but the file system cannot punch holes")
	}
}

// SetThinProvisioning implements the thin_provisioned device attribute:
// ThinAuto (the default at open) enables logical block provisioning where
// the backing file can punch holes, ThinOn also for block devices
// (BLKDISCARD), ThinOff reports a fully provisioned disk. Initiators get
// INQUIRY DATA HAS CHANGED and CAPACITY DATA HAS CHANGED unit attentions
// when the advertised provisioning changes.
func (m *Manager) SetThinProvisioning(name string, mode ThinMode) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, err := m.lookup(name, scsi.TypeDisk)
	if err != nil {
		return err
	}
	if mode > ThinOff {
		return errnof(syscall.EINVAL, "thin_provisioned %s: bad mode %d", name, mode)
	}
	v.mu.Lock()
	before := v.thin.Load()
	v.thinMode = mode
	v.setThin(v.med.Load())
	after := v.thin.Load()
	v.mu.Unlock()
	if before != after {
		v.hooks.RaiseUA(scsi.ASCInquiryDataHasChanged)
		v.hooks.RaiseUA(scsi.ASCCapacityDataHasChanged)
		v.log.WithField("thin", after).Info("thin provisioning changed")
	}
	return nil
}
