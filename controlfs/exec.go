package controlfs

// The command layer: one parsed write becomes one call of the core or the
// vdisk manager; one read renders their current state. Nothing here keeps a
// copy of the configuration.

import (
	"errors"
	"sync"
	"syscall"
	"time"

	"github.com/scstd/scstd/iscsi"
	"github.com/scstd/scstd/target"
	"github.com/scstd/scstd/vdisk"
	"github.com/sirupsen/logrus"
)

// coreAPI is what controlfs uses of *target.Core.
type coreAPI interface {
	Devices() []*target.Device
	AddGroup(name string, m target.AddrMethod) error
	DelGroup(name string) error
	RenameGroup(old, new string) error
	AddLUN(group, dev string, lun uint64, readOnly bool) error
	ReplaceLUN(group, dev string, lun uint64, readOnly bool) error
	DelLUN(group, dev string) error
	ClearLUNs(group string) error
	AddName(group, name string) error
	DelName(group, name string) error
	MoveName(group, name, newGroup string) error
	ClearNames(group string) error
	Groups() []target.GroupInfo
	Sessions() []target.SessionStat
}

// vdiskAPI is what controlfs uses of *vdisk.Manager.
type vdiskAPI interface {
	Open(name, path string, blockSize uint32, f vdisk.Flags) error
	Detach(name string) (finish func() error, err error)
	ResyncSize(name string) error
	SetT10ID(name, id string) error
	Disks() []vdisk.DiskInfo
	OpenCDROM(name, path string) error
	ChangeCDROM(name, path string) error
	DetachCDROM(name string) (finish func() error, err error)
	CDROMs() []vdisk.CDROMInfo
}

// targetsAPI is what controlfs uses of *iscsi.Server.
type targetsAPI interface {
	Targets() []iscsi.TargetStat
}

// state is the view over the core that every node uses.
type state struct {
	core coreAPI
	vd   vdiskAPI
	is   targetsAPI // may be nil: iscsi/session is then empty
	tun  *target.Tunables
	log  *logrus.Entry
	// wmu serializes command writes like scst_proc_mutex: each command
	// sees the result of the previous one, and the group directories are
	// reconciled before the next command runs.
	wmu sync.Mutex
	// finish is set (under wmu) by a command whose last part waits: the
	// close of a device drains its commands after wmu is released (see
	// awaitFinish).
	finish func() error
	// onGroupsChanged is called (under wmu) after a scsi_tgt command so
	// that the FUSE tree follows group changes at once.
	onGroupsChanged func()
}

// errnoOf maps an error of the core or the manager to the errno the writer
// gets. The contracts wrap a syscall.Errno in every error; anything else is
// a contract violation reported as EIO.
func (st *state) errnoOf(op string, err error) syscall.Errno {
	if err == nil {
		// Configuration changes are rare and worth an audit line.
		st.log.WithField("command", op).Info("control command applied")
		return 0
	}
	var e syscall.Errno
	if errors.As(err, &e) && e != 0 {
		st.log.WithError(err).Debugf("control command %s failed", op)
		return e
	}
	st.log.WithError(err).Warnf("control command %s failed without an errno", op)
	return syscall.EIO
}

// drainWait bounds how long the write(2) of a `close` waits for the
// device's commands. The kernel holds the file's inode lock for the whole
// write and for every open(O_TRUNC) of it, so a close waiting on a hung
// backing store would block every later write to vdisk/vdisk (SCST blocks
// its proc mutex the same way, for up to 90 s).
const drainWait = 2 * time.Second

// awaitFinish runs the last part of a command that already changed the
// configuration. The change stands either way, so the write succeeds; past
// drainWait the drain goes on in the background and the device name stays
// taken (EEXIST) until it ends.
func (st *state) awaitFinish(cmd string, finish func() error) syscall.Errno {
	done := make(chan error, 1)
	go func() { done <- finish() }()
	timer := time.NewTimer(drainWait)
	defer timer.Stop()
	select {
	case err := <-done:
		if err != nil {
			return st.errnoOf(cmd, err)
		}
		return 0
	case <-timer.C:
	}
	log := st.log.WithField("command", cmd)
	log.Warnf("device still has commands in its backing store after %v: they finish in the background", drainWait)
	go func() {
		if err := <-done; err != nil {
			log.WithError(err).Warn("closing the device after its commands finished")
			return
		}
		log.Info("device's commands finished; backing store closed")
	}()
	return 0
}

// writeFunc executes one write(2) and returns the byte count or an errno.
type writeFunc func(data []byte) (uint32, syscall.Errno)

// procWrite wraps a command handler with the rules every SCST proc file
// shares (§0): EOVERFLOW beyond maxWrite, NUL/newline handling, the full
// length returned on success, and serialization of commands.
func (st *state) procWrite(run func(cmd string) syscall.Errno) writeFunc {
	return func(data []byte) (uint32, syscall.Errno) {
		if len(data) == 0 {
			return 0, 0
		}
		if len(data) > maxWrite {
			return 0, syscall.EOVERFLOW
		}
		st.wmu.Lock()
		cmd := commandText(data)
		errno := run(cmd)
		finish := st.finish
		st.finish = nil
		st.wmu.Unlock()
		if errno == 0 && finish != nil {
			errno = st.awaitFinish(cmd, finish)
		}
		if errno != 0 {
			if st.log.Logger.IsLevelEnabled(logrus.DebugLevel) {
				st.log.WithFields(logrus.Fields{"command": cmd, "errno": errno.Error()}).Debug("control command refused")
			}
			return 0, errno
		}
		return uint32(len(data)), 0
	}
}

// handlerWrite is procWrite for the vdisk/vcdrom files, where a command
// that is empty before its first NUL is a no-op. The original returns 0 for
// it; scstd returns the full length instead, because a write(2) that
// returns 0 makes stdio and Perl writers retry forever.
func (st *state) handlerWrite(run func(cmd string) syscall.Errno) writeFunc {
	w := st.procWrite(run)
	return func(data []byte) (uint32, syscall.Errno) {
		if len(data) > 0 && len(data) <= maxWrite && data[0] == 0 {
			return uint32(len(data)), 0
		}
		return w(data)
	}
}

func (st *state) execScsiTgt(s string) syscall.Errno {
	c, errno := parseScsiTgt(s)
	if errno != 0 {
		return errno
	}
	var err error
	switch c.Op {
	case opAddGroup:
		err = st.core.AddGroup(c.Group, c.Addr)
	case opDelGroup:
		err = st.core.DelGroup(c.Group)
	case opRenameGroup:
		err = st.core.RenameGroup(c.Group, c.NewName)
	}
	if st.onGroupsChanged != nil {
		st.onGroupsChanged()
	}
	return st.errnoOf("scsi_tgt "+s, err)
}

func (st *state) execDevices(group, s string) syscall.Errno {
	c, errno := parseDevices(s)
	if errno != 0 {
		return errno
	}
	var err error
	switch c.Op {
	case opLUNAdd:
		err = st.core.AddLUN(group, c.Dev, c.LUN, c.ReadOnly)
	case opLUNReplace:
		err = st.core.ReplaceLUN(group, c.Dev, c.LUN, c.ReadOnly)
	case opLUNDel:
		err = st.core.DelLUN(group, c.Dev)
	case opLUNClear:
		err = st.core.ClearLUNs(group)
	}
	return st.errnoOf("groups/"+group+"/devices "+s, err)
}

func (st *state) execNames(group, s string) syscall.Errno {
	c, errno := parseNames(s)
	if errno != 0 {
		return errno
	}
	var err error
	switch c.Op {
	case opNameAdd:
		err = st.core.AddName(group, c.Name)
	case opNameDel:
		err = st.core.DelName(group, c.Name)
	case opNameMove:
		err = st.core.MoveName(group, c.Name, c.NewGroup)
	case opNameClear:
		err = st.core.ClearNames(group)
	}
	return st.errnoOf("groups/"+group+"/names "+s, err)
}

func (st *state) execVdisk(s string) syscall.Errno {
	c, errno := parseVdisk(s)
	if errno != 0 {
		return errno
	}
	var err error
	switch c.Op {
	case opVdiskOpen:
		if c.Flags.ODirect {
			st.log.WithField("device", c.Name).Info("O_DIRECT flag is accepted but ignored")
		}
		err = st.vd.Open(c.Name, c.Path, c.BlockSize, c.Flags)
	case opVdiskClose:
		st.finish, err = st.vd.Detach(c.Name)
	case opVdiskResync:
		err = st.vd.ResyncSize(c.Name)
	case opVdiskSetT10:
		err = st.vd.SetT10ID(c.Name, c.T10ID)
	}
	return st.errnoOf("vdisk "+s, err)
}

func (st *state) execVcdrom(s string) syscall.Errno {
	c, errno := parseVcdrom(s)
	if errno != 0 {
		return errno
	}
	var err error
	switch c.Op {
	case opCDROMOpen:
		err = st.vd.OpenCDROM(c.Name, c.Path)
	case opCDROMChange:
		err = st.vd.ChangeCDROM(c.Name, c.Path)
	case opCDROMClose:
		st.finish, err = st.vd.DetachCDROM(c.Name)
	}
	return st.errnoOf("vcdrom "+s, err)
}

func (st *state) execThreads(s string) syscall.Errno {
	n, errno := parseThreads(s)
	if errno != 0 {
		return errno
	}
	return st.errnoOf("threads "+s, st.tun.SetThreads(n))
}

// writeModuleParam implements a write to a writable module-parameter file;
// it follows UMC's rules, not SCST's proc rules (§1.19).
func (st *state) writeModuleParam(p target.ModuleParam) writeFunc {
	return func(data []byte) (uint32, syscall.Errno) {
		v, errno := parseModuleParam(data)
		if errno != 0 {
			return 0, errno
		}
		if errno := st.errnoOf(p.Name()+" "+commandText(data), st.tun.SetParam(p, v)); errno != 0 {
			return 0, errno
		}
		return uint32(len(data)), 0
	}
}

// --- renders over live state ---

func (st *state) readScsiTgt() ([]byte, syscall.Errno) {
	devs := st.core.Devices()
	rows := make([]deviceRow, 0, len(devs))
	for _, d := range devs {
		h := ""
		if d.Handler != nil {
			h = d.Handler.HandlerName()
		}
		rows = append(rows, deviceRow{Name: d.Name, Handler: h})
	}
	return renderScsiTgt(rows), 0
}

func (st *state) group(name string) (target.GroupInfo, bool) {
	for _, g := range st.core.Groups() {
		if g.Name == name {
			return g, true
		}
	}
	return target.GroupInfo{}, false
}

func (st *state) readGroupFile(name string, render func(target.GroupInfo) []byte) ([]byte, syscall.Errno) {
	g, ok := st.group(name)
	if !ok {
		return nil, syscall.ENOENT // the group vanished under an open file
	}
	return render(g), 0
}

func (st *state) readISCSISession() ([]byte, syscall.Errno) {
	if st.is == nil {
		return nil, 0
	}
	return renderISCSISession(st.is.Targets()), 0
}

// sgvHiWatermark expresses scst_max_cmd_mem (MiB) in sgv pages.
func (st *state) sgvHiWatermark() int32 {
	return st.tun.Param(target.ParamMaxCmdMem) * (1024 / sgvPageKiB)
}
