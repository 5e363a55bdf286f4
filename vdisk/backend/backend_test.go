package backend

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

type engineCase struct {
	name string
	open func(t testing.TB) (Engine, *os.File)
}

func tempFile(t testing.TB, size int64, flags int) *os.File {
	t.Helper()
	p := filepath.Join(t.TempDir(), "img")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|flags, 0o600)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func engines() []engineCase {
	return []engineCase{
		{"pool", func(t testing.TB) (Engine, *os.File) {
			f := tempFile(t, 1<<20, 0)
			return NewPool(int(f.Fd()), PoolOptions{Workers: 4, Depth: 4}), f
		}},
		{"pool-direct", func(t testing.TB) (Engine, *os.File) {
			f := tempFile(t, 1<<20, unix.O_DIRECT)
			return NewPool(int(f.Fd()), PoolOptions{Workers: 2, Depth: 2, Direct: true, Bufs: NewBufPool(4096)}), f
		}},
		{"aio-direct", func(t testing.TB) (Engine, *os.File) {
			f := tempFile(t, 1<<20, unix.O_DIRECT)
			a, err := NewAIO(int(f.Fd()), AIOOptions{Depth: 4, Bufs: NewBufPool(4096)})
			if err != nil {
				t.Skipf("io_setup: %v", err)
			}
			return a, f
		}},
		{"aio-buffered", func(t testing.TB) (Engine, *os.File) {
			f := tempFile(t, 1<<20, 0)
			a, err := NewAIO(int(f.Fd()), AIOOptions{Depth: 2})
			if err != nil {
				t.Skipf("io_setup: %v", err)
			}
			return a, f
		}},
	}
}

// syncDo submits r and waits for its completion.
func syncDo(e Engine, r *Request) {
	done := make(chan struct{})
	r.Done = func(*Request) { close(done) }
	e.Submit(r)
	<-done
}

func TestEnginesRoundTrip(t *testing.T) {
	for _, ec := range engines() {
		t.Run(ec.name, func(t *testing.T) {
			e, f := ec.open(t)
			defer e.Close()
			rng := rand.New(rand.NewPCG(1, 2))
			for i, tc := range []struct {
				off, n int
				fua    bool
				// unaligned shifts the buffer to force a bounce.
				unaligned bool
			}{
				{0, 4096, false, false},
				{8192, 512 * 3, true, false},
				{4096 * 7, 65536, false, true},
				{512, 512, true, true},
			} {
				raw := make([]byte, tc.n+1)
				buf := raw[:tc.n]
				if tc.unaligned {
					buf = raw[1 : tc.n+1]
				}
				for j := range buf {
					buf[j] = byte(rng.Uint32())
				}
				w := &Request{Op: OpWrite, Buf: buf, Off: int64(tc.off), FUA: tc.fua}
				syncDo(e, w)
				if w.Err != nil || w.N != tc.n {
					t.Fatalf("case %d write: n=%d err=%v", i, w.N, w.Err)
				}
				back := make([]byte, tc.n)
				r := &Request{Op: OpRead, Buf: back, Off: int64(tc.off)}
				syncDo(e, r)
				if r.Err != nil || r.N != tc.n {
					t.Fatalf("case %d read: n=%d err=%v", i, r.N, r.Err)
				}
				if !bytes.Equal(back, buf) {
					t.Fatalf("case %d: data mismatch", i)
				}
				// The file holds the same bytes.
				onDisk := make([]byte, tc.n)
				if _, err := unix.Pread(int(f.Fd()), onDisk, int64(tc.off)); err != nil && !errors.Is(err, unix.EINVAL) {
					t.Fatal(err)
				}
			}
			fl := &Request{Op: OpFlush}
			syncDo(e, fl)
			if fl.Err != nil {
				t.Fatalf("flush: %v", fl.Err)
			}
		})
	}
}

func TestReadPastEOFIsZero(t *testing.T) {
	f := tempFile(t, 4096, 0)
	e := NewPool(int(f.Fd()), PoolOptions{})
	defer e.Close()
	buf := bytes.Repeat([]byte{0xff}, 8192)
	r := &Request{Op: OpRead, Buf: buf, Off: 0}
	syncDo(e, r)
	if r.Err != nil || r.N != len(buf) {
		t.Fatalf("n=%d err=%v", r.N, r.Err)
	}
	if !bytes.Equal(buf, make([]byte, 8192)) {
		t.Fatal("expected zeros")
	}
}

func TestNull(t *testing.T) {
	var e Null
	buf := bytes.Repeat([]byte{1}, 1024)
	r := &Request{Op: OpRead, Buf: buf}
	syncDo(e, r)
	if r.N != 1024 || !bytes.Equal(buf, make([]byte, 1024)) {
		t.Fatal("null read must return zeros")
	}
	w := &Request{Op: OpWrite, Buf: buf}
	syncDo(e, w)
	if w.N != 1024 || w.Err != nil {
		t.Fatal("null write")
	}
}

func TestClosedEngineFails(t *testing.T) {
	for _, ec := range engines() {
		t.Run(ec.name, func(t *testing.T) {
			e, _ := ec.open(t)
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			r := &Request{Op: OpRead, Buf: make([]byte, 512)}
			syncDo(e, r)
			if !errors.Is(r.Err, ErrClosed) {
				t.Fatalf("err = %v, want ErrClosed", r.Err)
			}
		})
	}
}

func TestReadOnlyWriteFails(t *testing.T) {
	p := filepath.Join(t.TempDir(), "ro")
	if err := os.WriteFile(p, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	e := NewPool(int(f.Fd()), PoolOptions{Workers: 1})
	defer e.Close()
	w := &Request{Op: OpWrite, Buf: make([]byte, 512)}
	syncDo(e, w)
	if !errors.Is(w.Err, unix.EBADF) {
		t.Fatalf("err = %v, want EBADF", w.Err)
	}
}

// TestSubmitFromDone floods small queues and resubmits from completion
// callbacks: Submit must never deadlock on its own completion goroutines.
func TestSubmitFromDone(t *testing.T) {
	for _, ec := range engines() {
		t.Run(ec.name, func(t *testing.T) {
			e, _ := ec.open(t)
			const n = 200
			var wg sync.WaitGroup
			wg.Add(n)
			bufs := NewBufPool(4096)
			for i := 0; i < n; i++ {
				b := bufs.Get(4096)
				second := &Request{Op: OpRead, Buf: *b, Off: int64(i%64) * 4096}
				second.Done = func(r *Request) {
					if r.Err != nil {
						t.Errorf("read: %v", r.Err)
					}
					wg.Done()
				}
				first := &Request{Op: OpWrite, Buf: *b, Off: int64(i%64) * 4096}
				first.Done = func(r *Request) {
					if r.Err != nil {
						t.Errorf("write: %v", r.Err)
					}
					e.Submit(second)
				}
				e.Submit(first)
			}
			wg.Wait()
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestBufPoolAlignment(t *testing.T) {
	p := NewBufPool(4096)
	for _, n := range []int{1, 512, 4096, 5000, 1 << 20, 20 << 20} {
		b := p.Get(n)
		if len(*b) != n || !IsAligned(*b, 4096) {
			t.Fatalf("n=%d len=%d aligned=%v", n, len(*b), IsAligned(*b, 4096))
		}
		p.Put(b)
	}
}

// BenchmarkSubmitComplete measures one submit/complete round trip per
// engine (4 KiB reads from the page cache); allocations must stay at zero.
func BenchmarkSubmitComplete(b *testing.B) {
	for _, ec := range append(engines(), engineCase{"null", func(testing.TB) (Engine, *os.File) { return Null{}, nil }}) {
		b.Run(ec.name, func(b *testing.B) {
			e, _ := ec.open(b)
			defer e.Close()
			bufs := NewBufPool(4096)
			buf := bufs.Get(4096)
			done := make(chan struct{}, 1)
			r := &Request{Op: OpRead, Buf: *buf}
			r.Done = func(*Request) { done <- struct{}{} }
			b.ReportAllocs()
			b.SetBytes(4096)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r.Off = int64(i%256) * 4096
				e.Submit(r)
				<-done
				if r.Err != nil {
					b.Fatal(r.Err)
				}
			}
		})
	}
}

// Many writes in flight at once (beyond the engine's depth, so some wait in
// its overflow queue and the AIO submitter gets batches of adjacent blocks),
// then reads of every block: each block holds its own write.
func TestEnginesConcurrentWrites(t *testing.T) {
	const blocks, bs = 256, 4096
	for _, ec := range engines() {
		t.Run(ec.name, func(t *testing.T) {
			e, _ := ec.open(t)
			defer e.Close()
			bufs := NewBufPool(bs)
			done := make(chan *Request, blocks)
			for i := 0; i < blocks; i++ {
				b := bufs.Get(bs)
				for j := range *b {
					(*b)[j] = byte(i*7 + j)
				}
				e.Submit(&Request{Op: OpWrite, Buf: *b, Off: int64(i * bs), FUA: i%16 == 0, Done: func(r *Request) { done <- r }})
			}
			for i := 0; i < blocks; i++ {
				if r := <-done; r.Err != nil || r.N != bs {
					t.Fatalf("write at %d: n=%d err=%v", r.Off, r.N, r.Err)
				}
			}
			for i := 0; i < blocks; i++ {
				b := bufs.Get(bs)
				r := &Request{Op: OpRead, Buf: *b, Off: int64(i * bs)}
				syncDo(e, r)
				if r.Err != nil || r.N != bs {
					t.Fatalf("read at %d: n=%d err=%v", r.Off, r.N, r.Err)
				}
				for j, v := range *b {
					if v != byte(i*7+j) {
						t.Fatalf("block %d byte %d: %d, want %d", i, j, v, byte(i*7+j))
					}
				}
			}
		})
	}
}
