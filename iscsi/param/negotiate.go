package param

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Reserved answer values of RFC 7143 §6.2.
const (
	NotUnderstood = "NotUnderstood"
	Irrelevant    = "Irrelevant"
	Reject        = "Reject"
)

// Errors returned by Respond. The iSCSI engine maps them to Login status
// classes: ErrProtocol to 0x0200 (initiator error), ErrSessionType to 0x0209
// (session type not supported), ErrMissing to 0x0207 (missing parameter).
var (
	ErrProtocol    = errors.New("iscsi text negotiation protocol error")
	ErrSessionType = errors.New("unsupported SessionType")
	ErrMissing     = errors.New("missing mandatory login key")
)

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

// RFC 7143 defaults (§13) used for keys that were not negotiated.
const (
	rfcMaxRecvDataSegmentLength = 8192
	rfcMaxBurstLength           = 262144
	rfcFirstBurstLength         = 65536
	rfcDefaultTime2Wait         = 2
	rfcDefaultTime2Retain       = 20
	rfcMaxOutstandingR2T        = 1
	rfcMaxConnections           = 1
	rfcErrorRecoveryLevel       = 0
)

// keyKind says how a key is answered.
type keyKind uint8

const (
	kindLogin    keyKind = iota // InitiatorName etc.: declarative, recorded
	kindBoolOR                  // boolean, result OR
	kindBoolAND                 // boolean, result AND
	kindMin                     // numerical, result minimum
	kindMax                     // numerical, result maximum
	kindDigest                  // list of digests
	kindList                    // other list key (TaskReporting)
	kindMRDSL                   // declarative MaxRecvDataSegmentLength
	kindMarkInt                 // obsolete marker intervals: always Reject
	kindISER                    // iSER-only keys: Irrelevant (RDMAExtensions=No)
	kindTarget                  // keys only a target may send
	kindSecurity                // handled by package auth; ignored here
	kindCaller                  // handled by the caller (SendTargets)
)

// keyID identifies the negotiated keys whose results Session carries.
type keyID uint8

const (
	idNone keyID = iota
	idInitiatorName
	idInitiatorAlias
	idTargetName
	idSessionType
	idInitialR2T
	idImmediateData
	idMaxConnections
	idMaxBurstLength
	idFirstBurstLength
	idDefaultTime2Wait
	idDefaultTime2Retain
	idMaxOutstandingR2T
	idDataPDUInOrder
	idDataSequenceInOrder
	idErrorRecoveryLevel
	idHeaderDigest
	idDataDigest
	idMaxRecvDataSegmentLength
	idIFMarker
	idOFMarker
	idRDMAExtensions
	idTaskReporting
	idCount
)

// keyDef is one row of the key table.
type keyDef struct {
	name string
	id   keyID
	kind keyKind
	// lo, hi is the RFC range of a numerical key; outside it the answer is Reject.
	lo, hi uint64
	// normalOnly keys are Irrelevant in discovery sessions (RFC 7143 §13).
	normalOnly bool
	// anyPhase keys may be (re)declared in Text requests of the full feature phase.
	anyPhase bool
}

// keyTable lists every key this target knows (RFC 7143 §13, RFC 7145 for
// iSER). It is built per call (logins are rare) so no table is shared.
func keyTable() []keyDef {
	return []keyDef{
		{name: "InitiatorName", id: idInitiatorName, kind: kindLogin},
		{name: "InitiatorAlias", id: idInitiatorAlias, kind: kindLogin},
		{name: "TargetName", id: idTargetName, kind: kindLogin},
		{name: "SessionType", id: idSessionType, kind: kindLogin},
		{name: "InitialR2T", id: idInitialR2T, kind: kindBoolOR, normalOnly: true},
		{name: "ImmediateData", id: idImmediateData, kind: kindBoolAND, normalOnly: true},
		{name: "MaxConnections", id: idMaxConnections, kind: kindMin, lo: 1, hi: 65535, normalOnly: true},
		{name: "MaxBurstLength", id: idMaxBurstLength, kind: kindMin, lo: 512, hi: 1<<24 - 1, normalOnly: true},
		{name: "FirstBurstLength", id: idFirstBurstLength, kind: kindMin, lo: 512, hi: 1<<24 - 1, normalOnly: true},
		{name: "DefaultTime2Wait", id: idDefaultTime2Wait, kind: kindMax, lo: 0, hi: 3600},
		{name: "DefaultTime2Retain", id: idDefaultTime2Retain, kind: kindMin, lo: 0, hi: 3600},
		{name: "MaxOutstandingR2T", id: idMaxOutstandingR2T, kind: kindMin, lo: 1, hi: 65535, normalOnly: true},
		{name: "DataPDUInOrder", id: idDataPDUInOrder, kind: kindBoolOR, normalOnly: true},
		{name: "DataSequenceInOrder", id: idDataSequenceInOrder, kind: kindBoolOR, normalOnly: true},
		{name: "ErrorRecoveryLevel", id: idErrorRecoveryLevel, kind: kindMin, lo: 0, hi: 2},
		{name: "HeaderDigest", id: idHeaderDigest, kind: kindDigest},
		{name: "DataDigest", id: idDataDigest, kind: kindDigest},
		{name: "MaxRecvDataSegmentLength", id: idMaxRecvDataSegmentLength, kind: kindMRDSL, lo: 512, hi: 1<<24 - 1, anyPhase: true},
		// RFC 7143 §13.26 obsoletes the markers: a responder may answer No to
		// IFMarker/OFMarker (as SCST does, AND with its No) and must Reject
		// the intervals.
		{name: "IFMarker", id: idIFMarker, kind: kindBoolAND},
		{name: "OFMarker", id: idOFMarker, kind: kindBoolAND},
		{name: "IFMarkInt", kind: kindMarkInt},
		{name: "OFMarkInt", kind: kindMarkInt},
		{name: "TaskReporting", id: idTaskReporting, kind: kindList, normalOnly: true},
		// RFC 7145: a TCP target answers RDMAExtensions=No (AND), which makes
		// the other iSER keys Irrelevant.
		{name: "RDMAExtensions", id: idRDMAExtensions, kind: kindBoolAND},
		{name: "TargetRecvDataSegmentLength", kind: kindISER},
		{name: "InitiatorRecvDataSegmentLength", kind: kindISER},
		{name: "MaxAHSLength", kind: kindISER},
		{name: "TaggedBufferForSolicitedDataOnly", kind: kindISER},
		{name: "iSERHelloRequired", kind: kindISER},
		{name: "MaxOutstandingUnexpectedPDUs", kind: kindISER},
		{name: "TargetAlias", kind: kindTarget},
		{name: "TargetAddress", kind: kindTarget},
		{name: "TargetPortalGroupTag", kind: kindTarget},
		{name: "SendTargets", kind: kindCaller},
		{name: "AuthMethod", kind: kindSecurity},
	}
}

// lookupKey finds a key definition. Key names are matched
// case-insensitively, as iscsi-scstd does, so a sloppy initiator still gets
// a meaningful answer; the answer echoes the initiator's spelling.
func lookupKey(name string) (*keyDef, bool) {
	if IsSecurityKey(name) {
		return &keyDef{name: name, kind: kindSecurity}, true
	}
	t := keyTable()
	for i := range t {
		if strings.EqualFold(t[i].name, name) {
			return &t[i], true
		}
	}
	return nil, false
}

// IsSecurityKey reports keys negotiated by package auth (AuthMethod and the
// CHAP_ keys); Respond ignores them so the engine may pass it every key.
func IsSecurityKey(name string) bool {
	return name == "AuthMethod" || strings.HasPrefix(name, "CHAP_")
}

// Negotiation negotiates the operational and declarative keys of one login
// (or of Text requests in full feature phase). Security keys (AuthMethod,
// CHAP_*) are not handled here; see package auth. SendTargets is left to
// the caller too. A Negotiation is used by one connection goroutine.
type Negotiation struct {
	cfg       Config
	discovery bool
	ffp       bool
	declared  bool
	// done marks keys already negotiated or declared during login; a second
	// one is a protocol error (RFC 7143 §6.2).
	done [idCount]bool
	// vals holds the negotiated numbers and booleans (1 = Yes) by key id.
	vals                     [idCount]uint64
	initiatorName, alias     string
	targetName               string
	headerCRC, dataCRC       bool
	initiatorMRDSL           uint32
	initiatorMRDSLDeclared   bool
	declaredMaxRecvSegLength uint32
}

// NewNegotiation starts a negotiation with the target's configuration.
// Discovery rules (session-only keys Irrelevant) apply once the initiator
// declares SessionType=Discovery.
func NewNegotiation(cfg Config) *Negotiation {
	return &Negotiation{cfg: cfg}
}

// FullFeature marks the end of the login. Afterwards Respond serves Text
// requests: login-only keys are answered Reject and MaxRecvDataSegmentLength
// may be declared again (the caller re-reads Result).
func (n *Negotiation) FullFeature() { n.ffp = true }

// Respond processes the initiator's keys of one request and returns the keys
// the target answers: responses to negotiated keys, "NotUnderstood",
// "Irrelevant" or "Reject" as RFC 7143 §6 requires, plus the target's own
// declaration of MaxRecvDataSegmentLength in the first response to a
// request carrying operational keys (see Pending for the final response).
// A protocol error (a key sent twice, an invalid value for a declarative
// key) returns an error wrapping ErrProtocol; the login then fails.
// InitiatorName, InitiatorAlias, TargetName and SessionType are recorded and
// reflected in Result; SessionType is read before other keys so discovery
// rules apply within the same request. Security keys and SendTargets get no
// answer here.
func (n *Negotiation) Respond(in []KV) ([]KV, error) {
	// Keys seen in this request: duplicates within one request are always
	// an error, also in full feature phase.
	var inReq [idCount]bool
	if !n.ffp && !n.done[idSessionType] {
		for _, kv := range in {
			if kv.Key == "SessionType" {
				switch kv.Value {
				case "Discovery":
					n.discovery = true
				case "Normal":
				default:
					return nil, fmt.Errorf("%w: %q", ErrSessionType, kv.Value)
				}
				break
			}
		}
	}
	out := make([]KV, 0, len(in)+1)
	operational := false
	var fbl []int // indexes in out of FirstBurstLength answers, fixed up below
	for _, kv := range in {
		def, known := lookupKey(kv.Key)
		if !known {
			// Unknown, X- and X# keys.
			out = append(out, KV{kv.Key, NotUnderstood})
			continue
		}
		if def.kind == kindSecurity || def.kind == kindCaller {
			continue
		}
		if def.id != idNone {
			if inReq[def.id] {
				return nil, fmt.Errorf("%w: key %s sent twice", ErrProtocol, def.name)
			}
			inReq[def.id] = true
		}
		if n.ffp && !def.anyPhase {
			// Login-only keys cannot be renegotiated in full feature phase.
			out = append(out, KV{kv.Key, Reject})
			continue
		}
		if kv.Value == "?" {
			// Inquiry: report the target's value without negotiating.
			if v, ok := n.inquire(def); ok {
				out = append(out, KV{kv.Key, v})
			} else {
				out = append(out, KV{kv.Key, Irrelevant})
			}
			continue
		}
		if def.kind != kindLogin {
			operational = true
		}
		ans, err := n.negotiate(def, kv.Value)
		if err != nil {
			return nil, err
		}
		if ans != "" {
			if def.id == idFirstBurstLength && ans != Reject && ans != Irrelevant {
				fbl = append(fbl, len(out))
			}
			out = append(out, KV{kv.Key, ans})
		}
	}
	// FirstBurstLength must not exceed MaxBurstLength (RFC 7143 §13.14),
	// whichever order the two keys came in.
	if len(fbl) > 0 {
		mbl := n.maxBurst()
		if n.vals[idFirstBurstLength] > uint64(mbl) {
			n.vals[idFirstBurstLength] = uint64(mbl)
		}
		for _, i := range fbl {
			out[i].Value = strconv.FormatUint(n.vals[idFirstBurstLength], 10)
		}
	}
	if operational && !n.declared {
		out = append(out, n.declaration())
	}
	return out, nil
}

// Check reports a login missing a mandatory key (ErrMissing): InitiatorName
// always, TargetName in a Normal session (RFC 7143 §13.4, §13.5). The
// engine calls it when the initiator asks to leave the login phase.
func (n *Negotiation) Check() error {
	if !n.done[idInitiatorName] {
		return fmt.Errorf("%w: InitiatorName", ErrMissing)
	}
	if !n.discovery && !n.done[idTargetName] {
		return fmt.Errorf("%w: TargetName", ErrMissing)
	}
	return nil
}

// Pending returns the declarations the target has not yet made (its
// MaxRecvDataSegmentLength) so the engine can add them to the final Login
// Response; nil once everything was declared.
func (n *Negotiation) Pending() []KV {
	if n.declared {
		return nil
	}
	return []KV{n.declaration()}
}

func (n *Negotiation) declaration() KV {
	n.declared = true
	n.declaredMaxRecvSegLength = n.cfg.MaxRecvDataSegmentLength
	return KV{"MaxRecvDataSegmentLength", strconv.FormatUint(uint64(n.cfg.MaxRecvDataSegmentLength), 10)}
}

// maxBurst is the MaxBurstLength in force at this point of the negotiation.
func (n *Negotiation) maxBurst() uint32 {
	if n.done[idMaxBurstLength] {
		return uint32(n.vals[idMaxBurstLength])
	}
	return rfcMaxBurstLength
}

// inquire answers key=? with the target's configured value.
func (n *Negotiation) inquire(def *keyDef) (string, bool) {
	c := &n.cfg
	switch def.id {
	case idInitialR2T:
		return yesNo(c.InitialR2T), true
	case idImmediateData:
		return yesNo(c.ImmediateData), true
	case idDataPDUInOrder:
		return yesNo(c.DataPDUInOrder), true
	case idDataSequenceInOrder:
		return yesNo(c.DataSequenceInOrder), true
	case idIFMarker, idOFMarker, idRDMAExtensions:
		return "No", true
	case idHeaderDigest:
		return strings.Join(c.HeaderDigest, ","), true
	case idDataDigest:
		return strings.Join(c.DataDigest, ","), true
	case idTaskReporting:
		return "RFC3720", true
	case idMaxRecvDataSegmentLength:
		return strconv.FormatUint(uint64(c.MaxRecvDataSegmentLength), 10), true
	}
	if v, ok := n.targetNumber(def.id); ok {
		return strconv.FormatUint(uint64(v), 10), true
	}
	return "", false
}

// targetNumber is the target's configured value of a numerical key.
func (n *Negotiation) targetNumber(id keyID) (uint32, bool) {
	c := &n.cfg
	switch id {
	case idMaxConnections:
		return c.MaxConnections, true
	case idMaxBurstLength:
		return c.MaxBurstLength, true
	case idFirstBurstLength:
		return c.FirstBurstLength, true
	case idDefaultTime2Wait:
		return c.DefaultTime2Wait, true
	case idDefaultTime2Retain:
		return c.DefaultTime2Retain, true
	case idMaxOutstandingR2T:
		return c.MaxOutstandingR2T, true
	case idErrorRecoveryLevel:
		return c.ErrorRecoveryLevel, true
	}
	return 0, false
}

// targetBool is the target's value of a boolean key.
func (n *Negotiation) targetBool(id keyID) bool {
	c := &n.cfg
	switch id {
	case idInitialR2T:
		return c.InitialR2T
	case idImmediateData:
		return c.ImmediateData
	case idDataPDUInOrder:
		return c.DataPDUInOrder
	case idDataSequenceInOrder:
		return c.DataSequenceInOrder
	}
	// Markers and RDMAExtensions are not supported.
	return false
}

// negotiate answers one key ("" = no answer) and records the result.
func (n *Negotiation) negotiate(def *keyDef, v string) (string, error) {
	switch def.kind {
	case kindLogin:
		return "", n.declareLogin(def, v)
	case kindMRDSL:
		x, ok := parseNumber(v)
		if !ok || x < def.lo || x > def.hi {
			return "", fmt.Errorf("%w: invalid MaxRecvDataSegmentLength %q", ErrProtocol, v)
		}
		if n.done[def.id] && !n.ffp {
			return "", fmt.Errorf("%w: MaxRecvDataSegmentLength declared twice", ErrProtocol)
		}
		n.done[def.id] = true
		n.initiatorMRDSL = uint32(x)
		n.initiatorMRDSLDeclared = true
		return "", nil
	case kindMarkInt:
		return Reject, nil
	case kindISER:
		return Irrelevant, nil
	case kindTarget:
		return Reject, nil
	}
	if n.done[def.id] {
		return "", fmt.Errorf("%w: key %s negotiated twice", ErrProtocol, def.name)
	}
	if n.discovery && def.normalOnly {
		n.done[def.id] = true
		return Irrelevant, nil
	}
	if def.id == idFirstBurstLength && n.firstBurstIrrelevant() {
		n.done[def.id] = true
		return Irrelevant, nil
	}
	switch def.kind {
	case kindBoolOR, kindBoolAND:
		var offered bool
		switch v {
		case "Yes":
			offered = true
		case "No":
		default:
			return Reject, nil
		}
		mine := n.targetBool(def.id)
		res := offered && mine
		if def.kind == kindBoolOR {
			res = offered || mine
		}
		n.done[def.id] = true
		n.vals[def.id] = b2u(res)
		return yesNo(res), nil
	case kindMin, kindMax:
		x, ok := parseNumber(v)
		if !ok || x < def.lo || x > def.hi {
			return Reject, nil
		}
		mine, _ := n.targetNumber(def.id)
		var res uint64
		if def.kind == kindMin {
			res = min(x, uint64(mine))
		} else {
			// SCST accepts only its configured DefaultTime2Wait (0): it
			// clamps the offer into its [min, max] = [0, 0] range before
			// taking the maximum, so the answer is always its own value.
			res = max(min(x, uint64(mine)), uint64(mine))
		}
		n.done[def.id] = true
		n.vals[def.id] = res
		return strconv.FormatUint(res, 10), nil
	case kindDigest:
		mine := n.cfg.HeaderDigest
		if def.id == idDataDigest {
			mine = n.cfg.DataDigest
		}
		choice, ok := preferred(mine, v)
		if !ok {
			return Reject, nil
		}
		n.done[def.id] = true
		crc := choice == DigestCRC32C
		if def.id == idHeaderDigest {
			n.headerCRC = crc
		} else {
			n.dataCRC = crc
		}
		return choice, nil
	case kindList:
		choice, ok := firstSupported(v, []string{"RFC3720"})
		if !ok {
			return Reject, nil
		}
		n.done[def.id] = true
		return choice, nil
	}
	return NotUnderstood, nil
}

// firstBurstIrrelevant applies RFC 7143 §13.14: FirstBurstLength is
// Irrelevant when InitialR2T=Yes and ImmediateData=No.
func (n *Negotiation) firstBurstIrrelevant() bool {
	return n.done[idInitialR2T] && n.vals[idInitialR2T] == 1 &&
		n.done[idImmediateData] && n.vals[idImmediateData] == 0
}

// declareLogin records InitiatorName, InitiatorAlias, TargetName and
// SessionType. Repeating one with the same value is tolerated (some
// initiators resend them with every login PDU); a different value is a
// protocol error.
func (n *Negotiation) declareLogin(def *keyDef, v string) error {
	var cur *string
	var sessionType string
	switch def.id {
	case idInitiatorName:
		cur = &n.initiatorName
	case idInitiatorAlias:
		cur = &n.alias
	case idTargetName:
		cur = &n.targetName
	case idSessionType:
		sessionType = "Normal"
		if n.discovery {
			sessionType = "Discovery"
		}
		cur = &sessionType
	}
	if def.id == idInitiatorName || def.id == idTargetName {
		// RFC 3720/7143: iSCSI names are at most 223 bytes.
		if v == "" || len(v) > 223 {
			return fmt.Errorf("%w: invalid %s %q", ErrProtocol, def.name, v)
		}
	}
	if n.done[def.id] {
		if *cur != v {
			return fmt.Errorf("%w: %s changed during login", ErrProtocol, def.name)
		}
		return nil
	}
	n.done[def.id] = true
	*cur = v
	return nil
}

// preferred picks the first digest of the target's preference list that
// the initiator offered. This is SCST's rule (CRC32C whenever both sides
// allow it, spec §2.4) and fits RFC 7143 §6.2.1's "first value it supports
// and is allowed to use": with a list of CRC32C,None the target does not
// allow None to an initiator that can do CRC32C. libiscsi, which offers
// "None,CRC32C", thus gets CRC32C from a target configured for it.
func preferred(mine []string, offer string) (string, bool) {
	for _, m := range mine {
		for _, o := range strings.Split(offer, ",") {
			if strings.EqualFold(o, m) {
				return m, true
			}
		}
	}
	return "", false
}

// firstSupported returns the first value of the initiator's list that is in
// the target's supported set (RFC 7143 §6.2.1); unknown values are skipped.
func firstSupported(offer string, supported []string) (string, bool) {
	for _, o := range strings.Split(offer, ",") {
		for _, s := range supported {
			if strings.EqualFold(o, s) {
				return s, true
			}
		}
	}
	return "", false
}

// parseNumber parses an RFC 7143 numerical value: decimal or 0x hex.
func parseNumber(s string) (uint64, bool) {
	if len(s) > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		v, err := strconv.ParseUint(s[2:], 16, 64)
		return v, err == nil
	}
	if s == "" || s[0] < '0' || s[0] > '9' {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 10, 64)
	return v, err == nil
}

func yesNo(b bool) string {
	if b {
		return "Yes"
	}
	return "No"
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// Result returns the values in force (RFC defaults for keys not negotiated).
func (n *Negotiation) Result() Session {
	s := Session{
		InitiatorName:            n.initiatorName,
		InitiatorAlias:           n.alias,
		TargetName:               n.targetName,
		Discovery:                n.discovery,
		InitialR2T:               true,
		ImmediateData:            true,
		MaxRecvDataSegmentLength: rfcMaxRecvDataSegmentLength,
		MaxXmitDataSegmentLength: rfcMaxRecvDataSegmentLength,
		MaxBurstLength:           rfcMaxBurstLength,
		FirstBurstLength:         rfcFirstBurstLength,
		MaxOutstandingR2T:        rfcMaxOutstandingR2T,
		DataPDUInOrder:           true,
		DataSequenceInOrder:      true,
		HeaderDigest:             n.headerCRC,
		DataDigest:               n.dataCRC,
		ErrorRecoveryLevel:       rfcErrorRecoveryLevel,
		DefaultTime2Wait:         rfcDefaultTime2Wait,
		DefaultTime2Retain:       rfcDefaultTime2Retain,
		MaxConnections:           rfcMaxConnections,
	}
	if n.declared {
		s.MaxRecvDataSegmentLength = n.declaredMaxRecvSegLength
	}
	if n.initiatorMRDSLDeclared {
		s.MaxXmitDataSegmentLength = n.initiatorMRDSL
	}
	s.MaxXmitDataSegmentLength = min(s.MaxXmitDataSegmentLength, n.cfg.MaxXmitDataSegmentLength)
	setB := func(id keyID, dst *bool) {
		if n.done[id] && !(n.discovery && isNormalOnly(id)) {
			*dst = n.vals[id] == 1
		}
	}
	setN := func(id keyID, dst *uint32) {
		if n.done[id] && !(n.discovery && isNormalOnly(id)) && !(id == idFirstBurstLength && n.firstBurstIrrelevant()) {
			*dst = uint32(n.vals[id])
		}
	}
	setB(idInitialR2T, &s.InitialR2T)
	setB(idImmediateData, &s.ImmediateData)
	setB(idDataPDUInOrder, &s.DataPDUInOrder)
	setB(idDataSequenceInOrder, &s.DataSequenceInOrder)
	setN(idMaxBurstLength, &s.MaxBurstLength)
	setN(idFirstBurstLength, &s.FirstBurstLength)
	setN(idMaxOutstandingR2T, &s.MaxOutstandingR2T)
	setN(idErrorRecoveryLevel, &s.ErrorRecoveryLevel)
	setN(idDefaultTime2Wait, &s.DefaultTime2Wait)
	setN(idDefaultTime2Retain, &s.DefaultTime2Retain)
	setN(idMaxConnections, &s.MaxConnections)
	// A MaxBurstLength negotiated after FirstBurstLength may have lowered it.
	s.FirstBurstLength = min(s.FirstBurstLength, s.MaxBurstLength)
	return s
}

func isNormalOnly(id keyID) bool {
	switch id {
	case idInitialR2T, idImmediateData, idMaxConnections, idMaxBurstLength,
		idFirstBurstLength, idMaxOutstandingR2T, idDataPDUInOrder, idDataSequenceInOrder:
		return true
	}
	return false
}
