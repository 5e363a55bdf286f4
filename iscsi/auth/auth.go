// Package auth implements the security stage of an iSCSI login: AuthMethod
// negotiation and CHAP with MD5 (RFC 1994, RFC 7143 §12.1.3), one-way and
// mutual, against the IncomingUser/OutgoingUser accounts of the config.
package auth

import (
	"bytes"
	"crypto/md5"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/scstd/scstd/iscsi/param"
)

// Account is one CHAP user name and secret.
type Account struct{ User, Secret string }

// Accounts are the CHAP accounts of a target (or of discovery sessions).
// With no Incoming accounts, AuthMethod None is used; otherwise CHAP is
// required. Outgoing (one account) enables mutual CHAP when the initiator
// asks for it.
type Accounts struct {
	Incoming []Account
	Outgoing *Account
}

// Errors of Step. The iSCSI engine maps ErrAuthFailed to Login status
// 0x0201 (authentication failure) and ErrProtocol to 0x0200 (initiator
// error); any other error (the random source failed) is a target error.
var (
	ErrAuthFailed = errors.New("iscsi authentication failed")
	ErrProtocol   = errors.New("iscsi security negotiation protocol error")
)

// CHAP parameters.
const (
	chapMD5        = 5  // CHAP_A value of MD5 (RFC 1994, IANA PPP auth algorithms)
	challengeLen   = 16 // bytes of the target's challenge
	maxChallenge   = 1024
	methodNone     = "None"
	methodCHAP     = "CHAP"
	keyAuthMethod  = "AuthMethod"
	keyAlgorithm   = "CHAP_A"
	keyIdentifier  = "CHAP_I"
	keyChallenge   = "CHAP_C"
	keyName        = "CHAP_N"
	keyResponse    = "CHAP_R"
	md5ResponseLen = md5.Size
)

type state uint8

const (
	stStart     state = iota // waiting for AuthMethod
	stAlgorithm              // CHAP chosen, waiting for CHAP_A
	stResponse               // challenge sent, waiting for CHAP_N/CHAP_R
	stDone                   // authenticated (or None)
)

// Security negotiates the security stage of one login. It is used by one
// connection goroutine.
type Security struct {
	acc       Accounts
	rnd       io.Reader
	st        state
	id        byte
	challenge [challengeLen]byte
	user      string
}

// New starts a security negotiation; rnd supplies CHAP identifiers and
// challenges (crypto/rand.Reader in production).
func New(acc Accounts, rnd io.Reader) *Security {
	return &Security{acc: acc, rnd: rnd}
}

// Step processes the security keys (AuthMethod, CHAP_A, CHAP_N, CHAP_R,
// CHAP_I, CHAP_C) of one Login Request and returns the keys to answer.
// Other keys are ignored (package param answers them), so the engine may
// pass every key of the request. done reports that authentication has
// completed successfully, so the target may move to the next stage. An
// error means authentication failed (ErrAuthFailed, login status 0x0201)
// or the keys violate the protocol (ErrProtocol, 0x0200).
//
// A login that starts directly in the operational stage is handled by
// calling Step with its keys: without AuthMethod the method is None (the
// RFC default), which fails when CHAP accounts are configured.
func (s *Security) Step(in []param.KV) (out []param.KV, done bool, err error) {
	var authMethod, chapA, chapN, chapR, chapI, chapC *string
	for i := range in {
		kv := &in[i]
		var dst **string
		switch kv.Key {
		case keyAuthMethod:
			dst = &authMethod
		case keyAlgorithm:
			dst = &chapA
		case keyName:
			dst = &chapN
		case keyResponse:
			dst = &chapR
		case keyIdentifier:
			dst = &chapI
		case keyChallenge:
			dst = &chapC
		default:
			if strings.HasPrefix(kv.Key, "CHAP_") {
				out = append(out, param.KV{Key: kv.Key, Value: param.NotUnderstood})
			}
			continue
		}
		if *dst != nil {
			return nil, false, fmt.Errorf("%w: %s sent twice", ErrProtocol, kv.Key)
		}
		*dst = &kv.Value
	}
	anyCHAP := chapA != nil || chapN != nil || chapR != nil || chapI != nil || chapC != nil

	if s.st == stStart {
		method, err := s.chooseMethod(authMethod)
		if err != nil {
			return nil, false, err
		}
		if authMethod != nil {
			out = append(out, param.KV{Key: keyAuthMethod, Value: method})
		}
		if method == methodNone {
			if anyCHAP {
				return nil, false, fmt.Errorf("%w: CHAP keys with AuthMethod None", ErrProtocol)
			}
			s.st = stDone
			return out, true, nil
		}
		s.st = stAlgorithm
		if chapA == nil {
			if anyCHAP {
				return nil, false, fmt.Errorf("%w: CHAP keys before CHAP_A", ErrProtocol)
			}
			return out, false, nil
		}
		// CHAP_A in the same request as AuthMethod: go on.
		authMethod = nil
	}
	if authMethod != nil {
		return nil, false, fmt.Errorf("%w: AuthMethod renegotiated", ErrProtocol)
	}

	switch s.st {
	case stAlgorithm:
		if chapA == nil || chapN != nil || chapR != nil || chapI != nil || chapC != nil {
			return nil, false, fmt.Errorf("%w: expected CHAP_A", ErrProtocol)
		}
		if !offersMD5(*chapA) {
			return nil, false, fmt.Errorf("%w: no supported CHAP_A in %q", ErrAuthFailed, *chapA)
		}
		var r [1 + challengeLen]byte
		if _, err := io.ReadFull(s.rnd, r[:]); err != nil {
			return nil, false, fmt.Errorf("auth: reading random challenge: %w", err)
		}
		s.id = r[0]
		copy(s.challenge[:], r[1:])
		s.st = stResponse
		out = append(out,
			param.KV{Key: keyAlgorithm, Value: strconv.Itoa(chapMD5)},
			param.KV{Key: keyIdentifier, Value: strconv.Itoa(int(s.id))},
			param.KV{Key: keyChallenge, Value: "0x" + hex.EncodeToString(s.challenge[:])},
		)
		return out, false, nil
	case stResponse:
		if chapA != nil {
			return nil, false, fmt.Errorf("%w: CHAP_A renegotiated", ErrProtocol)
		}
		if chapN == nil || chapR == nil {
			return nil, false, fmt.Errorf("%w: CHAP_N and CHAP_R required", ErrProtocol)
		}
		if (chapI == nil) != (chapC == nil) {
			return nil, false, fmt.Errorf("%w: CHAP_I and CHAP_C must come together", ErrProtocol)
		}
		resp, err := DecodeBinary(*chapR)
		if err != nil {
			return nil, false, fmt.Errorf("%w: CHAP_R: %v", ErrProtocol, err)
		}
		if !s.verify(*chapN, resp) {
			return nil, false, fmt.Errorf("%w: CHAP response of user %q does not match", ErrAuthFailed, *chapN)
		}
		if chapI != nil {
			mutual, err := s.mutual(*chapI, *chapC)
			if err != nil {
				return nil, false, err
			}
			out = append(out, mutual...)
		}
		s.user = *chapN
		s.st = stDone
		return out, true, nil
	case stDone:
		if anyCHAP {
			return nil, false, fmt.Errorf("%w: CHAP keys after authentication", ErrProtocol)
		}
		return out, true, nil
	}
	return nil, false, fmt.Errorf("%w: unexpected state", ErrProtocol)
}

// chooseMethod picks the first method of the initiator's list the target
// accepts: CHAP when Incoming accounts exist, otherwise None.
func (s *Security) chooseMethod(offer *string) (string, error) {
	want := methodNone
	if len(s.acc.Incoming) > 0 {
		want = methodCHAP
	}
	if offer == nil {
		// AuthMethod defaults to None (RFC 7143 §13.1).
		if want == methodNone {
			return methodNone, nil
		}
		return "", fmt.Errorf("%w: CHAP required but AuthMethod not offered", ErrAuthFailed)
	}
	for _, m := range strings.Split(*offer, ",") {
		if m == want {
			return want, nil
		}
	}
	return "", fmt.Errorf("%w: AuthMethod %q does not include %s", ErrAuthFailed, *offer, want)
}

// offersMD5 reports whether the CHAP_A list contains MD5.
func offersMD5(list string) bool {
	for _, a := range strings.Split(list, ",") {
		if n, err := strconv.ParseUint(a, 0, 32); err == nil && n == chapMD5 {
			return true
		}
	}
	return false
}

// verify checks resp against every Incoming account of that user name in
// constant time (per candidate).
func (s *Security) verify(user string, resp []byte) bool {
	ok := 0
	for _, a := range s.acc.Incoming {
		want := Response(s.id, []byte(a.Secret), s.challenge[:])
		nameOK := subtle.ConstantTimeCompare([]byte(a.User), []byte(user))
		respOK := subtle.ConstantTimeCompare(want[:], resp)
		ok |= nameOK & respOK
	}
	return ok == 1
}

// mutual answers the initiator's challenge with the Outgoing account.
func (s *Security) mutual(chapI, chapC string) ([]param.KV, error) {
	if s.acc.Outgoing == nil {
		return nil, fmt.Errorf("%w: mutual CHAP requested but no OutgoingUser configured", ErrAuthFailed)
	}
	id, err := strconv.ParseUint(chapI, 0, 8)
	if err != nil {
		return nil, fmt.Errorf("%w: CHAP_I %q", ErrProtocol, chapI)
	}
	c, err := DecodeBinary(chapC)
	if err != nil {
		return nil, fmt.Errorf("%w: CHAP_C: %v", ErrProtocol, err)
	}
	if len(c) == 0 || len(c) > maxChallenge {
		return nil, fmt.Errorf("%w: CHAP_C of %d bytes", ErrProtocol, len(c))
	}
	// A reflected challenge would let an attacker use the target as an
	// oracle for its own response (RFC 7143 §12.1.3).
	if bytes.Equal(c, s.challenge[:]) {
		return nil, fmt.Errorf("%w: initiator reflected the target's challenge", ErrAuthFailed)
	}
	r := Response(byte(id), []byte(s.acc.Outgoing.Secret), c)
	return []param.KV{
		{Key: keyName, Value: s.acc.Outgoing.User},
		{Key: keyResponse, Value: "0x" + hex.EncodeToString(r[:])},
	}, nil
}

// User returns the authenticated CHAP user name ("" with AuthMethod None).
func (s *Security) User() string { return s.user }

// Response computes the CHAP MD5 response of RFC 1994:
// MD5(identifier || secret || challenge).
func Response(id byte, secret, challenge []byte) [md5ResponseLen]byte {
	h := md5.New()
	h.Write([]byte{id})
	h.Write(secret)
	h.Write(challenge)
	var r [md5ResponseLen]byte
	h.Sum(r[:0])
	return r
}

// DecodeBinary decodes an RFC 7143 §6.1 binary value: "0x"/"0X" followed by
// hex digits (an odd count gets a leading zero) or "0b"/"0B" followed by
// base64.
func DecodeBinary(v string) ([]byte, error) {
	if len(v) < 3 || v[0] != '0' {
		return nil, errors.New("not a hex (0x) or base64 (0b) value")
	}
	body := v[2:]
	switch v[1] {
	case 'x', 'X':
		if len(body)%2 == 1 {
			body = "0" + body
		}
		return hex.DecodeString(body)
	case 'b', 'B':
		if b, err := base64.StdEncoding.DecodeString(body); err == nil {
			return b, nil
		}
		return base64.RawStdEncoding.DecodeString(body)
	}
	return nil, errors.New("not a hex (0x) or base64 (0b) value")
}
