package reliability

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// faultDisk is the one file of a FUSE filesystem the test serves as a
// daemon's backing store. It models a disk with a volatile write cache:
// writes land in cache, and only fsync/fdatasync (FUSE_FSYNC, which the
// kernel also sends for O_DSYNC/RWF_DSYNC writes) copies them to stable.
// After the daemon is SIGKILLed, stable is what a power loss at that instant
// would have left, which a plain file cannot show (the page cache survives a
// process kill). Reads and writes can be made to fail with an errno on
// demand, for the EIO and ENOSPC fault tests.
type faultDisk struct {
	fs.Inode

	mu     sync.Mutex
	cache  []byte
	stable []byte
	dirty  map[int64]struct{} // dirty 4 KiB pages of cache

	readErr, writeErr atomic.Int32 // errno to fail with, 0 = work
	// directIO opens with FOPEN_DIRECT_IO: every read reaches the server
	// (no page cache to hide a failing read). Without it the kernel turns
	// O_DSYNC/RWF_DSYNC writes into FUSE_FSYNC, which the durability model
	// needs.
	directIO       bool
	fsyncs, writes atomic.Int64
	// hang, when set, holds every read and write until it is closed (or
	// the kernel interrupts the request): a backing store that stops.
	hang    atomic.Pointer[chan struct{}]
	waiting atomic.Int64 // requests held by hang
}

const faultPage = 4096

var (
	_ fs.NodeOpener    = (*faultDisk)(nil)
	_ fs.NodeReader    = (*faultDisk)(nil)
	_ fs.NodeWriter    = (*faultDisk)(nil)
	_ fs.NodeFsyncer   = (*faultDisk)(nil)
	_ fs.NodeGetattrer = (*faultDisk)(nil)
	_ fs.NodeSetattrer = (*faultDisk)(nil)
	_ fs.NodeFlusher   = (*faultDisk)(nil)
)

func (f *faultDisk) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if f.directIO {
		return nil, fuse.FOPEN_DIRECT_IO, 0
	}
	return nil, 0, 0
}

func (f *faultDisk) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f.mu.Lock()
	defer f.mu.Unlock()
	out.Mode = syscall.S_IFREG | 0o644
	out.Size = uint64(len(f.cache))
	out.Blksize = faultPage
	return 0
}

func (f *faultDisk) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if sz, ok := in.GetSize(); ok && sz != uint64(len(f.cache)) {
		return syscall.EPERM // the disk has a fixed size
	}
	return f.Getattr(ctx, fh, out)
}

// hold blocks while hang is set.
func (f *faultDisk) hold(ctx context.Context) syscall.Errno {
	ch := f.hang.Load()
	if ch == nil {
		return 0
	}
	f.waiting.Add(1)
	defer f.waiting.Add(-1)
	select {
	case <-*ch:
		return 0
	case <-ctx.Done():
		return syscall.EINTR
	}
}

// stall makes the disk hang until the returned function is called (once
// or more).
func (f *faultDisk) stall() (release func()) {
	ch := make(chan struct{})
	f.hang.Store(&ch)
	var once sync.Once
	return func() {
		once.Do(func() {
			f.hang.Store(nil)
			close(ch)
		})
	}
}

func (f *faultDisk) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if e := f.hold(ctx); e != 0 {
		return nil, e
	}
	if e := f.readErr.Load(); e != 0 {
		return nil, syscall.Errno(e)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if off >= int64(len(f.cache)) {
		return fuse.ReadResultData(nil), 0
	}
	n := copy(dest, f.cache[off:])
	return fuse.ReadResultData(dest[:n]), 0
}

func (f *faultDisk) Write(ctx context.Context, fh fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	if e := f.hold(ctx); e != 0 {
		return 0, e
	}
	if e := f.writeErr.Load(); e != 0 {
		return 0, syscall.Errno(e)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if off+int64(len(data)) > int64(len(f.cache)) {
		return 0, syscall.ENOSPC
	}
	copy(f.cache[off:], data)
	for p := off / faultPage; p*faultPage < off+int64(len(data)); p++ {
		f.dirty[p] = struct{}{}
	}
	f.writes.Add(1)
	return uint32(len(data)), 0
}

func (f *faultDisk) Fsync(ctx context.Context, fh fs.FileHandle, flags uint32) syscall.Errno {
	if e := f.writeErr.Load(); e != 0 {
		return syscall.Errno(e)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for p := range f.dirty {
		s, e := p*faultPage, min((p+1)*faultPage, int64(len(f.cache)))
		copy(f.stable[s:e], f.cache[s:e])
	}
	clear(f.dirty)
	f.fsyncs.Add(1)
	return 0
}

func (f *faultDisk) Flush(ctx context.Context, fh fs.FileHandle) syscall.Errno { return 0 }

// stableCopy returns what survives a power loss now.
func (f *faultDisk) stableCopy() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]byte(nil), f.stable...)
}

// cacheCopy returns what a reader sees now.
func (f *faultDisk) cacheCopy() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]byte(nil), f.cache...)
}

// faultRoot is the root directory holding the disk file.
type faultRoot struct {
	fs.Inode
	disk *faultDisk
}

func (r *faultRoot) OnAdd(ctx context.Context) {
	ch := r.NewPersistentInode(ctx, r.disk, fs.StableAttr{Mode: syscall.S_IFREG, Ino: 2})
	r.AddChild("disk.img", ch, false)
}

// mountFaultDisk serves a faultDisk of size bytes under a temporary
// directory and returns it with the path of its file. It is unmounted at
// the end of the test (after the daemons, which the test stops first).
func mountFaultDisk(t testing.TB, size int64, directIO bool) (*faultDisk, string) {
	t.Helper()
	requireRoot(t)
	dir := filepath.Join(t.TempDir(), "faultfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	disk := &faultDisk{cache: make([]byte, size), stable: make([]byte, size), dirty: map[int64]struct{}{}, directIO: directIO}
	timeout := time.Duration(0)
	srv, err := fs.Mount(dir, &faultRoot{disk: disk}, &fs.Options{
		EntryTimeout: &timeout, AttrTimeout: &timeout,
		MountOptions: fuse.MountOptions{FsName: "scstd-faultfs", Name: "faultfs", MaxWrite: 1 << 20,
			AllowOther: true, DisableXAttrs: true},
	})
	if err != nil {
		t.Fatalf("mount the fault-injecting FUSE filesystem: %v (needs /dev/fuse and fusermount3)", err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Logf("unmount %s: %v; detaching lazily", dir, err)
			_, _ = runTool(t, 10*time.Second, "umount", "-l", dir)
		}
	})
	return disk, filepath.Join(dir, "disk.img")
}
