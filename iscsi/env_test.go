package iscsi

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scstd/scstd/iscsi/auth"
	"github.com/scstd/scstd/iscsi/config"
	"github.com/scstd/scstd/iscsi/iscsitest"
	"github.com/scstd/scstd/iscsi/param"
	"github.com/scstd/scstd/target"
	"github.com/scstd/scstd/target/scsi"
	"github.com/sirupsen/logrus"
)

const (
	testTarget = "iqn.2026-01.test:disk"
	blockSize  = 512
)

// ramDisk is an in-memory block device handler for the tests.
type ramDisk struct {
	mu    sync.Mutex
	data  []byte
	delay atomic.Int64 // nanoseconds each command takes (0: synchronous)
	// gate, when set, holds every command until it is closed.
	gate     atomic.Pointer[chan struct{}]
	execs    atomic.Int64
	releases []func() // guarded by mu
}

// hold makes every following command wait until release is called (or the
// test ends).
func (d *ramDisk) hold() (release func()) {
	ch := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(ch) }) }
	d.mu.Lock()
	d.releases = append(d.releases, release)
	d.mu.Unlock()
	d.gate.Store(&ch)
	return release
}

// releaseAll lets every held command run; a failed test must not leave the
// server's shutdown waiting for them.
func (d *ramDisk) releaseAll() {
	d.gate.Store(nil)
	d.mu.Lock()
	rels := d.releases
	d.releases = nil
	d.mu.Unlock()
	for _, r := range rels {
		r()
	}
}

func newRAMDisk(size int) *ramDisk { return &ramDisk{data: make([]byte, size)} }

func (d *ramDisk) HandlerName() string { return "vdisk_nullio" }
func (d *ramDisk) Type() byte          { return 0 }
func (d *ramDisk) Close() error        { return nil }

func (d *ramDisk) Exec(c *target.Command) {
	d.execs.Add(1)
	if g := d.gate.Load(); g != nil {
		go func() {
			<-*g
			d.run(c)
		}()
		return
	}
	if ns := d.delay.Load(); ns > 0 {
		time.AfterFunc(time.Duration(ns), func() { d.run(c) })
		return
	}
	d.run(c)
}

func (d *ramDisk) run(c *target.Command) {
	cdb := c.CDB
	var lba uint64
	var blocks uint32
	switch cdb[0] {
	case scsi.OpRead10, scsi.OpWrite10:
		lba = uint64(binary.BigEndian.Uint32(cdb[2:]))
		blocks = uint32(binary.BigEndian.Uint16(cdb[7:]))
	case scsi.OpRead16, scsi.OpWrite16:
		lba = binary.BigEndian.Uint64(cdb[2:])
		blocks = binary.BigEndian.Uint32(cdb[10:])
	case scsi.OpTestUnitReady:
		c.Complete()
		return
	case scsi.OpInquiry:
		alloc := uint32(binary.BigEndian.Uint16(cdb[3:]))
		b := c.AllocDataIn(36)
		b[2], b[3], b[4] = 5, 2, 31
		copy(b[8:], "SCSTD   RAMDISK")
		c.TransferLen = 36
		c.DataIn = b[:min(36, alloc)]
		c.Complete()
		return
	case scsi.OpReadCapacity10:
		b := c.AllocDataIn(8)
		binary.BigEndian.PutUint32(b, uint32(len(d.data)/blockSize-1))
		binary.BigEndian.PutUint32(b[4:], blockSize)
		c.TransferLen = 8
		c.Complete()
		return
	default:
		c.CheckCondition(scsi.Sense{Key: scsi.SenseIllegalRequest, ASC: scsi.ASCInvalidCommandOperationCode})
		c.Complete()
		return
	}
	n := blocks * blockSize
	c.TransferLen = n
	off := lba * blockSize
	if off+uint64(n) > uint64(len(d.data)) {
		c.CheckCondition(scsi.Sense{Key: scsi.SenseIllegalRequest, ASC: scsi.ASCLBAOutOfRange})
		c.Complete()
		return
	}
	d.mu.Lock()
	if cdb[0] == scsi.OpRead10 || cdb[0] == scsi.OpRead16 {
		b := c.AllocDataIn(int(n))
		copy(b, d.data[off:])
	} else {
		copy(d.data[off:off+uint64(min(n, uint32(len(c.DataOut))))], c.DataOut)
	}
	d.mu.Unlock()
	c.Complete()
}

func (d *ramDisk) bytes(off, n int) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]byte(nil), d.data[off:off+n]...)
}

// env is a server with one RAM disk target on 127.0.0.1.
type env struct {
	srv  *Server
	core *target.Core
	disk *ramDisk
	cfg  *config.File
	addr string
	log  *logrus.Logger
}

type envOpt func(*config.File, *Options)

func quietLog() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	if os.Getenv("ISCSI_TEST_LOG") != "" {
		l.SetOutput(os.Stderr)
		l.SetLevel(logrus.TraceLevel)
	}
	return l
}

func newEnv(t testing.TB, opts ...envOpt) *env {
	t.Helper()
	log := quietLog()
	core := target.NewCore(target.Options{Log: logrus.NewEntry(log), StateDir: t.TempDir()})
	disk := newRAMDisk(8 << 20)
	if err := core.AddDevice(&target.Device{Name: "disk0", Handler: disk}); err != nil {
		t.Fatal(err)
	}
	if err := core.AddLUN("Default", "disk0", 0, false); err != nil {
		t.Fatal(err)
	}
	cfg := &config.File{Targets: []*config.Target{{TID: 1, Name: testTarget, Params: param.DefaultConfig()}}}
	so := Options{Core: core, Config: cfg, Log: logrus.NewEntry(log)}
	for _, o := range opts {
		o(cfg, &so)
	}
	srv := NewServer(so)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(context.Background(), l)
	t.Cleanup(func() {
		disk.releaseAll()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return &env{srv: srv, core: core, disk: disk, cfg: cfg, addr: l.Addr().String(), log: log}
}

func withParams(f func(*param.Config)) envOpt {
	return func(c *config.File, _ *Options) { f(&c.Targets[0].Params) }
}

func withAccounts(a auth.Accounts) envOpt {
	return func(c *config.File, _ *Options) { c.Targets[0].Accounts = a }
}

// login dials and logs in to the test target.
func (e *env) login(t testing.TB, o iscsitest.Options) *iscsitest.Conn {
	t.Helper()
	c, err := iscsitest.Dial(e.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if o.TargetName == "" {
		o.TargetName = testTarget
	}
	if err := c.Login(o); err != nil {
		t.Fatalf("login: %v", err)
	}
	if o.TargetName == testTarget {
		// Consume the POWER ON/RESET unit attention of the new nexus.
		if _, err := c.Do(&iscsitest.Cmd{CDB: make([]byte, 6)}); err != nil {
			t.Fatalf("TEST UNIT READY: %v", err)
		}
	}
	return c
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i/blockSize) + seed + byte(i)
	}
	return b
}

type configFile = config.File

func newTarget(tid uint32, name string) *config.Target {
	return &config.Target{TID: tid, Name: name, Params: param.DefaultConfig()}
}

func authAccounts(user, secret, tuser, tsecret string) auth.Accounts {
	a := auth.Accounts{Incoming: []auth.Account{{User: user, Secret: secret}}}
	if tuser != "" {
		a.Outgoing = &auth.Account{User: tuser, Secret: tsecret}
	}
	return a
}
