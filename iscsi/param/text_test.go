package param

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseText(t *testing.T) {
	long := strings.Repeat("a", 255)
	tests := []struct {
		name string
		in   string
		want []KV
		err  bool
	}{
		{name: "empty", in: "", want: nil},
		{name: "one", in: "HeaderDigest=None\x00", want: []KV{{"HeaderDigest", "None"}}},
		{name: "two", in: "A=1\x00B.c-d+e@f_g=x,y\x00", want: []KV{{"A", "1"}, {"B.c-d+e@f_g", "x,y"}}},
		{name: "empty value", in: "InitiatorAlias=\x00", want: []KV{{"InitiatorAlias", ""}}},
		{name: "value with =", in: "X-a=b=c\x00", want: []KV{{"X-a", "b=c"}}},
		{name: "padding NULs skipped", in: "A=1\x00\x00\x00", want: []KV{{"A", "1"}}},
		{name: "X# key", in: "X#com.example=1\x00", want: []KV{{"X#com.example", "1"}}},
		{name: "value 255", in: "A=" + long + "\x00", want: []KV{{"A", long}}},
		{name: "CHAP long", in: "CHAP_C=0x" + strings.Repeat("ab", 1024) + "\x00", want: []KV{{"CHAP_C", "0x" + strings.Repeat("ab", 1024)}}},
		{name: "no NUL", in: "A=1", err: true},
		{name: "no =", in: "A\x00", err: true},
		{name: "empty key", in: "=1\x00", err: true},
		{name: "lower-case start", in: "iSERHelloRequired=No\x00", want: []KV{{"iSERHelloRequired", "No"}}},
		{name: "symbol start", in: "_A=1\x00", err: true},
		{name: "digit start", in: "1A=1\x00", err: true},
		{name: "bad char", in: "A B=1\x00", err: true},
		{name: "hash not after X", in: "Y#a=1\x00", err: true},
		{name: "key 64", in: "A" + strings.Repeat("b", 63) + "=1\x00", err: true},
		{name: "key 63", in: "A" + strings.Repeat("b", 62) + "=1\x00", want: []KV{{"A" + strings.Repeat("b", 62), "1"}}},
		{name: "value 256", in: "A=" + long + "a\x00", err: true},
		{name: "list elem 256", in: "A=x," + long + "a\x00", err: true},
		{name: "list elems 255", in: "A=" + long + "," + long + "\x00", want: []KV{{"A", long + "," + long}}},
		{name: "CHAP too long", in: "CHAP_R=" + strings.Repeat("a", 8193) + "\x00", err: true},
		{name: "bad utf8", in: "A=\xff\x00", err: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseText([]byte(tc.in))
			if tc.err {
				if err == nil || !errors.Is(err, ErrMalformed) {
					t.Fatalf("ParseText(%q) = %v, %v; want ErrMalformed", tc.in, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseText(%q): %v", tc.in, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ParseText(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestAppendTextRoundTrip(t *testing.T) {
	kvs := []KV{{"TargetName", "iqn.2001-04.com.example:t1"}, {"MaxRecvDataSegmentLength", "8192"}, {"InitiatorAlias", ""}}
	b := AppendText([]byte("prefix"), kvs)
	want := "prefixTargetName=iqn.2001-04.com.example:t1\x00MaxRecvDataSegmentLength=8192\x00InitiatorAlias=\x00"
	if string(b) != want {
		t.Fatalf("AppendText = %q, want %q", b, want)
	}
	got, err := ParseText(b[len("prefix"):])
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, kvs) {
		t.Fatalf("round trip = %q, want %q", got, kvs)
	}
	if v, ok := Lookup(got, "MaxRecvDataSegmentLength"); !ok || v != "8192" {
		t.Fatalf("Lookup = %q, %v", v, ok)
	}
	if _, ok := Lookup(got, "Missing"); ok {
		t.Fatal("Lookup found a missing key")
	}
}

func FuzzParseText(f *testing.F) {
	f.Add([]byte("InitiatorName=iqn.1993-08.org.debian:01:abc\x00SessionType=Normal\x00"))
	f.Add([]byte("HeaderDigest=CRC32C,None\x00\x00"))
	f.Add([]byte("A=1"))
	f.Add([]byte("=\x00"))
	f.Add([]byte("X#x=\xff\x00"))
	f.Add([]byte("CHAP_C=0xdeadbeef\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		kvs, err := ParseText(b)
		if err != nil {
			return
		}
		// Whatever parses must survive a round trip unchanged.
		again, err := ParseText(AppendText(nil, kvs))
		if err != nil {
			t.Fatalf("re-parse of %q: %v", b, err)
		}
		if len(again) != len(kvs) {
			t.Fatalf("round trip changed %q to %q", kvs, again)
		}
		for i := range kvs {
			if kvs[i] != again[i] {
				t.Fatalf("round trip changed %q to %q", kvs, again)
			}
			if bytes.IndexByte([]byte(kvs[i].Key), '=') >= 0 {
				t.Fatalf("key %q contains '='", kvs[i].Key)
			}
		}
	})
}
