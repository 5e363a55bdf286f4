package vdisk

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/scstd/scstd/target"
	"github.com/scstd/scstd/target/scsi"
	"github.com/scstd/scstd/vdisk/backend"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Handler names (scsi_tgt "handler" column).
const (
	handlerFileIO  = "vdisk_fileio"
	handlerBlockIO = "vdisk_blockio"
	handlerNullIO  = "vdisk_nullio"
	handlerCDROM   = "vcdrom"
)

// maxXferBytes bounds one READ/WRITE/VERIFY; advertised in the Block Limits
// VPD page as MAXIMUM TRANSFER LENGTH.
const maxXferBytes = 8 << 20

// medium is an open backing store. A disk keeps one for its lifetime; a
// CD-ROM swaps them on change, so commands hold a reference while their I/O
// is in flight and the last holder closes a retired medium.
type medium struct {
	path    string
	file    *os.File // nil for NULLIO and stores
	ext     Store    // a library-backed store (RBD), else nil
	eng     backend.Engine
	nblocks atomic.Uint64
	direct  bool
	// blockDev: discard with BLKDISCARD instead of punching holes.
	blockDev bool
	// mapped is the file mapped read-only (buffered files and block
	// devices), or nil: READs of pages in the page cache send their data
	// straight from it (see residentRange).
	mapped []byte

	refs      atomic.Int64
	retired   atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

func (m *medium) close() error {
	m.closeOnce.Do(func() {
		if m.eng != nil {
			m.closeErr = m.eng.Close()
		}
		if m.mapped != nil {
			// Every READ that pointed into it held a reference until sent.
			if err := unix.Munmap(m.mapped); err != nil && m.closeErr == nil {
				m.closeErr = fmt.Errorf("munmap %s: %w", m.path, err)
			}
			m.mapped = nil
		}
		if m.file != nil {
			// Leave nothing only in the page cache when a device goes away
			// (daemon shutdown, close, medium change); files that cannot be
			// synced (/dev/zero, read-only media) answer EINVAL/EBADF.
			if err := unix.Fdatasync(int(m.file.Fd())); err != nil && err != unix.EINVAL && err != unix.EBADF && m.closeErr == nil {
				m.closeErr = fmt.Errorf("fdatasync %s: %w", m.path, err)
			}
			if err := m.file.Close(); err != nil && m.closeErr == nil {
				m.closeErr = err
			}
		}
	})
	return m.closeErr
}

// release drops a command's reference. The last reference to a retired
// medium closes it on a new goroutine: the caller may be one of the
// engine's own completion goroutines, which the engine's Close waits for.
func (m *medium) release() {
	if m.refs.Add(-1) == 0 && m.retired.Load() {
		go m.close()
	}
}

// retire closes m once no command uses it any more (medium change).
func (m *medium) retire() {
	m.retired.Store(true)
	if m.refs.Load() == 0 {
		go m.close()
	}
}

// vdev is one vdisk_fileio / vdisk_blockio / vdisk_nullio / vcdrom device:
// the target.Handler the core calls.
type vdev struct {
	name      string
	handler   string
	devType   byte
	table     *opTable
	log       *logrus.Entry
	blockSize uint32
	shift     uint
	flags     Flags
	vendor    string
	product   string
	rev       string
	usn       string
	stateDir  string
	bufs      *backend.BufPool

	t10id atomic.Pointer[string]
	med   atomic.Pointer[medium] // nil: no medium (empty CD-ROM drive)
	// ejected is set when START STOP UNIT unloaded a removable disk.
	ejected atomic.Bool
	// prevent is set while any I_T nexus (in preventers, under mu) has
	// PREVENT ALLOW MEDIUM REMOVAL in effect.
	prevent    atomic.Bool
	preventers map[*target.Session]struct{}
	// mediaEvent is the pending GET EVENT STATUS media event (CD-ROM).
	mediaEvent atomic.Uint32
	mode       modeState
	dev        atomic.Pointer[target.Device]
	tasks      sync.Pool // *ioTask
	// hooks reach the core's device (unit attentions, D_SENSE).
	hooks devHooks
	// gate makes COMPARE AND WRITE & co. atomic against other commands.
	gate ioGate
	// slow runs commands that need synchronous file operations.
	slow *slowPool
	// thin: logical block provisioning (UNMAP, WRITE SAME UNMAP, LBPME);
	// lbprz: unmapped blocks read as zeros. thinMode (under mu) is the
	// configured choice they are derived from.
	thin, lbprz atomic.Bool
	thinMode    ThinMode
	// xcopy keeps EXTENDED COPY results; mgr finds copy targets.
	xcopy xcopyState
	mgr   *Manager
	// sanitizing is set while SANITIZE runs; sanitize (under mu) is the
	// operation.
	sanitizing atomic.Bool
	sanitize   sanitizeJob
	// sanitizeCmd is the (not IMMED) SANITIZE command the running job
	// completes when it ends; an abort completes it early and clears it.
	// sanitizeMu is a leaf lock: Abort takes it under the core's locks.
	sanitizeMu  sync.Mutex
	sanitizeCmd *target.Command

	// mu serializes MODE SELECT and medium changes (control path only).
	mu sync.Mutex
}

// devHooks are the core services a device uses outside a command.
type devHooks interface {
	RaiseUA(asc scsi.ASC)
	SetDescriptorSense(on bool)
}

// coreHooks forwards to the registered target.Device once it exists.
type coreHooks struct{ d *vdev }

func (h coreHooks) RaiseUA(asc scsi.ASC) {
	if dev := h.d.dev.Load(); dev != nil {
		dev.RaiseUA(asc)
	}
}

func (h coreHooks) SetDescriptorSense(on bool) {
	if dev := h.d.dev.Load(); dev != nil {
		dev.SetDescriptorSense(on)
	}
}

// HandlerName implements target.Handler.
func (d *vdev) HandlerName() string { return d.handler }

// Type implements target.Handler.
func (d *vdev) Type() byte { return d.devType }

// Close implements target.Handler: the core calls it after the last command.
func (d *vdev) Close() error {
	m := d.med.Swap(nil)
	if m == nil {
		return nil
	}
	m.retired.Store(true)
	// An IMMED SYNCHRONIZE CACHE may still be flushing after its command
	// completed; let it finish before the file goes away.
	for m.refs.Load() != 0 {
		time.Sleep(time.Millisecond)
	}
	return m.close()
}

// acquire returns the current medium with a reference held, or nil.
func (d *vdev) acquire() *medium {
	for {
		m := d.med.Load()
		if m == nil {
			return nil
		}
		m.refs.Add(1)
		if d.med.Load() == m {
			return m
		}
		m.release()
	}
}

// nblocks is the capacity in blocks of the current medium (0 without one).
func (d *vdev) nblocks() uint64 {
	if m := d.med.Load(); m != nil {
		return m.nblocks.Load()
	}
	return 0
}

func (d *vdev) mediumPresent() bool { return d.med.Load() != nil && !d.ejected.Load() }

func (d *vdev) removable() bool { return d.flags.Removable || d.devType == scsi.TypeCDROM }

// writeProtected reports whether writes through c must fail: READ_ONLY
// device, read-only LUN mapping, or the control page's SWP.
func (d *vdev) writeProtected(c *target.Command) bool {
	return d.flags.ReadOnly || d.devType == scsi.TypeCDROM || c.ReadOnly() || d.mode.swp()
}

// outcome tells the dispatcher how an exec function finished.
type outcome uint8

const (
	done    outcome = iota // complete with GOOD status
	check                  // complete with CHECK CONDITION and the sense returned
	pending                // the function arranged for Complete to be called later
)

// Exec implements target.Handler.
func (d *vdev) Exec(c *target.Command) {
	st, s := d.dispatch(c)
	switch st {
	case done:
		c.Complete()
	case check:
		c.CheckCondition(s)
		c.Complete()
	}
}

func (d *vdev) dispatch(c *target.Command) (outcome, scsi.Sense) {
	if len(c.CDB) == 0 {
		return check, scsi.SenseInvalidOpcode
	}
	e := d.table.lookup(c.CDB)
	if e == nil || (e.avail != nil && !e.avail(d)) {
		if d.table.subs[c.CDB[0]] != nil && d.table.ops[c.CDB[0]] == nil {
			// A known opcode with an unsupported service action (SPC-4
			// 4.5.1: INVALID FIELD IN CDB, not an unknown opcode).
			return invalidField(1, 4)
		}
		return check, scsi.SenseInvalidOpcode
	}
	if len(c.CDB) < e.cdbLen {
		return check, scsi.SenseInvalidOpcode
	}
	if d.sanitizing.Load() && !sanitizeAllowed(c.CDB[0]) {
		return check, senseSanitizing
	}
	if e.flags&fMedium != 0 && !d.mediumPresent() {
		return check, d.notReady()
	}
	if e.flags&fWrite != 0 && d.writeProtected(c) {
		return check, scsi.SenseWriteProtected
	}
	return e.exec(d, c)
}

// notReady is the sense for media access without a medium.
func (d *vdev) notReady() scsi.Sense {
	if d.devType == scsi.TypeCDROM {
		if d.ejected.Load() {
			return scsi.Sense{Key: scsi.SenseNotReady, ASC: scsi.ASCMediumNotPresentTrayOpen}
		}
		return scsi.Sense{Key: scsi.SenseNotReady, ASC: scsi.ASCMediumNotPresentTrayClosed}
	}
	return scsi.SenseMediumNotPresent
}

// invalidField is INVALID FIELD IN CDB pointing at byte/bit.
func invalidField(byteOff uint16, bit uint8) (outcome, scsi.Sense) {
	return check, scsi.InvalidFieldInCDB(byteOff, bit)
}

// ioSense maps a backend error to sense data (SBC-3 4.18, SPC-4 Annex F).
func ioSense(err error, write bool) scsi.Sense {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case syscall.ENOSPC, syscall.EDQUOT:
			return scsi.Sense{Key: scsi.SenseDataProtect, ASC: scsi.ASCNoSpace}
		case syscall.EROFS, syscall.EBADF, syscall.EPERM, syscall.EACCES:
			if write {
				return scsi.SenseWriteProtected
			}
		case syscall.EINVAL, syscall.ENOMEM:
			return scsi.SenseInternalFailure
		}
	}
	if errors.Is(err, backend.ErrClosed) {
		return scsi.SenseInternalFailure
	}
	if write {
		return scsi.SenseWriteError
	}
	return scsi.SenseReadError
}

// setDataIn copies resp into a pooled DataIn buffer, truncated to the
// allocation length, and records the transfer length.
func setDataIn(c *target.Command, resp []byte, alloc uint32) {
	n := uint32(len(resp))
	if n > alloc {
		n = alloc
	}
	c.TransferLen = n
	if n == 0 {
		return
	}
	copy(c.AllocDataInUninit(int(n)), resp[:n])
}

// RefuseReservations implements target.ReservationRefuser: a library-backed
// store (RBD) served by a daemon that is one node of a multi-node logical
// unit (it has a port identity, --tpg-peers) is also served by other nodes,
// which would not see reservations taken here.
func (d *vdev) RefuseReservations() bool {
	m := d.med.Load()
	return m != nil && m.ext != nil && d.ports() != nil
}

func reservationsAllowed(d *vdev) bool { return !d.RefuseReservations() }
