// Package target is the SCST core: devices, security groups with their
// initiator-name patterns and LUN maps, sessions, per-LUN command queues, unit
// attentions and SCSI command dispatch to device handlers.
//
// Every configuration change goes through one Core method; the control
// filesystem, the startup scst.conf and tests all call the same methods. Each
// error returned by a configuration method wraps a syscall.Errno (the errno
// spec/procfs.md §1 gives for that failure), so callers can recover it with
// errors.As.
//
// Data path: a transport calls Session.Submit in CmdSN order; the core
// answers REPORT LUNS, REQUEST SENSE and commands to unmapped LUNs itself,
// reports pending unit attentions and deferred errors, applies the task
// attribute rules of the LUN's task set, executes the reservation commands
// (PERSISTENT RESERVE IN/OUT, RESERVE/RELEASE; see CoreOpcodes), refuses
// commands a reservation forbids with RESERVATION CONFLICT, and then calls
// Handler.Exec (after Options.PreExec, the hook for ALUA). Configuration is an
// immutable snapshot swapped under one mutex; each session reads its own
// atomically published view, and each I_T_L nexus has its own lock, so
// sessions share no lock while submitting and completing commands.
//
// API CONTRACT (shared by the iscsi, vdisk and controlfs packages; change only
// together with their owners).
package target

// TaskAttr is the SAM task attribute of a command.
type TaskAttr uint8

// Task attributes, numbered as in the iSCSI SCSI Command PDU ATTR field.
const (
	Untagged    TaskAttr = 0
	Simple      TaskAttr = 1
	Ordered     TaskAttr = 2
	HeadOfQueue TaskAttr = 3
	ACA         TaskAttr = 4
)

// AddrMethod is a group's LUN addressing method (spec §1.9).
type AddrMethod uint8

// Addressing methods.
const (
	AddrPeripheral AddrMethod = iota
	AddrFlat
	AddrLUN
)

// Handler executes SCSI commands for one device (a dev handler instance such
// as a vdisk_fileio disk). The core has already resolved the LUN, delivered
// pending unit attentions and applied queueing rules before Exec is called.
type Handler interface {
	// Exec runs c asynchronously or synchronously and must call c.Complete
	// exactly once, from any goroutine. It must not block on backend I/O.
	Exec(c *Command)
	// HandlerName is the SCST handler name shown in scsi_tgt
	// ("vdisk_fileio", "vdisk_blockio", "vdisk_nullio", "vcdrom").
	HandlerName() string
	// Type is the SCSI peripheral device type (0 disk, 5 CD-ROM).
	Type() byte
	// Close releases the backing store after the last command finished.
	Close() error
}

// Command is one SCSI command from a transport. Transports embed or pool it;
// the core and handlers never retain it after Complete.
type Command struct {
	// Set by the transport before Session.Submit.
	LUN         uint64   // the raw 8-byte SAM LUN field as a big-endian integer; the core decodes it by the group's addressing method
	CDB         []byte   // valid until Done returns
	Attr        TaskAttr //
	Tag         uint32   // transport task tag (iSCSI ITT), unique in the session while in flight
	Read, Write bool     // data direction flags from the transport
	ExpectedLen uint32   // expected data transfer length (EDTL) of the transport
	DataOut     []byte   // write data received from the initiator (len <= ExpectedLen)
	// ZeroCopy is set by transports that hand DataIn to the kernel without
	// reading it themselves (no data digest), so that a handler may point
	// DataIn at memory mapped from the backing file (SetDataInHeld).
	ZeroCopy bool
	// Done is called once, after the core finished with the command; the
	// transport then sends status/data and finally calls Release.
	Done func(*Command)

	// Results, valid in Done.
	Status byte
	// Sense holds sense data for CHECK CONDITION (slice of senseBuf).
	Sense []byte
	// DataIn is the data to return to the initiator; the transport sends at
	// most ExpectedLen bytes of it.
	DataIn []byte
	// TransferLen is the number of bytes the CDB asked to move (for reads: the
	// data the command would return before truncation to ExpectedLen; for
	// writes: the bytes it needs). Transports compute residuals from it and
	// ExpectedLen.
	TransferLen uint32
	// Aborted is set when a task management function aborted the command; the
	// transport then sends no response for it.
	Aborted bool

	// core is the core's per-command bookkeeping, embedded so that a
	// submitted command costs no heap allocation.
	core     commandState
	senseBuf [252]byte
}
