package target

import (
	"errors"
	"reflect"
	"syscall"
	"testing"

	"github.com/scstd/scstd/target/scsi"
)

func TestMatchPattern(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"iqn.1993-08.org.debian:01:abc", "iqn.1993-08.org.debian:01:abc", true},
		{"IQN.1993-08.ORG.DEBIAN:01:ABC", "iqn.1993-08.org.debian:01:abc", true},
		{"iqn.*", "iqn.1993-08.org.debian:01:abc", true},
		{"*", "", true},
		{"*", "anything", true},
		{"?", "", false},
		{"?", "a", true},
		{"iqn.????-08*", "iqn.1993-08.x", true},
		{"iqn.???-08*", "iqn.1993-08.x", false},
		{"*:01:*c", "iqn.1993-08.org.debian:01:abc", true},
		{"*:02:*", "iqn.1993-08.org.debian:01:abc", false},
		{"a*b*c", "aXbYbZc", true},
		{"a*b*c", "aXbYbZ", false},
		{"!iqn.*", "iqn.x", false},
		{"!iqn.*", "eui.x", true},
		{"!", "", false},
		{"!", "x", true},
		{"a!b", "a!b", true}, // only a leading '!' is special
		{"user@*", "user@iqn.x", true},
		{"", "", true},
		{"", "x", false},
		{"**a", "a", true},
		{"a*", "A", true},
	}
	for _, tc := range tests {
		if got := matchPattern(tc.pattern, tc.name); got != tc.want {
			t.Errorf("matchPattern(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
}

func wantErrno(t *testing.T, err error, want syscall.Errno) {
	t.Helper()
	if want == 0 {
		if err != nil {
			t.Fatalf("unexpected error %v", err)
		}
		return
	}
	var got syscall.Errno
	if !errors.As(err, &got) || got != want {
		t.Fatalf("error %v, want errno %v", err, want)
	}
}

// newConfigured returns a core with devices d1, d2 and groups g1 (FLAT), g2.
func newConfigured(t *testing.T) *Core {
	t.Helper()
	c := NewCore(Options{})
	for _, n := range []string{"d1", "d2"} {
		if err := c.AddDevice(&Device{Name: n, Handler: &fakeHandler{}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.AddGroup("g1", AddrFlat); err != nil {
		t.Fatal(err)
	}
	if err := c.AddGroup("g2", AddrPeripheral); err != nil {
		t.Fatal(err)
	}
	if err := c.AddLUN("g1", "d1", 0, false); err != nil {
		t.Fatal(err)
	}
	if err := c.AddName("g1", "iqn.a*"); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestConfigErrnos(t *testing.T) {
	tests := []struct {
		name string
		op   func(c *Core) error
		want syscall.Errno
	}{
		{"add group", func(c *Core) error { return c.AddGroup("g3", AddrLUN) }, 0},
		{"add group Default", func(c *Core) error { return c.AddGroup("Default", AddrPeripheral) }, syscall.EINVAL},
		{"add group exists", func(c *Core) error { return c.AddGroup("g1", AddrPeripheral) }, syscall.EINVAL},
		{"add group empty", func(c *Core) error { return c.AddGroup("", AddrPeripheral) }, syscall.EINVAL},
		{"add group slash", func(c *Core) error { return c.AddGroup("a/b", AddrPeripheral) }, syscall.EINVAL},
		{"add group bad method", func(c *Core) error { return c.AddGroup("g3", AddrMethod(7)) }, syscall.EINVAL},
		{"add group default lowercase is a new name", func(c *Core) error { return c.AddGroup("default", AddrPeripheral) }, 0},
		{"del group", func(c *Core) error { return c.DelGroup("g2") }, 0},
		{"del group Default", func(c *Core) error { return c.DelGroup("Default") }, syscall.EINVAL},
		{"del group missing", func(c *Core) error { return c.DelGroup("nope") }, syscall.EINVAL},
		{"rename", func(c *Core) error { return c.RenameGroup("g2", "g9") }, 0},
		{"rename Default", func(c *Core) error { return c.RenameGroup("Default", "x") }, syscall.EINVAL},
		{"rename missing", func(c *Core) error { return c.RenameGroup("nope", "x") }, syscall.EINVAL},
		{"rename to existing", func(c *Core) error { return c.RenameGroup("g2", "g1") }, syscall.EEXIST},
		{"rename to Default", func(c *Core) error { return c.RenameGroup("g2", "Default") }, syscall.EINVAL},
		{"rename to empty", func(c *Core) error { return c.RenameGroup("g2", "") }, syscall.EINVAL},
		{"rename to slash", func(c *Core) error { return c.RenameGroup("g2", "x/y") }, syscall.EINVAL},
		{"add lun", func(c *Core) error { return c.AddLUN("g1", "d2", 16383, true) }, 0},
		{"add lun too big", func(c *Core) error { return c.AddLUN("g1", "d2", 16384, false) }, syscall.EINVAL},
		{"add lun used", func(c *Core) error { return c.AddLUN("g1", "d2", 0, false) }, syscall.EEXIST},
		{"add lun same dev twice", func(c *Core) error { return c.AddLUN("g1", "d1", 1, false) }, 0},
		{"add lun no dev", func(c *Core) error { return c.AddLUN("g1", "nodev", 1, false) }, syscall.EINVAL},
		{"add lun no dev and used", func(c *Core) error { return c.AddLUN("g1", "nodev", 0, false) }, syscall.EINVAL},
		{"add lun no group", func(c *Core) error { return c.AddLUN("nope", "d1", 1, false) }, syscall.EINVAL},
		{"replace lun occupied", func(c *Core) error { return c.ReplaceLUN("g1", "d2", 0, false) }, 0},
		{"replace lun free", func(c *Core) error { return c.ReplaceLUN("g1", "d2", 5, false) }, 0},
		{"replace lun too big", func(c *Core) error { return c.ReplaceLUN("g1", "d2", 20000, false) }, syscall.EINVAL},
		{"replace lun no dev", func(c *Core) error { return c.ReplaceLUN("g1", "x", 0, false) }, syscall.EINVAL},
		{"del lun", func(c *Core) error { return c.DelLUN("g1", "d1") }, 0},
		{"del lun unmapped dev", func(c *Core) error { return c.DelLUN("g1", "d2") }, 0},
		{"del lun unknown dev", func(c *Core) error { return c.DelLUN("g1", "x") }, syscall.EINVAL},
		{"del lun no group", func(c *Core) error { return c.DelLUN("x", "d1") }, syscall.EINVAL},
		{"clear luns", func(c *Core) error { return c.ClearLUNs("g1") }, 0},
		{"clear luns no group", func(c *Core) error { return c.ClearLUNs("x") }, syscall.EINVAL},
		{"add name", func(c *Core) error { return c.AddName("g2", "iqn.b") }, 0},
		{"add name same in other group", func(c *Core) error { return c.AddName("g2", "iqn.a*") }, 0},
		{"add name exists", func(c *Core) error { return c.AddName("g1", "iqn.a*") }, syscall.EEXIST},
		{"add name case differs", func(c *Core) error { return c.AddName("g1", "IQN.A*") }, 0},
		{"add name empty", func(c *Core) error { return c.AddName("g1", "") }, syscall.EINVAL},
		{"add name no group", func(c *Core) error { return c.AddName("x", "n") }, syscall.EINVAL},
		{"del name", func(c *Core) error { return c.DelName("g1", "iqn.a*") }, 0},
		{"del name missing", func(c *Core) error { return c.DelName("g1", "iqn.z") }, syscall.EINVAL},
		{"del name no group", func(c *Core) error { return c.DelName("x", "iqn.z") }, syscall.EINVAL},
		{"move name", func(c *Core) error { return c.MoveName("g1", "iqn.a*", "g2") }, 0},
		{"move name no target group", func(c *Core) error { return c.MoveName("g1", "iqn.a*", "x") }, syscall.EINVAL},
		{"move name not there", func(c *Core) error { return c.MoveName("g1", "iqn.q", "g2") }, syscall.EINVAL},
		{"move name no source group", func(c *Core) error { return c.MoveName("x", "iqn.a*", "g2") }, syscall.EINVAL},
		{"clear names", func(c *Core) error { return c.ClearNames("g1") }, 0},
		{"clear names no group", func(c *Core) error { return c.ClearNames("x") }, syscall.EINVAL},
		{"add device dup", func(c *Core) error { return c.AddDevice(&Device{Name: "d1", Handler: &fakeHandler{}}) }, syscall.EEXIST},
		{"add device empty", func(c *Core) error { return c.AddDevice(&Device{Name: "", Handler: &fakeHandler{}}) }, syscall.EINVAL},
		{"remove device unknown", func(c *Core) error { return c.RemoveDevice("zz") }, syscall.EINVAL},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newConfigured(t)
			before := c.Groups()
			err := tc.op(c)
			wantErrno(t, err, tc.want)
			if tc.want != 0 && !reflect.DeepEqual(before, c.Groups()) {
				t.Fatalf("failed operation changed the configuration:\n%+v\n%+v", before, c.Groups())
			}
		})
	}
}

func TestMoveNamePutBack(t *testing.T) {
	c := newConfigured(t)
	for _, n := range []string{"x1", "x2", "x3"} {
		if err := c.AddName("g2", n); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.AddName("g1", "x2"); err != nil {
		t.Fatal(err)
	}
	wantErrno(t, c.MoveName("g2", "x2", "g1"), syscall.EEXIST)
	g := c.Groups()
	if !reflect.DeepEqual(g[2].Names, []string{"x1", "x2", "x3"}) {
		t.Fatalf("names after failed move: %v", g[2].Names)
	}
	wantErrno(t, c.MoveName("g2", "x1", "g1"), 0)
	g = c.Groups()
	if !reflect.DeepEqual(g[2].Names, []string{"x2", "x3"}) || !reflect.DeepEqual(g[1].Names, []string{"iqn.a*", "x2", "x1"}) {
		t.Fatalf("after move: %v %v", g[1].Names, g[2].Names)
	}
}

func TestGroupsSnapshot(t *testing.T) {
	c := newConfigured(t)
	wantErrno(t, c.AddLUN("g1", "d2", 7, true), 0)
	wantErrno(t, c.AddLUN("g1", "d1", 3, false), 0)
	wantErrno(t, c.DelLUN("g1", "d1"), 0) // the first mapping of d1 (LUN 0) goes
	got := c.Groups()
	want := []GroupInfo{
		{Name: "Default", Addr: AddrPeripheral, LUNs: []LUNInfo{}, Names: []string{}},
		{Name: "g1", Addr: AddrFlat, LUNs: []LUNInfo{{7, "d2", true}, {3, "d1", false}}, Names: []string{"iqn.a*"}},
		{Name: "g2", Addr: AddrPeripheral, LUNs: []LUNInfo{}, Names: []string{}},
	}
	for i := range got {
		if got[i].Names == nil {
			got[i].Names = []string{}
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Groups() = %+v\nwant %+v", got, want)
	}
	// The snapshot is a copy.
	got[1].Names[0] = "mutated"
	if c.Groups()[1].Names[0] != "iqn.a*" {
		t.Fatal("Groups() shares memory with the configuration")
	}
	if AddrFlat.String() != "FLAT" || AddrPeripheral.String() != "PERIPHERAL" || AddrLUN.String() != "LUN" || AddrMethod(9).String() != "UNKNOWN" {
		t.Fatal("AddrMethod.String")
	}
}

func TestGroupResolution(t *testing.T) {
	const tgt = "iqn.2026-01.test:t1"
	tests := []struct {
		name      string
		setup     func(c *Core)
		initiator string
		target    string
		group     string
		visible   bool
	}{
		{"default", func(c *Core) {}, "iqn.x", tgt, "Default", false},
		{"default with lun", func(c *Core) { c.AddLUN("Default", "d1", 0, false) }, "iqn.x", tgt, "Default", true},
		{"pattern", func(c *Core) {
			c.AddGroup("g", AddrPeripheral)
			c.AddName("g", "IQN.X*")
			c.AddLUN("g", "d1", 0, false)
		}, "iqn.xyz", tgt, "g", true},
		{"first group in creation order wins", func(c *Core) {
			c.AddGroup("g1", AddrPeripheral)
			c.AddGroup("g2", AddrPeripheral)
			c.AddName("g2", "iqn.*")
			c.AddName("g1", "*")
		}, "iqn.a", tgt, "g1", false},
		{"Default names first", func(c *Core) {
			c.AddGroup("g1", AddrPeripheral)
			c.AddName("g1", "*")
			c.AddName("Default", "iqn.a")
		}, "iqn.a", tgt, "Default", false},
		{"negated pattern", func(c *Core) {
			c.AddGroup("g1", AddrPeripheral)
			c.AddName("g1", "!iqn.bad*")
			c.AddLUN("g1", "d1", 0, false)
		}, "iqn.good", tgt, "g1", true},
		{"negated pattern excludes", func(c *Core) {
			c.AddGroup("g1", AddrPeripheral)
			c.AddName("g1", "!iqn.bad*")
			c.AddLUN("g1", "d1", 0, false)
		}, "iqn.bad1", tgt, "Default", false},
		{"target group", func(c *Core) {
			c.AddGroup("Default_"+tgt, AddrPeripheral)
			c.AddLUN("Default_"+tgt, "d1", 0, false)
		}, "iqn.x", tgt, "Default_" + tgt, true},
		{"target group other target", func(c *Core) {
			c.AddGroup("Default_"+tgt, AddrPeripheral)
			c.AddLUN("Default_"+tgt, "d1", 0, false)
		}, "iqn.x", "iqn.other", "Default", false},
		{"names beat target group", func(c *Core) {
			c.AddGroup("Default_"+tgt, AddrPeripheral)
			c.AddGroup("g", AddrPeripheral)
			c.AddName("g", "iqn.x")
		}, "iqn.x", tgt, "g", false},
		{"chap user name", func(c *Core) {
			c.AddGroup("g", AddrPeripheral)
			c.AddName("g", "joe@*")
			c.AddLUN("g", "d1", 1, false)
		}, "joe@iqn.x", tgt, "g", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := NewCore(Options{})
			if err := c.AddDevice(&Device{Name: "d1", Handler: &fakeHandler{}}); err != nil {
				t.Fatal(err)
			}
			tc.setup(c)
			if got := c.Visible(tc.initiator, tc.target); got != tc.visible {
				t.Fatalf("Visible = %v, want %v", got, tc.visible)
			}
			s, err := c.NewSession(SessionInfo{Initiator: tc.initiator, Target: tc.target, Transport: "iscsi"})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if s.Group() != tc.group {
				t.Fatalf("group %q, want %q", s.Group(), tc.group)
			}
		})
	}
}

func TestReResolution(t *testing.T) {
	c := newConfigured(t) // g1 has iqn.a* and d1 at LUN 0
	s := newSess(t, c, "iqn.b")
	if s.Group() != "Default" {
		t.Fatalf("group %q", s.Group())
	}
	wantErrno(t, c.AddName("g2", "iqn.b"), 0)
	if s.Group() != "g2" {
		t.Fatalf("after add name: %q", s.Group())
	}
	wantErrno(t, c.DelGroup("g2"), syscall.EBUSY)
	wantErrno(t, c.RenameGroup("g2", "g3"), 0)
	if s.Group() != "g3" {
		t.Fatalf("after rename: %q", s.Group())
	}
	wantErrno(t, c.MoveName("g3", "iqn.b", "g1"), 0)
	if s.Group() != "g1" {
		t.Fatalf("after move: %q", s.Group())
	}
	wantErrno(t, c.DelGroup("g3"), 0)
	wantErrno(t, c.ClearNames("g1"), 0)
	if s.Group() != "Default" {
		t.Fatalf("after clear: %q", s.Group())
	}
	st := c.Sessions()
	if len(st) != 1 || st[0].Group != "Default" || st[0].Info.Initiator != "iqn.b" {
		t.Fatalf("Sessions() = %+v", st)
	}
}

func TestSessionsOrder(t *testing.T) {
	c := newConfigured(t)
	wantErrno(t, c.AddName("g2", "iqn.b*"), 0)
	s1 := newSess(t, c, "iqn.b1")
	s2 := newSess(t, c, "iqn.a1")
	s3 := newSess(t, c, "iqn.z")
	_ = s1
	_ = s2
	_ = s3
	var got []string
	for _, st := range c.Sessions() {
		got = append(got, st.Group+":"+st.Info.Initiator)
	}
	want := []string{"Default:iqn.z", "g1:iqn.a1", "g2:iqn.b1"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Sessions order %v want %v", got, want)
	}
}

// pendingUAs drains and returns the UAs pending on lun, in delivery order.
func pendingUAs(t *testing.T, s *Session, lun uint64) []scsi.ASC {
	t.Helper()
	var out []scsi.ASC
	for i := 0; i <= maxUA; i++ {
		r := run(t, s, lun, tur()...)
		if r.status == scsi.StatusGood {
			return out
		}
		k, asc := senseKeyASC(t, r.sense)
		if k != scsi.SenseUnitAttention {
			t.Fatalf("lun %d: non-UA sense %x", lun, r.sense)
		}
		out = append(out, asc)
	}
	t.Fatalf("UA queue on lun %d never drained", lun)
	return nil
}

func TestUnitAttentionsOnConfigChange(t *testing.T) {
	c := newConfigured(t) // g1: d1@0, names iqn.a*
	sa := newSess(t, c, "iqn.a1")
	wantErrno(t, c.AddLUN("g2", "d2", 0, false), 0)
	wantErrno(t, c.AddName("g2", "iqn.zz"), 0)
	sother := newSess(t, c, "iqn.zz")
	pendingUAs(t, sother, 0)
	if got := pendingUAs(t, sa, 0); !reflect.DeepEqual(got, []scsi.ASC{scsi.ASCPowerOnResetOccurred}) {
		t.Fatalf("initial UAs %04x", got)
	}

	// A new LUN: existing LUN 0 gets REPORTED LUNS DATA HAS CHANGED, the new
	// LUN starts with POWER ON and the same.
	wantErrno(t, c.AddLUN("g1", "d2", 1, false), 0)
	if got := pendingUAs(t, sa, 0); !reflect.DeepEqual(got, []scsi.ASC{scsi.ASCReportedLunsDataHasChanged}) {
		t.Fatalf("LUN 0 after add: %04x", got)
	}
	if got := pendingUAs(t, sa, 1); !reflect.DeepEqual(got, []scsi.ASC{scsi.ASCPowerOnResetOccurred, scsi.ASCReportedLunsDataHasChanged}) {
		t.Fatalf("LUN 1 after add: %04x", got)
	}

	// Replace of an occupied LUN: INQUIRY DATA HAS CHANGED, LUN set unchanged.
	wantErrno(t, c.ReplaceLUN("g1", "d1", 1, false), 0)
	if got := pendingUAs(t, sa, 0); len(got) != 0 {
		t.Fatalf("LUN 0 after replace: %04x", got)
	}
	if got := pendingUAs(t, sa, 1); !reflect.DeepEqual(got, []scsi.ASC{scsi.ASCPowerOnResetOccurred, scsi.ASCInquiryDataHasChanged}) {
		t.Fatalf("LUN 1 after replace with another device: %04x", got)
	}
	wantErrno(t, c.ReplaceLUN("g1", "d1", 1, true), 0)
	if got := pendingUAs(t, sa, 1); !reflect.DeepEqual(got, []scsi.ASC{scsi.ASCInquiryDataHasChanged}) {
		t.Fatalf("LUN 1 after replace with the same device: %04x", got)
	}

	// REPORT LUNS clears a pending REPORTED LUNS DATA HAS CHANGED.
	// d1 is at LUNs 0 and 1 now; del removes its first mapping (LUN 0).
	wantErrno(t, c.DelLUN("g1", "d1"), 0)
	wantErrno(t, c.AddLUN("g1", "d2", 2, false), 0)
	r := run(t, sa, 1, reportLUNsCDB(0, 256)...)
	if got := decodeReport(t, r.data); r.status != scsi.StatusGood || !reflect.DeepEqual(got, []uint64{0x4001 << 48, 0x4002 << 48}) {
		t.Fatalf("REPORT LUNS %#x %x", r.status, got)
	}
	if got := pendingUAs(t, sa, 1); len(got) != 0 {
		t.Fatalf("UA survived REPORT LUNS: %04x", got)
	}
	if got := pendingUAs(t, sa, 2); !reflect.DeepEqual(got, []scsi.ASC{scsi.ASCPowerOnResetOccurred}) {
		t.Fatalf("LUN 2: %04x", got)
	}
	if r := run(t, sa, 0, tur()...); r.status != scsi.StatusCheckCondition {
		t.Fatalf("deleted LUN 0 still answers: %#x", r.status)
	}

	// A session in another group is not disturbed.
	if got := pendingUAs(t, sother, 0); len(got) != 0 {
		t.Fatalf("unmapped session got UAs %04x", got)
	}
}

func TestRaiseUA(t *testing.T) {
	c, _ := setup(t, 0, 4)
	s1 := newSess(t, c, "i1")
	s2 := newSess(t, c, "i2")
	d := c.Device("disk1")
	d.RaiseUA(scsi.ASCCapacityDataHasChanged)
	d.RaiseUA(scsi.ASCModeParametersChanged)
	d.RaiseUA(scsi.ASCCapacityDataHasChanged) // coalesced
	want := []scsi.ASC{scsi.ASCPowerOnResetOccurred, scsi.ASCCapacityDataHasChanged, scsi.ASCModeParametersChanged}
	for _, s := range []*Session{s1, s2} {
		for _, lun := range []uint64{0, 4} {
			if got := pendingUAs(t, s, lun); !reflect.DeepEqual(got, want) {
				t.Fatalf("lun %d: %04x want %04x", lun, got, want)
			}
		}
	}
	// Bounded queue: more distinct UAs than fit are dropped, not grown.
	for i := 0; i < 3*maxUA; i++ {
		d.RaiseUA(scsi.ASC(0x2a00 + i))
	}
	if got := pendingUAs(t, s1, 0); len(got) != maxUA || got[0] != 0x2a00 {
		t.Fatalf("bounded queue: %04x", got)
	}
}

func TestRaiseUAOthers(t *testing.T) {
	c := NewCore(Options{})
	h := &funcHandler{exec: func(cmd *Command) {
		if cmd.CDB[0] == scsi.OpModeSelect6 {
			cmd.RaiseUAOthers(scsi.ASCModeParametersChanged)
		}
		cmd.Complete()
	}}
	if err := c.AddDevice(&Device{Name: "d", Handler: h}); err != nil {
		t.Fatal(err)
	}
	wantErrno(t, c.AddLUN(DefaultGroup, "d", 0, false), 0)
	s1 := newSess(t, c, "i1")
	s2 := newSess(t, c, "i2")
	pendingUAs(t, s1, 0)
	pendingUAs(t, s2, 0)
	run(t, s1, 0, scsi.OpModeSelect6, 0x10, 0, 0, 0, 0)
	if got := pendingUAs(t, s1, 0); len(got) != 0 {
		t.Fatalf("changer got %04x", got)
	}
	if got := pendingUAs(t, s2, 0); !reflect.DeepEqual(got, []scsi.ASC{scsi.ASCModeParametersChanged}) {
		t.Fatalf("other got %04x", got)
	}
}
