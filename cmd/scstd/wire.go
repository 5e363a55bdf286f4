package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/scstd/scstd/controlfs"
)

// mount is a mounted control tree.
type mount interface {
	Unmount() error
	// Done is closed once the filesystem is no longer served.
	Done() <-chan struct{}
}

// mountControl mounts the /proc/scsi_tgt tree at dir.
func mountControl(ctx context.Context, dir string, s *services) (mount, error) {
	if err := createMountpoint(dir); err != nil {
		return nil, err
	}
	srv, err := controlfs.Mount(ctx, dir, controlfs.Options{
		Core: s.Core, Vdisk: s.Vdisk, ISCSI: s.ISCSI, Tunables: s.Tunables,
		Log: s.Log.WithField("component", "controlfs"),
	})
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
	return errors.New("scst.conf loader not built in yet")
}
