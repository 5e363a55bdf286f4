package iscsi

import (
	"net"
	"sync/atomic"

	"github.com/scstd/scstd/iscsi/config"
	"github.com/scstd/scstd/iscsi/param"
	"github.com/scstd/scstd/target"
)

// session is one iSCSI session. With MaxConnections=1 it has exactly one
// connection; the CmdSN window lives here because RFC 7143 defines it per
// session.
type session struct {
	srv        *Server
	tsih       uint16
	isid       uint64
	initiator  string // iSCSI InitiatorName
	targetName string
	tgt        *config.Target // nil for discovery sessions
	discovery  bool
	cfg        param.Config
	params     param.Session
	neg        *param.Negotiation
	core       *target.Session // nil for discovery sessions
	conn       *conn

	ended       chan struct{} // closed when the session is gone
	reinstating atomic.Bool
	// expCmdSN is advanced by the reader only; maxCmdSN grows by one each
	// time a CmdSN-consuming command completes, so the window never
	// shrinks and at most QueuedCommands commands are outstanding.
	expCmdSN atomic.Uint32
	maxCmdSN atomic.Uint32
}

// sid is the 64-bit session id shown in iscsi/session: ISID<<16 | TSIH.
func (s *session) sid() uint64 { return s.isid<<16 | uint64(s.tsih) }

func (s *session) stat() SessionStat {
	st := SessionStat{
		SID:         s.sid(),
		Initiator:   s.initiator,
		Reinstating: s.reinstating.Load(),
	}
	if c := s.conn; c != nil {
		st.Conns = append(st.Conns, c.stat(s))
	}
	return st
}

func digestName(on bool) string {
	if on {
		return "crc32c"
	}
	return "none"
}

// remoteIP extracts the peer address of a connection.
func remoteIP(a net.Addr) net.IP {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP
	}
	return nil
}

// serialLT compares sequence numbers with RFC 1982 arithmetic.
func serialLT(a, b uint32) bool { return a != b && int32(a-b) < 0 }

// serialLE is a <= b in serial arithmetic.
func serialLE(a, b uint32) bool { return a == b || int32(a-b) < 0 }
