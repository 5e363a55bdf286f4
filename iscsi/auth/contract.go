// Package auth implements the security stage of an iSCSI login: AuthMethod
// negotiation and CHAP with MD5 (RFC 1994, RFC 7143 §12.1.3), one-way and
// mutual, against the IncomingUser/OutgoingUser accounts of the config.
//
// API CONTRACT (used by package iscsi and iscsi/config; change only together).
package auth

import (
	"io"

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

// Security negotiates the security stage of one login.
type Security struct{}

// New starts a security negotiation; rnd supplies CHAP identifiers and
// challenges (crypto/rand.Reader in production).
func New(acc Accounts, rnd io.Reader) *Security { panic("unimplemented") }

// Step processes the security keys (AuthMethod, CHAP_A, CHAP_N, CHAP_R,
// CHAP_I, CHAP_C) of one Login Request and returns the keys to answer.
// done reports that authentication has completed successfully, so the
// target may move to the next stage. An error means authentication failed
// (login status 0x0201) or the keys violate the protocol (0x0200).
func (s *Security) Step(in []param.KV) (out []param.KV, done bool, err error) { panic("unimplemented") }

// User returns the authenticated CHAP user name ("" with AuthMethod None).
func (s *Security) User() string { panic("unimplemented") }
