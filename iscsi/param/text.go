// Package param implements iSCSI text keys: the key=value wire format of Login
// and Text PDUs and the negotiation of the operational keys of RFC 7143 §13
// with SCST's configured defaults and limits (spec/procfs.md §2.3, §2.4).
package param

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// KV is one key=value pair; order on the wire is preserved.
type KV struct{ Key, Value string }

// Wire-format limits of RFC 7143 §6.1.
const (
	// MaxKeyLen is the longest key name.
	MaxKeyLen = 63
	// MaxValueLen is the longest simple value (each element of a list).
	MaxValueLen = 255
	// MaxLargeValueLen bounds the encoded form of values the RFC allows to be
	// long: CHAP_C/CHAP_R are large-binary-values of up to 1024 bytes, i.e.
	// 2050 characters in hex; 8192 is the minimum amount of key=value data a
	// node must accept in one negotiation sequence.
	MaxLargeValueLen = 8192
)

// ErrMalformed is wrapped by every ParseText error.
var ErrMalformed = errors.New("malformed text key")

// ParseText splits a data segment of NUL-terminated key=value pairs.
// Malformed input (no '=', key too long, bad characters, a value too long,
// invalid UTF-8, a last pair without its NUL) is an error. Empty strings
// between NULs (padding, double NULs) are skipped.
func ParseText(b []byte) ([]KV, error) {
	var kvs []KV
	off := 0
	for len(b) > 0 {
		end := bytes.IndexByte(b, 0)
		if end < 0 {
			return nil, fmt.Errorf("%w: pair at offset %d is not NUL-terminated", ErrMalformed, off)
		}
		pair := b[:end]
		b = b[end+1:]
		if len(pair) == 0 {
			off += end + 1
			continue
		}
		eq := bytes.IndexByte(pair, '=')
		if eq < 0 {
			return nil, fmt.Errorf("%w: no '=' in pair at offset %d", ErrMalformed, off)
		}
		key, val := string(pair[:eq]), string(pair[eq+1:])
		if err := checkKey(key); err != nil {
			return nil, fmt.Errorf("%w at offset %d", err, off)
		}
		if err := checkValue(key, val); err != nil {
			return nil, fmt.Errorf("%w at offset %d", err, off)
		}
		kvs = append(kvs, KV{Key: key, Value: val})
		off += end + 1
	}
	return kvs, nil
}

// checkKey enforces the key-name syntax of RFC 7143 §6.1: 1..63 characters
// of letters, digits and ". - + @ _", starting with a letter (standard keys
// such as iSERHelloRequired and iSCSIProtocolLevel start in lower case).
// The "X#" prefix of IANA-registered extension keys is the one place '#'
// may appear.
func checkKey(k string) error {
	if k == "" {
		return fmt.Errorf("%w: empty key name", ErrMalformed)
	}
	if len(k) > MaxKeyLen {
		return fmt.Errorf("%w: key name longer than %d bytes", ErrMalformed, MaxKeyLen)
	}
	if c := k[0] | 0x20; c < 'a' || c > 'z' {
		return fmt.Errorf("%w: key name %q does not start with a letter", ErrMalformed, k)
	}
	for i := 1; i < len(k); i++ {
		c := k[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.' || c == '-' || c == '+' || c == '@' || c == '_':
		case c == '#' && i == 1 && k[0] == 'X':
		default:
			return fmt.Errorf("%w: bad character %q in key name", ErrMalformed, c)
		}
	}
	return nil
}

// largeValue reports keys whose values may exceed MaxValueLen.
func largeValue(key string) bool { return strings.HasPrefix(key, "CHAP_") }

func checkValue(key, v string) error {
	if !utf8.ValidString(v) {
		return fmt.Errorf("%w: value of %s is not UTF-8", ErrMalformed, key)
	}
	if largeValue(key) {
		if len(v) > MaxLargeValueLen {
			return fmt.Errorf("%w: value of %s longer than %d bytes", ErrMalformed, key, MaxLargeValueLen)
		}
		return nil
	}
	// The 255-byte limit applies to each value of a comma-separated list.
	for rest := v; ; {
		elem, tail, more := strings.Cut(rest, ",")
		if len(elem) > MaxValueLen {
			return fmt.Errorf("%w: value of %s longer than %d bytes", ErrMalformed, key, MaxValueLen)
		}
		if !more {
			break
		}
		rest = tail
	}
	return nil
}

// AppendText appends kvs to dst in wire form (each pair NUL-terminated).
func AppendText(dst []byte, kvs []KV) []byte {
	for _, kv := range kvs {
		dst = append(dst, kv.Key...)
		dst = append(dst, '=')
		dst = append(dst, kv.Value...)
		dst = append(dst, 0)
	}
	return dst
}

// Lookup returns the value of the first pair named key and whether it exists.
func Lookup(kvs []KV, key string) (string, bool) {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return "", false
}
