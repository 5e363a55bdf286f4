package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/scstd/scstd/iscsi/auth"
	"github.com/scstd/scstd/iscsi/param"
)

// usermodeSample is the usermode iscsi-scstd.conf of spec §2.4.
const usermodeSample = `# /etc/iscsi-scstd.conf
Target iqn.2001-04.com.example.frobozz:1
	QueuedCommands		2048
	RspTimeout		90
	NOPInInterval		30
	NOPInTimeout		30
	MaxSessions		0
	InitialR2T		No
	ImmediateData		Yes
	MaxConnections		1
	MaxRecvDataSegmentLength 16773120
	MaxXmitDataSegmentLength 16773120
	MaxBurstLength		16773120
	FirstBurstLength	16773120
	DefaultTime2Wait	0
	DefaultTime2Retain	0
	MaxOutstandingR2T	8
	DataPDUInOrder		Yes
	DataSequenceInOrder	Yes
	ErrorRecoveryLevel	0
	HeaderDigest		None
	DataDigest		None
`

func TestParseUsermodeSample(t *testing.T) {
	f, errs := Parse(strings.NewReader(usermodeSample))
	if len(errs) != 0 {
		t.Fatalf("errors: %v", errs)
	}
	if len(f.Targets) != 1 {
		t.Fatalf("targets: %d", len(f.Targets))
	}
	tg := f.Target("iqn.2001-04.com.example.frobozz:1")
	if tg == nil || tg.TID != 1 {
		t.Fatalf("target %+v", tg)
	}
	want := param.DefaultConfig()
	want.QueuedCommands = 2048
	want.MaxRecvDataSegmentLength = 16773120
	want.MaxXmitDataSegmentLength = 16773120
	want.MaxBurstLength = 16773120
	want.FirstBurstLength = 16773120
	want.MaxOutstandingR2T = 8
	want.DataPDUInOrder = true
	want.DataSequenceInOrder = true
	if !reflect.DeepEqual(tg.Params, want) {
		t.Fatalf("params\n got %+v\nwant %+v", tg.Params, want)
	}
	if f.Target("IQN.2001-04.com.example.frobozz:1") != nil {
		t.Fatal("Target lookup must be case-sensitive")
	}
}

func TestParse(t *testing.T) {
	type lineErr struct {
		line    int
		warning bool
		err     error
	}
	tests := []struct {
		name  string
		in    string
		check func(t *testing.T, f *File)
		errs  []lineErr
	}{
		{
			name: "semicolons and equals",
			in:   "Target iqn.a;MaxBurstLength=262144;InitialR2T = Yes\n",
			check: func(t *testing.T, f *File) {
				p := f.Target("iqn.a").Params
				if p.MaxBurstLength != 262144 || !p.InitialR2T {
					t.Fatalf("params %+v", p)
				}
			},
		},
		{
			name: "case-insensitive keywords, comments",
			in:   "# comment\n  #indented comment\nTARGET iqn.a\nmaxburstlength 4096\nalias disk1\n",
			check: func(t *testing.T, f *File) {
				tg := f.Target("iqn.a")
				if tg.Params.MaxBurstLength != 4096 || tg.Alias != "disk1" {
					t.Fatalf("target %+v", tg)
				}
			},
		},
		{
			name: "hash later in line is a token",
			in:   "Target iqn.a\nMaxBurstLength 4096 # comment\n",
			errs: []lineErr{{2, false, ErrValue}},
			check: func(t *testing.T, f *File) {
				if f.Target("iqn.a").Params.MaxBurstLength != param.DefaultConfig().MaxBurstLength {
					t.Fatal("rejected line applied")
				}
			},
		},
		{
			name: "global accounts and iSNS",
			in: "IncomingUser joe secretsecret12\nOutgoingUser jim secretsecret34\niSNSServer 10.0.0.1\niSNSAccessControl Yes\n" +
				"Target iqn.a\nIncomingUser1 ann annsecret1234\nIncomingUser2 bob bobsecret1234\nOutgoingUser tgt tgtsecret1234\n",
			check: func(t *testing.T, f *File) {
				wantD := auth.Accounts{Incoming: []auth.Account{{User: "joe", Secret: "secretsecret12"}}, Outgoing: &auth.Account{User: "jim", Secret: "secretsecret34"}}
				if !reflect.DeepEqual(f.Discovery, wantD) {
					t.Fatalf("discovery %+v", f.Discovery)
				}
				if f.ISNSServer != "10.0.0.1" || !f.ISNSAccessControl {
					t.Fatalf("isns %q %v", f.ISNSServer, f.ISNSAccessControl)
				}
				wantT := auth.Accounts{
					Incoming: []auth.Account{{User: "ann", Secret: "annsecret1234"}, {User: "bob", Secret: "bobsecret1234"}},
					Outgoing: &auth.Account{User: "tgt", Secret: "tgtsecret1234"},
				}
				if !reflect.DeepEqual(f.Target("iqn.a").Accounts, wantT) {
					t.Fatalf("target accounts %+v", f.Target("iqn.a").Accounts)
				}
			},
		},
		{
			name: "second OutgoingUser replaces with warning",
			in:   "Target iqn.a\nOutgoingUser a secretsecret1\nOutgoingUser b secretsecret2\n",
			errs: []lineErr{{3, true, ErrReplaced}},
			check: func(t *testing.T, f *File) {
				if o := f.Target("iqn.a").Accounts.Outgoing; o == nil || o.User != "b" {
					t.Fatalf("outgoing %+v", o)
				}
			},
		},
		{
			name: "short secret rejected",
			in:   "Target iqn.a\nIncomingUser joe short\nIncomingUser ann elevenchars\nIncomingUser bob twelvechars!\n",
			errs: []lineErr{{2, false, ErrShortCHAP}, {3, false, ErrShortCHAP}},
			check: func(t *testing.T, f *File) {
				in := f.Target("iqn.a").Accounts.Incoming
				if len(in) != 1 || in[0].User != "bob" {
					t.Fatalf("incoming %+v", in)
				}
			},
		},
		{
			name: "user line with wrong token count",
			in:   "IncomingUser joe\nIncomingUser joe a b secretsecret12\nIncomingUserX joe secretsecret12\n",
			errs: []lineErr{{1, false, ErrValue}, {2, false, ErrValue}, {3, false, ErrSyntax}},
		},
		{
			name: "duplicate incoming user",
			in:   "Target iqn.a\nIncomingUser joe secretsecret12\nIncomingUser joe secretsecret34\n",
			errs: []lineErr{{3, false, syscall.EEXIST}},
		},
		{
			name: "duplicate target ignored with its stanza, tids in order",
			in:   "Target iqn.a\nMaxBurstLength 4096\nTarget iqn.b\nTarget iqn.a\nMaxBurstLength 8192\nTarget iqn.c\n",
			errs: []lineErr{{4, false, syscall.EEXIST}},
			check: func(t *testing.T, f *File) {
				var names []string
				var tids []uint32
				for _, tg := range f.Targets {
					names = append(names, tg.Name)
					tids = append(tids, tg.TID)
				}
				if !reflect.DeepEqual(names, []string{"iqn.a", "iqn.b", "iqn.c"}) || !reflect.DeepEqual(tids, []uint32{1, 2, 3}) {
					t.Fatalf("targets %v %v", names, tids)
				}
				if f.Target("iqn.a").Params.MaxBurstLength != 4096 {
					t.Fatal("duplicate stanza applied to the first target")
				}
				if f.TargetByTID(3).Name != "iqn.c" || f.TargetByTID(9) != nil {
					t.Fatal("TargetByTID")
				}
			},
		},
		{
			name: "target line errors",
			in:   "Target\nMaxBurstLength 4096\nTarget iqn.a extra\nTarget iqn.b\n",
			errs: []lineErr{{1, false, ErrNoTarget}, {3, false, ErrValue}},
			check: func(t *testing.T, f *File) {
				if len(f.Targets) != 1 || f.Targets[0].TID != 1 || f.Targets[0].Name != "iqn.b" {
					t.Fatalf("targets %+v", f.Targets)
				}
			},
		},
		{
			name: "parameter errors",
			in: "MaxBurstLength 4096\nTarget iqn.a\nLun 0 Path=/tmp/x\nLun 0\nMaxBurstLength\nMaxBurstLength 1\nInitialR2T yes\n" +
				"QueuedCommands 0x20\nFooBar 1\niSNSServer x\n",
			errs: []lineErr{
				{1, false, ErrSyntax}, {3, false, ErrValue}, {4, false, ErrSyntax}, {5, false, ErrValue},
				{6, false, param.ErrConfig}, {7, false, param.ErrConfig}, {9, false, ErrSyntax}, {10, false, ErrSyntax},
			},
			check: func(t *testing.T, f *File) {
				p := f.Target("iqn.a").Params
				d := param.DefaultConfig()
				d.QueuedCommands = 32
				if p.QueuedCommands != 0x20 || p.MaxBurstLength != d.MaxBurstLength || p.InitialR2T {
					t.Fatalf("params %+v", p)
				}
			},
		},
		{
			name: "long line split at 4095",
			in:   "Target iqn.a\n" + strings.Repeat(" ", 4090) + "MaxBurstLength 4096\n",
			errs: []lineErr{{2, false, ErrValue}, {2, false, ErrSyntax}},
		},
		{
			name: "CRLF",
			in:   "Target iqn.a\r\nMaxBurstLength 4096\r\n",
			check: func(t *testing.T, f *File) {
				if f.Target("iqn.a").Params.MaxBurstLength != 4096 {
					t.Fatal("CRLF line not parsed")
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, errs := Parse(strings.NewReader(tc.in))
			if f == nil {
				t.Fatal("nil File")
			}
			if len(errs) != len(tc.errs) {
				t.Fatalf("errors %v, want %d", errs, len(tc.errs))
			}
			for i, e := range errs {
				var le *LineError
				if !errors.As(e, &le) {
					t.Fatalf("error %v is not a LineError", e)
				}
				w := tc.errs[i]
				if le.Line != w.line || le.Warning != w.warning || !errors.Is(e, w.err) {
					t.Fatalf("error %d = %v (line %d warning %v), want line %d warning %v %v", i, e, le.Line, le.Warning, w.line, w.warning, w.err)
				}
				if !strings.Contains(e.Error(), "line ") {
					t.Fatalf("error %q does not name its line", e)
				}
			}
			if tc.check != nil {
				tc.check(t, f)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "none.conf")
	f, errs, err := Load(missing, false)
	if err != nil || len(errs) != 0 || f == nil || len(f.Targets) != 0 {
		t.Fatalf("missing default: %v %v %v", f, errs, err)
	}
	if _, _, err := Load(missing, true); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing explicit: %v", err)
	}
	path := filepath.Join(dir, "iscsi-scstd.conf")
	if err := os.WriteFile(path, []byte(usermodeSample+"Bogus 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, errs, err = Load(path, true)
	if err != nil || len(f.Targets) != 1 || len(errs) != 1 || !strings.Contains(errs[0].Error(), path) || !errors.Is(errs[0], ErrSyntax) {
		t.Fatalf("Load: %v %v %v", f, errs, err)
	}
	if _, _, err := Load(dir, true); err == nil {
		t.Fatal("Load of a directory succeeded")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(usermodeSample))
	f.Add([]byte("IncomingUser joe secretsecret12;Target iqn.a;OutgoingUser=a=bbbbbbbbbbbbbb;Target iqn.a\n#x\nLun 0"))
	f.Add([]byte("Target\x00\nMaxBurstLength 0x\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fl, errs := Parse(strings.NewReader(string(b)))
		if fl == nil {
			t.Fatal("nil File")
		}
		seen := map[string]bool{}
		for i, tg := range fl.Targets {
			if tg.TID != uint32(i+1) {
				t.Fatalf("tid %d at %d", tg.TID, i)
			}
			if seen[tg.Name] {
				t.Fatalf("duplicate target %q", tg.Name)
			}
			seen[tg.Name] = true
			for _, a := range tg.Accounts.Incoming {
				if len(a.Secret) < MinSecretLen {
					t.Fatalf("short secret accepted")
				}
			}
			p := tg.Params
			if p.MaxConnections != 1 || p.QueuedCommands < 1 || p.QueuedCommands > 2048 || p.MaxBurstLength < 512 {
				t.Fatalf("out-of-range params %+v", p)
			}
		}
		for _, e := range errs {
			var le *LineError
			if !errors.As(e, &le) || le.Line < 1 {
				t.Fatalf("bad error %v", e)
			}
		}
	})
}
