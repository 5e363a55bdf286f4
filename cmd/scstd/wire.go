package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	_ "github.com/hanwen/go-fuse/v2/fs" // kept until controlfs is wired
	"golang.org/x/sys/unix"
)

// mountControl mounts the /proc/scsi_tgt tree at dir and returns its
// unmount function.
func mountControl(ctx context.Context, dir string, s *services) (func() error, error) {
	if err := prepareMountpoint(dir); err != nil {
		return nil, err
	}
	return nil, errors.New("control filesystem not built in yet")
}

// prepareMountpoint creates dir if needed and clears a mount left behind by
// a daemon that was killed (its FUSE connection is gone: ENOTCONN).
func prepareMountpoint(dir string) error {
	_, err := os.Stat(dir)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.ENOTCONN):
		if uerr := unix.Unmount(dir, unix.MNT_DETACH); uerr != nil {
			return fmt.Errorf("stale mount at %s (%v), and unmounting it failed: %w; run: fusermount3 -u %s", dir, err, uerr, dir)
		}
		return nil
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create mountpoint: %w", err)
		}
		return nil
	default:
		return err
	}
}

// applySCSTConfig applies a procfs-format scst.conf through the same core
// and vdisk methods the control tree uses.
func applySCSTConfig(ctx context.Context, path string, s *services) error {
	return errors.New("scst.conf loader not built in yet")
}
