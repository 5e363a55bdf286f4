// Package config reads the iscsi-scstd.conf file (spec/procfs.md §2.2) and
// the initiators.allow / initiators.deny host ACLs (§2.5).
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"

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

// MinSecretLen is the shortest CHAP secret accepted (RFC 7143 §12.1.3
// asks for at least 96 bits).
const MinSecretLen = 12

// maxLine is iscsi-scstd's line buffer: longer lines are split.
const maxLine = 4095

// LineError is one rejected (or, for Warning, accepted but suspicious)
// config line.
type LineError struct {
	Line    int // 1-based line of the file
	Warning bool
	Err     error
}

func (e *LineError) Error() string {
	kind := "error"
	if e.Warning {
		kind = "warning"
	}
	return fmt.Sprintf("line %d: %s: %v", e.Line, kind, e.Err)
}

func (e *LineError) Unwrap() error { return e.Err }

// Errors wrapped by LineError.
var (
	ErrSyntax    = errors.New("unknown or unexpected param")
	ErrValue     = errors.New("unexpected parameter value")
	ErrShortCHAP = fmt.Errorf("CHAP secret shorter than %d characters", MinSecretLen)
	ErrDuplicate = fmt.Errorf("duplicate: %w", syscall.EEXIST)
	ErrReplaced  = errors.New("OutgoingUser replaces the earlier one")
	ErrNoTarget  = errors.New("missing target name")
)

// logicalLine is one line after splitting at '\n' and ';'.
type logicalLine struct {
	no     int
	tokens []string
}

// splitLines splits the file the way config_parse_main does: at '\n' and
// ';', with lines longer than maxLine split, tokens separated by
// whitespace and '='.
func splitLines(data []byte) []logicalLine {
	var out []logicalLine
	no := 1
	for _, phys := range bytes.Split(data, []byte{'\n'}) {
		for _, l := range bytes.Split(phys, []byte{';'}) {
			for len(l) > 0 {
				chunk := l
				if len(chunk) > maxLine {
					chunk = chunk[:maxLine]
				}
				l = l[len(chunk):]
				toks := strings.FieldsFunc(string(chunk), func(r rune) bool {
					return r == '=' || r == ' ' || r == '\t' || r == '\r' || r == '\v' || r == '\f'
				})
				if len(toks) > 0 {
					out = append(out, logicalLine{no: no, tokens: toks})
				}
			}
		}
		no++
	}
	return out
}

// isUserKeyword matches IncomingUser/OutgoingUser with an optional numeric
// suffix (IncomingUser1), case-insensitively.
func isUserKeyword(tok, base string) bool {
	if len(tok) < len(base) || !strings.EqualFold(tok[:len(base)], base) {
		return false
	}
	for _, c := range tok[len(base):] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Parse reads a config file. As in iscsi-scstd, errors in single lines are
// collected (and the line ignored) rather than aborting the parse; the
// returned File is always usable. errs lists one *LineError per rejected
// line (and warnings for replaced OutgoingUser lines).
func Parse(r io.Reader) (f *File, errs []error) {
	f = &File{}
	data, err := io.ReadAll(r)
	if err != nil {
		errs = append(errs, fmt.Errorf("reading config: %w", err))
	}
	var (
		cur      *Target // current stanza, nil in the global section
		skipping bool    // inside an ignored (duplicate or invalid) stanza
		nextTID  uint32  = 1
	)
	fail := func(no int, err error) { errs = append(errs, &LineError{Line: no, Err: err}) }
	warn := func(no int, err error) { errs = append(errs, &LineError{Line: no, Warning: true, Err: err}) }

	for _, ln := range splitLines(data) {
		toks := ln.tokens
		kw := toks[0]
		if strings.HasPrefix(kw, "#") {
			continue
		}
		if strings.EqualFold(kw, "Target") {
			cur, skipping = nil, true
			switch {
			case len(toks) < 2:
				fail(ln.no, ErrNoTarget)
			case len(toks) > 2:
				fail(ln.no, fmt.Errorf("%w: %q after target name", ErrValue, toks[2]))
			case f.Target(toks[1]) != nil:
				fail(ln.no, fmt.Errorf("target %s: %w", toks[1], ErrDuplicate))
			default:
				cur = &Target{TID: nextTID, Name: toks[1], Params: param.DefaultConfig()}
				nextTID++
				f.Targets = append(f.Targets, cur)
				skipping = false
			}
			continue
		}
		if skipping {
			continue
		}
		accounts := &f.Discovery
		if cur != nil {
			accounts = &cur.Accounts
		}
		switch {
		case isUserKeyword(kw, "IncomingUser"), isUserKeyword(kw, "OutgoingUser"):
			if len(toks) != 3 {
				fail(ln.no, fmt.Errorf("%w: %s needs a user name and a secret", ErrValue, kw))
				continue
			}
			acc := auth.Account{User: toks[1], Secret: toks[2]}
			if len(acc.Secret) < MinSecretLen {
				fail(ln.no, fmt.Errorf("user %s: %w", acc.User, ErrShortCHAP))
				continue
			}
			if isUserKeyword(kw, "IncomingUser") {
				dup := false
				for _, a := range accounts.Incoming {
					dup = dup || a.User == acc.User
				}
				if dup {
					fail(ln.no, fmt.Errorf("IncomingUser %s: %w", acc.User, ErrDuplicate))
					continue
				}
				accounts.Incoming = append(accounts.Incoming, acc)
				continue
			}
			if accounts.Outgoing != nil {
				warn(ln.no, fmt.Errorf("%w (%s -> %s)", ErrReplaced, accounts.Outgoing.User, acc.User))
			}
			accounts.Outgoing = &acc
		case cur == nil && strings.EqualFold(kw, "iSNSServer"):
			if len(toks) != 2 {
				fail(ln.no, fmt.Errorf("%w: iSNSServer needs exactly one host", ErrValue))
				continue
			}
			f.ISNSServer = toks[1]
		case cur == nil && strings.EqualFold(kw, "iSNSAccessControl"):
			if len(toks) != 2 || (toks[1] != "Yes" && toks[1] != "No") {
				fail(ln.no, fmt.Errorf("%w: iSNSAccessControl needs Yes or No", ErrValue))
				continue
			}
			f.ISNSAccessControl = toks[1] == "Yes"
		case cur != nil && strings.EqualFold(kw, "Alias"):
			if len(toks) != 2 {
				fail(ln.no, fmt.Errorf("%w: Alias needs exactly one value", ErrValue))
				continue
			}
			cur.Alias = toks[1]
		case cur != nil:
			if len(toks) != 2 {
				if len(toks) < 2 {
					fail(ln.no, fmt.Errorf("%w: %s has no value", ErrValue, kw))
				} else {
					fail(ln.no, fmt.Errorf("%w: %q after %s %s", ErrValue, toks[2], kw, toks[1]))
				}
				continue
			}
			if err := cur.Params.Set(kw, toks[1]); err != nil {
				if errors.Is(err, param.ErrUnknownParam) {
					fail(ln.no, fmt.Errorf("%w: %s", ErrSyntax, kw))
				} else {
					fail(ln.no, err)
				}
			}
		default:
			fail(ln.no, fmt.Errorf("%w: %s", ErrSyntax, kw))
		}
	}
	return f, errs
}

// Load opens and parses path. A missing file is an error only when explicit
// is true (the default path /etc/iscsi-scstd.conf may be absent).
func Load(path string, explicit bool) (f *File, errs []error, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !explicit {
			return &File{}, nil, nil
		}
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	f, errs = Parse(bytes.NewReader(data))
	for i, e := range errs {
		errs[i] = fmt.Errorf("%s: %w", path, e)
	}
	return f, errs, nil
}

// Target returns the target with this name (case-sensitive) or nil.
func (f *File) Target(name string) *Target {
	for _, t := range f.Targets {
		if t.Name == name {
			return t
		}
	}
	return nil
}

// TargetByTID returns the target with this tid or nil.
func (f *File) TargetByTID(tid uint32) *Target {
	for _, t := range f.Targets {
		if t.TID == tid {
			return t
		}
	}
	return nil
}
