// Package vdisk is SCST's virtual-disk dev handler: vdisk_fileio,
// vdisk_blockio, vdisk_nullio and vcdrom devices, the SCSI command sets they
// execute (SPC, SBC, MMC) and the asynchronous backends that move bytes to
// and from files and block devices.
//
// API CONTRACT (used by cmd/scstd and controlfs; change only together).
package vdisk

import (
	"github.com/scstd/scstd/target"
	"github.com/sirupsen/logrus"
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
}

// Manager creates and removes vdisk/vcdrom devices in a target.Core. It keeps
// no device list of its own: devices live in the core.
type Manager struct{}

// NewManager returns a manager for core.
func NewManager(core *target.Core, o ManagerOptions) *Manager { panic("unimplemented") }

// Open implements `open NAME FILE [BLOCK_SIZE] [FLAGS]` of vdisk/vdisk with the
// validation and errnos of spec §1.15 (blockSize 0 = default 512).
func (m *Manager) Open(name, path string, blockSize uint32, f Flags) error { panic("unimplemented") }

// Close implements vdisk `close NAME` (unknown or not a disk: EINVAL).
func (m *Manager) Close(name string) error { panic("unimplemented") }

// ResyncSize implements `resync_size NAME` (capacity changed UA).
func (m *Manager) ResyncSize(name string) error { panic("unimplemented") }

// SetT10ID implements `set_t10_dev_id NAME ID` (ID truncated to 25 chars).
func (m *Manager) SetT10ID(name, id string) error { panic("unimplemented") }

// DiskInfo is one vdisk row (spec §1.15 read format).
type DiskInfo struct {
	Name      string
	Size      int64 // bytes
	BlockSize uint32
	Flags     Flags
	Path      string // "" shown as "none"
	T10ID     string
	Handler   string // vdisk_fileio, vdisk_blockio, vdisk_nullio
}

// Disks lists disk devices in creation order.
func (m *Manager) Disks() []DiskInfo { panic("unimplemented") }

// OpenCDROM, ChangeCDROM, CloseCDROM implement vcdrom/vcdrom (spec §1.16).
func (m *Manager) OpenCDROM(name, path string) error   { panic("unimplemented") }
func (m *Manager) ChangeCDROM(name, path string) error { panic("unimplemented") }
func (m *Manager) CloseCDROM(name string) error        { panic("unimplemented") }

// CDROMInfo is one vcdrom row.
type CDROMInfo struct {
	Name string
	Size int64
	Path string
}

// CDROMs lists CD-ROM devices in creation order.
func (m *Manager) CDROMs() []CDROMInfo { panic("unimplemented") }
