package target

import (
	"github.com/scstd/scstd/target/scsi"
)

// Submit hands a command to the core. It never blocks on I/O; c.Done is
// called when the command completed (possibly before Submit returns).
// Transports call Submit in CmdSN order.
//
// Submit resets the result fields (Status, Sense, DataIn, TransferLen,
// Aborted) so a pooled Command can be reused after Release.
func (s *Session) Submit(c *Command) {
	c.core = commandState{sess: s}
	c.Status = scsi.StatusGood
	c.Sense = nil
	c.DataIn = nil
	c.TransferLen = 0
	c.Aborted = false
	s.inflight.Add(1)

	if len(c.CDB) == 0 {
		c.CheckCondition(scsi.SenseInvalidOpcode)
		c.finish()
		return
	}
	op := c.CDB[0]
	v := s.view.Load()
	if op == scsi.OpReportLuns {
		// REPORT LUNS is answered by the core for every LUN, mapped or not.
		if lun, ok := decodeLUN(c.LUN); ok {
			if nx := v.luns[lun]; nx != nil {
				c.core.nx = nx
			}
		}
		s.reportLUNs(c, v)
		c.core.nx = nil
		c.finish()
		return
	}
	var nx *nexus
	if lun, ok := decodeLUN(c.LUN); ok {
		nx = v.luns[lun]
	}
	if nx == nil {
		unmappedLUN(c)
		c.finish()
		return
	}
	nx.submit(c)
}

// finish accounts for the command and calls Done.
func (c *Command) finish() {
	s := c.core.sess
	if c.Done != nil {
		c.Done(c)
	}
	s.inflight.Add(-1)
}

// Device returns the device the command addresses (nil for commands the core
// answers itself for unmapped LUNs).
func (c *Command) Device() *Device {
	if c.core.nx == nil {
		return nil
	}
	return c.core.nx.dev
}

// ReadOnly reports whether the LUN mapping is read-only.
func (c *Command) ReadOnly() bool {
	return c.core.nx != nil && c.core.nx.readOnly.Load()
}

// Session returns the session the command was submitted on.
func (c *Command) Session() *Session { return c.core.sess }

// CheckCondition completes the status as CHECK CONDITION with s, in
// descriptor format when the device's D_SENSE is set.
func (c *Command) CheckCondition(s scsi.Sense) {
	c.checkCondition(s, c.core.nx != nil && c.core.nx.dev.dsense.Load())
}

func (c *Command) checkCondition(s scsi.Sense, desc bool) {
	c.Status = scsi.StatusCheckCondition
	c.Sense = s.Append(c.senseBuf[:0], desc)
}

// AllocDataIn sets DataIn to a zeroed pooled buffer of n bytes and returns it.
// A buffer from an earlier AllocDataIn on the same command is recycled.
func (c *Command) AllocDataIn(n int) []byte {
	b := c.AllocDataInUninit(n)
	clear(b)
	return b
}

// AllocDataInUninit is AllocDataIn without zeroing, for handlers that
// overwrite all n bytes (reads from the backing store).
func (c *Command) AllocDataInUninit(n int) []byte {
	c.putDataIn()
	b := c.core.sess.core.pool.get(n)
	c.core.dataIn = b
	c.DataIn = b
	return b
}

// DataInHolder owns the memory a command's DataIn points into.
type DataInHolder interface {
	// ReleaseDataIn is called once, when the transport has sent the data.
	ReleaseDataIn()
}

// SetDataInHeld sets DataIn to b, memory that h keeps valid until the
// transport released the command, such as a mapping of the backing file,
// so that the data is copied only once, by the kernel into the socket.
// That copy happens when the transport sends, after Complete; the command
// therefore stays in its task set until Release, and an ORDERED command
// behind it cannot change the data before it has been sent. Only for
// commands whose transport set ZeroCopy.
func (c *Command) SetDataInHeld(b []byte, h DataInHolder) {
	c.putDataIn()
	c.DataIn = b
	c.core.holder = h
}

// putDataIn recycles the buffer of an earlier AllocDataIn, if any.
func (c *Command) putDataIn() {
	if c.core.dataIn != nil {
		c.core.sess.core.pool.put(c.core.dataIn)
		c.core.dataIn = nil
	}
}

// Complete finishes the command (handlers call it exactly once).
func (c *Command) Complete() {
	nx := c.core.nx
	switch {
	case nx != nil && c.core.state == stRunning:
		nx.complete(c)
	case c.core.sess != nil:
		// A second Complete, or one for a command the core answered itself:
		// calling Done again would hand the transport a stale command.
		c.core.sess.log.Errorf("Complete on a command that is not executing (tag %#x)", c.Tag)
	}
}

// Release returns the command's pooled buffers; the transport calls it after
// sending the response. DataIn from AllocDataIn is always recycled; DataOut is
// recycled when it is a buffer from Session.GetBuffer (recognized by its
// page-aligned start and class-sized capacity), so transports must not place
// other memory of that shape, which they keep using, in DataOut.
func (c *Command) Release() {
	s := c.core.sess
	if s == nil {
		return
	}
	if h := c.core.holder; h != nil {
		c.core.holder = nil
		h.ReleaseDataIn()
		if c.core.nx != nil {
			c.core.nx.release(c)
		}
	}
	p := &s.core.pool
	if c.core.dataIn != nil {
		if c.DataOut != nil && cap(c.DataOut) > 0 && &c.DataOut[:1][0] == &c.core.dataIn[:1][0] {
			c.DataOut = nil // the handler echoed its own buffer; recycle it once
		}
		p.put(c.core.dataIn)
		c.core.dataIn = nil
	}
	if c.DataOut != nil {
		p.put(c.DataOut)
		c.DataOut = nil
	}
	c.DataIn = nil
}

// RaiseUAOthers queues a unit attention on every other I_T nexus of the
// command's device (for example MODE PARAMETERS CHANGED after MODE SELECT,
// which SPC-4 reports to every initiator but the one that made the change).
func (c *Command) RaiseUAOthers(asc scsi.ASC) {
	if nx := c.core.nx; nx != nil {
		nx.dev.raiseUA(asc, nx)
	}
}
