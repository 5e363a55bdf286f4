package config

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseACL(t *testing.T) {
	in := `# comment
ALL 10.0.0.0/8, 192.168.1.5
iqn.2001-04.com.example:t1 [fe80::1]/64,[::1]
iqn.2001-04.com.example:t2 ALL
iqn.bad 1.2.3.4/33,[1.2.3.4],::1,[::1,1.2.3.x,7.7.7.7/+8
iqn.empty
`
	acl, lineErrs, err := ParseACL(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(lineErrs) != 7 {
		t.Fatalf("line errors %v, want 7", lineErrs)
	}
	if len(acl) != 3 {
		t.Fatalf("rules %+v", acl)
	}
	if acl[0].Target != "" || len(acl[0].Prefixes) != 2 || acl[1].Target != "iqn.2001-04.com.example:t1" || !acl[2].AnyHost {
		t.Fatalf("rules %+v", acl)
	}
	tests := []struct {
		target, ip string
		want       bool
	}{
		{"iqn.x", "10.1.2.3", true},
		{"iqn.x", "::ffff:10.1.2.3", true},
		{"iqn.x", "11.1.2.3", false},
		{"iqn.x", "192.168.1.5", true},
		{"iqn.x", "192.168.1.6", false},
		{"iqn.2001-04.com.example:t1", "fe80::abcd", true},
		{"iqn.2001-04.com.example:t1", "fe80:1::abcd", false},
		{"iqn.2001-04.com.example:t1", "::1", true},
		{"iqn.x", "::1", false},
		{"iqn.2001-04.com.example:t2", "8.8.8.8", true},
		{"IQN.2001-04.COM.EXAMPLE:T2", "8.8.8.8", false},
	}
	for _, tc := range tests {
		if got := acl.Match(tc.target, netip.MustParseAddr(tc.ip)); got != tc.want {
			t.Errorf("Match(%s, %s) = %v, want %v", tc.target, tc.ip, got, tc.want)
		}
	}
}

func TestAllowed(t *testing.T) {
	dir := t.TempDir()
	allow := filepath.Join(dir, "initiators.allow")
	deny := filepath.Join(dir, "initiators.deny")
	write := func(p, s string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ip := net.ParseIP("192.168.7.7")
	other := net.ParseIP("10.0.0.1")
	const tgt = "iqn.2001-04.com.example:t1"

	if !Allowed(allow, deny, tgt, ip) {
		t.Fatal("missing files must allow")
	}
	write(deny, "ALL ALL\n")
	if Allowed(allow, deny, tgt, ip) {
		t.Fatal("deny ALL ALL must deny")
	}
	write(allow, tgt+" 192.168.7.0/24\n")
	if !Allowed(allow, deny, tgt, ip) {
		t.Fatal("allow line must win")
	}
	if Allowed(allow, deny, tgt, other) {
		t.Fatal("other host must stay denied")
	}
	if Allowed(allow, deny, "iqn.other", ip) {
		t.Fatal("allow line is for another target")
	}
	// Re-read on every call.
	write(deny, tgt+" 10.0.0.0/8\n")
	if !Allowed(allow, deny, "iqn.other", ip) {
		t.Fatal("deny file not re-read")
	}
	if Allowed(allow, deny, tgt, other) {
		t.Fatal("target deny line must deny")
	}
	if !Allowed(allow, deny, "iqn.other", other) {
		t.Fatal("deny line is for another target")
	}
	if Allowed(allow, deny, tgt, net.ParseIP("::ffff:10.0.0.1")) {
		t.Fatal("IPv4-mapped address must match the IPv4 rule")
	}
	// An unreadable deny file (here: a directory) fails closed.
	if err := os.Remove(deny); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(deny, 0o755); err != nil {
		t.Fatal(err)
	}
	if Allowed(allow, deny, tgt, other) {
		t.Fatal("unreadable deny file must deny")
	}
	if !Allowed(allow, deny, tgt, ip) {
		t.Fatal("allow line must still win")
	}
	if !Allowed("", "", tgt, nil) {
		t.Fatal("no paths must allow")
	}
}

func FuzzParseACL(f *testing.F) {
	f.Add("ALL 10.0.0.0/8, 192.168.1.5\niqn.a [fe80::1]/64,[::1]\n#x\n", "10.1.1.1")
	f.Add("iqn.a ALL\nALL [::1\n", "::1")
	f.Add("ALL 1.2.3.4/33,,\x00", "1.2.3.4")
	f.Fuzz(func(t *testing.T, in, ip string) {
		acl, _, err := ParseACL(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, r := range acl {
			if !r.AnyHost && len(r.Prefixes) == 0 {
				t.Fatalf("empty rule %+v", r)
			}
			for _, p := range r.Prefixes {
				if !p.IsValid() {
					t.Fatalf("invalid prefix in %+v", r)
				}
			}
		}
		if a, err := netip.ParseAddr(ip); err == nil {
			acl.Match("iqn.a", a)
		}
	})
}
