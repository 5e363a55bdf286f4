package controlfs

import (
	"strings"
	"testing"

	"github.com/scstd/scstd/target"
	"github.com/scstd/scstd/vdisk"
)

// TestRealCoreMount runs the command table and the scstadmin reads against
// the real target core (the vdisk manager is still a fake that registers
// its devices in that core).
func TestRealCoreMount(t *testing.T) {
	needFUSE(t)
	core := target.NewCore(target.Options{Log: testLog(), StateDir: t.TempDir()})
	sess, err := core.NewSession(target.SessionInfo{Initiator: "iqn.x:busy", Target: "iqn.2001-04.com.example:t1", Transport: "iscsi"})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	vd := &fakeVdisk{core: realRegistry{core}}
	st := &state{core: core, vd: vd, is: fakeTargets{paperTargets()}, tun: target.NewTunables(), log: testLog()}
	m := mountState(t, t.TempDir(), st, nil, vd)
	runCommandTable(t, m)

	// The live session shows in P/sessions under the group its name
	// resolves to.
	r := readAsScstadmin(t, m.dir)
	if len(r.sessions) != 1 || strings.Join(r.sessions[0], " ") != "iscsi iqn.x:busy busy 0/0" {
		t.Errorf("sessions %q", r.sessions)
	}
}

// TestRealStackTable runs the command table against the real core and the
// real vdisk manager.
func TestRealStackTable(t *testing.T) {
	needFUSE(t)
	core := target.NewCore(target.Options{Log: testLog(), StateDir: t.TempDir()})
	vm := vdisk.NewManager(core, vdisk.ManagerOptions{Log: testLog(), StateDir: t.TempDir()})
	sess, err := core.NewSession(target.SessionInfo{Initiator: "iqn.x:busy", Target: "iqn.2001-04.com.example:t1", Transport: "iscsi"})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	st := &state{core: core, vd: vm, is: fakeTargets{paperTargets()}, tun: target.NewTunables(), log: testLog()}
	m := mountState(t, t.TempDir(), st, nil, nil)
	runCommandTable(t, m)
}

// TestRealStackReplay replays scstadmin's bytes against the real core and
// vdisk manager.
func TestRealStackReplay(t *testing.T) {
	needFUSE(t)
	core := target.NewCore(target.Options{Log: testLog(), StateDir: t.TempDir()})
	vm := vdisk.NewManager(core, vdisk.ManagerOptions{Log: testLog(), StateDir: t.TempDir()})
	st := &state{core: core, vd: vm, tun: target.NewTunables(), log: testLog()}
	runReplay(t, mountState(t, t.TempDir(), st, nil, nil))
}
