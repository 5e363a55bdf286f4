package param

import (
	"errors"
	"reflect"
	"strconv"
	"testing"
)

// answer returns the value answered for key, "" if none.
func answer(out []KV, key string) (string, bool) {
	for _, kv := range out {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return "", false
}

// TestRespondKeys checks each key of spec §2.4 against the RFC 7143 rule,
// starting from the default target configuration.
func TestRespondKeys(t *testing.T) {
	tests := []struct {
		name      string
		key, val  string
		cfg       func(*Config)
		discovery bool
		want      string // "" = no answer
		check     func(s Session) bool
	}{
		// Booleans, OR: InitialR2T (target No).
		{name: "InitialR2T Yes", key: "InitialR2T", val: "Yes", want: "Yes", check: func(s Session) bool { return s.InitialR2T }},
		{name: "InitialR2T No", key: "InitialR2T", val: "No", want: "No", check: func(s Session) bool { return !s.InitialR2T }},
		{name: "InitialR2T target Yes", key: "InitialR2T", val: "No", cfg: func(c *Config) { c.InitialR2T = true }, want: "Yes", check: func(s Session) bool { return s.InitialR2T }},
		{name: "InitialR2T bad", key: "InitialR2T", val: "yes", want: "Reject", check: func(s Session) bool { return s.InitialR2T }},
		{name: "InitialR2T discovery", key: "InitialR2T", val: "No", discovery: true, want: "Irrelevant", check: func(s Session) bool { return s.InitialR2T }},
		// AND: ImmediateData (target Yes).
		{name: "ImmediateData Yes", key: "ImmediateData", val: "Yes", want: "Yes", check: func(s Session) bool { return s.ImmediateData }},
		{name: "ImmediateData No", key: "ImmediateData", val: "No", want: "No", check: func(s Session) bool { return !s.ImmediateData }},
		{name: "ImmediateData target No", key: "ImmediateData", val: "Yes", cfg: func(c *Config) { c.ImmediateData = false }, want: "No", check: func(s Session) bool { return !s.ImmediateData }},
		{name: "ImmediateData discovery", key: "ImmediateData", val: "No", discovery: true, want: "Irrelevant", check: func(s Session) bool { return s.ImmediateData }},
		{name: "DataPDUInOrder No", key: "DataPDUInOrder", val: "No", want: "No", check: func(s Session) bool { return !s.DataPDUInOrder }},
		{name: "DataPDUInOrder Yes", key: "DataPDUInOrder", val: "Yes", want: "Yes", check: func(s Session) bool { return s.DataPDUInOrder }},
		{name: "DataPDUInOrder target Yes", key: "DataPDUInOrder", val: "No", cfg: func(c *Config) { c.DataPDUInOrder = true }, want: "Yes", check: func(s Session) bool { return s.DataPDUInOrder }},
		{name: "DataSequenceInOrder No", key: "DataSequenceInOrder", val: "No", want: "No", check: func(s Session) bool { return !s.DataSequenceInOrder }},
		{name: "DataSequenceInOrder Yes", key: "DataSequenceInOrder", val: "Yes", want: "Yes", check: func(s Session) bool { return s.DataSequenceInOrder }},
		{name: "DataSequenceInOrder discovery", key: "DataSequenceInOrder", val: "No", discovery: true, want: "Irrelevant", check: func(s Session) bool { return s.DataSequenceInOrder }},
		{name: "IFMarker No", key: "IFMarker", val: "No", want: "No"},
		{name: "IFMarker Yes", key: "IFMarker", val: "Yes", want: "No"},
		{name: "OFMarker Yes", key: "OFMarker", val: "Yes", want: "No"},
		{name: "OFMarkInt", key: "OFMarkInt", val: "2048", want: "Reject"},
		{name: "IFMarkInt", key: "IFMarkInt", val: "1~65535", want: "Reject"},
		// Numerical, minimum.
		{name: "MaxConnections 4", key: "MaxConnections", val: "4", want: "1", check: func(s Session) bool { return s.MaxConnections == 1 }},
		{name: "MaxConnections 0", key: "MaxConnections", val: "0", want: "Reject"},
		{name: "MaxConnections 65536", key: "MaxConnections", val: "65536", want: "Reject"},
		{name: "MaxConnections discovery", key: "MaxConnections", val: "1", discovery: true, want: "Irrelevant"},
		{name: "MaxBurstLength 262144", key: "MaxBurstLength", val: "262144", want: "262144", check: func(s Session) bool { return s.MaxBurstLength == 262144 }},
		{name: "MaxBurstLength hex", key: "MaxBurstLength", val: "0x10000", want: "65536", check: func(s Session) bool { return s.MaxBurstLength == 65536 }},
		{name: "MaxBurstLength capped", key: "MaxBurstLength", val: "16776192", cfg: func(c *Config) { c.MaxBurstLength = 1048576 }, want: "1048576", check: func(s Session) bool { return s.MaxBurstLength == 1048576 }},
		{name: "MaxBurstLength 511", key: "MaxBurstLength", val: "511", want: "Reject", check: func(s Session) bool { return s.MaxBurstLength == 262144 }},
		{name: "MaxBurstLength 2^24", key: "MaxBurstLength", val: "16777216", want: "Reject"},
		{name: "MaxBurstLength junk", key: "MaxBurstLength", val: "12k", want: "Reject"},
		{name: "MaxBurstLength empty", key: "MaxBurstLength", val: "", want: "Reject"},
		{name: "FirstBurstLength", key: "FirstBurstLength", val: "262144", want: "65536", check: func(s Session) bool { return s.FirstBurstLength == 65536 }},
		{name: "FirstBurstLength small", key: "FirstBurstLength", val: "8192", want: "8192", check: func(s Session) bool { return s.FirstBurstLength == 8192 }},
		{name: "FirstBurstLength discovery", key: "FirstBurstLength", val: "8192", discovery: true, want: "Irrelevant", check: func(s Session) bool { return s.FirstBurstLength == 65536 }},
		{name: "MaxOutstandingR2T", key: "MaxOutstandingR2T", val: "64", want: "32", check: func(s Session) bool { return s.MaxOutstandingR2T == 32 }},
		{name: "MaxOutstandingR2T 1", key: "MaxOutstandingR2T", val: "1", want: "1", check: func(s Session) bool { return s.MaxOutstandingR2T == 1 }},
		{name: "MaxOutstandingR2T 0", key: "MaxOutstandingR2T", val: "0", want: "Reject"},
		{name: "DefaultTime2Retain", key: "DefaultTime2Retain", val: "20", want: "0", check: func(s Session) bool { return s.DefaultTime2Retain == 0 }},
		{name: "DefaultTime2Retain 3601", key: "DefaultTime2Retain", val: "3601", want: "Reject"},
		{name: "ErrorRecoveryLevel 2", key: "ErrorRecoveryLevel", val: "2", want: "0", check: func(s Session) bool { return s.ErrorRecoveryLevel == 0 }},
		{name: "ErrorRecoveryLevel 3", key: "ErrorRecoveryLevel", val: "3", want: "Reject"},
		// Numerical, maximum; SCST only accepts its own 0.
		{name: "DefaultTime2Wait 2", key: "DefaultTime2Wait", val: "2", want: "0", check: func(s Session) bool { return s.DefaultTime2Wait == 0 }},
		{name: "DefaultTime2Wait 0", key: "DefaultTime2Wait", val: "0", want: "0", check: func(s Session) bool { return s.DefaultTime2Wait == 0 }},
		{name: "DefaultTime2Wait 3601", key: "DefaultTime2Wait", val: "3601", want: "Reject", check: func(s Session) bool { return s.DefaultTime2Wait == 2 }},
		{name: "DefaultTime2Wait discovery", key: "DefaultTime2Wait", val: "2", discovery: true, want: "0"},
		// Lists.
		{name: "HeaderDigest None", key: "HeaderDigest", val: "None", want: "None", check: func(s Session) bool { return !s.HeaderDigest }},
		{name: "HeaderDigest CRC only, target None", key: "HeaderDigest", val: "CRC32C", want: "Reject", check: func(s Session) bool { return !s.HeaderDigest }},
		{name: "HeaderDigest CRC,None target None", key: "HeaderDigest", val: "CRC32C,None", want: "None"},
		{name: "HeaderDigest CRC,None target both", key: "HeaderDigest", val: "CRC32C,None", cfg: func(c *Config) { c.HeaderDigest = []string{"CRC32C", "None"} }, want: "CRC32C", check: func(s Session) bool { return s.HeaderDigest }},
		{name: "HeaderDigest None,CRC target both", key: "HeaderDigest", val: "None,CRC32C", cfg: func(c *Config) { c.HeaderDigest = []string{"CRC32C", "None"} }, want: "CRC32C", check: func(s Session) bool { return s.HeaderDigest }},
		{name: "HeaderDigest None,CRC target None,CRC", key: "HeaderDigest", val: "CRC32C,None", cfg: func(c *Config) { c.HeaderDigest = []string{"None", "CRC32C"} }, want: "None", check: func(s Session) bool { return !s.HeaderDigest }},
		{name: "HeaderDigest None only, target both", key: "HeaderDigest", val: "None", cfg: func(c *Config) { c.HeaderDigest = []string{"CRC32C", "None"} }, want: "None", check: func(s Session) bool { return !s.HeaderDigest }},
		{name: "HeaderDigest unknown skipped", key: "HeaderDigest", val: "MD5,CRC32C", cfg: func(c *Config) { c.HeaderDigest = []string{"CRC32C"} }, want: "CRC32C", check: func(s Session) bool { return s.HeaderDigest }},
		{name: "DataDigest CRC", key: "DataDigest", val: "CRC32C", cfg: func(c *Config) { c.DataDigest = []string{"CRC32C"} }, want: "CRC32C", check: func(s Session) bool { return s.DataDigest && !s.HeaderDigest }},
		{name: "DataDigest None only, target CRC only", key: "DataDigest", val: "None", cfg: func(c *Config) { c.DataDigest = []string{"CRC32C"} }, want: "Reject"},
		{name: "HeaderDigest discovery", key: "HeaderDigest", val: "None", discovery: true, want: "None"},
		{name: "TaskReporting", key: "TaskReporting", val: "FastAbort,RFC3720", want: "RFC3720"},
		{name: "TaskReporting unsupported", key: "TaskReporting", val: "FastAbort", want: "Reject"},
		{name: "TaskReporting discovery", key: "TaskReporting", val: "RFC3720", discovery: true, want: "Irrelevant"},
		// Declarative: no answer, but the target declares its own value.
		{name: "MaxRecvDataSegmentLength", key: "MaxRecvDataSegmentLength", val: "262144", want: "16777215", check: func(s Session) bool {
			return s.MaxXmitDataSegmentLength == 262144 && s.MaxRecvDataSegmentLength == 16777215
		}},
		{name: "MaxRecvDataSegmentLength capped by Xmit", key: "MaxRecvDataSegmentLength", val: "262144", cfg: func(c *Config) { c.MaxXmitDataSegmentLength = 65536 }, want: "16777215", check: func(s Session) bool { return s.MaxXmitDataSegmentLength == 65536 }},
		{name: "MaxRecvDataSegmentLength discovery", key: "MaxRecvDataSegmentLength", val: "32768", discovery: true, want: "16777215", check: func(s Session) bool { return s.MaxXmitDataSegmentLength == 32768 }},
		{name: "MaxXmitDataSegmentLength is local", key: "MaxXmitDataSegmentLength", val: "8192", want: "NotUnderstood"},
		// iSER keys on a TCP target.
		{name: "RDMAExtensions", key: "RDMAExtensions", val: "Yes", want: "No"},
		{name: "TargetRecvDataSegmentLength", key: "TargetRecvDataSegmentLength", val: "8192", want: "Irrelevant"},
		{name: "InitiatorRecvDataSegmentLength", key: "InitiatorRecvDataSegmentLength", val: "8192", want: "Irrelevant"},
		{name: "MaxAHSLength", key: "MaxAHSLength", val: "256", want: "Irrelevant"},
		{name: "TaggedBufferForSolicitedDataOnly", key: "TaggedBufferForSolicitedDataOnly", val: "No", want: "Irrelevant"},
		{name: "iSERHelloRequired", key: "iSERHelloRequired", val: "No", want: "Irrelevant"},
		{name: "MaxOutstandingUnexpectedPDUs", key: "MaxOutstandingUnexpectedPDUs", val: "0", want: "Irrelevant"},
		// Unknown and private keys.
		{name: "unknown", key: "FooBar", val: "1", want: "NotUnderstood"},
		{name: "X- key", key: "X-com.example.foo", val: "1", want: "NotUnderstood"},
		{name: "X# key", key: "X#com.example", val: "1", want: "NotUnderstood"},
		{name: "target-only key", key: "TargetAlias", val: "x", want: "Reject"},
		// Inquiry.
		{name: "inquiry MaxBurstLength", key: "MaxBurstLength", val: "?", want: "16777215", check: func(s Session) bool { return s.MaxBurstLength == 262144 }},
		{name: "inquiry HeaderDigest", key: "HeaderDigest", val: "?", cfg: func(c *Config) { c.HeaderDigest = []string{"CRC32C", "None"} }, want: "CRC32C,None"},
		{name: "inquiry InitialR2T", key: "InitialR2T", val: "?", want: "No", check: func(s Session) bool { return s.InitialR2T }},
		// Keys handled elsewhere get no answer.
		{name: "AuthMethod", key: "AuthMethod", val: "None", want: ""},
		{name: "CHAP_A", key: "CHAP_A", val: "5", want: ""},
		{name: "SendTargets", key: "SendTargets", val: "All", want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			n := NewNegotiation(cfg)
			in := []KV{{"InitiatorName", "iqn.1993-08.org.debian:01:x"}}
			if tc.discovery {
				in = append(in, KV{"SessionType", "Discovery"})
			} else {
				in = append(in, KV{"TargetName", "iqn.2001-04.com.example:t1"})
			}
			in = append(in, KV{tc.key, tc.val})
			out, err := n.Respond(in)
			if err != nil {
				t.Fatalf("Respond: %v", err)
			}
			got, ok := answer(out, tc.key)
			if tc.want == "" {
				if ok {
					t.Fatalf("answered %s=%s, want no answer", tc.key, got)
				}
			} else if !ok || got != tc.want {
				t.Fatalf("answer %s=%q (present %v), want %q; all %q", tc.key, got, ok, tc.want, out)
			}
			s := n.Result()
			if s.Discovery != tc.discovery {
				t.Fatalf("Discovery = %v", s.Discovery)
			}
			if tc.check != nil && !tc.check(s) {
				t.Fatalf("result %+v", s)
			}
		})
	}
}

// TestRespondLinuxLogin replays the operational keys open-iscsi sends and
// checks the complete answer and result.
func TestRespondLinuxLogin(t *testing.T) {
	n := NewNegotiation(DefaultConfig())
	// Security stage: login keys plus AuthMethod (answered by package auth).
	out, err := n.Respond([]KV{
		{"InitiatorName", "iqn.2004-10.com.ubuntu:01:abc"},
		{"InitiatorAlias", "host"},
		{"TargetName", "iqn.2001-04.com.example:t1"},
		{"SessionType", "Normal"},
		{"AuthMethod", "None"},
	})
	if err != nil || len(out) != 0 {
		t.Fatalf("security stage: %q, %v", out, err)
	}
	out, err = n.Respond([]KV{
		{"HeaderDigest", "None"},
		{"DataDigest", "None"},
		{"MaxConnections", "1"},
		{"InitialR2T", "No"},
		{"ImmediateData", "Yes"},
		{"MaxRecvDataSegmentLength", "262144"},
		{"MaxBurstLength", "16776192"},
		{"FirstBurstLength", "262144"},
		{"DefaultTime2Wait", "2"},
		{"DefaultTime2Retain", "0"},
		{"MaxOutstandingR2T", "1"},
		{"DataPDUInOrder", "Yes"},
		{"DataSequenceInOrder", "Yes"},
		{"ErrorRecoveryLevel", "0"},
		{"IFMarker", "No"},
		{"OFMarker", "No"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []KV{
		{"HeaderDigest", "None"},
		{"DataDigest", "None"},
		{"MaxConnections", "1"},
		{"InitialR2T", "No"},
		{"ImmediateData", "Yes"},
		{"MaxBurstLength", "16776192"},
		{"FirstBurstLength", "65536"},
		{"DefaultTime2Wait", "0"},
		{"DefaultTime2Retain", "0"},
		{"MaxOutstandingR2T", "1"},
		{"DataPDUInOrder", "Yes"},
		{"DataSequenceInOrder", "Yes"},
		{"ErrorRecoveryLevel", "0"},
		{"IFMarker", "No"},
		{"OFMarker", "No"},
		{"MaxRecvDataSegmentLength", "16777215"},
	}
	if !reflect.DeepEqual(out, want) {
		t.Fatalf("answer\n got %q\nwant %q", out, want)
	}
	if p := n.Pending(); p != nil {
		t.Fatalf("Pending after declaration = %q", p)
	}
	got := n.Result()
	wantS := Session{
		InitiatorName: "iqn.2004-10.com.ubuntu:01:abc", InitiatorAlias: "host",
		TargetName: "iqn.2001-04.com.example:t1", Discovery: false,
		InitialR2T: false, ImmediateData: true,
		MaxRecvDataSegmentLength: 16777215, MaxXmitDataSegmentLength: 262144,
		MaxBurstLength: 16776192, FirstBurstLength: 65536, MaxOutstandingR2T: 1,
		DataPDUInOrder: true, DataSequenceInOrder: true,
		ErrorRecoveryLevel: 0, DefaultTime2Wait: 0, DefaultTime2Retain: 0, MaxConnections: 1,
	}
	if got != wantS {
		t.Fatalf("Result\n got %+v\nwant %+v", got, wantS)
	}
}

func TestResultDefaults(t *testing.T) {
	n := NewNegotiation(DefaultConfig())
	if _, err := n.Respond([]KV{{"InitiatorName", "iqn.x"}, {"TargetName", "iqn.t"}}); err != nil {
		t.Fatal(err)
	}
	s := n.Result()
	want := Session{
		InitiatorName: "iqn.x", TargetName: "iqn.t",
		InitialR2T: true, ImmediateData: true,
		MaxRecvDataSegmentLength: 8192, MaxXmitDataSegmentLength: 8192,
		MaxBurstLength: 262144, FirstBurstLength: 65536, MaxOutstandingR2T: 1,
		DataPDUInOrder: true, DataSequenceInOrder: true,
		DefaultTime2Wait: 2, DefaultTime2Retain: 20, MaxConnections: 1,
	}
	if s != want {
		t.Fatalf("Result = %+v\nwant %+v", s, want)
	}
	p := n.Pending()
	if len(p) != 1 || p[0] != (KV{"MaxRecvDataSegmentLength", "16777215"}) {
		t.Fatalf("Pending = %q", p)
	}
	if n.Result().MaxRecvDataSegmentLength != 16777215 {
		t.Fatal("declared MaxRecvDataSegmentLength not in Result")
	}
	if n.Pending() != nil {
		t.Fatal("declared twice")
	}
}

func TestFirstBurstNotAboveMaxBurst(t *testing.T) {
	for _, order := range [][]KV{
		{{"FirstBurstLength", "65536"}, {"MaxBurstLength", "16384"}},
		{{"MaxBurstLength", "16384"}, {"FirstBurstLength", "65536"}},
	} {
		n := NewNegotiation(DefaultConfig())
		out, err := n.Respond(order)
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := answer(out, "FirstBurstLength"); v != "16384" {
			t.Fatalf("order %q: FirstBurstLength answered %q, want 16384", order, v)
		}
		if s := n.Result(); s.FirstBurstLength != 16384 || s.MaxBurstLength != 16384 {
			t.Fatalf("result %+v", s)
		}
	}
	// Across requests: MaxBurstLength lowered after FirstBurstLength.
	n := NewNegotiation(DefaultConfig())
	if _, err := n.Respond([]KV{{"FirstBurstLength", "65536"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Respond([]KV{{"MaxBurstLength", "4096"}}); err != nil {
		t.Fatal(err)
	}
	if s := n.Result(); s.FirstBurstLength != 4096 {
		t.Fatalf("FirstBurstLength = %d, want 4096", s.FirstBurstLength)
	}
}

func TestFirstBurstIrrelevant(t *testing.T) {
	cfg := DefaultConfig()
	cfg.InitialR2T = true
	n := NewNegotiation(cfg)
	out, err := n.Respond([]KV{{"InitialR2T", "Yes"}, {"ImmediateData", "No"}, {"FirstBurstLength", "8192"}})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := answer(out, "FirstBurstLength"); v != "Irrelevant" {
		t.Fatalf("FirstBurstLength = %q, want Irrelevant", v)
	}
}

func TestRespondErrors(t *testing.T) {
	tests := []struct {
		name string
		reqs [][]KV
		err  error
	}{
		{"duplicate in one request", [][]KV{{{"MaxBurstLength", "512"}, {"MaxBurstLength", "512"}}}, ErrProtocol},
		{"renegotiated", [][]KV{{{"InitialR2T", "Yes"}}, {{"InitialR2T", "Yes"}}}, ErrProtocol},
		{"digest renegotiated", [][]KV{{{"HeaderDigest", "None"}}, {{"HeaderDigest", "None"}}}, ErrProtocol},
		{"MRDSL twice", [][]KV{{{"MaxRecvDataSegmentLength", "8192"}}, {{"MaxRecvDataSegmentLength", "8192"}}}, ErrProtocol},
		{"MRDSL invalid", [][]KV{{{"MaxRecvDataSegmentLength", "abc"}}}, ErrProtocol},
		{"MRDSL too small", [][]KV{{{"MaxRecvDataSegmentLength", "511"}}}, ErrProtocol},
		{"MRDSL too big", [][]KV{{{"MaxRecvDataSegmentLength", "16777216"}}}, ErrProtocol},
		{"session type", [][]KV{{{"SessionType", "Weird"}}}, ErrSessionType},
		{"session type changed", [][]KV{{{"SessionType", "Normal"}}, {{"SessionType", "Discovery"}}}, ErrProtocol},
		{"initiator name changed", [][]KV{{{"InitiatorName", "iqn.a"}}, {{"InitiatorName", "iqn.b"}}}, ErrProtocol},
		{"initiator name empty", [][]KV{{{"InitiatorName", ""}}}, ErrProtocol},
		{"target name too long", [][]KV{{{"TargetName", string(make([]byte, 224))}}}, ErrProtocol},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := NewNegotiation(DefaultConfig())
			var err error
			for _, r := range tc.reqs {
				if _, err = n.Respond(r); err != nil {
					break
				}
			}
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
		})
	}
}

func TestRespondRepeatedLoginKeysTolerated(t *testing.T) {
	n := NewNegotiation(DefaultConfig())
	for i := 0; i < 2; i++ {
		if _, err := n.Respond([]KV{{"InitiatorName", "iqn.a"}, {"TargetName", "iqn.t"}, {"SessionType", "Normal"}}); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
}

func TestFullFeatureText(t *testing.T) {
	n := NewNegotiation(DefaultConfig())
	if _, err := n.Respond([]KV{{"MaxRecvDataSegmentLength", "8192"}}); err != nil {
		t.Fatal(err)
	}
	n.FullFeature()
	out, err := n.Respond([]KV{{"MaxRecvDataSegmentLength", "65536"}, {"MaxBurstLength", "512"}, {"X-foo", "1"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []KV{{"MaxBurstLength", "Reject"}, {"X-foo", "NotUnderstood"}}
	if !reflect.DeepEqual(out, want) {
		t.Fatalf("got %q, want %q", out, want)
	}
	if s := n.Result(); s.MaxXmitDataSegmentLength != 65536 || s.MaxBurstLength != 262144 {
		t.Fatalf("result %+v", s)
	}
	if _, err := n.Respond([]KV{{"MaxRecvDataSegmentLength", "1"}}); !errors.Is(err, ErrProtocol) {
		t.Fatalf("invalid MRDSL in FFP: %v", err)
	}
}

func TestDiscoverySessionTypeFirst(t *testing.T) {
	// SessionType after the session-only keys still makes them Irrelevant.
	n := NewNegotiation(DefaultConfig())
	out, err := n.Respond([]KV{{"InitialR2T", "No"}, {"MaxRecvDataSegmentLength", "4096"}, {"SessionType", "Discovery"}})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := answer(out, "InitialR2T"); v != "Irrelevant" {
		t.Fatalf("InitialR2T = %q", v)
	}
	s := n.Result()
	if !s.Discovery || s.MaxXmitDataSegmentLength != 4096 {
		t.Fatalf("result %+v", s)
	}
}

func FuzzRespond(f *testing.F) {
	f.Add([]byte("InitiatorName=iqn.a\x00SessionType=Discovery\x00HeaderDigest=CRC32C,None\x00"), []byte("MaxBurstLength=512\x00FirstBurstLength=99999\x00"))
	f.Add([]byte("MaxRecvDataSegmentLength=0x2000\x00DefaultTime2Wait=?\x00"), []byte("X-a=b\x00"))
	f.Add([]byte("InitialR2T=Yes\x00ImmediateData=No\x00FirstBurstLength=512\x00"), []byte(""))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		cfg := DefaultConfig()
		cfg.HeaderDigest = []string{DigestCRC32C, DigestNone}
		n := NewNegotiation(cfg)
		for _, seg := range [][]byte{a, b} {
			kvs, err := ParseText(seg)
			if err != nil {
				return
			}
			out, err := n.Respond(kvs)
			if err != nil {
				return
			}
			// Every answer must itself be valid wire text.
			if _, err := ParseText(AppendText(nil, out)); err != nil {
				t.Fatalf("answer %q is not valid text: %v", out, err)
			}
		}
		s := n.Result()
		if s.FirstBurstLength > s.MaxBurstLength {
			t.Fatalf("FirstBurstLength %d > MaxBurstLength %d", s.FirstBurstLength, s.MaxBurstLength)
		}
		if s.MaxXmitDataSegmentLength > cfg.MaxXmitDataSegmentLength || s.MaxXmitDataSegmentLength < 512 {
			t.Fatalf("MaxXmitDataSegmentLength %d", s.MaxXmitDataSegmentLength)
		}
		if s.MaxConnections != 1 || s.ErrorRecoveryLevel != 0 {
			t.Fatalf("MaxConnections %d ErrorRecoveryLevel %d", s.MaxConnections, s.ErrorRecoveryLevel)
		}
		if s.MaxBurstLength > cfg.MaxBurstLength && s.MaxBurstLength != 262144 {
			t.Fatalf("MaxBurstLength %s", strconv.Itoa(int(s.MaxBurstLength)))
		}
	})
}

func TestCheck(t *testing.T) {
	tests := []struct {
		in  []KV
		err bool
	}{
		{[]KV{{"InitiatorName", "iqn.a"}, {"TargetName", "iqn.t"}}, false},
		{[]KV{{"InitiatorName", "iqn.a"}, {"SessionType", "Discovery"}}, false},
		{[]KV{{"InitiatorName", "iqn.a"}}, true},
		{[]KV{{"TargetName", "iqn.t"}}, true},
		{[]KV{{"SessionType", "Discovery"}}, true},
	}
	for _, tc := range tests {
		n := NewNegotiation(DefaultConfig())
		if _, err := n.Respond(tc.in); err != nil {
			t.Fatal(err)
		}
		if err := n.Check(); (err != nil) != tc.err || (err != nil && !errors.Is(err, ErrMissing)) {
			t.Errorf("Check(%q) = %v", tc.in, err)
		}
	}
}
