// Package iscsi is the iSCSI target driver (RFC 7143 over TCP): PDUs, login,
// sessions, connections and the socket engine that feeds SCSI commands to the
// target core.
//
// Each connection has one reader goroutine (conn.go: login, the CmdSN
// window, Data-Out reception straight into the command buffer, R2T issue,
// TMF and text handling) and one writer goroutine that owns StatSN and sends
// everything queued in as few writev calls as it can (Data-In split per
// MaxRecvDataSegmentLength and MaxBurstLength, responses, R2Ts, NOP-Ins).
// SCSI commands are pooled tasks embedding target.Command; the core calls
// Command.Done from its own goroutines, which only queues the task for the
// writer. ErrorRecoveryLevel is 0 and a session has one connection, so a
// connection failure ends its session. Files: server.go (listeners,
// registry, stats), login.go, conn.go (reader, writer, NOP-In pings,
// teardown), cmd.go (SCSI command and data phases), text.go (Text,
// SendTargets, task management, logout).
//
// API CONTRACT (used by cmd/scstd and controlfs; change only together).
package iscsi

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/scstd/scstd/iscsi/config"
	"github.com/scstd/scstd/iscsi/param"
	"github.com/scstd/scstd/target"
	"github.com/sirupsen/logrus"
)

// Options configures a Server.
type Options struct {
	Core   *target.Core
	Config *config.File
	Log    *logrus.Entry
	// InitiatorsAllow and InitiatorsDeny are the host ACL files (spec §2.5);
	// empty means no file.
	InitiatorsAllow, InitiatorsDeny string
	// Rand supplies CHAP challenges; nil means crypto/rand.
	Rand io.Reader
}

// Server serves iSCSI on listeners.
type Server struct {
	core  *target.Core
	cfg   *config.File
	log   *logrus.Entry
	allow string
	deny  string
	rnd   io.Reader

	// mu guards the registries below; it is taken on accept, login and
	// logout only, never on the data path.
	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	sessions  map[uint16]*session // by TSIH
	nextTSIH  uint16
	closing   bool
	connWG    sync.WaitGroup
	done      chan struct{}
	doneOnce  sync.Once
}

// NewServer returns a server; it does not listen yet.
func NewServer(o Options) *Server {
	log := o.Log
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = logrus.NewEntry(l)
	}
	cfg := o.Config
	if cfg == nil {
		cfg = &config.File{}
	}
	rnd := o.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	return &Server{
		core:      o.Core,
		cfg:       cfg,
		log:       log,
		allow:     o.InitiatorsAllow,
		deny:      o.InitiatorsDeny,
		rnd:       rnd,
		listeners: map[net.Listener]struct{}{},
		conns:     map[*conn]struct{}{},
		sessions:  map[uint16]*session{},
		done:      make(chan struct{}),
	}
}

// abortGrace is how long Shutdown waits for aborted sessions to close
// after its context expired.
const abortGrace = 5 * time.Second

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("iscsi: server closed")

// Serve accepts connections on l until ctx is cancelled or Shutdown is called.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	var delay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			select {
			case <-s.done:
				return ErrServerClosed
			default:
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Transient failures (EMFILE, ECONNABORTED...): back off and
			// keep serving, as a daemon must.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.WithError(err).Warn("accept failed")
			time.Sleep(delay)
			continue
		}
		delay = 0
		c := newConn(s, nc)
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			nc.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.connWG.Add(1)
		s.mu.Unlock()
		go c.serve()
	}
}

// Shutdown stops accepting, lets in-flight commands finish (or aborts them
// when ctx expires), sends the remaining responses, closes every session and
// returns.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	s.doneOnce.Do(func() { close(s.done) })
	for l := range s.listeners {
		l.Close()
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.beginShutdown(ctx)
	}
	finished := make(chan struct{})
	go func() {
		s.connWG.Wait()
		close(finished)
	}()
	select {
	case <-finished:
		return nil
	case <-ctx.Done():
		// Drains ran out of time: force every connection down and wait for
		// the teardown (which aborts what is left in the core).
		s.mu.Lock()
		for c := range s.conns {
			c.abort()
		}
		s.mu.Unlock()
		// A backend that never completes would keep the teardown (which
		// waits for the core) forever; do not hang the caller with it.
		select {
		case <-finished:
		case <-time.After(abortGrace):
			s.log.Warn("sessions still closing after shutdown timeout")
		}
		return ctx.Err()
	}
}

func (s *Server) removeConn(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.connWG.Done()
}

// ConnStat and SessionStat describe live state for iscsi/session (spec §1.18).
type ConnStat struct {
	CID          uint16
	RemoteIP     net.IP
	State        string // e.g. "established idle " as spec §1.18 renders it
	HeaderDigest string // none|crc32c
	DataDigest   string
}

// SessionStat is one iSCSI session.
type SessionStat struct {
	SID         uint64 // ISID<<16 | TSIH
	Initiator   string
	Reinstating bool
	Conns       []ConnStat
}

// TargetStat is one configured target with its sessions.
type TargetStat struct {
	TID      uint32
	Name     string
	Sessions []SessionStat
}

// Targets returns every configured target in tid order with its sessions.
func (s *Server) Targets() []TargetStat {
	out := make([]TargetStat, 0, len(s.cfg.Targets))
	idx := map[string]int{}
	for _, t := range s.cfg.Targets {
		idx[t.Name] = len(out)
		out = append(out, TargetStat{TID: t.TID, Name: t.Name})
	}
	s.mu.Lock()
	sess := make([]*session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		sess = append(sess, ss)
	}
	s.mu.Unlock()
	sort.Slice(sess, func(i, j int) bool { return sess[i].tsih < sess[j].tsih })
	for _, ss := range sess {
		i, ok := idx[ss.targetName]
		if !ok || ss.discovery {
			continue
		}
		out[i].Sessions = append(out[i].Sessions, ss.stat())
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].TID < out[j].TID })
	return out
}

// targetConfig returns the target's parameters (defaults for discovery).
func (s *Server) targetParams(t *config.Target) param.Config {
	if t == nil {
		return param.DefaultConfig()
	}
	return t.Params
}

// visible applies the host ACLs and the core's group resolution (spec §2.5).
func (s *Server) visible(initiator, target string, ip net.IP) bool {
	if !config.Allowed(s.allow, s.deny, target, ip) {
		return false
	}
	return s.core == nil || s.core.Visible(initiator, target)
}

// allocTSIH registers sess under a fresh non-zero TSIH. Caller holds s.mu.
func (s *Server) allocTSIHLocked(sess *session) bool {
	for range 1 << 16 {
		s.nextTSIH++
		if s.nextTSIH == 0 {
			continue
		}
		if _, used := s.sessions[s.nextTSIH]; !used {
			sess.tsih = s.nextTSIH
			s.sessions[sess.tsih] = sess
			return true
		}
	}
	return false
}

func (s *Server) removeSession(sess *session) {
	s.mu.Lock()
	if s.sessions[sess.tsih] == sess {
		delete(s.sessions, sess.tsih)
	}
	s.mu.Unlock()
}
