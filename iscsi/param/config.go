package param

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxDataSegment is M of spec §2.4, the upper limit of
// MaxRecvDataSegmentLength, MaxXmitDataSegmentLength, MaxBurstLength and
// FirstBurstLength. Usermode SCST derives 256 MiB from its 64 KiB "pages";
// RFC 7143 caps these keys at 2**24-1, so this usermode target uses the
// largest value the wire allows (16 MiB - 1). The sample's 16773120
// (16 MiB - 4 KiB) fits.
const MaxDataSegment = 1<<24 - 1

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
func DefaultConfig() Config {
	return Config{
		InitialR2T:               false,
		ImmediateData:            true,
		MaxConnections:           1,
		MaxRecvDataSegmentLength: MaxDataSegment,
		MaxXmitDataSegmentLength: MaxDataSegment,
		MaxBurstLength:           MaxDataSegment,
		FirstBurstLength:         min(65536, MaxDataSegment),
		DefaultTime2Wait:         0,
		DefaultTime2Retain:       0,
		MaxOutstandingR2T:        32,
		DataPDUInOrder:           false,
		DataSequenceInOrder:      false,
		ErrorRecoveryLevel:       0,
		HeaderDigest:             []string{DigestNone},
		DataDigest:               []string{DigestNone},
		QueuedCommands:           32,
		RspTimeout:               90,
		NopInInterval:            30,
		NopInTimeout:             30,
		MaxSessions:              0,
	}
}

// Digest names.
const (
	DigestNone   = "None"
	DigestCRC32C = "CRC32C"
)

// Errors of Config.Set: every error wraps ErrConfig; an unknown name also
// wraps ErrUnknownParam.
var (
	ErrConfig       = errors.New("invalid parameter")
	ErrUnknownParam = errors.New("unknown parameter")
)

type cfgKind uint8

const (
	cfgNum cfgKind = iota
	cfgBool
	cfgDigest
)

// cfgParam describes one configurable parameter and where Set stores it.
type cfgParam struct {
	name     string
	kind     cfgKind
	min, max uint32
	num      func(*Config) *uint32
	flag     func(*Config) *bool
	list     func(*Config) *[]string
}

// cfgParams lists the names accepted by Set (spec §2.3 and §2.4). The
// marker keys are accepted for compatibility with old config files; they
// are not supported on the wire and are not stored.
func cfgParams() []cfgParam {
	return []cfgParam{
		{name: "QueuedCommands", min: 1, max: 2048, num: func(c *Config) *uint32 { return &c.QueuedCommands }},
		{name: "RspTimeout", min: 2, max: 65535, num: func(c *Config) *uint32 { return &c.RspTimeout }},
		{name: "NopInInterval", min: 0, max: 65535, num: func(c *Config) *uint32 { return &c.NopInInterval }},
		{name: "NopInTimeout", min: 2, max: 65535, num: func(c *Config) *uint32 { return &c.NopInTimeout }},
		{name: "MaxSessions", min: 0, max: 65535, num: func(c *Config) *uint32 { return &c.MaxSessions }},
		{name: "InitialR2T", kind: cfgBool, flag: func(c *Config) *bool { return &c.InitialR2T }},
		{name: "ImmediateData", kind: cfgBool, flag: func(c *Config) *bool { return &c.ImmediateData }},
		{name: "MaxConnections", min: 1, max: 1, num: func(c *Config) *uint32 { return &c.MaxConnections }},
		{name: "MaxRecvDataSegmentLength", min: 512, max: MaxDataSegment, num: func(c *Config) *uint32 { return &c.MaxRecvDataSegmentLength }},
		{name: "MaxXmitDataSegmentLength", min: 512, max: MaxDataSegment, num: func(c *Config) *uint32 { return &c.MaxXmitDataSegmentLength }},
		{name: "MaxBurstLength", min: 512, max: MaxDataSegment, num: func(c *Config) *uint32 { return &c.MaxBurstLength }},
		{name: "FirstBurstLength", min: 512, max: MaxDataSegment, num: func(c *Config) *uint32 { return &c.FirstBurstLength }},
		{name: "DefaultTime2Wait", min: 0, max: 0, num: func(c *Config) *uint32 { return &c.DefaultTime2Wait }},
		{name: "DefaultTime2Retain", min: 0, max: 0, num: func(c *Config) *uint32 { return &c.DefaultTime2Retain }},
		{name: "MaxOutstandingR2T", min: 1, max: 65535, num: func(c *Config) *uint32 { return &c.MaxOutstandingR2T }},
		{name: "DataPDUInOrder", kind: cfgBool, flag: func(c *Config) *bool { return &c.DataPDUInOrder }},
		{name: "DataSequenceInOrder", kind: cfgBool, flag: func(c *Config) *bool { return &c.DataSequenceInOrder }},
		{name: "ErrorRecoveryLevel", min: 0, max: 0, num: func(c *Config) *uint32 { return &c.ErrorRecoveryLevel }},
		{name: "HeaderDigest", kind: cfgDigest, list: func(c *Config) *[]string { return &c.HeaderDigest }},
		{name: "DataDigest", kind: cfgDigest, list: func(c *Config) *[]string { return &c.DataDigest }},
		{name: "OFMarker", kind: cfgBool},
		{name: "IFMarker", kind: cfgBool},
		{name: "OFMarkInt", min: 1, max: 65535},
		{name: "IFMarkInt", min: 1, max: 65535},
	}
}

// Set assigns one parameter by its (case-insensitive) name from a config
// file value, enforcing the min/max of the spec (out of range: error, value
// unchanged). Unknown names are an error. Booleans are exactly "Yes" or
// "No"; numbers follow strtol base 0 (decimal, 0x hex, leading-0 octal);
// digests are "None", "CRC32C" or a comma list of them, case-insensitive.
func (c *Config) Set(name, value string) error {
	for _, p := range cfgParams() {
		if !strings.EqualFold(p.name, name) {
			continue
		}
		switch p.kind {
		case cfgBool:
			var b bool
			switch value {
			case "Yes":
				b = true
			case "No":
			default:
				return fmt.Errorf("%w: %s value %q is not Yes or No", ErrConfig, p.name, value)
			}
			if p.flag == nil {
				// Markers: only "No" is supported.
				if b {
					return fmt.Errorf("%w: %s=Yes is not supported", ErrConfig, p.name)
				}
				return nil
			}
			*p.flag(c) = b
		case cfgNum:
			v, err := parseCNumber(value)
			if err != nil {
				return fmt.Errorf("%w: %s value %q: %v", ErrConfig, p.name, value, err)
			}
			if v < int64(p.min) || v > int64(p.max) {
				return fmt.Errorf("%w: %s value %d out of range [%d, %d]", ErrConfig, p.name, v, p.min, p.max)
			}
			if p.num != nil {
				*p.num(c) = uint32(v)
			}
		case cfgDigest:
			l, err := parseDigestList(value)
			if err != nil {
				return fmt.Errorf("%w: %s: %v", ErrConfig, p.name, err)
			}
			*p.list(c) = l
		}
		return nil
	}
	return fmt.Errorf("%w: %w %q", ErrConfig, ErrUnknownParam, name)
}

// parseCNumber parses like C strtol(s, &end, 0) but insists that the whole
// string is a number (trailing garbage is an error rather than ignored).
func parseCNumber(s string) (int64, error) {
	t := strings.TrimLeft(s, " \t\n\v\f\r")
	neg := false
	if t != "" && (t[0] == '+' || t[0] == '-') {
		neg = t[0] == '-'
		t = t[1:]
	}
	base := 10
	switch {
	case len(t) > 2 && t[0] == '0' && (t[1] == 'x' || t[1] == 'X'):
		base, t = 16, t[2:]
	case len(t) > 1 && t[0] == '0':
		base, t = 8, t[1:]
	}
	if t == "" || t[0] == '+' || t[0] == '-' {
		return 0, errors.New("not a number")
	}
	v, err := strconv.ParseInt(t, base, 64)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange) {
			return 0, errors.New("out of range")
		}
		return 0, errors.New("not a number")
	}
	if neg {
		v = -v
	}
	return v, nil
}

// parseDigestList parses "None", "CRC32C" or a comma list into canonical names.
func parseDigestList(v string) ([]string, error) {
	var out []string
	for _, e := range strings.Split(v, ",") {
		switch {
		case strings.EqualFold(e, DigestNone):
			out = append(out, DigestNone)
		case strings.EqualFold(e, DigestCRC32C):
			out = append(out, DigestCRC32C)
		default:
			return nil, fmt.Errorf("unknown digest %q", e)
		}
	}
	return out, nil
}
