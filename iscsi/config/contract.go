// Package config reads the iscsi-scstd.conf file (spec/procfs.md §2.2) and
// the initiators.allow / initiators.deny host ACLs (§2.5).
//
// API CONTRACT (used by cmd/scstd and package iscsi; change only together).
package config

import (
	"io"
	"net"

	"github.com/scstd/scstd/iscsi/auth"
	"github.com/scstd/scstd/iscsi/param"
)

// File is a parsed iscsi-scstd.conf.
type File struct {
	Discovery         auth.Accounts // global IncomingUser/OutgoingUser
	ISNSServer        string
	ISNSAccessControl bool
	Targets           []*Target // tid order (1, 2, ...)
}

// Target is one Target stanza.
type Target struct {
	TID      uint32
	Name     string
	Alias    string
	Params   param.Config
	Accounts auth.Accounts
}

// Parse reads a config file. As in iscsi-scstd, errors in single lines are
// collected (and the line ignored) rather than aborting the parse; the
// returned File is always usable. errs lists one error per rejected line,
// each naming the line.
func Parse(r io.Reader) (f *File, errs []error) { panic("unimplemented") }

// Load opens and parses path. A missing file is an error only when explicit
// is true (the default path /etc/iscsi-scstd.conf may be absent).
func Load(path string, explicit bool) (f *File, errs []error, err error) { panic("unimplemented") }

// Target returns the target with this name (case-sensitive) or nil.
func (f *File) Target(name string) *Target { panic("unimplemented") }

// Allowed reports whether an initiator at ip may see/log in to target
// under initiators.allow/deny at the given paths (re-read on every call;
// missing files allow everything): denied iff a deny line matches and no
// allow line matches.
func Allowed(allowPath, denyPath, target string, ip net.IP) bool { panic("unimplemented") }
