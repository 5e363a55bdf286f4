package controlfs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/scstd/scstd/iscsi"
	"github.com/scstd/scstd/target"
	"github.com/scstd/scstd/vdisk"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// DefaultMountpoint is where the usermode build mounts the tree and where
// scstadmin (SCST.pm) looks for it.
const DefaultMountpoint = "/fuse/scst/proc"

// fsName is the mount's source and subtype (fuse.scstd in /proc/mounts).
const fsName = "scstd"

// Options configures Mount.
type Options struct {
	Core  *target.Core
	Vdisk *vdisk.Manager
	ISCSI *iscsi.Server // nil: iscsi/session is empty
	Log   *logrus.Entry
	// Tunables holds the module parameters and the thread count shown in
	// the tree. nil: Mount uses target.NewTunables(). The daemon should
	// create one, pass its scst_vdisk_ID to vdisk.ManagerOptions.VdiskID
	// and hand it here.
	Tunables *target.Tunables
	// Owner is the user the daemon runs as after mounting, when it mounts
	// as root and then drops privileges. It is reported as the owner of
	// every node and recorded as the mount's user_id, so that the dropped
	// daemon can still unmount (through fusermount3). nil: the current
	// effective uid and gid.
	Owner *Owner
}

// Owner is a uid/gid pair.
type Owner struct {
	UID, GID uint32
}

// Server is a mounted control filesystem.
type Server struct {
	dir      string
	dev      uint64 // st_dev of the mounted tree: names its fusectl entry
	srv      *fuse.Server
	log      *logrus.Entry
	once     sync.Once
	uerr     error
	done     chan struct{}
	doneOnce sync.Once
}

// Mount mounts the tree at dir and serves it until Unmount, or until ctx is
// cancelled. A stale mount left at dir by a killed daemon is cleared first.
func Mount(ctx context.Context, dir string, o Options) (*Server, error) {
	if o.Core == nil || o.Vdisk == nil {
		return nil, errors.New("controlfs: Options.Core and Options.Vdisk are required")
	}
	var is targetsAPI
	if o.ISCSI != nil {
		is = o.ISCSI
	}
	return mountAs(ctx, dir, &state{core: o.Core, vd: o.Vdisk, is: is, tun: o.Tunables, log: o.Log}, o.Owner)
}

// mount is Mount over the interfaces (tests pass fakes).
func mount(ctx context.Context, dir string, st *state) (*Server, error) {
	return mountAs(ctx, dir, st, nil)
}

func mountAs(ctx context.Context, dir string, st *state, owner *Owner) (*Server, error) {
	if st.log == nil {
		st.log = logrus.NewEntry(logrus.New())
	}
	if st.tun == nil {
		st.tun = target.NewTunables()
	}
	log := st.log.WithField("mountpoint", dir)
	if err := prepareMountpoint(ctx, dir, log); err != nil {
		return nil, err
	}

	t := &tree{st: st, own: newOwner()}
	var mountOpts []string
	if owner != nil {
		t.own.uid, t.own.gid = owner.UID, owner.GID
		if os.Geteuid() == 0 {
			// Given after go-fuse's own user_id/group_id, these win.
			mountOpts = append(mountOpts, fmt.Sprintf("user_id=%d", owner.UID), fmt.Sprintf("group_id=%d", owner.GID))
		}
	}
	root := &rootNode{dirNode: dirNode{own: t.own}, t: t}
	zero := time.Duration(0)
	opts := &fs.Options{
		EntryTimeout:    &zero,
		AttrTimeout:     &zero,
		NegativeTimeout: &zero,
		UID:             t.own.uid,
		GID:             t.own.gid,
		MountOptions: fuse.MountOptions{
			AllowOther: true,
			// The kernel enforces the file modes; root (scstadmin)
			// bypasses them.
			Options:     append([]string{"default_permissions"}, mountOpts...),
			FsName:      fsName,
			Name:        fsName,
			DirectMount: os.Geteuid() == 0,
			// fusermount3 refuses user_id=; only a direct mount can set it.
			DirectMountStrict: len(mountOpts) > 0,
			ExtraCapabilities: fuse.CAP_ATOMIC_O_TRUNC,
			// One command must arrive in one WRITE request; anything
			// longer than maxWrite is refused with EOVERFLOW anyway.
			MaxWrite: 128 << 10,
		},
	}
	// root.groups is set by OnAdd inside fs.Mount, before any request is
	// served.
	st.onGroupsChanged = func() {
		if root.groups != nil {
			root.groups.sync(context.Background())
		}
	}
	srv, err := fs.Mount(dir, root, opts)
	if err != nil {
		return nil, fmt.Errorf("controlfs: mount %s: %w%s", dir, err, mountHints(dir))
	}
	s := &Server{dir: dir, srv: srv, log: log, done: make(chan struct{})}
	var mst unix.Stat_t
	if err := unix.Stat(dir, &mst); err == nil {
		s.dev = mst.Dev
	}
	go func() {
		srv.Wait()
		s.markDone()
	}()
	go func() {
		select {
		case <-ctx.Done():
			if err := s.Unmount(); err != nil {
				log.WithError(err).Warn("unmount on cancel failed")
			}
		case <-s.done:
		}
	}()
	log.Info("control filesystem mounted")
	return s, nil
}

func (s *Server) markDone() { s.doneOnce.Do(func() { close(s.done) }) }

// Unmount unmounts the tree; it is safe to call more than once.
func (s *Server) Unmount() error {
	s.once.Do(func() {
		err := s.srv.Unmount()
		if err != nil {
			// A busy mount (a shell cd'ed into it) cannot be unmounted
			// normally; detach it so the daemon can exit. Its remaining
			// users are served until the connection is aborted (through
			// fusectl when mounted) or the process exits.
			if derr := detach(context.Background(), s.dir); derr == nil {
				s.log.WithError(err).Warn("mount busy; detached it lazily")
				abortConnection(s.dev)
				s.markDone()
				err = nil
			}
		}
		s.uerr = err
		if err == nil {
			s.log.Info("control filesystem unmounted")
		}
	})
	return s.uerr
}

// Wait blocks until the tree is no longer mounted.
func (s *Server) Wait() { <-s.done }

// abortConnection aborts the FUSE connection of device dev through fusectl
// (/sys/fs/fuse/connections/<minor>/abort), if fusectl is mounted; best
// effort.
func abortConnection(dev uint64) {
	if dev == 0 {
		return
	}
	p := fmt.Sprintf("/sys/fs/fuse/connections/%d/abort", unix.Minor(dev))
	if f, err := os.OpenFile(p, os.O_WRONLY, 0); err == nil {
		f.Write([]byte("1"))
		f.Close()
	}
}

// Dir returns the mountpoint.
func (s *Server) Dir() string { return s.dir }

// prepareMountpoint clears a stale mount at dir and checks that a mount can
// succeed, returning one error that says what to fix.
func prepareMountpoint(ctx context.Context, dir string, log *logrus.Entry) error {
	var stt unix.Stat_t
	err := unix.Stat(dir, &stt)
	if errors.Is(err, unix.ENOTCONN) {
		log.Warn("clearing stale FUSE mount left by a previous run")
		if derr := detach(ctx, dir); derr != nil {
			return fmt.Errorf("controlfs: %s is a stale FUSE mount and clearing it failed (%v); run: fusermount3 -u %s", dir, derr, dir)
		}
		err = unix.Stat(dir, &stt)
	}
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("controlfs: mountpoint %s does not exist; run: mkdir -p %s && chmod 777 %s", dir, dir, dir)
		}
		return fmt.Errorf("controlfs: mountpoint %s: %w", dir, err)
	}
	if stt.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("controlfs: mountpoint %s is not a directory", dir)
	}
	if mounted, fstype := mountedAt(dir); mounted && strings.HasPrefix(fstype, "fuse") {
		return fmt.Errorf("controlfs: %s is already a live %s mount (is another scstd running? if not: fusermount3 -u %s)", dir, fstype, dir)
	}
	if os.Geteuid() == 0 {
		return nil
	}
	var probs []string
	if unix.Access(dir, unix.W_OK) != nil && int(stt.Uid) != os.Geteuid() {
		probs = append(probs, fmt.Sprintf("%s is not writable by uid %d: run: mkdir -p %s && chmod 777 %s", dir, os.Geteuid(), dir, dir))
	}
	if unix.Access("/dev/fuse", unix.R_OK|unix.W_OK) != nil {
		probs = append(probs, "/dev/fuse is not readable and writable by this user: run: chmod 0666 /dev/fuse")
	}
	if !userAllowOther("/etc/fuse.conf") {
		probs = append(probs, "allow_other needs a line user_allow_other in /etc/fuse.conf")
	}
	if len(probs) > 0 {
		return fmt.Errorf("controlfs: cannot mount %s as uid %d: %s", dir, os.Geteuid(), strings.Join(probs, "; "))
	}
	return nil
}

// mountHints explains the usual causes of a failed mount.
func mountHints(dir string) string {
	return fmt.Sprintf(" (check: mkdir -p %s && chmod 777 %s; /dev/fuse readable and writable; user_allow_other in /etc/fuse.conf when not root)", dir, dir)
}

// detach lazily unmounts dir: directly as root, through fusermount3
// otherwise.
func detach(ctx context.Context, dir string) error {
	if os.Geteuid() == 0 {
		return unix.Unmount(dir, unix.MNT_DETACH)
	}
	out, err := exec.CommandContext(ctx, "fusermount3", "-u", "-z", dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("fusermount3 -u -z %s: %w: %s", dir, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// mountedAt reports whether dir is a mountpoint according to
// /proc/self/mountinfo, and its filesystem type.
func mountedAt(dir string) (bool, string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	found, fstype := false, ""
	for sc.Scan() {
		// id parent maj:min root mountpoint opts... - fstype source superopts
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || unescapeMountinfo(fields[4]) != dir {
			continue
		}
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) {
				found, fstype = true, fields[i+1] // the last one wins: it is on top
				break
			}
		}
	}
	return found, fstype
}

// unescapeMountinfo undoes the octal escapes (\040 for space, ...) of
// /proc/self/mountinfo paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			v := 0
			ok := true
			for _, c := range []byte(s[i+1 : i+4]) {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + int(c-'0')
			}
			if ok {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// userAllowOther reports whether the fuse.conf at path enables
// user_allow_other.
func userAllowOther(path string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(line) == "user_allow_other" {
			return true
		}
	}
	return false
}
