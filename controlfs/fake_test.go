package controlfs

// Fakes of the core, the vdisk manager and the iSCSI server that implement
// the semantics spec/procfs.md §1 gives them, so that the whole control
// plane can be tested before (and independently of) the real packages.

import (
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/scstd/scstd/iscsi"
	"github.com/scstd/scstd/target"
	"github.com/scstd/scstd/vdisk"
)

type fakeHandler struct {
	name string
	typ  byte
}

func (h fakeHandler) Exec(c *target.Command) {}
func (h fakeHandler) HandlerName() string    { return h.name }
func (h fakeHandler) Type() byte             { return h.typ }
func (h fakeHandler) Close() error           { return nil }

type fakeCore struct {
	mu       sync.Mutex
	devs     []*target.Device
	groups   []*target.GroupInfo
	sessions []target.SessionStat
}

func errf(errno syscall.Errno, format string, a ...any) error {
	return fmt.Errorf(format+": %w", append(a, errno)...)
}

func newFakeCore() *fakeCore {
	return &fakeCore{groups: []*target.GroupInfo{{Name: "Default", Addr: target.AddrPeripheral}}}
}

func (c *fakeCore) findGroup(name string) (int, *target.GroupInfo) {
	for i, g := range c.groups {
		if g.Name == name {
			return i, g
		}
	}
	return -1, nil
}

func (c *fakeCore) findDev(name string) *target.Device {
	for _, d := range c.devs {
		if d.Name == name {
			return d
		}
	}
	return nil
}

func (c *fakeCore) addDevice(d *target.Device) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.findDev(d.Name) != nil {
		return errf(syscall.EEXIST, "device %s exists", d.Name)
	}
	c.devs = append(c.devs, d)
	return nil
}

func (c *fakeCore) removeDevice(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := slices.IndexFunc(c.devs, func(d *target.Device) bool { return d.Name == name })
	if i < 0 {
		return errf(syscall.EINVAL, "device %s not found", name)
	}
	c.devs = slices.Delete(c.devs, i, i+1)
	for _, g := range c.groups {
		g.LUNs = slices.DeleteFunc(g.LUNs, func(l target.LUNInfo) bool { return l.Device == name })
	}
	return nil
}

func (c *fakeCore) Devices() []*target.Device {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.devs)
}

func (c *fakeCore) AddGroup(name string, m target.AddrMethod) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, g := c.findGroup(name); g != nil {
		return errf(syscall.EINVAL, "group %s exists", name)
	}
	c.groups = append(c.groups, &target.GroupInfo{Name: name, Addr: m})
	return nil
}

func (c *fakeCore) DelGroup(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	i, g := c.findGroup(name)
	if g == nil || name == "Default" {
		return errf(syscall.EINVAL, "group %s", name)
	}
	for _, s := range c.sessions {
		if s.Group == name {
			return errf(syscall.EBUSY, "group %s has sessions", name)
		}
	}
	c.groups = slices.Delete(c.groups, i, i+1)
	return nil
}

func (c *fakeCore) RenameGroup(old, new string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, g := c.findGroup(old)
	if g == nil || old == "Default" {
		return errf(syscall.EINVAL, "group %s", old)
	}
	if _, n := c.findGroup(new); n != nil {
		return errf(syscall.EEXIST, "group %s exists", new)
	}
	g.Name = new
	return nil
}

func (c *fakeCore) lunOp(group, dev string) (*target.GroupInfo, error) {
	_, g := c.findGroup(group)
	if g == nil {
		return nil, errf(syscall.EINVAL, "group %s not found", group)
	}
	if c.findDev(dev) == nil {
		return nil, errf(syscall.EINVAL, "device %s not found", dev)
	}
	return g, nil
}

func (c *fakeCore) AddLUN(group, dev string, lun uint64, ro bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	g, err := c.lunOp(group, dev)
	if err != nil {
		return err
	}
	if slices.ContainsFunc(g.LUNs, func(l target.LUNInfo) bool { return l.LUN == lun }) {
		return errf(syscall.EEXIST, "LUN %d used", lun)
	}
	g.LUNs = append(g.LUNs, target.LUNInfo{LUN: lun, Device: dev, ReadOnly: ro})
	return nil
}

func (c *fakeCore) ReplaceLUN(group, dev string, lun uint64, ro bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	g, err := c.lunOp(group, dev)
	if err != nil {
		return err
	}
	g.LUNs = slices.DeleteFunc(g.LUNs, func(l target.LUNInfo) bool { return l.LUN == lun })
	g.LUNs = append(g.LUNs, target.LUNInfo{LUN: lun, Device: dev, ReadOnly: ro})
	return nil
}

func (c *fakeCore) DelLUN(group, dev string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	g, err := c.lunOp(group, dev)
	if err != nil {
		return err
	}
	if i := slices.IndexFunc(g.LUNs, func(l target.LUNInfo) bool { return l.Device == dev }); i >= 0 {
		g.LUNs = slices.Delete(g.LUNs, i, i+1)
	}
	return nil
}

func (c *fakeCore) ClearLUNs(group string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, g := c.findGroup(group)
	if g == nil {
		return errf(syscall.EINVAL, "group %s not found", group)
	}
	g.LUNs = nil
	return nil
}

func (c *fakeCore) addName(g *target.GroupInfo, name string) error {
	if slices.Contains(g.Names, name) {
		return errf(syscall.EEXIST, "name %s exists", name)
	}
	g.Names = append(g.Names, name)
	return nil
}

func (c *fakeCore) AddName(group, name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, g := c.findGroup(group)
	if g == nil {
		return errf(syscall.EINVAL, "group %s not found", group)
	}
	return c.addName(g, name)
}

func (c *fakeCore) delName(g *target.GroupInfo, name string) error {
	i := slices.Index(g.Names, name)
	if i < 0 {
		return errf(syscall.EINVAL, "name %s not found", name)
	}
	g.Names = slices.Delete(g.Names, i, i+1)
	return nil
}

func (c *fakeCore) DelName(group, name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, g := c.findGroup(group)
	if g == nil {
		return errf(syscall.EINVAL, "group %s not found", group)
	}
	return c.delName(g, name)
}

func (c *fakeCore) MoveName(group, name, newGroup string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, g := c.findGroup(group)
	_, ng := c.findGroup(newGroup)
	if g == nil || ng == nil {
		return errf(syscall.EINVAL, "group not found")
	}
	if err := c.delName(g, name); err != nil {
		return err
	}
	if err := c.addName(ng, name); err != nil {
		g.Names = append(g.Names, name)
		return err
	}
	return nil
}

func (c *fakeCore) ClearNames(group string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, g := c.findGroup(group)
	if g == nil {
		return errf(syscall.EINVAL, "group %s not found", group)
	}
	g.Names = nil
	return nil
}

func (c *fakeCore) Groups() []target.GroupInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]target.GroupInfo, len(c.groups))
	for i, g := range c.groups {
		out[i] = *g
		out[i].LUNs = slices.Clone(g.LUNs)
		out[i].Names = slices.Clone(g.Names)
	}
	return out
}

func (c *fakeCore) Sessions() []target.SessionStat {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.sessions)
}

// devRegistry is where fakeVdisk registers devices: the fake core or a
// real target.Core.
type devRegistry interface {
	addDevice(d *target.Device) error
	removeDevice(name string) error
}

// realRegistry registers devices in a real core.
type realRegistry struct{ c *target.Core }

func (r realRegistry) addDevice(d *target.Device) error { return r.c.AddDevice(d) }
func (r realRegistry) removeDevice(name string) error   { return r.c.RemoveDevice(name) }

// fakeVdisk keeps its devices in the core, as the real manager does.
type fakeVdisk struct {
	core  devRegistry
	mu    sync.Mutex
	disks []vdisk.DiskInfo
	cds   []vdisk.CDROMInfo
	// failOpen, when set, is returned by Open (to test errno passing).
	failOpen error
}

func validDevName(name string) error {
	if name == "" || len(name) > 64 || strings.ContainsAny(name, "/.") {
		return errf(syscall.EINVAL, "bad name %q", name)
	}
	return nil
}

func backingSize(path string) (int64, error) {
	if path == "/dev/zero" {
		return 1 << 40, nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return 0, errf(syscall.EINVAL, "%s: unsupported file type", path)
	}
	return fi.Size(), nil
}

func (v *fakeVdisk) Open(name, path string, bs uint32, f vdisk.Flags) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.failOpen != nil {
		return v.failOpen
	}
	if err := validDevName(name); err != nil {
		return err
	}
	if !f.NullIO && !strings.HasPrefix(path, "/") {
		return errf(syscall.EINVAL, "path not absolute")
	}
	if bs == 0 {
		bs = 512
	}
	if bs < 512 {
		return errf(syscall.EINVAL, "block size")
	}
	for shift := uint32(31); shift >= 9; shift-- {
		if bs >= 1<<shift {
			bs = 1 << shift
			break
		}
	}
	handler := "vdisk_fileio"
	var size int64
	switch {
	case f.NullIO:
		handler, size = "vdisk_nullio", 5<<40/2
	default:
		if f.BlockIO {
			handler = "vdisk_blockio"
		}
		s, err := backingSize(path)
		if err != nil {
			return err
		}
		size = s
	}
	f.ODirect = false // accepted but ignored
	if err := v.core.addDevice(&target.Device{Name: name, Handler: fakeHandler{handler, 0}}); err != nil {
		return err
	}
	id := fmt.Sprintf("%x-%s", 0x1234abcd, name)
	if len(id) > 25 {
		id = id[:25]
	}
	v.disks = append(v.disks, vdisk.DiskInfo{Name: name, Size: size, BlockSize: bs, Flags: f, Path: path, T10ID: id, Handler: handler})
	return nil
}

func (v *fakeVdisk) diskIndex(name string) int {
	return slices.IndexFunc(v.disks, func(d vdisk.DiskInfo) bool { return d.Name == name })
}

func (v *fakeVdisk) Detach(name string) (func() error, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	i := v.diskIndex(name)
	if i < 0 {
		return nil, errf(syscall.EINVAL, "no disk %s", name)
	}
	v.disks = slices.Delete(v.disks, i, i+1)
	return noFinish(v.core.removeDevice(name))
}

// noFinish is the fake's detach result: the fake core removes at once.
func noFinish(err error) (func() error, error) {
	if err != nil {
		return nil, err
	}
	return func() error { return nil }, nil
}

func (v *fakeVdisk) ResyncSize(name string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	i := v.diskIndex(name)
	if i < 0 || v.disks[i].Flags.NullIO {
		return errf(syscall.EINVAL, "no disk %s", name)
	}
	s, err := backingSize(v.disks[i].Path)
	if err != nil {
		return err
	}
	v.disks[i].Size = s
	return nil
}

func (v *fakeVdisk) SetT10ID(name, id string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	i := v.diskIndex(name)
	if i < 0 {
		return errf(syscall.EINVAL, "no disk %s", name)
	}
	if len(id) > 25 {
		id = id[:25]
	}
	v.disks[i].T10ID = id
	return nil
}

func (v *fakeVdisk) Disks() []vdisk.DiskInfo {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.disks)
}

func (v *fakeVdisk) cdIndex(name string) int {
	return slices.IndexFunc(v.cds, func(d vdisk.CDROMInfo) bool { return d.Name == name })
}

func (v *fakeVdisk) OpenCDROM(name, path string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := validDevName(name); err != nil {
		return err
	}
	var size int64
	if path != "" {
		if !strings.HasPrefix(path, "/") {
			return errf(syscall.EINVAL, "path not absolute")
		}
		s, err := backingSize(path)
		if err != nil {
			return err
		}
		size = s
	}
	if err := v.core.addDevice(&target.Device{Name: name, Handler: fakeHandler{"vcdrom", 5}}); err != nil {
		return err
	}
	v.cds = append(v.cds, vdisk.CDROMInfo{Name: name, Size: size, Path: path})
	return nil
}

func (v *fakeVdisk) ChangeCDROM(name, path string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	i := v.cdIndex(name)
	if i < 0 {
		return errf(syscall.EINVAL, "no cdrom %s", name)
	}
	var size int64
	if path != "" {
		s, err := backingSize(path)
		if err != nil {
			return err
		}
		size = s
	}
	v.cds[i].Path, v.cds[i].Size = path, size
	return nil
}

func (v *fakeVdisk) DetachCDROM(name string) (func() error, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	i := v.cdIndex(name)
	if i < 0 {
		return nil, errf(syscall.EINVAL, "no cdrom %s", name)
	}
	v.cds = slices.Delete(v.cds, i, i+1)
	return noFinish(v.core.removeDevice(name))
}

func (v *fakeVdisk) CDROMs() []vdisk.CDROMInfo {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.cds)
}

type fakeTargets struct{ ts []iscsi.TargetStat }

func (f fakeTargets) Targets() []iscsi.TargetStat { return f.ts }

// paperTargets is the iscsi/session example of the paper (§1.18).
func paperTargets() []iscsi.TargetStat {
	return []iscsi.TargetStat{
		{TID: 1, Name: "iqn.2001-04.com.example.blackbox:1", Sessions: []iscsi.SessionStat{{
			SID: 0x10000043d0200, Initiator: "iqn.1993-08.org.debian:01:9778279657b7",
			Conns: []iscsi.ConnStat{{CID: 0, RemoteIP: net.ParseIP("10.42.0.95"), State: "read_processing ", HeaderDigest: "none", DataDigest: "none"}},
		}}},
		{TID: 2, Name: "iqn.2001-04.com.example.blackbox:2"},
	}
}

// newFakeState returns a state over fresh fakes.
func newFakeState() (*state, *fakeCore, *fakeVdisk) {
	c := newFakeCore()
	v := &fakeVdisk{core: c}
	st := &state{core: c, vd: v, is: fakeTargets{paperTargets()}, tun: target.NewTunables(), log: testLog()}
	return st, c, v
}
