package target

// This file lists the methods other packages use. Bodies are provided by the
// core implementation; signatures are the contract.

import (
	"github.com/scstd/scstd/target/scsi"
	"github.com/sirupsen/logrus"
)

type commandState struct{}

// Options configures a Core.
type Options struct {
	Log *logrus.Entry
	// StateDir is where persistent per-device state lives (<StateDir>/pr/...).
	StateDir string
}

// Core is the SCST core. The zero value is not usable; use NewCore.
type Core struct{}

// NewCore returns a core with the Default group and no devices.
func NewCore(o Options) *Core { panic("unimplemented") }

// Device is a registered SCST device.
type Device struct {
	Name    string
	Handler Handler
}

// --- configuration (all atomic; errors wrap syscall.Errno as spec §1 says) ---

// AddDevice registers d (name unique among all devices: EEXIST).
func (c *Core) AddDevice(d *Device) error { panic("unimplemented") }

// RemoveDevice unregisters the device: its LUN mappings disappear from every
// group (sessions get REPORTED LUNS DATA HAS CHANGED), its in-flight commands
// finish or are aborted, then Handler.Close is called. Unknown: EINVAL.
func (c *Core) RemoveDevice(name string) error { panic("unimplemented") }

// Device returns the named device or nil.
func (c *Core) Device(name string) *Device { panic("unimplemented") }

// Devices returns the devices in registration order.
func (c *Core) Devices() []*Device { panic("unimplemented") }

// AddGroup, DelGroup, RenameGroup implement scsi_tgt add_group/del_group/rename_group.
func (c *Core) AddGroup(name string, m AddrMethod) error { panic("unimplemented") }
func (c *Core) DelGroup(name string) error               { panic("unimplemented") }
func (c *Core) RenameGroup(old, new string) error        { panic("unimplemented") }

// AddLUN, ReplaceLUN, DelLUN, ClearLUNs implement groups/G/devices.
func (c *Core) AddLUN(group, dev string, lun uint64, readOnly bool) error     { panic("unimplemented") }
func (c *Core) ReplaceLUN(group, dev string, lun uint64, readOnly bool) error { panic("unimplemented") }
func (c *Core) DelLUN(group, dev string) error                                { panic("unimplemented") }
func (c *Core) ClearLUNs(group string) error                                  { panic("unimplemented") }

// AddName, DelName, MoveName, ClearNames implement groups/G/names.
func (c *Core) AddName(group, name string) error            { panic("unimplemented") }
func (c *Core) DelName(group, name string) error            { panic("unimplemented") }
func (c *Core) MoveName(group, name, newGroup string) error { panic("unimplemented") }
func (c *Core) ClearNames(group string) error               { panic("unimplemented") }

// GroupInfo is a snapshot of one group for rendering.
type GroupInfo struct {
	Name  string
	Addr  AddrMethod
	LUNs  []LUNInfo // insertion order
	Names []string  // insertion order
}

// LUNInfo is one LUN mapping.
type LUNInfo struct {
	LUN      uint64
	Device   string
	ReadOnly bool
}

// Groups returns a consistent snapshot of all groups, Default first, then in
// creation order.
func (c *Core) Groups() []GroupInfo { panic("unimplemented") }

// --- sessions ---

// SessionInfo identifies an I_T nexus to the core.
type SessionInfo struct {
	// Initiator is the name used for group matching: the iSCSI InitiatorName,
	// or chapuser@InitiatorName after CHAP with an IncomingUser account.
	Initiator string
	// Target is the target name (IQN); used for Default_<target> groups.
	Target string
	// Transport is the SCST target template name ("iscsi").
	Transport string
}

// Visible reports whether initiator would see at least one LUN of target
// under group resolution (spec §2.5).
func (c *Core) Visible(initiator, target string) bool { panic("unimplemented") }

// NewSession registers an I_T nexus; it gets POWER ON/RESET unit attentions.
func (c *Core) NewSession(info SessionInfo) (*Session, error) { panic("unimplemented") }

// Session is one I_T nexus.
type Session struct{}

// SessionStat is a snapshot of one session for rendering (spec §1.4).
type SessionStat struct {
	Info       SessionInfo
	Group      string
	ActiveCmds int
	AllCmds    int
}

// Sessions returns all sessions, grouped by group in group order.
func (c *Core) Sessions() []SessionStat { panic("unimplemented") }

// Submit hands a command to the core. It never blocks on I/O; c.Done is
// called when the command completed (possibly before Submit returns).
// Transports call Submit in CmdSN order.
func (s *Session) Submit(c *Command) { panic("unimplemented") }

// TMF is a task management function.
type TMF uint8

// Task management functions (numbered as iSCSI Function codes).
const (
	TMFAbortTask       TMF = 1
	TMFAbortTaskSet    TMF = 2
	TMFClearACA        TMF = 3
	TMFClearTaskSet    TMF = 4
	TMFLUNReset        TMF = 5
	TMFTargetWarmReset TMF = 6
	TMFTargetColdReset TMF = 7
	TMFTaskReassign    TMF = 8
)

// TMFResponse codes (numbered as iSCSI Response codes).
type TMFResponse uint8

// TMF responses.
const (
	TMFComplete     TMFResponse = 0
	TMFNoTask       TMFResponse = 1
	TMFNoLUN        TMFResponse = 2
	TMFNotSupported TMFResponse = 5
	TMFRejected     TMFResponse = 255
)

// TaskMgmt performs fn and returns after every affected command completed
// (aborted commands get Aborted=true and Done is still called for them).
func (s *Session) TaskMgmt(fn TMF, lun uint64, refTag uint32) TMFResponse { panic("unimplemented") }

// Close ends the session: aborts its commands, waits for them, unregisters it.
func (s *Session) Close() { panic("unimplemented") }

// GetBuffer returns a buffer of length n from the core's pool; Command.Release
// returns DataOut and DataIn buffers obtained this way.
func (s *Session) GetBuffer(n int) []byte { panic("unimplemented") }

// --- used by handlers ---

// Device returns the device the command addresses.
func (c *Command) Device() *Device { panic("unimplemented") }

// ReadOnly reports whether the LUN mapping is read-only.
func (c *Command) ReadOnly() bool { panic("unimplemented") }

// CheckCondition completes the status as CHECK CONDITION with s, in
// descriptor format when the device's D_SENSE is set.
func (c *Command) CheckCondition(s scsi.Sense) { panic("unimplemented") }

// AllocDataIn sets DataIn to a pooled buffer of n bytes and returns it.
func (c *Command) AllocDataIn(n int) []byte { panic("unimplemented") }

// Complete finishes the command (handlers call it exactly once).
func (c *Command) Complete() { panic("unimplemented") }

// Release returns the command's pooled buffers; the transport calls it after
// sending the response.
func (c *Command) Release() { panic("unimplemented") }

// RaiseUA queues a unit attention with asc on every I_T nexus that has this
// device mapped (capacity changed, mode parameters changed, ...).
func (d *Device) RaiseUA(asc scsi.ASC) { panic("unimplemented") }

// SetDescriptorSense selects descriptor-format sense (control mode page D_SENSE).
func (d *Device) SetDescriptorSense(on bool) { panic("unimplemented") }
