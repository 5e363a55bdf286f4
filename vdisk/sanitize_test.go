package vdisk

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/scstd/scstd/target"
	"github.com/scstd/scstd/target/scsi"
)

func sanitizeCDB(sa byte, immed bool, pll int) []byte {
	c := make([]byte, 10)
	c[0], c[1] = scsi.OpSanitize, sa
	if immed {
		c[1] |= 0x80
	}
	binary.BigEndian.PutUint16(c[7:], uint16(pll))
	return c
}

func overwriteParams(count byte, pattern []byte) []byte {
	p := make([]byte, 4+len(pattern))
	p[0] = count
	binary.BigEndian.PutUint16(p[2:], uint16(len(pattern)))
	copy(p[4:], pattern)
	return p
}

func TestSanitize(t *testing.T) {
	h := newHarness(t, ManagerOptions{})
	const nb = 2048
	lun, _ := h.disk("thin", nb*512, 512, Flags{})
	thick := h.thickDisk("thick", nb*512)
	s := h.session("iqn.init")
	s.clearUA(lun)
	s.clearUA(thick)
	thin := h.m.Disks()[0].Thin
	ill := scsi.SenseIllegalRequest

	// OVERWRITE repeats the pattern in every block; INVERT alternates.
	p := overwriteParams(0x80|2, []byte{0xde, 0xad, 0xbe})
	good(t, "overwrite", s.run(lun, sanitizeCDB(saOverwrite, false, len(p)), uint32(len(p)), p))
	r := s.run(lun, cdb16(scsi.OpRead16, 0, nb, 0), nb*512, nil)
	blk := bytes.Repeat([]byte{0xde, 0xad, 0xbe}, 171)[:512]
	for i := range blk {
		blk[i] = ^blk[i] // the second (last) pass is inverted
	}
	if !bytes.Equal(r.data, bytes.Repeat(blk, nb)) {
		t.Fatal("OVERWRITE pattern not on the medium")
	}
	if thin {
		good(t, "block erase", s.run(lun, sanitizeCDB(saBlockErase, false, 0), 0, nil))
		st := s.run(lun, getLBAStatus(0, 256), 256, nil)
		if d := parseLBAStatus(t, st.data); len(d) != 1 || d[0] != (lbaDesc{0, nb, 1}) {
			t.Fatalf("after BLOCK ERASE: %+v", d)
		}
	}
	good(t, "write", s.run(thick, cdb16(scsi.OpWrite16, 0, 8, 0), 4096, pattern(4096, 1)))
	expect(t, "block erase on a thick disk", s.run(thick, sanitizeCDB(saBlockErase, false, 0), 0, nil), ill, scsi.ASCInvalidFieldInCDB)
	good(t, "crypto erase", s.run(thick, sanitizeCDB(saCryptoErase, false, 0), 0, nil))
	r = s.run(thick, cdb16(scsi.OpRead16, 0, nb, 0), nb*512, nil)
	if !bytes.Equal(r.data, make([]byte, nb*512)) {
		t.Fatal("CRYPTO ERASE left data readable")
	}

	cases := []struct {
		name string
		cdb  []byte
		p    []byte
		asc  scsi.ASC
	}{
		{"reserved bit", func() []byte { c := sanitizeCDB(saCryptoErase, false, 0); c[1] |= 0x40; return c }(), nil, scsi.ASCInvalidFieldInCDB},
		{"reserved byte", func() []byte { c := sanitizeCDB(saCryptoErase, false, 0); c[4] = 4; return c }(), nil, scsi.ASCInvalidFieldInCDB},
		{"unknown service action", sanitizeCDB(0x05, false, 0), nil, scsi.ASCInvalidFieldInCDB},
		{"erase with parameters", sanitizeCDB(saCryptoErase, false, 8), make([]byte, 8), scsi.ASCInvalidFieldInCDB},
		{"exit failure mode with parameters", sanitizeCDB(saExitFailureMode, false, 8), make([]byte, 8), scsi.ASCInvalidFieldInCDB},
		{"overwrite short list", sanitizeCDB(saOverwrite, false, 4), make([]byte, 4), scsi.ASCInvalidFieldInCDB},
		{"overwrite long list", sanitizeCDB(saOverwrite, false, 517), make([]byte, 517), scsi.ASCInvalidFieldInCDB},
		{"overwrite count 0", sanitizeCDB(saOverwrite, false, 8), overwriteParams(0, []byte{1, 2, 3, 4}), scsi.ASCInvalidFieldInParameterList},
		{"overwrite empty pattern", sanitizeCDB(saOverwrite, false, 8), append(overwriteParams(1, nil), 0, 0, 0, 0), scsi.ASCInvalidFieldInParameterList},
	}
	for _, tc := range cases {
		expect(t, tc.name, s.run(thick, tc.cdb, uint32(len(tc.p)), tc.p), ill, tc.asc)
	}
	good(t, "exit failure mode", s.run(thick, sanitizeCDB(saExitFailureMode, false, 0), 0, nil))

	// IMMED: GOOD at once, NOT READY / SANITIZE IN PROGRESS until done,
	// INQUIRY still answered.
	big := h.thickDisk("big", 256<<20)
	s.clearUA(big)
	p = overwriteParams(3, []byte{0x55})
	good(t, "immed overwrite", s.run(big, sanitizeCDB(saOverwrite, true, len(p)), uint32(len(p)), p))
	sawProgress := false
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := s.run(big, tur(), 0, nil)
		if r.status == scsi.StatusGood {
			break
		}
		expect(t, "tur during sanitize", r, scsi.SenseNotReady, scsi.ASCSanitizeInProgress)
		good(t, "inquiry during sanitize", s.run(big, inquiry(false, 0, 96), 96, nil))
		sawProgress = true
		if time.Now().After(deadline) {
			t.Fatal("sanitize does not end")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !sawProgress {
		t.Log("the overwrite finished before the first TEST UNIT READY")
	}
	r = s.run(big, cdb16(scsi.OpRead16, 1000, 1, 0), 512, nil)
	if !bytes.Equal(r.data, bytes.Repeat([]byte{0x55}, 512)) {
		t.Fatal("IMMED overwrite did not complete")
	}
}

// An aborted or reset SANITIZE command completes at once (so the TMF is
// answered) while the sanitize itself goes on: TEST UNIT READY keeps
// answering SANITIZE IN PROGRESS (SBC-4 4.11.2; libiscsi Sanitize.Reset).
func TestSanitizeOutlivesAbort(t *testing.T) {
	tests := []struct {
		name  string
		abort func(t *testing.T, s *sess, lun uint64, tag uint32)
	}{
		{"abort task", func(t *testing.T, s *sess, lun uint64, tag uint32) {
			if r := s.s.TaskMgmt(target.TMFAbortTask, lunField(lun), tag); r != target.TMFComplete {
				t.Errorf("ABORT TASK: %d", r)
			}
		}},
		{"lun reset", func(t *testing.T, s *sess, lun uint64, _ uint32) {
			if r := s.s.TaskMgmt(target.TMFLUNReset, lunField(lun), 0); r != target.TMFComplete {
				t.Errorf("LUN RESET: %d", r)
			}
		}},
		{"target cold reset", func(t *testing.T, s *sess, _ uint64, _ uint32) {
			if r := s.s.TaskMgmt(target.TMFTargetColdReset, 0, 0); r != target.TMFComplete {
				t.Errorf("TARGET COLD RESET: %d", r)
			}
		}},
		{"nexus loss", func(t *testing.T, s *sess, _ uint64, _ uint32) { s.s.Close() }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, ManagerOptions{})
			// 31 passes over 64 MiB: long enough to be caught running.
			lun := h.thickDisk("big", 64<<20)
			s, other := h.session("iqn.a"), h.session("iqn.b")
			s.clearUA(lun)
			other.clearUA(lun)
			p := overwriteParams(31, []byte{0xa5})
			c := &target.Command{
				LUN: lunField(lun), CDB: sanitizeCDB(saOverwrite, false, len(p)), Attr: target.Simple,
				Tag: h.tag.Add(1), ExpectedLen: uint32(len(p)), DataOut: p, Write: true,
			}
			done := make(chan bool, 1)
			c.Done = func(c *target.Command) { done <- c.Aborted }
			s.s.Submit(c)
			deadline := time.Now().Add(10 * time.Second)
			for {
				r := other.run(lun, tur(), 0, nil)
				if r.status == scsi.StatusCheckCondition && r.asc == scsi.ASCSanitizeInProgress {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("SANITIZE never seen in progress: %+v", r)
				}
				time.Sleep(time.Millisecond)
			}
			start := time.Now()
			tc.abort(t, s, lun, c.Tag)
			select {
			case aborted := <-done:
				if !aborted {
					t.Fatal("SANITIZE completed, not aborted")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("aborted SANITIZE command still running")
			}
			took := time.Since(start)
			other.clearUA(lun)
			expect(t, "tur after the abort", other.run(lun, tur(), 0, nil), scsi.SenseNotReady, scsi.ASCSanitizeInProgress)
			c.DataOut = nil
			for time.Now().Before(deadline.Add(2 * time.Minute)) {
				if r := other.run(lun, tur(), 0, nil); r.status == scsi.StatusGood {
					r := other.run(lun, cdb16(scsi.OpRead16, 4096, 1, 0), 512, nil)
					if !bytes.Equal(r.data, bytes.Repeat([]byte{0xa5}, 512)) {
						t.Fatal("the sanitize did not finish its overwrite")
					}
					t.Logf("TMF answered in %v; the overwrite went on", took)
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
			t.Fatal("the sanitize never ended")
		})
	}
}
