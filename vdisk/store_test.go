package vdisk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/scstd/scstd/target/scsi"
	"github.com/scstd/scstd/vdisk/backend"
)

// memStore is a Store in memory that records which of its operations the
// commands used.
type memStore struct {
	mu     sync.Mutex
	data   []byte
	calls  map[string]int
	closed bool
}

func (s *memStore) count(op string) {
	s.mu.Lock()
	s.calls[op]++
	s.mu.Unlock()
}

func (s *memStore) called(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

func (s *memStore) Engine() backend.Engine { return memEngine{s} }

func (s *memStore) Size() (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int64(len(s.data)), nil
}

func (s *memStore) ReadAt(b []byte, off int64) error {
	s.count("readat")
	s.mu.Lock()
	defer s.mu.Unlock()
	copy(b, s.data[off:])
	return nil
}

func (s *memStore) WriteAt(b []byte, off int64, fua bool) error {
	s.count("writeat")
	s.mu.Lock()
	defer s.mu.Unlock()
	copy(s.data[off:], b)
	return nil
}

func (s *memStore) Flush() error { s.count("flush"); return nil }

func (s *memStore) Discard(off, n int64) error {
	s.count("discard")
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.data[off : off+n])
	return nil
}

func (s *memStore) WriteSame(off, n int64, block []byte, fua bool) error {
	s.count("writesame")
	s.mu.Lock()
	defer s.mu.Unlock()
	for p := off; p < off+n; p += int64(len(block)) {
		copy(s.data[p:], block)
	}
	return nil
}

func (s *memStore) CompareAndWrite(off int64, cmp, data []byte, fua bool) (int, bool, error) {
	s.count("caw")
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.data[off : off+int64(len(cmp))]
	if !bytes.Equal(cur, cmp) {
		return firstDiff(cur, cmp), true, nil
	}
	copy(cur, data)
	return 0, false, nil
}

// Allocation reports zero blocks as deallocated, others as mapped.
func (s *memStore) Allocation(off, limit int64, unit int) (int64, bool, error) {
	s.count("allocation")
	s.mu.Lock()
	defer s.mu.Unlock()
	zero := func(p int64) bool { return bytes.Equal(s.data[p:p+int64(unit)], make([]byte, unit)) }
	first := zero(off)
	p := off + int64(unit)
	for p < off+limit && zero(p) == first {
		p += int64(unit)
	}
	return p, !first, nil
}

// memEngine completes requests inline.
type memEngine struct{ s *memStore }

func (e memEngine) Submit(r *backend.Request) {
	switch r.Op {
	case backend.OpRead:
		e.s.count("aio-read")
		e.s.mu.Lock()
		copy(r.Buf, e.s.data[r.Off:])
		e.s.mu.Unlock()
	case backend.OpWrite:
		e.s.count("aio-write")
		if r.FUA {
			e.s.count("aio-fua")
		}
		e.s.mu.Lock()
		copy(e.s.data[r.Off:], r.Buf)
		e.s.mu.Unlock()
	case backend.OpFlush:
		e.s.count("aio-flush")
	}
	r.N, r.Err = len(r.Buf), nil
	r.Done(r)
}

func (e memEngine) Close() error {
	e.s.mu.Lock()
	e.s.closed = true
	e.s.mu.Unlock()
	return nil
}

func (e memEngine) Name() string { return "mem" }

// memOpener serves /mem/NAME paths from its stores.
type memOpener struct {
	stores map[string]*memStore
	err    error
}

func (o *memOpener) OpenStore(path string, readOnly bool) (Store, bool, error) {
	name, ok := strings.CutPrefix(path, "/mem/")
	if !ok {
		return nil, false, nil
	}
	if o.err != nil {
		return nil, true, o.err
	}
	s := o.stores[name]
	if s == nil {
		return nil, true, syscall.ENOENT
	}
	return s, true, nil
}

func TestStoreBackedDisk(t *testing.T) {
	st := &memStore{data: make([]byte, 1<<20), calls: map[string]int{}}
	op := &memOpener{stores: map[string]*memStore{"img": st}}
	h := newHarness(t, ManagerOptions{Stores: op})
	if err := h.m.Open("r", "/mem/img", 512, Flags{}); err != nil {
		t.Fatal(err)
	}
	lun := h.mapLUN("r", false)
	s := h.session("iqn.init")
	s.clearUA(lun)

	r := s.run(lun, readCap16(32), 32, nil)
	good(t, "read capacity", r)
	if got := binary.BigEndian.Uint64(r.data); got != 1<<20/512-1 {
		t.Fatalf("last LBA %d, want %d", got, 1<<20/512-1)
	}
	if r.data[14]&0xc0 != 0xc0 {
		t.Fatalf("LBPME/LBPRZ not set: %#x", r.data[14])
	}

	data := pattern(8*512, 3)
	good(t, "write fua", s.run(lun, cdb16(scsi.OpWrite16, 16, 8, 0x08), 4096, data))
	r = s.run(lun, cdb16(scsi.OpRead16, 16, 8, 0), 4096, nil)
	good(t, "read", r)
	if !bytes.Equal(r.data, data) || !bytes.Equal(st.data[16*512:24*512], data) {
		t.Fatal("data did not round-trip through the store's engine")
	}
	good(t, "sync cache", s.run(lun, cdb10(scsi.OpSynchronizeCache10, 0, 0, 0), 0, nil))

	blk := pattern(512, 9)
	ws := cdb16(scsi.OpWriteSame16, 100, 4, 0)
	good(t, "write same", s.run(lun, ws, 512, blk))
	if !bytes.Equal(st.data[103*512:104*512], blk) {
		t.Fatal("WRITE SAME did not write the pattern")
	}
	good(t, "write same unmap", s.run(lun, cdb16(scsi.OpWriteSame16, 100, 2, 0x08), 512, blk))
	good(t, "unmap", s.run(lun, unmapCDB(24, false), 24, unmapParamList([2]uint64{16, 4})))
	if !bytes.Equal(st.data[100*512:102*512], make([]byte, 1024)) || !bytes.Equal(st.data[16*512:20*512], make([]byte, 2048)) {
		t.Fatal("discarded ranges do not read as zeros")
	}

	// GET LBA STATUS: blocks 16-19 were unmapped, 20-23 still hold data.
	r = s.run(lun, getLBAStatus(16, 64), 64, nil)
	good(t, "get lba status", r)
	if ds := parseLBAStatus(t, r.data); len(ds) < 2 || ds[0] != (lbaDesc{16, 4, 1}) || ds[1].lba != 20 || ds[1].state != 0 {
		t.Fatalf("GET LBA STATUS descriptors %+v", ds)
	}

	cur := append([]byte{}, st.data[20*512:22*512]...)
	neu := pattern(1024, 5)
	good(t, "caw", s.run(lun, cawCDB(20, 2, 0), 2048, append(append([]byte{}, cur...), neu...)))
	bad := append([]byte{}, neu...)
	bad[700] ^= 1
	r = s.run(lun, cawCDB(20, 2, 0), 2048, append(bad, cur...))
	expect(t, "caw miscompare", r, scsi.SenseMiscompare, scsi.ASCMiscompareDuringVerify)
	if !r.infoOK || r.info != 700 {
		t.Fatalf("miscompare offset %d (valid %v), want 700", r.info, r.infoOK)
	}

	for op, min := range map[string]int{"aio-write": 1, "aio-fua": 1, "aio-read": 1, "aio-flush": 1,
		"writesame": 1, "discard": 2, "caw": 2} {
		if got := st.called(op); got < min {
			t.Errorf("store operation %s used %d times, want at least %d", op, got, min)
		}
	}
	if n := st.called("writeat"); n != 0 {
		t.Errorf("WRITE SAME/COMPARE AND WRITE fell back to %d plain writes", n)
	}

	// resync_size picks up a grown store and raises CAPACITY DATA HAS CHANGED.
	st.mu.Lock()
	st.data = append(st.data, make([]byte, 1<<20)...)
	st.mu.Unlock()
	if err := h.m.ResyncSize("r"); err != nil {
		t.Fatal(err)
	}
	r = s.run(lun, readCap16(32), 32, nil)
	expect(t, "capacity UA", r, scsi.SenseUnitAttention, scsi.ASCCapacityDataHasChanged)
	r = s.run(lun, readCap16(32), 32, nil)
	if got := binary.BigEndian.Uint64(r.data); got != 2<<20/512-1 {
		t.Fatalf("last LBA after resync %d, want %d", got, 2<<20/512-1)
	}
	if disks := h.m.Disks(); len(disks) != 1 || disks[0].Path != "/mem/img" || disks[0].Size != 2<<20 {
		t.Fatalf("Disks() = %+v", disks)
	}
	if err := h.m.Close("r"); err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	closed := st.closed
	st.mu.Unlock()
	if !closed {
		t.Fatal("closing the disk did not close the store's engine")
	}
}

func TestStoreOpenerPaths(t *testing.T) {
	boom := errors.New("cluster unreachable")
	tests := []struct {
		name    string
		opener  *memOpener
		path    string
		wantErr error
	}{
		{"unknown image", &memOpener{}, "/mem/nope", syscall.ENOENT},
		{"opener error", &memOpener{err: boom}, "/mem/img", boom},
		{"file path falls through", &memOpener{}, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, ManagerOptions{Stores: tc.opener})
			path := tc.path
			if path == "" {
				path = h.file("f.img", 1<<20, 0)
			}
			err := h.m.Open("d", path, 512, Flags{})
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Open(%s): %v", path, err)
				}
				if d := h.m.Disks(); len(d) != 1 || d[0].Size != 1<<20 {
					t.Fatalf("Disks() = %+v", d)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Open(%s) = %v, want %v", path, err, tc.wantErr)
			}
			if h.core.Device("d") != nil {
				t.Fatal("a failed open left a device")
			}
		})
	}
}

// sharedMem is a memStore served by several nodes, each node's view
// announcing resets to the others.
type sharedMem struct {
	*memStore
	hub     *resetHub
	onReset func()
}

type resetHub struct {
	mu    sync.Mutex
	nodes []*sharedMem
}

func (s *sharedMem) WatchPeers(onReset func(), onError func(error)) error {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	s.onReset = onReset
	s.hub.nodes = append(s.hub.nodes, s)
	return nil
}

func (s *sharedMem) NotifyPeersReset() {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	for _, n := range s.hub.nodes {
		if n != s {
			n.onReset()
		}
	}
}

type sharedOpener struct{ s *sharedMem }

func (o sharedOpener) OpenStore(path string, readOnly bool) (Store, bool, error) {
	return o.s, true, nil
}

// TestStorePeerReset: a LUN reset of a device on one node raises BUS
// DEVICE RESET FUNCTION OCCURRED on the other node's device of the same
// store, and not again on its own.
func TestStorePeerReset(t *testing.T) {
	mem := &memStore{data: make([]byte, 1<<20), calls: map[string]int{}}
	hub := &resetHub{}
	var nodes [2]*harness
	var sess [2]*sess
	for i := range nodes {
		nodes[i] = newHarness(t, ManagerOptions{Stores: sharedOpener{&sharedMem{memStore: mem, hub: hub}}})
		if err := nodes[i].m.Open("r", "/mem/shared", 512, Flags{}); err != nil {
			t.Fatal(err)
		}
		nodes[i].mapLUN("r", false)
		sess[i] = nodes[i].session("iqn.init")
		sess[i].clearUA(0)
	}
	v, err := nodes[0].m.lookup("r", scsi.TypeDisk)
	if err != nil {
		t.Fatal(err)
	}
	v.Reset()
	expect(t, "node B after node A's reset", sess[1].run(0, tur(), 0, nil), scsi.SenseUnitAttention, scsi.ASCBusDeviceResetFunctionOccurred)
	good(t, "node B once the UA is reported", sess[1].run(0, tur(), 0, nil))
	good(t, "node A (its own reset is the core's business)", sess[0].run(0, tur(), 0, nil))
}
