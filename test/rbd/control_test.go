//go:build rbd

package rbd

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestControlPlane opens an RBD LUN at run time through the control tree
// (`open NAME /rbd/POOL/IMAGE` in vdisk/vdisk, as scstadmin writes it),
// maps it, and follows an `rbd resize` with resync_size.
func TestControlPlane(t *testing.T) {
	requireRoot(t)
	img0, img1 := newImage(t, "32M"), newImage(t, "16M")
	d := startDaemon(t, daemonConfig{LUNs: []lunSpec{{Image: img0}}, Mount: true})
	ctl := func(file, cmd string) error {
		return os.WriteFile(filepath.Join(d.MountDir, "scsi_tgt", file), []byte(cmd+"\n"), 0)
	}
	if err := ctl("vdisk/vdisk", "open rbd_new /rbd/rbd/"+img1+" 4096"); err != nil {
		t.Fatalf("open through vdisk/vdisk: %v", err)
	}
	if err := ctl("vdisk/vdisk", "open rbd_bad /rbd/rbd/no-such-image"); err == nil {
		t.Fatal("opening a missing image succeeded")
	}
	if err := ctl("groups/Default/devices", "add rbd_new 1"); err != nil {
		t.Fatalf("mapping the new LUN: %v", err)
	}
	list, err := os.ReadFile(filepath.Join(d.MountDir, "scsi_tgt", "vdisk", "vdisk"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(list), "/rbd/rbd/"+img1) {
		t.Fatalf("vdisk/vdisk does not list the image:\n%s", list)
	}
	capacity := func(lun int) string {
		return mustRun(t, time.Minute, "iscsi-readcapacity16", d.URL(lun))
	}
	if rc := capacity(1); !strings.Contains(rc, "RETURNED LOGICAL BLOCK ADDRESS:"+strconv.Itoa(16<<20/4096-1)) ||
		!strings.Contains(rc, "LOGICAL BLOCK LENGTH IN BYTES:4096") {
		t.Fatalf("the LUN opened at run time:\n%s", rc)
	}
	rbdCLI(t, "resize", "--no-progress", "rbd/"+img0, "--size", "48M")
	if err := ctl("vdisk/vdisk", "resync_size rbd0"); err != nil {
		t.Fatalf("resync_size: %v", err)
	}
	if rc := capacity(0); !strings.Contains(rc, "RETURNED LOGICAL BLOCK ADDRESS:"+strconv.Itoa(48<<20/512-1)) {
		t.Fatalf("capacity after rbd resize and resync_size:\n%s", rc)
	}
	if err := ctl("groups/Default/devices", "del rbd_new 1"); err != nil {
		t.Fatal(err)
	}
	if err := ctl("vdisk/vdisk", "close rbd_new"); err != nil {
		t.Fatalf("close: %v", err)
	}
}
