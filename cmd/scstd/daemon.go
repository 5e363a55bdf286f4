package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/scstd/scstd/iscsi"
	"github.com/scstd/scstd/iscsi/config"
	"github.com/scstd/scstd/target"
	"github.com/scstd/scstd/vdisk"
	"github.com/sirupsen/logrus"
)

// services are the long-lived objects of one daemon; the control filesystem
// and the scst.conf loader operate on them.
type services struct {
	Core     *target.Core
	Tunables *target.Tunables
	Vdisk    *vdisk.Manager
	ISCSI    *iscsi.Server
	Log      *logrus.Entry
}

// notifier reports the outcome of startup to whoever waits for it (the
// parent of a backgrounded daemon); both methods may be no-ops.
type notifier interface {
	Ready(addr string)
	Failed(err error)
}

// serve runs the daemon until ctx is cancelled or SIGINT/SIGTERM arrives.
// It returns nil after a clean shutdown.
func serve(ctx context.Context, o *options, log *logrus.Entry, n notifier) (err error) {
	defer func() {
		if err != nil {
			n.Failed(err)
		}
	}()
	// Catch SIGINT/SIGTERM from the start, so that a signal during startup
	// also unwinds (unmount, close devices) instead of killing the process.
	sigCtx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	grace, err := time.ParseDuration(o.ShutdownGrace)
	if err != nil || grace < 0 {
		return fmt.Errorf("--shutdown-timeout %q: not a duration", o.ShutdownGrace)
	}
	cred, err := resolveCredentials(o.User, o.Group)
	if err != nil {
		return err
	}
	if o.Demo != "" {
		d, err := writeDemo(o.Demo, cred)
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		o.Config, o.ConfigExplicit, o.SCSTConfig = d.ISCSIConfig, true, d.SCSTConfig
		log.WithField("dir", d.Dir).Info("demo files ready")
	}

	cfg, err := loadISCSIConfig(o.Config, o.ConfigExplicit, log)
	if err != nil {
		return err
	}
	prepareStateDir(o.StateDir, cred, log)

	core := target.NewCore(target.Options{Log: log.WithField("component", "core"), StateDir: o.StateDir})
	// The module parameters shown in the control tree; scst_vdisk_ID is
	// read once, at start, as in the original.
	tun := target.NewTunables()
	// Disconnected after closeDevices below has closed the RBD images.
	stores, closeCeph, err := openCeph(o.Ceph, log.WithField("component", "rbd"))
	if err != nil {
		return err
	}
	// devicesStuck: some device did not close in time (see closeDevices);
	// its backing store may still be in use, so the cluster connection stays.
	devicesStuck := false
	defer func() {
		if !devicesStuck {
			closeCeph()
		}
	}()
	vm := vdisk.NewManager(core, vdisk.ManagerOptions{
		Log: log.WithField("component", "vdisk"), StateDir: o.StateDir,
		VdiskID: uint32(tun.Param(target.ParamVdiskID)), Stores: stores, Ports: o.ALUA.identity(),
	})
	srv := iscsi.NewServer(iscsi.Options{
		Core: core, Config: cfg, Log: log.WithField("component", "iscsi"),
		InitiatorsAllow: o.Allow, InitiatorsDeny: o.Deny,
	})
	svc := &services{Core: core, Tunables: tun, Vdisk: vm, ISCSI: srv, Log: log}
	// Devices are flushed and closed on every exit path, including failed
	// starts, so that no write-back data is left behind; a device whose
	// backing store hangs is given up after the shutdown timeout.
	defer func() {
		if cerr := closeDevices(svc, grace); cerr != nil {
			devicesStuck = true
			if err == nil {
				err = cerr
			}
		}
	}()

	if o.SCSTConfig != "" {
		if err := applySCSTConfig(sigCtx, o.SCSTConfig, svc); err != nil {
			return fmt.Errorf("scst config %s: %w", o.SCSTConfig, err)
		}
	}

	l, err := net.Listen("tcp", o.listenAddr())
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer l.Close()

	if o.Mount != "" {
		m, err := mountControl(ctx, o.Mount, svc, cred)
		if err != nil {
			return fmt.Errorf("mount control tree at %s: %w (run scripts/setup-host.sh as root once, or use --no-mount)", o.Mount, err)
		}
		var helper *unmountHelper
		if cred.drop {
			if helper, err = startUnmountHelper(o.Mount); err != nil {
				_ = m.Unmount()
				return err
			}
		}
		defer func() {
			uerr := m.Unmount()
			if helper != nil {
				// Without root the unmount above may only have failed or
				// detached lazily; the root helper detaches the mount once
				// its pipe closes. Wait for it so that the directory is
				// free when this process exits.
				helper.finish(5 * time.Second)
				select {
				case <-m.Done():
					uerr = nil
				case <-time.After(5 * time.Second):
				}
			}
			if uerr != nil {
				log.WithError(uerr).WithField("dir", o.Mount).Warn("unmount failed; clear it with: fusermount3 -u " + o.Mount)
			}
		}()
	}

	if err := dropPrivileges(cred, log); err != nil {
		return err
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(sigCtx, l) }()

	if sigCtx.Err() != nil {
		// A signal arrived during startup: Serve has returned at once.
		<-serveErr
		log.Info("stopped during startup")
		return nil
	}
	addr := l.Addr().String()
	log.WithFields(logrus.Fields{"addr": addr, "version": Version}).Info("listening")
	n.Ready(addr)

	var runErr error
	select {
	case <-sigCtx.Done():
		log.Info("shutting down")
	case runErr = <-serveErr:
		if runErr != nil {
			log.WithError(runErr).Error("iSCSI server stopped")
		}
	}
	// A second SIGINT/SIGTERM now kills the process the default way.
	stop()

	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	// Shutdown aborts what is left when sctx expires; should it still not
	// return (a command stuck in a hung backing store), go on regardless.
	shutErr := make(chan error, 1)
	go func() { shutErr <- srv.Shutdown(sctx) }()
	select {
	case err := <-shutErr:
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			log.WithError(err).Warn("iSCSI shutdown")
		}
	case <-time.After(grace + time.Second):
		log.Warn("iSCSI shutdown still busy after the shutdown timeout; closing devices anyway")
	}
	if runErr != nil {
		return fmt.Errorf("serve: %w", runErr)
	}
	// "stopped" is logged by the caller, after the deferred unmount and
	// device flushes have run.
	return nil
}

// loadISCSIConfig reads iscsi-scstd.conf. A missing file is an error only
// when it was named with -c; the default path may be absent.
func loadISCSIConfig(path string, explicit bool, log *logrus.Entry) (*config.File, error) {
	if _, err := os.Stat(path); err != nil {
		if explicit || !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("config: %w", err)
		}
		log.WithField("file", path).Debug("no config file; no targets defined")
		return &config.File{}, nil
	}
	cfg, lineErrs, err := config.Load(path, explicit)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	for _, e := range lineErrs {
		// iscsi-scstd logs bad lines and carries on; so do we.
		log.WithField("file", path).Warn(e)
	}
	return cfg, nil
}

// closeDevices flushes and closes every virtual device. vdisk's Close
// writes back what the page cache holds before the file is closed, and
// waits for the commands still inside the device. A backing store that
// hangs (dead NFS server, failing disk) would make that wait endless, so
// closeDevices gives up after timeout and reports the devices left open;
// the process can exit all the same.
func closeDevices(s *services, timeout time.Duration) error {
	type dev struct {
		name  string
		cdrom bool
	}
	var devs []dev
	for _, d := range s.Vdisk.Disks() {
		devs = append(devs, dev{name: d.Name})
	}
	for _, d := range s.Vdisk.CDROMs() {
		devs = append(devs, dev{name: d.Name, cdrom: true})
	}
	if len(devs) == 0 {
		return nil
	}
	var closed atomic.Int32 // devices done, in order
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, d := range devs {
			var err error
			if d.cdrom {
				err = s.Vdisk.CloseCDROM(d.name)
			} else {
				err = s.Vdisk.Close(d.name)
			}
			if err != nil {
				s.Log.WithError(err).WithField("device", d.name).Error("close device")
			}
			closed.Add(1)
		}
	}()
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
	}
	var open []string
	for _, d := range devs[closed.Load():] {
		open = append(open, d.name)
	}
	s.Log.WithField("devices", strings.Join(open, ",")).Error("devices still busy after the shutdown timeout; exiting without closing them")
	return fmt.Errorf("devices still busy after %v: %s", timeout, strings.Join(open, " "))
}

// prepareStateDir creates the persistent-state directories the core and
// vdisk use (spec §3.5). Failure is not fatal: only persistence suffers, and
// the daemon says so.
func prepareStateDir(dir string, cred *credentials, log *logrus.Entry) {
	_, dirErr := os.Stat(dir)
	created := []string{}
	if os.IsNotExist(dirErr) {
		created = append(created, dir)
	}
	for _, sub := range []string{"pr", "vdev_mode_pages"} {
		p := filepath.Join(dir, sub)
		_, statErr := os.Stat(p)
		if err := os.MkdirAll(p, 0o750); err != nil {
			log.WithError(err).WithField("dir", p).Warn("state directory unavailable; saved mode pages and reservations will not persist (run scripts/setup-host.sh as root once)")
			continue
		}
		if os.IsNotExist(statErr) {
			created = append(created, p)
		}
	}
	if !cred.drop {
		return
	}
	// Directories we created ourselves go to the user we will run as;
	// existing ones are left alone.
	for _, q := range created {
		if err := os.Chown(q, cred.uid, cred.gid); err != nil {
			log.WithError(err).WithField("dir", q).Warn("chown state directory")
		}
	}
}
