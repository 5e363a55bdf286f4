// Package iscsi is the iSCSI target driver (RFC 7143 over TCP): PDUs, login,
// sessions, connections and the socket engine that feeds SCSI commands to the
// target core.
//
// API CONTRACT (used by cmd/scstd and controlfs; change only together).
package iscsi

import (
	"context"
	"net"

	"github.com/scstd/scstd/iscsi/config"
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
}

// Server serves iSCSI on listeners.
type Server struct{}

// NewServer returns a server; it does not listen yet.
func NewServer(o Options) *Server { panic("unimplemented") }

// Serve accepts connections on l until ctx is cancelled or Shutdown is called.
func (s *Server) Serve(ctx context.Context, l net.Listener) error { panic("unimplemented") }

// Shutdown stops accepting, lets in-flight commands finish (or aborts them
// when ctx expires), sends the remaining responses, closes every session and
// returns.
func (s *Server) Shutdown(ctx context.Context) error { panic("unimplemented") }

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
func (s *Server) Targets() []TargetStat { panic("unimplemented") }
