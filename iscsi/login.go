package iscsi

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/scstd/scstd/iscsi/auth"
	"github.com/scstd/scstd/iscsi/config"
	"github.com/scstd/scstd/iscsi/param"
	"github.com/scstd/scstd/iscsi/pdu"
	"github.com/scstd/scstd/target"
	"github.com/sirupsen/logrus"
)

// Login status codes (class<<8 | detail, RFC 7143 §11.13.5).
const (
	statusInitiatorError   uint16 = 0x0200
	statusAuthFailure      uint16 = 0x0201
	statusNotFound         uint16 = 0x0203
	statusUnsupportedVer   uint16 = 0x0205
	statusTooManyConns     uint16 = 0x0206
	statusMissingParam     uint16 = 0x0207
	statusSessionType      uint16 = 0x0209
	statusNoSession        uint16 = 0x020a
	statusInvalidDuringLog uint16 = 0x020b
	statusTargetError      uint16 = 0x0300
	statusServiceUnavail   uint16 = 0x0301
	statusOutOfResources   uint16 = 0x0302
	maxLoginText                  = 64 << 10
	targetPortalGroupTag          = "1"
	reinstateTimeout              = 30 * time.Second
)

// loginError is a login failure answered with a status.
type loginError struct {
	status uint16
	err    error
}

func (e *loginError) Error() string {
	return fmt.Sprintf("login status %#04x: %v", e.status, e.err)
}

func (e *loginError) Unwrap() error { return e.err }

func fail(status uint16, format string, a ...any) error {
	return &loginError{status: status, err: fmt.Errorf(format, a...)}
}

// loginState is the state of one connection's login phase.
type loginState struct {
	isid      uint64
	tsih      uint16
	cid       uint16
	itt       uint32
	cmdSN     uint32
	queued    uint32
	stage     int // highest CSG seen
	text      []byte
	first     bool
	sentFirst bool
	initiator string
	discovery bool
	tgt       *config.Target
	cfg       param.Config
	sec       *auth.Security
	neg       *param.Negotiation
	authDone  bool
}

// login runs the login phase and returns the established session. Every
// failure is answered with a Login Response carrying the status before the
// error is returned.
func (c *conn) login() (*session, error) {
	ls := &loginState{first: true, stage: -1}
	var h pdu.Header
	for {
		if err := c.rd.ReadHeader(&h); err != nil {
			return nil, err
		}
		if h.Opcode() != pdu.OpLoginReq {
			c.loginFail(&h.BHS, ls, statusInvalidDuringLog)
			return nil, fmt.Errorf("%v during login", h.Opcode())
		}
		sess, done, err := c.loginStep(&h, ls)
		if err != nil {
			var le *loginError
			if errors.As(err, &le) {
				c.loginFail(&h.BHS, ls, le.status)
			}
			return nil, err
		}
		if done {
			return sess, nil
		}
	}
}

func (c *conn) loginStep(h *pdu.Header, ls *loginState) (*session, bool, error) {
	n := h.DataSegmentLength()
	if len(ls.text)+int(n) > maxLoginText {
		return nil, false, fail(statusInitiatorError, "login text exceeds %d bytes", maxLoginText)
	}
	start := len(ls.text)
	ls.text = append(ls.text, make([]byte, n)...)
	if err := c.rd.ReadData(ls.text[start:]); err != nil {
		return nil, false, err
	}
	if ls.first {
		ls.first = false
		ls.isid, ls.tsih, ls.cid, ls.itt = h.ISID(), h.TSIH(), h.CID(), h.ITT()
		ls.cmdSN = h.CmdSN()
		c.statSN = h.ExpStatSN()
		c.cid = ls.cid
		ls.queued = param.DefaultConfig().QueuedCommands
		if h.VersionMin() > 0 {
			return nil, false, fail(statusUnsupportedVer, "version-min %d", h.VersionMin())
		}
	} else if h.ISID() != ls.isid || h.TSIH() != ls.tsih || h.CID() != ls.cid {
		return nil, false, fail(statusInitiatorError, "ISID/TSIH/CID changed during login")
	}
	ls.itt = h.ITT()
	csg, nsg, transit := int(h.CSG()), int(h.NSG()), h.Transit()
	if h.Continue() {
		if transit {
			return nil, false, fail(statusInitiatorError, "T and C both set")
		}
		// More text follows: acknowledge with an empty response.
		return nil, false, c.loginRespond(ls, csg, csg, false, nil)
	}
	kvs, err := param.ParseText(ls.text)
	ls.text = ls.text[:0]
	if err != nil {
		return nil, false, fail(statusInitiatorError, "login text: %w", err)
	}
	if ls.sec == nil {
		if err := c.loginFirst(ls, kvs); err != nil {
			return nil, false, err
		}
	}
	if csg < ls.stage || csg == 2 || csg == pdu.StageFullFeature {
		return nil, false, fail(statusInitiatorError, "bad login stage %d", csg)
	}
	ls.stage = csg
	var secKeys, opKeys []param.KV
	for _, kv := range kvs {
		if param.IsSecurityKey(kv.Key) {
			secKeys = append(secKeys, kv)
		} else {
			opKeys = append(opKeys, kv)
		}
	}
	var out []param.KV
	switch csg {
	case pdu.StageSecurity:
		o, done, err := ls.sec.Step(secKeys)
		if err != nil {
			return nil, false, fail(authStatus(err), "authentication: %w", err)
		}
		ls.authDone = done
		out = append(out, o...)
	case pdu.StageOperational:
		if len(secKeys) > 0 {
			return nil, false, fail(statusInitiatorError, "security key %s in operational stage", secKeys[0].Key)
		}
		if !ls.authDone {
			// Login started in the operational stage: AuthMethod None,
			// acceptable only without CHAP accounts.
			_, done, err := ls.sec.Step(nil)
			if err != nil || !done {
				return nil, false, fail(statusAuthFailure, "operational stage without authentication: %v", err)
			}
			ls.authDone = true
		}
	}
	o, err := ls.neg.Respond(opKeys)
	if err != nil {
		return nil, false, fail(negotiationStatus(err), "negotiation: %w", err)
	}
	out = append(out, o...)
	if !ls.sentFirst && !ls.discovery {
		out = append(out, param.KV{Key: "TargetPortalGroupTag", Value: targetPortalGroupTag})
		if ls.tgt.Alias != "" {
			out = append(out, param.KV{Key: "TargetAlias", Value: ls.tgt.Alias})
		}
	}
	ls.sentFirst = true
	if !transit || csg == pdu.StageSecurity && !ls.authDone {
		return nil, false, c.loginRespond(ls, csg, csg, false, out)
	}
	if nsg <= csg || nsg == 2 {
		return nil, false, fail(statusInitiatorError, "bad transition %d->%d", csg, nsg)
	}
	if nsg != pdu.StageFullFeature {
		return nil, false, c.loginRespond(ls, csg, nsg, true, out)
	}
	out = append(out, ls.neg.Pending()...)
	sess, err := c.establish(ls)
	if err != nil {
		return nil, false, err
	}
	ls.tsih = sess.tsih
	if err := c.loginRespond(ls, csg, nsg, true, out); err != nil {
		c.srv.removeSession(sess)
		if sess.core != nil {
			sess.core.Close()
		}
		return nil, false, err
	}
	c.enterFullFeature(sess)
	return sess, true, nil
}

func authStatus(err error) uint16 {
	if errors.Is(err, auth.ErrProtocol) {
		return statusInitiatorError
	}
	return statusAuthFailure
}

func negotiationStatus(err error) uint16 {
	switch {
	case errors.Is(err, param.ErrMissing):
		return statusMissingParam
	case errors.Is(err, param.ErrSessionType):
		return statusSessionType
	}
	return statusInitiatorError
}

// loginFirst handles the keys of the first complete login request: who the
// initiator is, which target it wants, and whether it may see it.
func (c *conn) loginFirst(ls *loginState, kvs []param.KV) error {
	srv := c.srv
	name, ok := param.Lookup(kvs, "InitiatorName")
	if !ok || name == "" {
		return fail(statusMissingParam, "no InitiatorName")
	}
	ls.initiator = name
	st, _ := param.Lookup(kvs, "SessionType")
	switch st {
	case "", "Normal":
	case "Discovery":
		ls.discovery = true
	default:
		return fail(statusSessionType, "SessionType %q", st)
	}
	acc := srv.cfg.Discovery
	if !ls.discovery {
		tn, ok := param.Lookup(kvs, "TargetName")
		if !ok || tn == "" {
			return fail(statusMissingParam, "no TargetName")
		}
		ls.tgt = srv.cfg.Target(tn)
		if ls.tgt == nil {
			return fail(statusNotFound, "unknown target %q", tn)
		}
		if !srv.visible(name, tn, c.rip) {
			return fail(statusNotFound, "initiator %s not allowed to connect to target %s", name, tn)
		}
		acc = ls.tgt.Accounts
		if ls.tsih != 0 {
			return c.checkTSIH(ls)
		}
	} else if ls.tsih != 0 {
		return fail(statusNoSession, "discovery login with TSIH %d", ls.tsih)
	}
	ls.cfg = srv.targetParams(ls.tgt)
	if ls.cfg.QueuedCommands > 0 {
		ls.queued = ls.cfg.QueuedCommands
	}
	ls.sec = auth.New(acc, srv.rnd)
	ls.neg = param.NewNegotiation(ls.cfg)
	return nil
}

// checkTSIH answers a login that names an existing session (adding or
// reinstating a connection): with MaxConnections=1 and ERL 0 neither is
// possible.
func (c *conn) checkTSIH(ls *loginState) error {
	c.srv.mu.Lock()
	s := c.srv.sessions[ls.tsih]
	c.srv.mu.Unlock()
	if s == nil || s.isid != ls.isid || s.initiator != ls.initiator {
		return fail(statusNoSession, "no session with TSIH %d", ls.tsih)
	}
	if s.conn != nil && s.conn.cid == ls.cid {
		// Connection reinstatement at ERL 0 ends the session.
		s.conn.abort()
		return fail(statusNoSession, "connection reinstatement of TSIH %d at ERL 0", ls.tsih)
	}
	return fail(statusTooManyConns, "session TSIH %d already has its connection", ls.tsih)
}

// establish creates the session at the transition to full feature phase,
// reinstating an older session with the same ISID and initiator.
func (c *conn) establish(ls *loginState) (*session, error) {
	srv := c.srv
	res := ls.neg.Result()
	sess := &session{
		srv:       srv,
		isid:      ls.isid,
		initiator: ls.initiator,
		tgt:       ls.tgt,
		discovery: ls.discovery,
		cfg:       ls.cfg,
		params:    res,
		neg:       ls.neg,
		conn:      c,
		ended:     make(chan struct{}),
	}
	if ls.tgt != nil {
		sess.targetName = ls.tgt.Name
	}
	sess.expCmdSN.Store(ls.cmdSN)
	sess.maxCmdSN.Store(ls.cmdSN + ls.queued - 1)
	if !ls.discovery {
		var old []*session
		count := 0
		srv.mu.Lock()
		for _, s := range srv.sessions {
			if s.discovery || s.targetName != sess.targetName {
				continue
			}
			if s.isid == ls.isid && s.initiator == ls.initiator {
				old = append(old, s)
				continue
			}
			count++
		}
		srv.mu.Unlock()
		if m := ls.cfg.MaxSessions; m > 0 && uint32(count) >= m {
			return nil, fail(statusOutOfResources, "target %s has %d sessions (MaxSessions %d)", sess.targetName, count, m)
		}
		for _, s := range old {
			c.log.WithField("tsih", s.tsih).Info("reinstating session")
			s.reinstating.Store(true)
			s.conn.abort()
			select {
			case <-s.ended:
			case <-time.After(reinstateTimeout):
				return nil, fail(statusServiceUnavail, "old session %d did not end", s.tsih)
			}
		}
		coreName := ls.initiator
		if u := ls.sec.User(); u != "" {
			coreName = u + "@" + ls.initiator
		}
		if srv.core == nil {
			return nil, fail(statusTargetError, "no SCSI core")
		}
		cs, err := srv.core.NewSession(target.SessionInfo{Initiator: coreName, Target: sess.targetName, Transport: "iscsi", ISID: ls.isid})
		if err != nil {
			return nil, fail(statusOutOfResources, "core session: %w", err)
		}
		sess.core = cs
	}
	srv.mu.Lock()
	ok := !srv.closing && srv.allocTSIHLocked(sess)
	srv.mu.Unlock()
	if !ok {
		if sess.core != nil {
			sess.core.Close()
		}
		return nil, fail(statusServiceUnavail, "no session slot")
	}
	return sess, nil
}

// enterFullFeature applies the negotiated parameters to the connection.
func (c *conn) enterFullFeature(s *session) {
	c.sess = s
	p := &s.params
	c.rd.SetDigests(p.HeaderDigest, p.DataDigest)
	c.enc.SetDigests(p.HeaderDigest, p.DataDigest)
	c.rd.MaxData = max(p.MaxRecvDataSegmentLength, 512)
	c.mxdsl.Store(p.MaxXmitDataSegmentLength)
	s.neg.FullFeature()
	if s.cfg.RspTimeout > 0 {
		c.rspTO = time.Duration(s.cfg.RspTimeout) * time.Second
	}
	if s.cfg.NopInInterval > 0 {
		c.nopInterval = time.Duration(s.cfg.NopInInterval) * time.Second
		c.nopTimeout = time.Duration(max(s.cfg.NopInTimeout, 1)) * time.Second
	}
}

// loginRespond sends a Login Response (status success).
func (c *conn) loginRespond(ls *loginState, csg, nsg int, transit bool, kvs []param.KV) error {
	var h pdu.BHS
	h.SetOpcode(pdu.OpLoginResp, false)
	h.SetLoginFlags(transit, false, uint8(csg), uint8(nsg))
	h.SetVersions(0, 0)
	h.SetISID(ls.isid)
	h.SetTSIH(ls.tsih)
	h.SetITT(ls.itt)
	h.SetStatSN(c.statSN)
	c.statSN++
	h.SetExpCmdSN(ls.cmdSN)
	h.SetMaxCmdSN(ls.cmdSN + ls.queued - 1)
	var data []byte
	if len(kvs) > 0 {
		data = param.AppendText(nil, kvs)
	}
	if c.log.Logger.IsLevelEnabled(logrus.DebugLevel) {
		c.log.WithField("keys", strings.ReplaceAll(string(data), "\x00", " ")).Debug("login response")
	}
	return c.enc.WritePDU(c.nc, &h, data)
}

// loginFail answers a failed login request.
func (c *conn) loginFail(req *pdu.BHS, ls *loginState, status uint16) {
	var h pdu.BHS
	h.SetOpcode(pdu.OpLoginResp, false)
	h.SetVersions(0, 0)
	h.SetISID(req.ISID())
	h.SetTSIH(req.TSIH())
	h.SetITT(req.ITT())
	h.SetStatSN(c.statSN)
	h.SetExpCmdSN(ls.cmdSN)
	h.SetMaxCmdSN(ls.cmdSN + ls.queued - 1)
	h.SetLoginStatus(status)
	c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.enc.WritePDU(c.nc, &h, nil)
}
