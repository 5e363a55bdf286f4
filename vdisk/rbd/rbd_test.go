//go:build rbd

package rbd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/scstd/scstd/vdisk/backend"
)

func pattern(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestParsePath(t *testing.T) {
	tests := []struct {
		path          string
		pool, image   string
		ok, wantError bool
	}{
		{"/rbd/rbd/lun0", "rbd", "lun0", true, false},
		{"/rbd/my.pool/img-1", "my.pool", "img-1", true, false},
		{"/srv/disk.img", "", "", false, false},
		{"/rbdx/a/b", "", "", false, false},
		{"/rbd/", "", "", true, true},
		{"/rbd/pool", "", "", true, true},
		{"/rbd/pool/", "", "", true, true},
		{"/rbd//img", "", "", true, true},
		{"/rbd/pool/a/b", "", "", true, true},
	}
	for _, tc := range tests {
		pool, image, ok, err := ParsePath(tc.path)
		if ok != tc.ok || (err != nil) != tc.wantError || pool != tc.pool || image != tc.image {
			t.Errorf("ParsePath(%q) = %q, %q, %v, %v", tc.path, pool, image, ok, err)
		}
		if err != nil && !errors.Is(err, syscall.EINVAL) {
			t.Errorf("ParsePath(%q) error %v is not EINVAL", tc.path, err)
		}
	}
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"/rbd/rbd/lun0", "/rbd/", "/rbd//", "/rbd/a/b/c", "/x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		pool, image, ok, err := ParsePath(path)
		if !ok || err != nil {
			return
		}
		if pool == "" || image == "" || PathPrefix+pool+"/"+image != path {
			t.Fatalf("ParsePath(%q) = %q, %q", path, pool, image)
		}
	})
}

// submitWait runs requests through e at once and waits for all of them.
func submitWait(t *testing.T, e backend.Engine, reqs []*backend.Request) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Add(len(reqs))
	for _, r := range reqs {
		r.Done = func(*backend.Request) { wg.Done() }
	}
	// Submit from several goroutines: the engine is shared by sessions.
	for g := 0; g < 4; g++ {
		go func() {
			for i := g; i < len(reqs); i += 4 {
				e.Submit(reqs[i])
			}
		}()
	}
	ch := make(chan struct{})
	go func() { wg.Wait(); close(ch) }()
	select {
	case <-ch:
	case <-time.After(60 * time.Second):
		t.Fatal("requests did not complete")
	}
	for _, r := range reqs {
		if r.Err != nil {
			t.Fatalf("%s at %d: %v", r.Op, r.Off, r.Err)
		}
		if r.Op != backend.OpFlush && r.N != len(r.Buf) {
			t.Fatalf("%s at %d moved %d of %d bytes", r.Op, r.Off, r.N, len(r.Buf))
		}
	}
}

func TestEngineManyInFlight(t *testing.T) {
	c := connect(t)
	name := newImage(t, "64M")
	// A small depth so that most requests wait in the engine's queue.
	im := open(t, c, name, ImageOptions{Depth: 8})
	e := im.Engine()
	const n, bs = 200, 16 << 10
	want := make([][]byte, n)
	var writes []*backend.Request
	for i := range n {
		want[i] = pattern(bs, uint64(i))
		writes = append(writes, &backend.Request{Op: backend.OpWrite, Buf: want[i], Off: int64(i) * 3 * bs, FUA: i%7 == 0})
	}
	submitWait(t, e, writes)
	submitWait(t, e, []*backend.Request{{Op: backend.OpFlush}})
	var reads []*backend.Request
	for i := range n {
		reads = append(reads, &backend.Request{Op: backend.OpRead, Buf: make([]byte, bs), Off: int64(i) * 3 * bs})
	}
	submitWait(t, e, reads)
	for i, r := range reads {
		if !bytes.Equal(r.Buf, want[i]) {
			t.Fatalf("block %d read back differently", i)
		}
	}
	// What the engine wrote is what another client of the image reads.
	got := make([]byte, bs)
	c2 := connect(t)
	im2 := open(t, c2, name, ImageOptions{ReadOnly: true})
	if err := im2.ReadAt(got, 5*3*bs); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want[5]) {
		t.Fatal("a second connection reads other data")
	}
}

func TestEngineErrorsAndClose(t *testing.T) {
	c := connect(t)
	name := newImage(t, "8M")
	im, err := c.Open("rbd", name, ImageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e := im.Engine()
	// Past the end of the image: librbd fails the request, the engine
	// reports the errno and stays usable.
	bad := &backend.Request{Op: backend.OpWrite, Buf: make([]byte, 4096), Off: 64 << 20}
	done := make(chan struct{})
	bad.Done = func(*backend.Request) { close(done) }
	e.Submit(bad)
	<-done
	var errno syscall.Errno
	if !errors.As(bad.Err, &errno) {
		t.Fatalf("write past the end: %v, want an errno", bad.Err)
	}
	submitWait(t, e, []*backend.Request{{Op: backend.OpWrite, Buf: pattern(4096, 1), Off: 0}})
	if err := c.Close(); !errors.Is(err, syscall.EBUSY) {
		t.Fatalf("Close with an open image = %v, want EBUSY", err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	late := &backend.Request{Op: backend.OpRead, Buf: make([]byte, 512)}
	late.Done = func(*backend.Request) {}
	e.Submit(late)
	if !errors.Is(late.Err, backend.ErrClosed) {
		t.Fatalf("Submit after Close: %v, want ErrClosed", late.Err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestSyncOperations(t *testing.T) {
	c := connect(t)
	name := newImage(t, "16M")
	im := open(t, c, name, ImageOptions{})
	const obj = 4 << 20 // default object size

	data := pattern(64<<10, 7)
	if err := im.WriteAt(data, 4096, true); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	if err := im.ReadAt(got, 4096); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadAt after WriteAt: %v, equal %v", err, bytes.Equal(got, data))
	}

	// A discard of a range smaller than the discard granularity, in the
	// middle of written data, reads as zeros (LBPRZ relies on it).
	if err := im.Discard(4096+8192, 4096); err != nil {
		t.Fatal(err)
	}
	if err := im.ReadAt(got, 4096); err != nil {
		t.Fatal(err)
	}
	copy(data[8192:8192+4096], make([]byte, 4096))
	if !bytes.Equal(got, data) {
		t.Fatal("a partial discard did not read back as zeros, or touched its neighbours")
	}

	block := pattern(512, 11)
	if err := im.WriteSame(1<<20, 256<<10, block, false); err != nil {
		t.Fatal(err)
	}
	ws := make([]byte, 256<<10)
	if err := im.ReadAt(ws, 1<<20); err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(ws); off += 512 {
		if !bytes.Equal(ws[off:off+512], block) {
			t.Fatalf("WRITE SAME block at %d differs", off)
		}
	}
	if err := im.WriteSame(0, 1000, block, false); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("WriteSame of a partial block = %v, want EINVAL", err)
	}

	tests := []struct {
		name string
		off  int64
		n    int
	}{
		{"one sector, in the OSD", 3<<20 + 512, 512},
		{"within an object, under the lock", 2 << 20, 2048},
		{"across objects, under the lock", obj - 1024, 2048},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			old, neu := pattern(tc.n, 21), pattern(tc.n, 22)
			if err := im.WriteAt(old, tc.off, false); err != nil {
				t.Fatal(err)
			}
			if off, miscompare, err := im.CompareAndWrite(tc.off, old, neu, true); err != nil || miscompare {
				t.Fatalf("matching CompareAndWrite: miscompare %v at %d, %v", miscompare, off, err)
			}
			cur := make([]byte, tc.n)
			if err := im.ReadAt(cur, tc.off); err != nil || !bytes.Equal(cur, neu) {
				t.Fatalf("CompareAndWrite did not write (%v)", err)
			}
			cmp := append([]byte{}, neu...)
			at := tc.n * 3 / 4
			cmp[at] ^= 0x40
			off, miscompare, err := im.CompareAndWrite(tc.off, cmp, old, false)
			if err != nil || !miscompare || off != at {
				t.Fatalf("miscompare: got %v at %d (%v), want at %d", miscompare, off, err, at)
			}
			if err := im.ReadAt(cur, tc.off); err != nil || !bytes.Equal(cur, neu) {
				t.Fatalf("a miscompare changed the image (%v)", err)
			}
		})
	}
}

func TestResize(t *testing.T) {
	c := connect(t)
	name := newImage(t, "8M")
	im := open(t, c, name, ImageOptions{})
	if n, err := im.Size(); err != nil || n != 8<<20 {
		t.Fatalf("Size = %d, %v", n, err)
	}
	rbdCLI(t, "resize", "--no-progress", "rbd/"+name, "--size", "24M")
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := im.Size()
		if err != nil {
			t.Fatal(err)
		}
		if n == 24<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Size after rbd resize = %d, want %d", n, 24<<20)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestConnectErrors(t *testing.T) {
	tests := []struct {
		name string
		o    Options
	}{
		{"no conf", Options{}},
		{"missing conf", Options{ConfFile: "/nonexistent/ceph.conf"}},
		{"unknown client", Options{ConfFile: confPath, ID: "nobody-here", ConnectTimeout: 5 * time.Second}},
		{"bad option", Options{ConfFile: confPath, Config: map[string]string{"no_such_option_x": "1"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Connect(tc.o)
			if err == nil {
				c.Close()
				t.Fatal("Connect succeeded")
			}
		})
	}
	c := connect(t)
	if _, err := c.Open("rbd", "no-such-image", ImageOptions{}); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("opening a missing image: %v, want ENOENT", err)
	}
	if _, err := c.Open("no-such-pool", "x", ImageOptions{}); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("opening in a missing pool: %v, want ENOENT", err)
	}
}

// TestCompareAndWriteAcrossNodes increments counters with compare-and-write
// from two connections (two scstd nodes) at once: no increment may be lost.
func TestCompareAndWriteAcrossNodes(t *testing.T) {
	name := newImage(t, "8M")
	for _, size := range []int{512, 4096} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			ims := []*Image{open(t, connect(t), name, ImageOptions{}), open(t, connect(t), name, ImageOptions{})}
			off := int64(size) * 16
			const perNode = 40
			var wg sync.WaitGroup
			errs := make(chan error, len(ims))
			for _, im := range ims {
				wg.Add(1)
				go func() {
					defer wg.Done()
					cur := make([]byte, size)
					for done := 0; done < perNode; {
						if err := im.ReadAt(cur, off); err != nil {
							errs <- err
							return
						}
						next := append([]byte{}, cur...)
						binary.BigEndian.PutUint64(next, binary.BigEndian.Uint64(cur)+1)
						_, miscompare, err := im.CompareAndWrite(off, cur, next, false)
						if err != nil {
							errs <- err
							return
						}
						if !miscompare {
							done++
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			got := make([]byte, size)
			if err := ims[0].ReadAt(got, off); err != nil {
				t.Fatal(err)
			}
			if n := binary.BigEndian.Uint64(got); n != 2*perNode {
				t.Fatalf("counter %d after %d successful increments", n, 2*perNode)
			}
		})
	}
}

func TestAllocation(t *testing.T) {
	c := connect(t)
	name := newImage(t, "16M")
	im := open(t, c, name, ImageOptions{})
	if err := im.WriteAt(pattern(1<<20, 3), 1<<20, false); err != nil {
		t.Fatal(err)
	}
	if err := im.Discard(1<<20+8192, 4096); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		off, limit int64
		end        int64
		allocated  bool
	}{
		{0, 16 << 20, 1 << 20, false},
		{1 << 20, 16 << 20, 1<<20 + 8192, true},
		{1<<20 + 8192, 16 << 20, 1<<20 + 12288, false},
		{1<<20 + 12288, 16 << 20, 2 << 20, true},
		{2 << 20, 14 << 20, 16 << 20, false},
		{1 << 20, 4096, 1<<20 + 4096, true},
		{1<<20 + 8192 + 512, 16 << 20, 1<<20 + 12288, false},
	}
	for _, tc := range tests {
		end, allocated, err := im.Allocation(tc.off, tc.limit, 512)
		if err != nil || end != tc.end || allocated != tc.allocated {
			t.Errorf("Allocation(%d, %d) = %d, %v, %v; want %d, %v", tc.off, tc.limit, end, allocated, err, tc.end, tc.allocated)
		}
	}
}

// TestPeerReset: a LUN reset announced by one node reaches every other
// node serving the image, not the announcer itself.
func TestPeerReset(t *testing.T) {
	name := newImage(t, "8M")
	const nodes = 3
	ims := make([]*Image, nodes)
	got := make([]chan struct{}, nodes)
	for i := range ims {
		ims[i] = open(t, connect(t), name, ImageOptions{})
		got[i] = make(chan struct{}, 4)
		ch := got[i]
		if err := ims[i].WatchPeers(func() { ch <- struct{}{} }, func(err error) { t.Errorf("watch error: %v", err) }); err != nil {
			t.Fatal(err)
		}
	}
	if err := ims[0].WatchPeers(func() {}, nil); err == nil {
		t.Fatal("a second WatchPeers succeeded")
	}
	ims[1].NotifyPeersReset()
	for _, i := range []int{0, 2} {
		select {
		case <-got[i]:
		case <-time.After(10 * time.Second):
			t.Fatalf("node %d did not receive the reset", i)
		}
	}
	// The others have acknowledged; the announcer's own watch has seen the
	// notify by now too, and must have ignored it.
	select {
	case <-got[1]:
		t.Fatal("the announcing node received its own reset")
	case <-time.After(500 * time.Millisecond):
	}
	// NotifyPeersReset returns once the others have taken note.
	ims[2].NotifyPeersReset()
	for _, i := range []int{0, 1} {
		select {
		case <-got[i]:
		default:
			t.Fatalf("node %d had not taken note of the reset when NotifyPeersReset returned", i)
		}
	}
}
