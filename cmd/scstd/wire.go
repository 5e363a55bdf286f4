package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/scstd/scstd/controlfs"
	"github.com/scstd/scstd/target"
	"github.com/scstd/scstd/target/scstconf"
	"github.com/scstd/scstd/vdisk"
)

// mount is a mounted control tree.
type mount interface {
	Unmount() error
	// Done is closed once the filesystem is no longer served.
	Done() <-chan struct{}
}

// mountControl mounts the /proc/scsi_tgt tree at dir.
func mountControl(ctx context.Context, dir string, s *services, owner *credentials) (mount, error) {
	if err := createMountpoint(dir); err != nil {
		return nil, err
	}
	o := controlfs.Options{
		Core: s.Core, Vdisk: s.Vdisk, ISCSI: s.ISCSI, Tunables: s.Tunables,
		Log: s.Log.WithField("component", "controlfs"),
	}
	if owner != nil && owner.drop {
		// The nodes and the mount belong to the user the daemon becomes,
		// so that it can still unmount after the switch.
		o.Owner = &controlfs.Owner{UID: uint32(owner.uid), GID: uint32(owner.gid)}
	}
	srv, err := controlfs.Mount(ctx, dir, o)
	if err != nil {
		return nil, err
	}
	m := &controlMount{Server: srv, done: make(chan struct{})}
	go func() {
		srv.Wait()
		close(m.done)
	}()
	return m, nil
}

// controlMount adapts *controlfs.Server to mount.
type controlMount struct {
	*controlfs.Server
	done chan struct{}
}

func (m *controlMount) Done() <-chan struct{} { return m.done }

// createMountpoint creates a missing mountpoint, as the usermode shim did
// (mkdir -p); an existing one is left as it is.
func createMountpoint(dir string) error {
	if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create mountpoint: %w", err)
	}
	return nil
}

// applySCSTConfig applies a procfs-format scst.conf through the same core
// and vdisk methods the control tree uses.
func applySCSTConfig(ctx context.Context, path string, s *services) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	cfg, err := scstconf.Parse(f)
	if err != nil {
		return err
	}
	return scstconf.Apply(ctx, cfg, applier{s})
}

// applier adapts the core and the vdisk manager to scstconf.Applier.
type applier struct{ s *services }

func (a applier) OpenDisk(name, path string, blockSize uint32, f vdisk.Flags) error {
	return a.s.Vdisk.Open(name, path, blockSize, f)
}
func (a applier) SetT10ID(name, id string) error    { return a.s.Vdisk.SetT10ID(name, id) }
func (a applier) OpenCDROM(name, path string) error { return a.s.Vdisk.OpenCDROM(name, path) }
func (a applier) AddGroup(name string) error        { return a.s.Core.AddGroup(name, target.AddrPeripheral) }
func (a applier) AddName(group, name string) error  { return a.s.Core.AddName(group, name) }
func (a applier) AddLUN(group, dev string, lun uint64, ro bool) error {
	return a.s.Core.AddLUN(group, dev, lun, ro)
}
