package vdisk

import (
	"testing"

	"github.com/scstd/scstd/target"
	"github.com/scstd/scstd/target/scsi"
)

// BenchmarkExec measures a command's trip through the core and the handler
// (4 KiB READ(10)/WRITE(10)); allocations per command must stay at zero.
func BenchmarkExec(b *testing.B) {
	for _, bc := range []struct {
		name     string
		flags    Flags
		write    bool
		zeroCopy bool // the transport allows DataIn from the file mapping
	}{
		{"nullio-read", Flags{NullIO: true}, false, false},
		{"fileio-read", Flags{}, false, false},
		{"fileio-read-mapped", Flags{}, false, true},
		{"fileio-write", Flags{}, true, false},
		{"odirect-read", Flags{ODirect: true}, false, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := newHarness(b, ManagerOptions{})
			lun, _ := h.disk("d", 64<<20, 512, bc.flags)
			s := h.session("iqn.bench")
			s.clearUA(lun)
			// Written blocks are in the page cache, where mapped reads come from.
			good(b, "prefill", s.run(lun, cdb10(scsi.OpWrite10, 0, 512, 0), 512*512, make([]byte, 512*512)))
			done := make(chan struct{}, 1)
			c := &target.Command{LUN: lunField(lun), Attr: target.Simple, ExpectedLen: 4096, ZeroCopy: bc.zeroCopy}
			c.Done = func(*target.Command) { done <- struct{}{} }
			cdb := cdb10(scsi.OpRead10, 0, 8, 0)
			var data []byte
			if bc.write {
				cdb = cdb10(scsi.OpWrite10, 0, 8, 0)
				data = make([]byte, 4096)
			}
			c.CDB = cdb
			b.ReportAllocs()
			b.SetBytes(4096)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				cdb[5] = byte(i) // walk the LBA
				c.DataOut = data
				s.s.Submit(c)
				<-done
				if c.Status != scsi.StatusGood {
					b.Fatalf("status %#x", c.Status)
				}
				c.DataOut = nil
				c.Release()
			}
		})
	}
}
