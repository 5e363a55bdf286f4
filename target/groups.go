package target

import (
	"strings"
	"syscall"
)

// GroupInfo is a snapshot of one group for rendering.
type GroupInfo struct {
	Name  string
	Addr  AddrMethod
	LUNs  []LUNInfo // insertion order
	Names []string  // insertion order
}

// LUNInfo is one LUN mapping.
type LUNInfo struct {
	LUN      uint64
	Device   string
	ReadOnly bool
}

// String returns the procfs spelling of the addressing method (spec §1.9).
func (m AddrMethod) String() string {
	switch m {
	case AddrPeripheral:
		return "PERIPHERAL"
	case AddrFlat:
		return "FLAT"
	case AddrLUN:
		return "LUN"
	}
	return "UNKNOWN"
}

func validGroupName(name string) bool {
	return name != "" && !strings.Contains(name, "/")
}

// AddGroup implements scsi_tgt add_group. Spec §1.2: Default or an existing
// name is EINVAL (not EEXIST); empty names and names with '/' are EINVAL.
func (c *Core) AddGroup(name string, m AddrMethod) error {
	if !validGroupName(name) {
		return errno(syscall.EINVAL, "add group %q: invalid name", name)
	}
	if m > AddrLUN {
		return errno(syscall.EINVAL, "add group %q: invalid addressing method %d", name, m)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cf := c.cfg.Load()
	if cf.groupIndex(name) >= 0 {
		return errno(syscall.EINVAL, "add group %q: exists", name)
	}
	ncf := cf.clone()
	ncf.groups = append(ncf.groups, &group{name: name, addr: m})
	c.commitLocked(ncf, nil)
	return nil
}

// DelGroup implements scsi_tgt del_group.
func (c *Core) DelGroup(name string) error {
	if name == DefaultGroup {
		return errno(syscall.EINVAL, "delete group %q", name)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cf := c.cfg.Load()
	i := cf.groupIndex(name)
	if i < 0 {
		return errno(syscall.EINVAL, "delete group %q: not found", name)
	}
	for _, s := range c.sess {
		if s.view.Load().group == cf.groups[i] {
			return errno(syscall.EBUSY, "delete group %q: sessions attached", name)
		}
	}
	ncf := cf.clone()
	ncf.groups = append(ncf.groups[:i], ncf.groups[i+1:]...)
	c.commitLocked(ncf, nil)
	return nil
}

// RenameGroup implements scsi_tgt rename_group, with the spec's REC checks on
// the new name: empty or containing '/' or Default is EINVAL, an existing
// group name is EEXIST.
func (c *Core) RenameGroup(old, new string) error {
	if old == DefaultGroup {
		return errno(syscall.EINVAL, "rename group %q", old)
	}
	if !validGroupName(new) || new == DefaultGroup {
		return errno(syscall.EINVAL, "rename group %q to %q: invalid name", old, new)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cf := c.cfg.Load()
	i := cf.groupIndex(old)
	if i < 0 {
		return errno(syscall.EINVAL, "rename group %q: not found", old)
	}
	if cf.groupIndex(new) >= 0 {
		return errno(syscall.EEXIST, "rename group %q to %q", old, new)
	}
	ncf := cf.clone()
	ng := cf.groups[i].clone()
	ng.name = new
	ncf.groups[i] = ng
	c.commitLocked(ncf, nil)
	return nil
}

// lunGroupLocked looks up group and device for the LUN map methods.
func (c *Core) lunGroupLocked(op, gname, dev string) (*config, int, *Device, error) {
	cf := c.cfg.Load()
	i := cf.groupIndex(gname)
	if i < 0 {
		return nil, 0, nil, errno(syscall.EINVAL, "%s: group %q not found", op, gname)
	}
	d := cf.device(dev)
	if d == nil {
		return nil, 0, nil, errno(syscall.EINVAL, "%s: device %q not registered", op, dev)
	}
	return cf, i, d, nil
}

// AddLUN implements groups/G/devices "add" (spec §1.10).
func (c *Core) AddLUN(gname, dev string, lun uint64, readOnly bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	cf, i, d, err := c.lunGroupLocked("add lun", gname, dev)
	if err != nil {
		return err
	}
	if lun > MaxLUN {
		return errno(syscall.EINVAL, "add lun %d: above %d", lun, MaxLUN)
	}
	g := cf.groups[i]
	for _, m := range g.luns {
		if m.lun == lun {
			return errno(syscall.EEXIST, "add lun %d to group %q: in use by %q", lun, gname, m.dev.Name)
		}
	}
	ncf := cf.clone()
	ng := g.clone()
	ng.luns = append(ng.luns, lunMap{lun: lun, dev: d, readOnly: readOnly})
	ncf.groups[i] = ng
	c.commitLocked(ncf, nil)
	return nil
}

// ReplaceLUN implements groups/G/devices "replace": like AddLUN, but an
// occupied LUN is remapped and its sessions get INQUIRY DATA HAS CHANGED.
func (c *Core) ReplaceLUN(gname, dev string, lun uint64, readOnly bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	cf, i, d, err := c.lunGroupLocked("replace lun", gname, dev)
	if err != nil {
		return err
	}
	if lun > MaxLUN {
		return errno(syscall.EINVAL, "replace lun %d: above %d", lun, MaxLUN)
	}
	ncf := cf.clone()
	ng := cf.groups[i].clone()
	ncf.groups[i] = ng
	for j, m := range ng.luns {
		if m.lun == lun {
			ng.luns[j] = lunMap{lun: lun, dev: d, readOnly: readOnly}
			c.commitLocked(ncf, &replaced{group: ng, lun: lun})
			return nil
		}
	}
	ng.luns = append(ng.luns, lunMap{lun: lun, dev: d, readOnly: readOnly})
	c.commitLocked(ncf, nil)
	return nil
}

// DelLUN implements groups/G/devices "del": removes the first mapping of dev.
// A registered device that is not mapped in the group is not an error.
func (c *Core) DelLUN(gname, dev string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	cf, i, d, err := c.lunGroupLocked("del lun", gname, dev)
	if err != nil {
		return err
	}
	g := cf.groups[i]
	for j, m := range g.luns {
		if m.dev == d {
			ncf := cf.clone()
			ng := g.clone()
			ng.luns = append(ng.luns[:j], ng.luns[j+1:]...)
			ncf.groups[i] = ng
			c.commitLocked(ncf, nil)
			return nil
		}
	}
	c.log.WithField("device", dev).Debugf("del lun: device not mapped in group %q", gname)
	return nil
}

// ClearLUNs implements groups/G/devices "clear".
func (c *Core) ClearLUNs(gname string) error {
	return c.editGroup("clear luns", gname, func(g *group) error {
		g.luns = nil
		return nil
	})
}

// editGroup applies fn to a private copy of the group and commits it if fn
// succeeds, so a failing change leaves the configuration untouched.
func (c *Core) editGroup(op, gname string, fn func(g *group) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	cf := c.cfg.Load()
	i := cf.groupIndex(gname)
	if i < 0 {
		return errno(syscall.EINVAL, "%s: group %q not found", op, gname)
	}
	ng := cf.groups[i].clone()
	if err := fn(ng); err != nil {
		return err
	}
	ncf := cf.clone()
	ncf.groups[i] = ng
	c.commitLocked(ncf, nil)
	return nil
}

func (g *group) nameIndex(name string) int {
	for i, n := range g.names {
		if n == name {
			return i
		}
	}
	return -1
}

// AddName implements groups/G/names "add" (spec §1.11).
func (c *Core) AddName(gname, name string) error {
	if name == "" {
		return errno(syscall.EINVAL, "add name: empty")
	}
	return c.editGroup("add name", gname, func(g *group) error {
		if g.nameIndex(name) >= 0 {
			return errno(syscall.EEXIST, "add name %q to group %q", name, gname)
		}
		g.names = append(g.names, name)
		return nil
	})
}

// DelName implements groups/G/names "del".
func (c *Core) DelName(gname, name string) error {
	return c.editGroup("del name", gname, func(g *group) error {
		j := g.nameIndex(name)
		if j < 0 {
			return errno(syscall.EINVAL, "del name %q: not in group %q", name, gname)
		}
		g.names = append(g.names[:j], g.names[j+1:]...)
		return nil
	})
}

// MoveName implements groups/G/names "move": the name leaves gname and joins
// newGroup in one step; if joining fails, nothing changes.
func (c *Core) MoveName(gname, name, newGroup string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	cf := c.cfg.Load()
	i := cf.groupIndex(gname)
	if i < 0 {
		return errno(syscall.EINVAL, "move name: group %q not found", gname)
	}
	k := cf.groupIndex(newGroup)
	if k < 0 {
		return errno(syscall.EINVAL, "move name %q: group %q not found", name, newGroup)
	}
	src := cf.groups[i].clone()
	j := src.nameIndex(name)
	if j < 0 {
		return errno(syscall.EINVAL, "move name %q: not in group %q", name, gname)
	}
	src.names = append(src.names[:j], src.names[j+1:]...)
	dst := src
	if k != i {
		dst = cf.groups[k].clone()
	}
	if dst.nameIndex(name) >= 0 {
		return errno(syscall.EEXIST, "move name %q: already in group %q", name, newGroup)
	}
	dst.names = append(dst.names, name)
	ncf := cf.clone()
	ncf.groups[i] = src
	ncf.groups[k] = dst
	c.commitLocked(ncf, nil)
	return nil
}

// ClearNames implements groups/G/names "clear".
func (c *Core) ClearNames(gname string) error {
	return c.editGroup("clear names", gname, func(g *group) error {
		g.names = nil
		return nil
	})
}
