package auth

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/scstd/scstd/iscsi/param"
)

// fixedRand yields a known identifier and challenge.
func fixedRand() *bytes.Reader {
	b := make([]byte, 1+16)
	b[0] = 0x2a
	for i := 1; i < len(b); i++ {
		b[i] = byte(0xa0 + i)
	}
	return bytes.NewReader(b)
}

func kv(k, v string) param.KV { return param.KV{Key: k, Value: v} }

func get(kvs []param.KV, k string) string {
	v, _ := param.Lookup(kvs, k)
	return v
}

// md5Resp is the test's independent CHAP computation.
func md5Resp(id byte, secret string, challenge []byte) []byte {
	buf := append([]byte{id}, secret...)
	buf = append(buf, challenge...)
	sum := md5.Sum(buf)
	return sum[:]
}

var chapAccounts = Accounts{
	Incoming: []Account{{"alice", "alicesecret12"}, {"bob", "bobsecret1234"}},
	Outgoing: &Account{"target", "targetsecret9"},
}

// startCHAP runs AuthMethod and CHAP_A and returns the identifier and challenge.
func startCHAP(t *testing.T, s *Security) (byte, []byte) {
	t.Helper()
	out, done, err := s.Step([]param.KV{kv("InitiatorName", "iqn.x"), kv("AuthMethod", "CHAP,None")})
	if err != nil || done || get(out, "AuthMethod") != "CHAP" || len(out) != 1 {
		t.Fatalf("AuthMethod step: %q %v %v", out, done, err)
	}
	out, done, err = s.Step([]param.KV{kv("CHAP_A", "7,5")})
	if err != nil || done {
		t.Fatalf("CHAP_A step: %q %v %v", out, done, err)
	}
	if get(out, "CHAP_A") != "5" {
		t.Fatalf("CHAP_A answer %q", out)
	}
	id, err := strconv.Atoi(get(out, "CHAP_I"))
	if err != nil || id != 0x2a {
		t.Fatalf("CHAP_I %q", get(out, "CHAP_I"))
	}
	c := get(out, "CHAP_C")
	if !strings.HasPrefix(c, "0x") || len(c) != 2+32 {
		t.Fatalf("CHAP_C %q", c)
	}
	ch, err := hex.DecodeString(c[2:])
	if err != nil {
		t.Fatal(err)
	}
	return byte(id), ch
}

func TestAuthMethodNone(t *testing.T) {
	tests := []struct {
		name string
		acc  Accounts
		in   []param.KV
		want string
		err  error
		done bool
	}{
		{"none offered", Accounts{}, []param.KV{kv("AuthMethod", "CHAP,None")}, "None", nil, true},
		{"only None", Accounts{}, []param.KV{kv("AuthMethod", "None")}, "None", nil, true},
		{"absent", Accounts{}, []param.KV{kv("InitiatorName", "iqn.x")}, "", nil, true},
		{"CHAP only, no accounts", Accounts{}, []param.KV{kv("AuthMethod", "CHAP")}, "", ErrAuthFailed, false},
		{"None refused with accounts", chapAccounts, []param.KV{kv("AuthMethod", "None")}, "", ErrAuthFailed, false},
		{"absent with accounts", chapAccounts, []param.KV{kv("InitiatorName", "iqn.x")}, "", ErrAuthFailed, false},
		{"SRP only", chapAccounts, []param.KV{kv("AuthMethod", "SRP,KRB5")}, "", ErrAuthFailed, false},
		{"None with CHAP keys", Accounts{}, []param.KV{kv("AuthMethod", "None"), kv("CHAP_A", "5")}, "", ErrProtocol, false},
		{"twice in one request", Accounts{}, []param.KV{kv("AuthMethod", "None"), kv("AuthMethod", "None")}, "", ErrProtocol, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := New(tc.acc, fixedRand())
			out, done, err := s.Step(tc.in)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil || done != tc.done || get(out, "AuthMethod") != tc.want {
				t.Fatalf("Step = %q %v %v", out, done, err)
			}
			if s.User() != "" {
				t.Fatalf("User = %q", s.User())
			}
			// Later requests (operational stage) pass through.
			out, done, err = s.Step([]param.KV{kv("HeaderDigest", "None")})
			if err != nil || !done || len(out) != 0 {
				t.Fatalf("after None: %q %v %v", out, done, err)
			}
			if _, _, err := s.Step([]param.KV{kv("AuthMethod", "None")}); !errors.Is(err, ErrProtocol) {
				t.Fatalf("renegotiation: %v", err)
			}
		})
	}
}

func TestCHAPOneWay(t *testing.T) {
	for _, enc := range []string{"hex", "HEX", "base64"} {
		t.Run(enc, func(t *testing.T) {
			s := New(chapAccounts, fixedRand())
			id, ch := startCHAP(t, s)
			r := md5Resp(id, "bobsecret1234", ch)
			var rv string
			switch enc {
			case "hex":
				rv = "0x" + hex.EncodeToString(r)
			case "HEX":
				rv = "0X" + strings.ToUpper(hex.EncodeToString(r))
			case "base64":
				rv = "0b" + base64.StdEncoding.EncodeToString(r)
			}
			out, done, err := s.Step([]param.KV{kv("CHAP_N", "bob"), kv("CHAP_R", rv)})
			if err != nil || !done || len(out) != 0 {
				t.Fatalf("response step: %q %v %v", out, done, err)
			}
			if s.User() != "bob" {
				t.Fatalf("User = %q", s.User())
			}
		})
	}
}

// TestCHAPKnownAnswer pins Response to an RFC 1994 computation.
func TestCHAPKnownAnswer(t *testing.T) {
	ch := []byte("0123456789abcdef")
	got := Response(1, []byte("secretsecret"), ch)
	want := md5.Sum(append(append([]byte{1}, "secretsecret"...), ch...))
	if got != want {
		t.Fatalf("Response = %x, want %x", got, want)
	}
	// A vector computed once with `printf '\x01secretsecret0123456789abcdef' | md5sum`.
	if hex.EncodeToString(got[:]) != fixedVector {
		t.Fatalf("Response = %x, want %s", got, fixedVector)
	}
}

const fixedVector = "3bfa6667b451d18b9818fc1b4fc8b5d2"

func TestCHAPFailures(t *testing.T) {
	tests := []struct {
		name string
		in   func(id byte, ch []byte) []param.KV
		err  error
	}{
		{"wrong secret", func(id byte, ch []byte) []param.KV {
			return []param.KV{kv("CHAP_N", "alice"), kv("CHAP_R", "0x"+hex.EncodeToString(md5Resp(id, "wrongsecret1", ch)))}
		}, ErrAuthFailed},
		{"wrong user", func(id byte, ch []byte) []param.KV {
			return []param.KV{kv("CHAP_N", "carol"), kv("CHAP_R", "0x"+hex.EncodeToString(md5Resp(id, "alicesecret12", ch)))}
		}, ErrAuthFailed},
		{"other user's secret", func(id byte, ch []byte) []param.KV {
			return []param.KV{kv("CHAP_N", "alice"), kv("CHAP_R", "0x"+hex.EncodeToString(md5Resp(id, "bobsecret1234", ch)))}
		}, ErrAuthFailed},
		{"wrong identifier", func(id byte, ch []byte) []param.KV {
			return []param.KV{kv("CHAP_N", "alice"), kv("CHAP_R", "0x"+hex.EncodeToString(md5Resp(id+1, "alicesecret12", ch)))}
		}, ErrAuthFailed},
		{"short response", func(id byte, ch []byte) []param.KV {
			return []param.KV{kv("CHAP_N", "alice"), kv("CHAP_R", "0x"+hex.EncodeToString(md5Resp(id, "alicesecret12", ch)[:8]))}
		}, ErrAuthFailed},
		{"bad encoding", func(id byte, ch []byte) []param.KV {
			return []param.KV{kv("CHAP_N", "alice"), kv("CHAP_R", "zz")}
		}, ErrProtocol},
		{"bad hex", func(id byte, ch []byte) []param.KV {
			return []param.KV{kv("CHAP_N", "alice"), kv("CHAP_R", "0xzz")}
		}, ErrProtocol},
		{"missing CHAP_R", func(id byte, ch []byte) []param.KV {
			return []param.KV{kv("CHAP_N", "alice")}
		}, ErrProtocol},
		{"CHAP_A again", func(id byte, ch []byte) []param.KV {
			return []param.KV{kv("CHAP_A", "5")}
		}, ErrProtocol},
		{"CHAP_I without CHAP_C", func(id byte, ch []byte) []param.KV {
			return []param.KV{kv("CHAP_N", "alice"), kv("CHAP_R", "0x"+hex.EncodeToString(md5Resp(id, "alicesecret12", ch))), kv("CHAP_I", "1")}
		}, ErrProtocol},
		{"reflected challenge", func(id byte, ch []byte) []param.KV {
			return []param.KV{kv("CHAP_N", "alice"), kv("CHAP_R", "0x"+hex.EncodeToString(md5Resp(id, "alicesecret12", ch))),
				kv("CHAP_I", strconv.Itoa(int(id))), kv("CHAP_C", "0x"+hex.EncodeToString(ch))}
		}, ErrAuthFailed},
		{"reflected challenge base64", func(id byte, ch []byte) []param.KV {
			return []param.KV{kv("CHAP_N", "alice"), kv("CHAP_R", "0x"+hex.EncodeToString(md5Resp(id, "alicesecret12", ch))),
				kv("CHAP_I", "7"), kv("CHAP_C", "0b"+base64.StdEncoding.EncodeToString(ch))}
		}, ErrAuthFailed},
		{"bad CHAP_I", func(id byte, ch []byte) []param.KV {
			return []param.KV{kv("CHAP_N", "alice"), kv("CHAP_R", "0x"+hex.EncodeToString(md5Resp(id, "alicesecret12", ch))),
				kv("CHAP_I", "256"), kv("CHAP_C", "0x0102")}
		}, ErrProtocol},
		{"oversized CHAP_C", func(id byte, ch []byte) []param.KV {
			return []param.KV{kv("CHAP_N", "alice"), kv("CHAP_R", "0x"+hex.EncodeToString(md5Resp(id, "alicesecret12", ch))),
				kv("CHAP_I", "1"), kv("CHAP_C", "0x"+strings.Repeat("ab", 1025))}
		}, ErrProtocol},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := New(chapAccounts, fixedRand())
			id, ch := startCHAP(t, s)
			out, done, err := s.Step(tc.in(id, ch))
			if !errors.Is(err, tc.err) || done || out != nil {
				t.Fatalf("Step = %q %v %v, want %v", out, done, err, tc.err)
			}
			if s.User() != "" {
				t.Fatalf("User = %q after failure", s.User())
			}
		})
	}
}

func TestCHAPAlgorithm(t *testing.T) {
	s := New(chapAccounts, fixedRand())
	if _, _, err := s.Step([]param.KV{kv("AuthMethod", "CHAP")}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Step([]param.KV{kv("CHAP_A", "6,7")}); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("SHA-only CHAP_A: %v", err)
	}
	// CHAP_A in the same request as AuthMethod.
	s = New(chapAccounts, fixedRand())
	out, done, err := s.Step([]param.KV{kv("AuthMethod", "CHAP"), kv("CHAP_A", "5")})
	if err != nil || done || get(out, "AuthMethod") != "CHAP" || get(out, "CHAP_C") == "" {
		t.Fatalf("combined: %q %v %v", out, done, err)
	}
	// CHAP_N before CHAP_A.
	s = New(chapAccounts, fixedRand())
	if _, _, err := s.Step([]param.KV{kv("AuthMethod", "CHAP")}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Step([]param.KV{kv("CHAP_N", "alice")}); !errors.Is(err, ErrProtocol) {
		t.Fatalf("CHAP_N before CHAP_A: %v", err)
	}
	// Random source failure.
	s = New(chapAccounts, bytes.NewReader(nil))
	if _, _, err := s.Step([]param.KV{kv("AuthMethod", "CHAP"), kv("CHAP_A", "5")}); err == nil || errors.Is(err, ErrAuthFailed) || errors.Is(err, ErrProtocol) {
		t.Fatalf("rand failure: %v", err)
	}
	// Unknown CHAP_ keys are not understood.
	s = New(Accounts{}, fixedRand())
	out, _, err = s.Step([]param.KV{kv("AuthMethod", "None"), kv("CHAP_X", "1")})
	if err == nil && get(out, "CHAP_X") != param.NotUnderstood {
		t.Fatalf("CHAP_X: %q", out)
	}
}

func TestCHAPMutual(t *testing.T) {
	s := New(chapAccounts, fixedRand())
	id, ch := startCHAP(t, s)
	ic := []byte("initiator-challenge-0123456789ab")
	out, done, err := s.Step([]param.KV{
		kv("CHAP_N", "alice"),
		kv("CHAP_R", "0x"+hex.EncodeToString(md5Resp(id, "alicesecret12", ch))),
		kv("CHAP_I", "77"),
		kv("CHAP_C", "0x"+hex.EncodeToString(ic)),
	})
	if err != nil || !done {
		t.Fatalf("mutual: %q %v %v", out, done, err)
	}
	if get(out, "CHAP_N") != "target" {
		t.Fatalf("CHAP_N %q", out)
	}
	want := "0x" + hex.EncodeToString(md5Resp(77, "targetsecret9", ic))
	if get(out, "CHAP_R") != want {
		t.Fatalf("CHAP_R %q, want %q", get(out, "CHAP_R"), want)
	}
	if s.User() != "alice" {
		t.Fatalf("User %q", s.User())
	}

	// Without an Outgoing account mutual CHAP is refused.
	s = New(Accounts{Incoming: chapAccounts.Incoming}, fixedRand())
	id, ch = startCHAP(t, s)
	_, done, err = s.Step([]param.KV{
		kv("CHAP_N", "alice"),
		kv("CHAP_R", "0x"+hex.EncodeToString(md5Resp(id, "alicesecret12", ch))),
		kv("CHAP_I", "77"),
		kv("CHAP_C", "0x"+hex.EncodeToString(ic)),
	})
	if !errors.Is(err, ErrAuthFailed) || done {
		t.Fatalf("mutual without outgoing: %v %v", done, err)
	}
}

func TestDecodeBinary(t *testing.T) {
	tests := []struct {
		in   string
		want []byte
		err  bool
	}{
		{"0x0102ff", []byte{1, 2, 0xff}, false},
		{"0X0102FF", []byte{1, 2, 0xff}, false},
		{"0x102", []byte{1, 2}, false},
		{"0bAQL/", []byte{1, 2, 0xff}, false},
		{"0BAQI=", []byte{1, 2}, false},
		{"0bAQI", []byte{1, 2}, false},
		{"0x", nil, true},
		{"0xg0", nil, true},
		{"0b!!", nil, true},
		{"1234", nil, true},
		{"", nil, true},
	}
	for _, tc := range tests {
		got, err := DecodeBinary(tc.in)
		if (err != nil) != tc.err || !bytes.Equal(got, tc.want) {
			t.Errorf("DecodeBinary(%q) = %x, %v", tc.in, got, err)
		}
	}
}

func FuzzStep(f *testing.F) {
	f.Add([]byte("AuthMethod=CHAP,None\x00"), []byte("CHAP_A=5\x00"), []byte("CHAP_N=alice\x00CHAP_R=0x00\x00"))
	f.Add([]byte("AuthMethod=CHAP\x00CHAP_A=5\x00"), []byte("CHAP_N=bob\x00CHAP_R=0bAAAA\x00CHAP_I=1\x00CHAP_C=0x01\x00"), []byte(""))
	f.Add([]byte("AuthMethod=None\x00"), []byte("CHAP_A=5\x00"), []byte("AuthMethod=CHAP\x00"))
	f.Fuzz(func(t *testing.T, a, b, c []byte) {
		s := New(chapAccounts, fixedRand())
		for _, seg := range [][]byte{a, b, c} {
			kvs, err := param.ParseText(seg)
			if err != nil {
				return
			}
			out, done, err := s.Step(kvs)
			if err != nil {
				if done || out != nil {
					t.Fatalf("error with output: %q %v %v", out, done, err)
				}
				return
			}
			if _, err := param.ParseText(param.AppendText(nil, out)); err != nil {
				t.Fatalf("answer %q invalid: %v", out, err)
			}
			if done && s.User() == "" {
				// With CHAP accounts configured, done implies a CHAP user.
				t.Fatalf("done without a user")
			}
		}
	})
}
