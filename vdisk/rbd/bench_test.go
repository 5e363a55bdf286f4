//go:build rbd

package rbd

import (
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/scstd/scstd/vdisk/backend"
)

// benchEngine runs b.N 4 KiB random requests at queue depth 32 through
// the engine: the direct librbd figure that test/rbd's TestIOPSRatio
// compares scstd with (go test -tags rbd -run '^$' -bench . ./vdisk/rbd/).
func benchEngine(b *testing.B, op backend.Op) {
	const qd, bs, size = 32, 4096, 256 << 20
	name := newImage(b, "256M")
	im := open(b, connect(b), name, ImageOptions{})
	// Prefill so that reads hit data.
	fill := make([]byte, 4<<20)
	for off := int64(0); off < size; off += int64(len(fill)) {
		if err := im.WriteAt(fill, off, false); err != nil {
			b.Fatal(err)
		}
	}
	e := im.Engine()
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(1, 2))
	issued := 0
	var wg sync.WaitGroup
	var firstErr error
	var done func(r *backend.Request)
	done = func(r *backend.Request) {
		mu.Lock()
		if r.Err != nil && firstErr == nil {
			firstErr = r.Err
		}
		if issued < b.N && firstErr == nil {
			issued++
			r.Off = int64(rng.IntN(size/bs)) * bs
			mu.Unlock()
			e.Submit(r)
			return
		}
		mu.Unlock()
		wg.Done()
	}
	b.SetBytes(bs)
	b.ResetTimer()
	mu.Lock()
	for i := 0; i < qd; i++ {
		wg.Add(1)
		issued++
		r := &backend.Request{Op: op, Buf: make([]byte, bs), Off: int64(rng.IntN(size/bs)) * bs, Done: done}
		mu.Unlock()
		e.Submit(r)
		mu.Lock()
	}
	mu.Unlock()
	wg.Wait()
	b.StopTimer()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	b.ReportMetric(float64(issued)/b.Elapsed().Seconds(), "IOPS")
}

func BenchmarkEngineRandRead4kQD32(b *testing.B)  { benchEngine(b, backend.OpRead) }
func BenchmarkEngineRandWrite4kQD32(b *testing.B) { benchEngine(b, backend.OpWrite) }
