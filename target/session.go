package target

import (
	"sort"
	"sync/atomic"

	"github.com/scstd/scstd/target/scsi"
	"github.com/sirupsen/logrus"
)

// SessionInfo identifies an I_T nexus to the core.
type SessionInfo struct {
	// Initiator is the name used for group matching: the iSCSI InitiatorName,
	// or chapuser@InitiatorName after CHAP with an IncomingUser account.
	Initiator string
	// Target is the target name (IQN); used for Default_<target> groups.
	Target string
	// Transport is the SCST target template name ("iscsi").
	Transport string
	// ISID is the iSCSI initiator session identifier (48 bits), which with
	// the initiator name identifies the initiator port for persistent
	// reservations. 0 if unknown: sessions of one initiator name then
	// share their registrations.
	ISID uint64
}

// SessionStat is a snapshot of one session for rendering (spec §1.4).
type SessionStat struct {
	Info       SessionInfo
	Group      string
	ActiveCmds int
	AllCmds    int
}

// Session is one I_T nexus.
type Session struct {
	core *Core
	id   uint64 // for log lines
	info SessionInfo
	log  *logrus.Entry

	// view is what the data path reads: the resolved group and the I_T_L
	// nexuses of the LUNs it maps. It is replaced (never modified) under
	// core.mu whenever the configuration changes.
	view atomic.Pointer[sessView]
	// inflight counts commands between Submit and Done.
	inflight atomic.Int64
	closed   bool // under core.mu
}

type sessView struct {
	group *group
	luns  map[uint64]*nexus
	order []*nexus // ascending LUN, for REPORT LUNS and iteration
}

// replaced names the LUN a ReplaceLUN remapped, for INQUIRY DATA HAS CHANGED.
type replaced struct {
	group *group
	lun   uint64
}

// NewSession registers an I_T nexus; it gets POWER ON/RESET unit attentions.
func (c *Core) NewSession(info SessionInfo) (*Session, error) {
	s := &Session{
		core: c,
		info: info,
		id:   c.nextSID.Add(1),
	}
	s.log = c.log.WithFields(logrus.Fields{"initiator": info.Initiator, "session": s.id, "target": info.Target})
	c.ports.id(info.Target) // number the target port before READ FULL STATUS needs it
	c.mu.Lock()
	defer c.mu.Unlock()
	s.view.Store(&sessView{luns: map[uint64]*nexus{}})
	c.sess = append(c.sess, s)
	c.resolveLocked(s, c.cfg.Load(), nil)
	s.log.WithField("group", s.view.Load().group.name).Debug("session registered")
	return s, nil
}

// Info returns the identity the session was registered with.
func (s *Session) Info() SessionInfo { return s.info }

// Group returns the name of the group the session currently resolves to.
func (s *Session) Group() string { return s.view.Load().group.name }

// commitLocked publishes a new configuration and re-resolves every session.
func (c *Core) commitLocked(ncf *config, rep *replaced) {
	c.cfg.Store(ncf)
	for _, s := range c.sess {
		c.resolveLocked(s, ncf, rep)
	}
}

// resolveLocked recomputes the session's group and LUN set. Nexuses of LUNs
// that stay mapped to the same device are kept (with their queues and unit
// attentions); new LUNs get fresh nexuses with POWER ON/RESET; LUNs that
// disappear are retired. If the set of visible LUNs changed, every remaining
// LUN gets REPORTED LUNS DATA HAS CHANGED.
func (c *Core) resolveLocked(s *Session, cf *config, rep *replaced) {
	old := s.view.Load()
	g := cf.resolve(s.info.Initiator, s.info.Target)
	fresh := old.group == nil
	nv := &sessView{group: g, luns: make(map[uint64]*nexus, len(g.luns))}
	changed := false
	for _, m := range g.luns {
		on := old.luns[m.lun]
		if on != nil && on.dev == m.dev {
			on.readOnly.Store(m.readOnly)
			nv.luns[m.lun] = on
			if rep != nil && rep.group == g && rep.lun == m.lun {
				on.queueUA(scsi.ASCInquiryDataHasChanged)
			}
			continue
		}
		nx := newNexus(s, m)
		nx.queueUA(scsi.ASCPowerOnResetOccurred)
		if on != nil {
			// Same LUN, another device: the initiator sees changed INQUIRY data.
			nx.queueUA(scsi.ASCInquiryDataHasChanged)
		} else if !fresh {
			changed = true
		}
		nv.luns[m.lun] = nx
		m.dev.addNexus(nx)
	}
	for lun, on := range old.luns {
		if nn := nv.luns[lun]; nn != on {
			on.retire()
			if nn == nil {
				changed = true
			}
			if !nv.reaches(on.dev) {
				// The I_T nexus lost the logical unit: its SPC-2
				// reservation must not lock the others out.
				on.dev.pr.nexusLost(s)
			}
		}
	}
	nv.order = make([]*nexus, 0, len(nv.luns))
	for _, nx := range nv.luns {
		nv.order = append(nv.order, nx)
	}
	sort.Slice(nv.order, func(i, j int) bool { return nv.order[i].lun < nv.order[j].lun })
	if changed {
		for _, nx := range nv.order {
			nx.queueUA(scsi.ASCReportedLunsDataHasChanged)
		}
	}
	s.view.Store(nv)
}

// Sessions returns all sessions, grouped by group in group order.
func (c *Core) Sessions() []SessionStat {
	c.mu.Lock()
	defer c.mu.Unlock()
	cf := c.cfg.Load()
	out := make([]SessionStat, 0, len(c.sess))
	for _, g := range cf.groups {
		for _, s := range c.sess {
			v := s.view.Load()
			if v.group != g {
				continue
			}
			st := SessionStat{Info: s.info, Group: g.name, AllCmds: int(s.inflight.Load())}
			for _, nx := range v.order {
				st.ActiveCmds += nx.active()
			}
			out = append(out, st)
		}
	}
	return out
}

// Close ends the session: aborts its commands, waits for them, unregisters it.
func (s *Session) Close() {
	c := s.core
	c.mu.Lock()
	if s.closed {
		c.mu.Unlock()
		return
	}
	s.closed = true
	for i, x := range c.sess {
		if x == s {
			c.sess = append(c.sess[:i], c.sess[i+1:]...)
			break
		}
	}
	v := s.view.Load()
	s.view.Store(&sessView{group: v.group, luns: map[uint64]*nexus{}})
	c.mu.Unlock()
	for _, nx := range v.order {
		nx.abortTasks(nil)
		nx.retire()
		nx.drain()
		if h, ok := nx.dev.Handler.(NexusLossHandler); ok {
			h.NexusLost(s)
		}
	}
	// I_T nexus loss ends SPC-2 reservations; registrations stay.
	c.releaseSessionReservations(s)
	s.log.Debug("session closed")
}

// GetBuffer returns a buffer of length n from the core's pool; Command.Release
// returns DataOut and DataIn buffers obtained this way. The contents are
// undefined. Buffers are page-aligned.
func (s *Session) GetBuffer(n int) []byte { return s.core.pool.get(n) }

// PutBuffer returns a buffer obtained from GetBuffer that was not handed to a
// command (for example after a failed receive).
func (s *Session) PutBuffer(b []byte) { s.core.pool.put(b) }
