package backend

import (
	"bytes"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// TestPoolInlineRead checks the inline fast path: a small read of cached data
// completes inside Submit with the file's bytes (RWF_NOWAIT on a disk file
// system, always on tmpfs), and reads it cannot serve whole (past end of
// file, too large) still complete correctly through the workers.
func TestPoolInlineRead(t *testing.T) {
	data := make([]byte, 256<<10)
	for i := range data {
		data[i] = byte(i*7 + i/4096)
	}
	dirs := map[string]string{"disk": t.TempDir()}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		// tmpfs: no RWF_NOWAIT, every small request is served inline.
		d, err := os.MkdirTemp("/dev/shm", "backend-test")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		dirs["tmpfs"] = d
	}
	for fs, dir := range dirs {
		t.Run(fs, func(t *testing.T) { testInlineRead(t, dir, data) })
	}
}

func testInlineRead(t *testing.T, dir string, data []byte) {
	path := filepath.Join(dir, "img")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := NewPool(int(f.Fd()), PoolOptions{Workers: 2})
	defer p.Close()

	for _, tc := range []struct {
		name      string
		off, n    int
		mayInline bool
	}{
		{"cached-4k", 4096, 4096, true},
		{"cached-64k", 8192, 64 << 10, true},
		{"too-large", 0, 128 << 10, false},
		{"past-eof", len(data) - 2048, 4096, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			buf := bytes.Repeat([]byte{0xee}, tc.n)
			done := make(chan struct{})
			var inSubmit, inline atomic.Bool
			inSubmit.Store(true)
			r := &Request{Op: OpRead, Buf: buf, Off: int64(tc.off)}
			r.Done = func(*Request) { inline.Store(inSubmit.Load()); close(done) }
			p.Submit(r)
			inSubmit.Store(false)
			<-done
			if r.Err != nil || r.N != tc.n {
				t.Fatalf("N=%d err=%v", r.N, r.Err)
			}
			want := make([]byte, tc.n)
			copy(want, data[min(tc.off, len(data)):])
			if !bytes.Equal(buf, want) {
				t.Fatal("wrong data")
			}
			if inline.Load() && !tc.mayInline && !p.memBacked {
				t.Errorf("completed inline")
			}
			if tc.mayInline && !inline.Load() && !p.noNowait.Load() {
				t.Errorf("a cached read went to a worker")
			}
		})
	}
}
