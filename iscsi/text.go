package iscsi

import (
	"context"
	"net"
	"strconv"
	"time"

	"github.com/scstd/scstd/iscsi/param"
	"github.com/scstd/scstd/iscsi/pdu"
	"github.com/scstd/scstd/target"
)

// textState is a Text exchange in progress: a request split with the C bit
// or a response longer than the initiator's MaxRecvDataSegmentLength.
type textState struct {
	itt  uint32
	ttt  uint32
	req  []byte // accumulated request text
	resp []byte // response text not yet sent
}

// onText handles a Text Request (discovery SendTargets and full feature
// phase negotiation), with continuation both ways.
func (c *conn) onText(h *pdu.BHS, data []byte) error {
	ts := &c.text
	if h.TTT() != pdu.ReservedTag && h.ITT() == ts.itt && h.TTT() == ts.ttt && ts.resp != nil {
		// The initiator asks for the next part of a long response.
		c.sendTextPart(h)
		return nil
	}
	if h.ITT() != ts.itt {
		// A new exchange resets whatever was pending (RFC 7143 §11.10).
		*ts = textState{itt: h.ITT()}
	}
	if len(ts.req)+len(data) > maxLoginText {
		*ts = textState{}
		c.reject(h, rejectProtocol)
		return nil
	}
	ts.req = append(ts.req, data...)
	if h.Continue() {
		ts.ttt = c.newTTT()
		c.textResponse(h, ts.ttt, false, nil)
		return nil
	}
	kvs, err := param.ParseText(ts.req)
	ts.req = nil
	if err != nil {
		*ts = textState{}
		c.reject(h, rejectProtocol)
		return nil
	}
	var other []param.KV
	var out []byte
	for _, kv := range kvs {
		if kv.Key == "SendTargets" {
			out = c.sendTargets(out, kv.Value)
			continue
		}
		other = append(other, kv)
	}
	if len(other) > 0 {
		ans, err := c.sess.neg.Respond(other)
		if err != nil {
			*ts = textState{}
			c.reject(h, rejectProtocol)
			return nil
		}
		out = param.AppendText(out, ans)
		// A new MaxRecvDataSegmentLength declaration applies from now on.
		c.mxdsl.Store(c.sess.neg.Result().MaxXmitDataSegmentLength)
	}
	ts.resp = out
	c.sendTextPart(h)
	return nil
}

// sendTextPart sends the next piece of the pending response.
func (c *conn) sendTextPart(h *pdu.BHS) {
	ts := &c.text
	max := int(max(c.mxdsl.Load(), 512))
	if len(ts.resp) > max {
		part := ts.resp[:max:max]
		ts.resp = ts.resp[max:]
		ts.ttt = c.newTTT()
		c.textResponse(h, ts.ttt, false, part)
		return
	}
	part := ts.resp
	*ts = textState{}
	c.textResponse(h, pdu.ReservedTag, true, part)
}

func (c *conn) textResponse(req *pdu.BHS, ttt uint32, final bool, data []byte) {
	o := c.newOut()
	o.hdr.SetOpcode(pdu.OpTextResp, false)
	if final {
		o.hdr.SetFlags(pdu.FlagFinal)
	} else if len(data) > 0 {
		o.hdr.SetFlags(pdu.FlagContinue)
	}
	o.hdr.SetLUN(req.LUN())
	o.hdr.SetITT(req.ITT())
	o.hdr.SetTTT(ttt)
	o.data = data
	o.advance = true
	c.enqueueOut(o, true)
}

// sendTargets appends the SendTargets answer: in a discovery session every
// target this initiator may see ("All") or the named one; in a normal
// session only the session's target.
func (c *conn) sendTargets(dst []byte, value string) []byte {
	s := c.sess
	addr := portal(c.nc.LocalAddr())
	for _, t := range c.srv.cfg.Targets {
		switch {
		case !s.discovery:
			if t.Name != s.targetName || value != "" && value != t.Name && value != "All" {
				continue
			}
		case value == "All":
		case value != t.Name:
			continue
		}
		if !c.srv.visible(s.initiator, t.Name, c.rip) {
			continue
		}
		dst = param.AppendText(dst, []param.KV{
			{Key: "TargetName", Value: t.Name},
			{Key: "TargetAddress", Value: addr + "," + targetPortalGroupTag},
		})
	}
	return dst
}

// portal renders a listening address as TargetAddress wants it.
func portal(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	host := ta.IP.String()
	if ta.IP.To4() == nil {
		host = "[" + host + "]"
	}
	return host + ":" + strconv.Itoa(ta.Port)
}

// --- Task management ---

// TMF response codes that the core does not produce.
const (
	tmfReassignUnsupported = 4
)

// onTMF handles a Task Management Function Request. Commands the core has
// not seen yet are aborted here; the rest goes to the core on its own
// goroutine because the core waits for the affected commands.
func (c *conn) onTMF(h *pdu.BHS) {
	fn := target.TMF(h.Function())
	itt, lun, ref, refSN := h.ITT(), h.LUN(), h.RefTaskTag(), h.RefCmdSN()
	respond := func(r target.TMFResponse) {
		o := c.newOut()
		o.hdr.SetOpcode(pdu.OpTMFResp, false)
		o.hdr.SetFinal(true)
		o.hdr.SetResponse(byte(r))
		o.hdr.SetITT(itt)
		o.advance = true
		c.enqueueOut(o, false)
	}
	if c.sess.discovery {
		respond(target.TMFRejected)
		return
	}
	switch fn {
	case target.TMFAbortTask:
		t := c.lookupTask(ref)
		if t == nil {
			// RFC 7143 §11.5.1 b/c: a command inside the window that has
			// not arrived yet counts as received and aborted; anything
			// older is gone.
			exp := c.sess.expCmdSN.Load()
			if serialLE(exp, refSN) && serialLE(refSN, c.sess.maxCmdSN.Load()) {
				if _, held := c.held[refSN]; !held {
					c.held[refSN] = heldPDU{noop: true}
					respond(target.TMFComplete)
					if err := c.drainHeld(); err != nil {
						c.log.WithError(err).Info("after ABORT TASK")
						c.abort()
					}
					return
				}
			}
			respond(target.TMFNoTask)
			return
		}
		if t.state != stSubmitted && !t.local {
			c.abortLocal(t)
			respond(target.TMFComplete)
			return
		}
	case target.TMFAbortTaskSet, target.TMFClearTaskSet, target.TMFLUNReset:
		c.abortLocalWhere(func(t *task) bool { return t.lun == lun })
	case target.TMFTargetWarmReset:
		c.abortLocalWhere(func(*task) bool { return true })
	case target.TMFClearACA:
	case target.TMFTargetColdReset:
		c.abortLocalWhere(func(*task) bool { return true })
		core, srv, name := c.sess.core, c.srv, c.sess.targetName
		go func() {
			r := core.TaskMgmt(fn, lun, ref)
			respond(r)
			if r == target.TMFComplete {
				// RFC 7143 §11.5.1: after the response, the target closes
				// every connection of every session of the target node.
				srv.dropTargetSessions(name)
			}
		}()
		return
	case target.TMFTaskReassign:
		respond(tmfReassignUnsupported)
		return
	default:
		respond(target.TMFRejected)
		return
	}
	core := c.sess.core
	go func() {
		respond(core.TaskMgmt(fn, lun, ref))
	}()
}

// coldResetDrain bounds how long the sessions closed by a TARGET COLD RESET
// wait for commands still completing (the reset already aborted them).
const coldResetDrain = 5 * time.Second

// dropTargetSessions closes every session of the target node name, each
// once it has sent what is already queued (the TMF response among them).
func (s *Server) dropTargetSessions(name string) {
	s.mu.Lock()
	var conns []*conn
	for _, ss := range s.sessions {
		if !ss.discovery && ss.targetName == name && ss.conn != nil {
			conns = append(conns, ss.conn)
		}
	}
	s.mu.Unlock()
	// The drains run on the connections' goroutines; ctx outlives this call.
	ctx, cancel := context.WithTimeout(context.Background(), coldResetDrain)
	time.AfterFunc(coldResetDrain, cancel)
	for _, c := range conns {
		c.beginShutdown(ctx)
	}
	s.log.WithField("target", name).WithField("sessions", len(conns)).Info("target cold reset: closing sessions")
}

// abortLocal drops a command the core has not seen: no response is sent.
func (c *conn) abortLocal(t *task) {
	switch {
	case !t.inOrder:
		// Still parked for its CmdSN: leave a placeholder so the window
		// moves past it.
		c.held[t.cmdSN] = heldPDU{noop: true}
	case !t.immediate:
		for i, q := range c.submitQ {
			if q == t {
				c.submitQ = append(c.submitQ[:i], c.submitQ[i+1:]...)
				break
			}
		}
		c.sess.maxCmdSN.Add(1)
	}
	t.state = stAborted
	c.releaseTask(t)
	c.pump()
}

// abortLocalWhere aborts every not yet submitted command matching f.
func (c *conn) abortLocalWhere(f func(*task) bool) {
	var victims []*task
	c.tmu.Lock()
	for _, t := range c.tasks {
		if t.state != stSubmitted && t.state != stFailed && f(t) {
			victims = append(victims, t)
		}
	}
	c.tmu.Unlock()
	for _, t := range victims {
		c.abortLocal(t)
	}
}

// dropLocalTasks releases commands never submitted (connection teardown).
func (c *conn) dropLocalTasks() {
	var victims []*task
	c.tmu.Lock()
	for _, t := range c.tasks {
		// Submitted tasks belong to the core and queued local failures to
		// the writer; everything else is still the reader's.
		if t.state != stSubmitted && !t.local {
			victims = append(victims, t)
		}
	}
	c.tmu.Unlock()
	for _, t := range victims {
		t.state = stAborted
		c.releaseTask(t)
	}
	c.submitQ = nil
	clear(c.held)
}

// --- Logout ---

// onLogout answers a Logout Request once the session's commands finished;
// the connection then closes.
func (c *conn) onLogout(h *pdu.BHS) error {
	var resp byte
	switch h.ReasonCode() {
	case 0: // close the session
	case 1: // close the connection
		if h.CID() != c.cid {
			resp = 1 // CID not found
		}
	case 2: // remove the connection for recovery: needs ERL 2
		resp = 2
	default:
		c.reject(h, rejectInvalidField)
		return nil
	}
	if resp == 0 {
		ctx, cancel := contextWithTimeout(drainTimeout)
		c.waitInflight(ctx)
		cancel()
	}
	o := c.newOut()
	o.hdr.SetOpcode(pdu.OpLogoutResp, false)
	o.hdr.SetFinal(true)
	o.hdr.SetResponse(resp)
	o.hdr.SetITT(h.ITT())
	o.hdr.SetTime2Wait(uint16(c.sess.params.DefaultTime2Wait))
	o.hdr.SetTime2Retain(uint16(c.sess.params.DefaultTime2Retain))
	o.advance = true
	c.enqueueOut(o, false)
	if resp != 0 {
		return nil
	}
	return errLogout
}
