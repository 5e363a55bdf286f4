package vdisk

import (
	"testing"

	"github.com/scstd/scstd/target/scsi"
)

// BenchmarkParseRW decodes the LBA and length of READ/WRITE CDBs of every
// size, as each data command does before it reaches the backend.
func BenchmarkParseRW(b *testing.B) {
	cdbs := [][]byte{
		{scsi.OpRead6, 0x01, 0x02, 0x03, 8, 0},
		{scsi.OpRead10, 0, 0, 1, 2, 3, 0, 0, 8, 0},
		{scsi.OpRead12, 0, 0, 1, 2, 3, 0, 0, 0, 8, 0, 0},
		{scsi.OpRead16, 0, 0, 0, 0, 0, 0, 1, 2, 3, 0, 0, 0, 8, 0, 0},
	}
	b.ReportAllocs()
	var sum uint64
	for i := 0; b.Loop(); i++ {
		a := parseRW(cdbs[i&3])
		sum += a.lba + uint64(a.n)
	}
	if sum == 0 {
		b.Fatal("nothing decoded")
	}
}
