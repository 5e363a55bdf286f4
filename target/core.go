package target

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/scstd/scstd/target/scsi"
	"github.com/sirupsen/logrus"
)

// DefaultGroup is the name of the group that always exists.
const DefaultGroup = "Default"

// Options configures a Core.
type Options struct {
	Log *logrus.Entry
	// StateDir is where persistent per-device state lives (<StateDir>/pr/...).
	StateDir string
	// PreExec, if set, is called for every command just before Handler.Exec,
	// after unit attentions and queueing rules were applied. It returns true
	// if it completed the command itself (for example with RESERVATION
	// CONFLICT); the handler then does not see the command. This is the hook
	// where ALUA state checks plug in; reservations are checked just before
	// it by the core itself.
	PreExec func(c *Command) bool
}

// Core is the SCST core. The zero value is not usable; use NewCore.
//
// Configuration lives in an immutable snapshot replaced under mu
// (copy-on-write); the data path reads only per-session views that are
// swapped atomically, so no lock is shared by all sessions on the submit path.
type Core struct {
	log     *logrus.Entry
	opts    Options
	pool    bufPool
	mu      sync.Mutex // serializes configuration changes and session (un)registration
	cfg     atomic.Pointer[config]
	sess    []*Session          // live sessions in creation order; under mu
	removed map[string]struct{} // devices whose removal is draining; under mu
	nextSID atomic.Uint64
	// ports numbers target ports for persistent reservations.
	ports portTable
}

// config is one immutable configuration snapshot.
type config struct {
	groups  []*group // Default first, then creation order
	devices []*Device
}

// group is one immutable security group.
type group struct {
	name  string
	addr  AddrMethod
	luns  []lunMap // insertion order
	names []string // insertion order
}

type lunMap struct {
	lun      uint64
	dev      *Device
	readOnly bool
}

// NewCore returns a core with the Default group and no devices.
func NewCore(o Options) *Core {
	log := o.Log
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = logrus.NewEntry(l)
	}
	c := &Core{log: log, opts: o, removed: make(map[string]struct{})}
	c.cfg.Store(&config{groups: []*group{{name: DefaultGroup, addr: AddrPeripheral}}})
	return c
}

// Device is a registered SCST device.
type Device struct {
	Name    string
	Handler Handler

	core   *Core
	dsense atomic.Bool

	// mu guards nexus, the I_T_L nexuses (of all sessions) through which
	// this device is or was reachable and that may still hold commands.
	mu    sync.Mutex
	nexus map[*nexus]struct{}

	// pr is the reservation state (persistent and SPC-2), shared by all
	// I_T nexuses, with its own lock; see pr.go.
	pr prState
}

func errno(e syscall.Errno, format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, e)...)
}

// clone returns a shallow copy of the snapshot whose slices may be modified.
func (cf *config) clone() *config {
	return &config{
		groups:  append([]*group(nil), cf.groups...),
		devices: append([]*Device(nil), cf.devices...),
	}
}

func (g *group) clone() *group {
	return &group{
		name:  g.name,
		addr:  g.addr,
		luns:  append([]lunMap(nil), g.luns...),
		names: append([]string(nil), g.names...),
	}
}

func (cf *config) device(name string) *Device {
	for _, d := range cf.devices {
		if d.Name == name {
			return d
		}
	}
	return nil
}

func (cf *config) groupIndex(name string) int {
	for i, g := range cf.groups {
		if g.name == name {
			return i
		}
	}
	return -1
}

// resolve implements spec §2.5: the first group whose names match the
// initiator, else Default_<target>, else Default.
func (cf *config) resolve(initiator, target string) *group {
	for _, g := range cf.groups {
		for _, p := range g.names {
			if matchPattern(p, initiator) {
				return g
			}
		}
	}
	if i := cf.groupIndex(DefaultGroup + "_" + target); i >= 0 {
		return cf.groups[i]
	}
	return cf.groups[0]
}

// AddDevice registers d (name unique among all devices: EEXIST).
func (c *Core) AddDevice(d *Device) error {
	if d == nil || d.Handler == nil {
		return errno(syscall.EINVAL, "add device: no handler")
	}
	if d.Name == "" {
		return errno(syscall.EINVAL, "add device: empty name")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cf := c.cfg.Load()
	if _, busy := c.removed[d.Name]; busy || cf.device(d.Name) != nil {
		return errno(syscall.EEXIST, "add device %q", d.Name)
	}
	if d.core != nil {
		return errno(syscall.EINVAL, "add device %q: already registered", d.Name)
	}
	d.core = c
	d.nexus = make(map[*nexus]struct{})
	// Restored before the device becomes visible, so the first command
	// already sees a reservation that survived a restart (APTPL).
	c.restorePR(d)
	ncf := cf.clone()
	ncf.devices = append(ncf.devices, d)
	c.cfg.Store(ncf)
	c.log.WithField("device", d.Name).Debug("device registered")
	return nil
}

// RemoveDevice unregisters the device: its LUN mappings disappear from every
// group (sessions get REPORTED LUNS DATA HAS CHANGED), its in-flight commands
// finish or are aborted, then Handler.Close is called. Unknown: EINVAL.
//
// Commands that reach the device after its removal started get LOGICAL UNIT
// NOT SUPPORTED; commands already queued or executing are allowed to finish.
func (c *Core) RemoveDevice(name string) error {
	finish, err := c.DetachDevice(name)
	if err != nil {
		return err
	}
	return finish()
}

// DetachDevice is the first half of RemoveDevice: the device leaves the
// configuration at once; finish waits for the commands inside and closes the
// handler. A caller that serializes configuration changes runs finish
// outside its lock, so that a hung backing store holds up only this
// removal. Until finish returns, the name cannot be registered again.
func (c *Core) DetachDevice(name string) (finish func() error, err error) {
	c.mu.Lock()
	cf := c.cfg.Load()
	d := cf.device(name)
	if d == nil {
		c.mu.Unlock()
		return nil, errno(syscall.EINVAL, "remove device %q: not registered", name)
	}
	ncf := cf.clone()
	for i, g := range ncf.groups {
		if !g.maps(d) {
			continue
		}
		ng := g.clone()
		ng.luns = ng.luns[:0]
		for _, m := range g.luns {
			if m.dev != d {
				ng.luns = append(ng.luns, m)
			}
		}
		ncf.groups[i] = ng
	}
	for i, x := range ncf.devices {
		if x == d {
			ncf.devices = append(ncf.devices[:i], ncf.devices[i+1:]...)
			break
		}
	}
	c.removed[name] = struct{}{}
	c.commitLocked(ncf, nil)
	c.mu.Unlock()
	return func() error { return c.finishRemoval(d) }, nil
}

// finishRemoval waits for the commands of a detached device and closes it.
func (c *Core) finishRemoval(d *Device) error {
	name := d.Name
	// Every nexus of the device is dead now (no view references it), so no
	// new command can enter; wait for the ones inside.
	d.mu.Lock()
	nxs := make([]*nexus, 0, len(d.nexus))
	for nx := range d.nexus {
		nxs = append(nxs, nx)
	}
	d.mu.Unlock()
	for _, nx := range nxs {
		nx.drain()
	}
	err := d.Handler.Close()

	c.mu.Lock()
	delete(c.removed, name)
	d.core = nil
	c.mu.Unlock()
	c.log.WithField("device", name).Debug("device unregistered")
	if err != nil {
		return fmt.Errorf("remove device %q: close: %w", name, err)
	}
	return nil
}

func (g *group) maps(d *Device) bool {
	for _, m := range g.luns {
		if m.dev == d {
			return true
		}
	}
	return false
}

// Device returns the named device or nil.
func (c *Core) Device(name string) *Device {
	return c.cfg.Load().device(name)
}

// Devices returns the devices in registration order.
func (c *Core) Devices() []*Device {
	return append([]*Device(nil), c.cfg.Load().devices...)
}

// RaiseUA queues a unit attention with asc on every I_T nexus that has this
// device mapped (capacity changed, mode parameters changed, ...).
func (d *Device) RaiseUA(asc scsi.ASC) {
	d.raiseUA(asc, nil)
}

func (d *Device) raiseUA(asc scsi.ASC, except *nexus) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for nx := range d.nexus {
		if nx != except {
			nx.queueUA(asc)
		}
	}
}

// RaiseDeferredError records a deferred error (SPC-4 4.5.5), for example a
// failed write-back of data whose WRITE already returned GOOD, on every I_T
// nexus of the device. The next command on each nexus other than INQUIRY and
// REPORT LUNS gets CHECK CONDITION with deferred-error sense (71h/73h); REQUEST
// SENSE returns it as data. Unit attentions are reported before it.
func (d *Device) RaiseDeferredError(s scsi.Sense) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for nx := range d.nexus {
		nx.setDeferred(s)
	}
}

// SetDescriptorSense selects descriptor-format sense (control mode page D_SENSE).
func (d *Device) SetDescriptorSense(on bool) { d.dsense.Store(on) }

// DescriptorSense reports whether descriptor-format sense is selected.
func (d *Device) DescriptorSense() bool { return d.dsense.Load() }

// Groups returns a consistent snapshot of all groups, Default first, then in
// creation order.
func (c *Core) Groups() []GroupInfo {
	cf := c.cfg.Load()
	out := make([]GroupInfo, len(cf.groups))
	for i, g := range cf.groups {
		gi := GroupInfo{Name: g.name, Addr: g.addr, Names: append([]string(nil), g.names...)}
		gi.LUNs = make([]LUNInfo, len(g.luns))
		for j, m := range g.luns {
			gi.LUNs[j] = LUNInfo{LUN: m.lun, Device: m.dev.Name, ReadOnly: m.readOnly}
		}
		out[i] = gi
	}
	return out
}

// Visible reports whether initiator would see at least one LUN of target
// under group resolution (spec §2.5).
func (c *Core) Visible(initiator, target string) bool {
	return len(c.cfg.Load().resolve(initiator, target).luns) > 0
}
