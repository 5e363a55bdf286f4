package vdisk

import (
	"encoding/binary"

	"github.com/scstd/scstd/target"
	"github.com/scstd/scstd/target/scsi"
)

// SANITIZE (SBC-4 5.30) for a file: BLOCK ERASE deallocates every block
// (thin disks only: the erased state is "deallocated"), CRYPTO ERASE makes
// the old data unreadable the way a file can, by deallocating or zeroing
// it, and OVERWRITE writes the initialization pattern over the whole medium
// OVERWRITE COUNT times. While it runs, media access is refused with NOT
// READY, SANITIZE IN PROGRESS, on every I_T nexus.

// Service actions.
const (
	saOverwrite       = 0x01
	saBlockErase      = 0x02
	saCryptoErase     = 0x03
	saExitFailureMode = 0x1f
)

var senseSanitizing = scsi.Sense{Key: scsi.SenseNotReady, ASC: scsi.ASCSanitizeInProgress}

// sanitizeJob is the operation in progress; it outlives an IMMED command.
type sanitizeJob struct {
	sa      byte
	passes  int
	invert  bool
	pattern []byte // one block
}

// sanitizeAllowed lists what still runs during a sanitize (SBC-4 4.11.3).
func sanitizeAllowed(op byte) bool {
	switch op {
	case scsi.OpInquiry, scsi.OpReportLuns, scsi.OpRequestSense, scsi.OpMaintenanceIn:
		return true
	}
	return false
}

func execSanitize(d *vdev, c *target.Command) (outcome, scsi.Sense) {
	cdb := c.CDB
	if cdb[1]&0x40 != 0 {
		return invalidField(1, 6) // reserved
	}
	for i := 2; i <= 6; i++ {
		if cdb[i] != 0 {
			return invalidField(uint16(i), 7)
		}
	}
	sa, immed := cdb[1]&0x1f, cdb[1]&0x80 != 0
	pll := uint32(binary.BigEndian.Uint16(cdb[7:]))
	c.TransferLen = pll
	job := sanitizeJob{sa: sa, passes: 1}
	switch sa {
	case saOverwrite:
		if pll < 5 || pll > d.blockSize+4 {
			return invalidField(7, 7)
		}
		p := c.DataOut
		if uint32(len(p)) < pll {
			return check, senseInvalidIU
		}
		ipl := uint32(binary.BigEndian.Uint16(p[2:]))
		job.passes, job.invert = int(p[0]&0x1f), p[0]&0x80 != 0
		switch {
		case job.passes == 0:
			return check, invalidParam(0, 4)
		case p[0]&0x60 != 0:
			return check, invalidParam(0, 6) // TEST
		case ipl == 0 || ipl > d.blockSize || 4+ipl > pll:
			return check, invalidParam(2, 7)
		}
		// The pattern repeats over each logical block.
		job.pattern = make([]byte, d.blockSize)
		for i := 0; i < len(job.pattern); i += copy(job.pattern[i:], p[4:4+ipl]) {
		}
	case saBlockErase, saCryptoErase:
		if pll != 0 {
			return invalidField(7, 7)
		}
	case saExitFailureMode:
		if pll != 0 {
			return invalidField(7, 7)
		}
		return done, scsi.Sense{} // a failed sanitize is reported, never latched
	}
	m := d.acquire()
	if m == nil {
		return check, d.notReady()
	}
	d.mu.Lock()
	if d.sanitizing.Load() {
		d.mu.Unlock()
		m.release()
		return check, senseSanitizing
	}
	d.sanitizing.Store(true)
	d.sanitize = job
	d.mu.Unlock()
	// The job completes the command itself (sanitizeCmd), not the task:
	// an abort or reset ends the command but not the sanitize, which goes
	// on in the background (SBC-4 4.11.2), as after IMMED.
	t := d.newTask(nil, m, stSlow)
	t.fn, t.exclusive = sanitizeSlow, true
	if immed {
		// GOOD now; progress shows as NOT READY until it ends.
		d.slow.submit(t)
		return done, scsi.Sense{}
	}
	d.sanitizeMu.Lock()
	d.sanitizeCmd = c
	d.sanitizeMu.Unlock()
	d.slow.submit(t)
	if c.AbortRequested() {
		// Aborted before Abort could find it: end it here, unless Abort
		// or the job got to it meanwhile.
		d.sanitizeMu.Lock()
		mine := d.sanitizeCmd == c
		if mine {
			d.sanitizeCmd = nil
		}
		d.sanitizeMu.Unlock()
		if mine {
			return done, scsi.Sense{}
		}
	}
	return pending, scsi.Sense{}
}

// Abort implements target.Aborter: an aborted SANITIZE command completes
// at once while the medium keeps being sanitized. Other commands finish
// quickly by themselves and are left to the core to await.
func (d *vdev) Abort(c *target.Command) {
	d.sanitizeMu.Lock()
	mine := c != nil && d.sanitizeCmd == c
	if mine {
		d.sanitizeCmd = nil
	}
	d.sanitizeMu.Unlock()
	if mine {
		// Abort runs under the core's nexus lock, which Complete takes.
		go c.Complete()
	}
}

// sanitizeSlow runs the job; the task carries no command, the job
// completes sanitizeCmd (unless an abort did) once the medium is ready.
func sanitizeSlow(d *vdev, _ *target.Command, m *medium) (outcome, scsi.Sense) {
	st, s := sanitizeRun(d, m)
	d.sanitizing.Store(false)
	d.sanitizeMu.Lock()
	c := d.sanitizeCmd
	d.sanitizeCmd = nil
	d.sanitizeMu.Unlock()
	if c != nil {
		if st == check {
			c.CheckCondition(s)
		}
		c.Complete()
	}
	return done, scsi.Sense{}
}

func sanitizeRun(d *vdev, m *medium) (outcome, scsi.Sense) {
	d.mu.Lock()
	job := d.sanitize
	d.mu.Unlock()
	length := int64(m.nblocks.Load() << d.shift)
	var err error
	switch {
	case job.sa == saOverwrite:
		inv := make([]byte, len(job.pattern))
		for i, b := range job.pattern {
			inv[i] = ^b
		}
		for pass := 0; pass < job.passes && err == nil; pass++ {
			pat := job.pattern
			if job.invert && pass%2 == 1 {
				pat = inv
			}
			err = d.fill(m, 0, length, pat, pass == job.passes-1)
		}
	case d.thin.Load():
		if err = m.discard(0, length); err == nil {
			err = m.sync()
		}
	default: // CRYPTO ERASE of a fully provisioned disk
		err = d.fill(m, 0, length, nil, true)
	}
	if err != nil {
		d.log.WithError(err).Error("SANITIZE failed")
		return check, ioSense(err, true)
	}
	d.log.WithField("service_action", job.sa).Info("SANITIZE completed")
	return done, scsi.Sense{}
}

// blockEraseAvail: the erased state of BLOCK ERASE is "deallocated".
func blockEraseAvail(d *vdev) bool { return d.thin.Load() }
