// Package param implements iSCSI text keys: the key=value wire format of Login
// and Text PDUs and the negotiation of the operational keys of RFC 7143 §13
// with SCST's configured defaults and limits (spec/procfs.md §2.3, §2.4).
//
// API CONTRACT (used by package iscsi and iscsi/config; change only together).
package param

// KV is one key=value pair; order on the wire is preserved.
type KV struct{ Key, Value string }

// ParseText splits a data segment of NUL-terminated key=value pairs.
// Malformed input (no '=', key too long, bad characters) is an error.
func ParseText(b []byte) ([]KV, error) { panic("unimplemented") }

// AppendText appends kvs to dst in wire form (each pair NUL-terminated).
func AppendText(dst []byte, kvs []KV) []byte { panic("unimplemented") }

// Config is a target's configured session and target parameters.
type Config struct {
	// Session (login) parameters, spec §2.4 "local def" column.
	InitialR2T               bool
	ImmediateData            bool
	MaxConnections           uint32
	MaxRecvDataSegmentLength uint32 // what the target can receive (declared to the initiator)
	MaxXmitDataSegmentLength uint32 // cap on what the target sends
	MaxBurstLength           uint32
	FirstBurstLength         uint32
	DefaultTime2Wait         uint32
	DefaultTime2Retain       uint32
	MaxOutstandingR2T        uint32
	DataPDUInOrder           bool
	DataSequenceInOrder      bool
	ErrorRecoveryLevel       uint32
	HeaderDigest             []string // preference list, e.g. {"None"} or {"CRC32C","None"}
	DataDigest               []string
	// Target parameters, spec §2.3.
	QueuedCommands uint32
	RspTimeout     uint32 // seconds
	NopInInterval  uint32 // seconds, 0 = off
	NopInTimeout   uint32 // seconds
	MaxSessions    uint32 // 0 = unlimited
}

// DefaultConfig returns the defaults of spec §2.3/§2.4.
func DefaultConfig() Config { panic("unimplemented") }

// Set assigns one parameter by its (case-insensitive) name from a config
// file value, enforcing the min/max of the spec (out of range: error, value
// unchanged). Unknown names are an error.
func (c *Config) Set(name, value string) error { panic("unimplemented") }

// Session holds the values in force after a login.
type Session struct {
	InitiatorName, InitiatorAlias, TargetName string
	Discovery                                 bool // SessionType=Discovery
	InitialR2T, ImmediateData                 bool
	// MaxRecvDataSegmentLength is what the target declared it receives;
	// MaxXmitDataSegmentLength is the initiator's declared MaxRecvDataSegmentLength
	// capped by Config.MaxXmitDataSegmentLength (max data per PDU the target sends).
	MaxRecvDataSegmentLength, MaxXmitDataSegmentLength                       uint32
	MaxBurstLength, FirstBurstLength, MaxOutstandingR2T                      uint32
	DataPDUInOrder, DataSequenceInOrder                                      bool
	HeaderDigest, DataDigest                                                 bool // CRC32C chosen
	ErrorRecoveryLevel, DefaultTime2Wait, DefaultTime2Retain, MaxConnections uint32
}

// Negotiation negotiates the operational and declarative keys of one login
// (or of Text requests in full feature phase). Security keys (AuthMethod,
// CHAP_*) are not handled here; see package auth.
type Negotiation struct{}

// NewNegotiation starts a negotiation with the target's configuration.
// discovery selects the discovery-session rules (most keys Irrelevant).
func NewNegotiation(cfg Config) *Negotiation { panic("unimplemented") }

// Respond processes the initiator's keys of one request and returns the keys
// the target answers: responses to negotiated keys, "NotUnderstood",
// "Irrelevant" or "Reject" as RFC 7143 §6 requires, plus the target's own
// declarations (MaxRecvDataSegmentLength, and for the final response any
// key the target must offer). A protocol error (e.g. a key sent twice,
// invalid value for a declarative key) returns an error; the login then
// fails with status 0x0207/0x0200 class initiator error.
// InitiatorName, InitiatorAlias, TargetName and SessionType are recorded and
// reflected in Result (SessionType is read before other keys so discovery
// rules apply within the same request).
func (n *Negotiation) Respond(in []KV) ([]KV, error) { panic("unimplemented") }

// Result returns the values in force (RFC defaults for keys not negotiated).
func (n *Negotiation) Result() Session { panic("unimplemented") }
