package controlfs

// The FUSE adapter: an fs.Inode tree whose files render and parse through
// the state layer. Files are opened with DIRECT_IO and NONSEEKABLE so that
// every read reaches us; a read at offset 0 renders a fresh snapshot that
// later reads of the same open file continue from, so a reader never sees
// a mix of two states.

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/scstd/scstd/target"
)

// Permission bits of §1.1 (kernel procfs modes, without the usermode
// shim's extra group-write: the mount is owned by the daemon's user).
const (
	modeRW  = 0o644
	modeRO  = 0o444
	modeDir = 0o555
)

// statSize is the constant st_size of every node (§3.3); DIRECT_IO makes
// the kernel ignore it.
const statSize = 4096

// owner is the uid/gid reported for every node.
type owner struct {
	uid, gid uint32
	born     time.Time
}

func (o *owner) fill(a *fuse.Attr, mode uint32, nlink uint32, mtime time.Time) {
	a.Mode = mode
	a.Size = statSize
	a.Blocks = statSize / 512
	a.Nlink = nlink
	a.Owner = fuse.Owner{Uid: o.uid, Gid: o.gid}
	a.SetTimes(nil, &mtime, &o.born)
}

// fileNode is one proc file.
type fileNode struct {
	fs.Inode
	own   *owner
	perm  uint32
	read  func() ([]byte, syscall.Errno)
	write writeFunc // nil: not writable (EPERM)
	// zeroOffsetOnly mimics UMC's module-parameter read: any read at a
	// non-zero offset is EOF.
	zeroOffsetOnly bool
	mtime          atomic.Int64 // unix nanoseconds of the last write attempt
}

var (
	_ fs.NodeOpener    = (*fileNode)(nil)
	_ fs.NodeReader    = (*fileNode)(nil)
	_ fs.NodeWriter    = (*fileNode)(nil)
	_ fs.NodeGetattrer = (*fileNode)(nil)
	_ fs.NodeSetattrer = (*fileNode)(nil)
)

// openFile is the per-open state: the snapshot that reads continue from.
type openFile struct {
	mu   sync.Mutex
	snap []byte
	have bool
}

func (n *fileNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return &openFile{}, fuse.FOPEN_DIRECT_IO | fuse.FOPEN_NONSEEKABLE, 0
}

func (n *fileNode) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if n.zeroOffsetOnly && off != 0 {
		return fuse.ReadResultData(nil), 0
	}
	of, _ := fh.(*openFile)
	if of == nil {
		of = &openFile{}
	}
	of.mu.Lock()
	defer of.mu.Unlock()
	if off == 0 || !of.have {
		b, errno := n.read()
		if errno != 0 {
			return nil, errno
		}
		of.snap, of.have = b, true
	}
	if off >= int64(len(of.snap)) {
		return fuse.ReadResultData(nil), 0
	}
	end := off + int64(len(dest))
	if end > int64(len(of.snap)) {
		end = int64(len(of.snap))
	}
	return fuse.ReadResultData(of.snap[off:end]), 0
}

func (n *fileNode) Write(ctx context.Context, fh fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	n.mtime.Store(time.Now().UnixNano())
	if n.write == nil {
		return 0, syscall.EPERM
	}
	return n.write(data)
}

func (n *fileNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.own.fill(&out.Attr, syscall.S_IFREG|n.perm, 1, time.Unix(0, n.mtime.Load()))
	return 0
}

// Setattr accepts a size change as a no-op, for writers that truncate
// before writing without O_TRUNC (the kernel uses atomic O_TRUNC
// otherwise); anything else (chmod, chown, utimes) is refused.
func (n *fileNode) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if in.Valid&^(fuse.FATTR_SIZE|fuse.FATTR_FH|fuse.FATTR_LOCKOWNER) != 0 {
		return syscall.EPERM
	}
	if in.Valid&fuse.FATTR_SIZE != 0 && n.write == nil {
		return syscall.EPERM
	}
	return n.Getattr(ctx, fh, out)
}

// dirNode is a static directory.
type dirNode struct {
	fs.Inode
	own *owner
}

var _ fs.NodeGetattrer = (*dirNode)(nil)

func (d *dirNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.own.fill(&out.Attr, syscall.S_IFDIR|modeDir, uint32(2+len(d.Children())), d.own.born)
	return 0
}

// groupsNode is P/groups: its children follow the core's groups.
type groupsNode struct {
	dirNode
	st   *state
	smu  sync.Mutex // serializes reconciliation
	tree *tree
}

var (
	_ fs.NodeLookuper  = (*groupsNode)(nil)
	_ fs.NodeReaddirer = (*groupsNode)(nil)
)

func (g *groupsNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	g.sync(ctx)
	ch := g.GetChild(name)
	if ch == nil {
		return nil, syscall.ENOENT
	}
	if ga, ok := ch.Operations().(fs.NodeGetattrer); ok {
		var a fuse.AttrOut
		if errno := ga.Getattr(ctx, nil, &a); errno == 0 {
			out.Attr = a.Attr
		}
	}
	return ch, 0
}

func (g *groupsNode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	names := g.sync(ctx)
	ents := make([]fuse.DirEntry, 0, len(names))
	for _, name := range names {
		if ch := g.GetChild(name); ch != nil {
			ents = append(ents, fuse.DirEntry{Name: name, Mode: syscall.S_IFDIR, Ino: ch.StableAttr().Ino})
		}
	}
	return fs.NewListDirStream(ents), 0
}

// sync makes the children of groups/ the core's groups (Default first, in
// creation order) and returns their names.
func (g *groupsNode) sync(ctx context.Context) []string {
	g.smu.Lock()
	defer g.smu.Unlock()
	groups := g.st.core.Groups()
	names := make([]string, 0, len(groups))
	want := make(map[string]bool, len(groups))
	for _, gi := range groups {
		if !validGroupName(gi.Name) {
			// Only reachable if a group was created outside controlfs.
			g.st.log.WithField("group", gi.Name).Debug("group name cannot be a directory; not shown")
			continue
		}
		want[gi.Name] = true
		names = append(names, gi.Name)
		if g.GetChild(gi.Name) == nil {
			g.AddChild(gi.Name, g.tree.newGroupDir(ctx, &g.Inode, gi.Name), false)
		}
	}
	for name, ch := range g.Children() {
		if want[name] {
			continue
		}
		g.RmChild(name)
		for _, f := range ch.Children() {
			f.ForgetPersistent()
		}
		ch.ForgetPersistent()
	}
	return names
}

// tree builds the nodes.
type tree struct {
	st  *state
	own *owner
}

func (t *tree) file(ctx context.Context, parent *fs.Inode, name string, n *fileNode) {
	n.own = t.own
	n.mtime.Store(t.own.born.UnixNano())
	if n.write != nil {
		n.perm = modeRW
	} else {
		n.perm = modeRO
	}
	parent.AddChild(name, parent.NewPersistentInode(ctx, n, fs.StableAttr{Mode: syscall.S_IFREG}), false)
}

func (t *tree) dir(ctx context.Context, parent *fs.Inode, name string) *fs.Inode {
	ch := parent.NewPersistentInode(ctx, &dirNode{own: t.own}, fs.StableAttr{Mode: syscall.S_IFDIR})
	parent.AddChild(name, ch, false)
	return ch
}

func static(b []byte) func() ([]byte, syscall.Errno) {
	return func() ([]byte, syscall.Errno) { return b, 0 }
}

// newGroupDir returns groups/NAME with addr_method, devices and names. The
// files address the group by name, as the original's proc entries do.
func (t *tree) newGroupDir(ctx context.Context, parent *fs.Inode, name string) *fs.Inode {
	st := t.st
	d := parent.NewPersistentInode(ctx, &dirNode{own: t.own}, fs.StableAttr{Mode: syscall.S_IFDIR})
	t.file(ctx, d, "addr_method", &fileNode{read: func() ([]byte, syscall.Errno) {
		return st.readGroupFile(name, func(g target.GroupInfo) []byte { return renderAddrMethod(g.Addr) })
	}})
	t.file(ctx, d, "devices", &fileNode{
		read: func() ([]byte, syscall.Errno) {
			return st.readGroupFile(name, func(g target.GroupInfo) []byte { return renderGroupDevices(g.LUNs) })
		},
		write: st.procWrite(func(s string) syscall.Errno { return st.execDevices(name, s) }),
	})
	t.file(ctx, d, "names", &fileNode{
		read: func() ([]byte, syscall.Errno) {
			return st.readGroupFile(name, func(g target.GroupInfo) []byte { return renderNames(g.Names) })
		},
		write: st.procWrite(func(s string) syscall.Errno { return st.execNames(name, s) }),
	})
	return d
}

// build creates the whole static tree under root (§1.1).
func (t *tree) build(ctx context.Context, root *fs.Inode) *groupsNode {
	st := t.st
	p := t.dir(ctx, root, "scsi_tgt")
	t.file(ctx, p, "scsi_tgt", &fileNode{read: st.readScsiTgt, write: st.procWrite(st.execScsiTgt)})
	t.file(ctx, p, "version", &fileNode{read: static(renderVersion())})
	t.file(ctx, p, "sessions", &fileNode{read: func() ([]byte, syscall.Errno) {
		return renderSessions(st.core.Sessions()), 0
	}})
	t.file(ctx, p, "help", &fileNode{read: static(renderHelp())})
	t.file(ctx, p, "threads", &fileNode{
		read:  func() ([]byte, syscall.Errno) { return renderThreads(st.tun.Threads()), 0 },
		write: st.procWrite(st.execThreads),
	})
	t.file(ctx, p, "sgv", &fileNode{read: func() ([]byte, syscall.Errno) {
		return renderSGV(sgvStats{HiWatermark: st.sgvHiWatermark()}), 0
	}})

	g := &groupsNode{dirNode: dirNode{own: t.own}, st: st, tree: t}
	p.AddChild("groups", p.NewPersistentInode(ctx, g, fs.StableAttr{Mode: syscall.S_IFDIR}), false)
	g.sync(ctx)

	vd := t.dir(ctx, p, "vdisk")
	t.file(ctx, vd, "type", &fileNode{read: static(renderType(0))})
	t.file(ctx, vd, "help", &fileNode{read: static([]byte(vdiskHelpText))})
	t.file(ctx, vd, "vdisk", &fileNode{
		read:  func() ([]byte, syscall.Errno) { return renderVdisks(st.vd.Disks()), 0 },
		write: st.handlerWrite(st.execVdisk),
	})

	cd := t.dir(ctx, p, "vcdrom")
	t.file(ctx, cd, "type", &fileNode{read: static(renderType(5))})
	t.file(ctx, cd, "help", &fileNode{read: static([]byte(vcdromHelpText))})
	t.file(ctx, cd, "vcdrom", &fileNode{
		read:  func() ([]byte, syscall.Errno) { return renderVcdroms(st.vd.CDROMs()), 0 },
		write: st.handlerWrite(st.execVcdrom),
	})

	is := t.dir(ctx, p, "iscsi")
	t.file(ctx, is, "version", &fileNode{read: static(renderISCSIVersion())})
	t.file(ctx, is, "session", &fileNode{read: st.readISCSISession})

	for _, mp := range target.ModuleParams() {
		mp := mp
		n := &fileNode{
			read:           func() ([]byte, syscall.Errno) { return renderModuleParam(st.tun.Param(mp)), 0 },
			zeroOffsetOnly: true,
		}
		// Only forcibly_close_sessions is writable (§1.1 marks the
		// others read-only).
		if mp == target.ParamForciblyCloseSessions {
			n.write = st.writeModuleParam(mp)
		}
		t.file(ctx, root, mp.Name(), n)
	}
	return g
}

// rootNode is the mount root; it builds the tree when go-fuse adds it.
type rootNode struct {
	dirNode
	t      *tree
	groups *groupsNode
}

var _ fs.NodeOnAdder = (*rootNode)(nil)

func (r *rootNode) OnAdd(ctx context.Context) {
	r.groups = r.t.build(ctx, &r.Inode)
}

func newOwner() *owner {
	return &owner{uid: uint32(os.Geteuid()), gid: uint32(os.Getegid()), born: time.Now()}
}
