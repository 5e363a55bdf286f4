package config

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// ACLRule is one line of initiators.allow or initiators.deny:
// `TARGET_IQN|ALL addr[,addr...]` where each addr is ALL, an IPv4 address
// or a bracketed IPv6 address, optionally with /prefixlen (spec §2.5).
type ACLRule struct {
	Target    string // "" = ALL targets
	AnyHost   bool   // the address list contains ALL
	Prefixes  []netip.Prefix
	LineNo    int
	RawTarget string
}

// ACL is a parsed initiators.allow or initiators.deny file.
type ACL []ACLRule

// ParseACL parses an ACL file. Blank lines and lines whose first token
// starts with '#' are skipped. Malformed addresses are reported (one error
// per bad entry in lineErrs) and left out of the rule; the rest of the
// file is used. err reports a failure to read r.
func ParseACL(r io.Reader) (acl ACL, lineErrs []error, err error) {
	var errs []error
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	no := 0
	for sc.Scan() {
		no++
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		rule := ACLRule{LineNo: no, RawTarget: fields[0]}
		if !strings.EqualFold(fields[0], "ALL") {
			rule.Target = fields[0]
		}
		if len(fields) == 1 {
			errs = append(errs, fmt.Errorf("line %d: no address list", no))
			continue
		}
		for _, a := range strings.Split(strings.Join(fields[1:], ""), ",") {
			if a == "" {
				continue
			}
			if strings.EqualFold(a, "ALL") {
				rule.AnyHost = true
				continue
			}
			p, err := parseACLAddr(a)
			if err != nil {
				errs = append(errs, fmt.Errorf("line %d: %q: %w", no, a, err))
				continue
			}
			rule.Prefixes = append(rule.Prefixes, p)
		}
		if rule.AnyHost || len(rule.Prefixes) > 0 {
			acl = append(acl, rule)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, errs, fmt.Errorf("reading ACL: %w", err)
	}
	return acl, errs, nil
}

// parseACLAddr parses `1.2.3.4`, `1.2.3.0/24`, `[::1]`, `[fe80::]/10`.
func parseACLAddr(s string) (netip.Prefix, error) {
	addrPart, lenPart, hasLen := strings.Cut(s, "/")
	var (
		addr netip.Addr
		err  error
	)
	if strings.HasPrefix(addrPart, "[") {
		if !strings.HasSuffix(addrPart, "]") {
			return netip.Prefix{}, errors.New("unterminated [IPv6] address")
		}
		addr, err = netip.ParseAddr(addrPart[1 : len(addrPart)-1])
		if err == nil && !addr.Is6() {
			err = errors.New("bracketed address is not IPv6")
		}
		if err == nil && addr.Zone() != "" {
			err = errors.New("zoned IPv6 address")
		}
	} else {
		addr, err = netip.ParseAddr(addrPart)
		if err == nil && !addr.Is4() {
			err = errors.New("IPv6 addresses must be in brackets")
		}
	}
	if err != nil {
		return netip.Prefix{}, err
	}
	bits := addr.BitLen()
	if hasLen {
		n, err := strconv.Atoi(lenPart)
		if err != nil || n < 0 || n > addr.BitLen() || lenPart == "" || lenPart[0] == '+' {
			return netip.Prefix{}, fmt.Errorf("bad prefix length %q", lenPart)
		}
		bits = n
	}
	return addr.Prefix(bits)
}

// Match reports whether a rule of acl applies to target and ip.
func (acl ACL) Match(target string, ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, r := range acl {
		if r.Target != "" && r.Target != target {
			continue
		}
		if r.AnyHost {
			return true
		}
		for _, p := range r.Prefixes {
			if p.Contains(ip) {
				return true
			}
		}
	}
	return false
}

// loadACL reads an ACL file; a missing file (or an empty path) is an empty
// ACL, any other failure to read it is an error.
func loadACL(path string) (ACL, error) {
	if path == "" {
		return nil, nil
	}
	fh, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	defer fh.Close()
	acl, _, err := ParseACL(fh)
	return acl, err
}

// Allowed reports whether an initiator at ip may see/log in to target
// under initiators.allow/deny at the given paths (re-read on every call;
// missing files allow everything): denied iff a deny line matches and no
// allow line matches. A deny file that exists but cannot be read denies
// everyone not explicitly allowed (fail closed).
func Allowed(allowPath, denyPath, target string, ip net.IP) bool {
	addr, ok := netip.AddrFromSlice(ip)
	if !ok {
		addr = netip.Addr{}
	}
	deny, err := loadACL(denyPath)
	denied := err != nil || deny.Match(target, addr)
	if !denied {
		return true
	}
	allow, err := loadACL(allowPath)
	return err == nil && allow.Match(target, addr)
}
