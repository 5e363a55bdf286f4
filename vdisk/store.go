package vdisk

import (
	"encoding/binary"
	"fmt"

	"github.com/scstd/scstd/target"
	"github.com/scstd/scstd/target/scsi"
	"github.com/scstd/scstd/vdisk/backend"
)

// Store is a backing store reached through a library instead of a file
// descriptor (Ceph RBD). Its Engine carries READ, WRITE and SYNCHRONIZE
// CACHE; the synchronous methods serve the slow-path commands (UNMAP, WRITE
// SAME, COMPARE AND WRITE, ...) on slow-pool workers. Closing the Engine
// flushes and releases the store: a medium closes nothing else.
type Store interface {
	Engine() backend.Engine
	// Size is the current capacity in bytes (read again by resync_size).
	Size() (int64, error)
	ReadAt(b []byte, off int64) error
	// WriteAt writes b at off, durable on return when fua is set.
	WriteAt(b []byte, off int64, fua bool) error
	Flush() error
	// Discard deallocates [off, off+n); the range then reads as zeros.
	Discard(off, n int64) error
	// WriteSame writes block repeatedly over [off, off+n).
	WriteSame(off, n int64, block []byte, fua bool) error
	// CompareAndWrite atomically (also against other clients of the same
	// store) compares [off, off+len(cmp)) with cmp and, when equal, writes
	// data there. On a mismatch it returns miscompare set and the byte
	// offset of the first difference.
	CompareAndWrite(off int64, cmp, data []byte, fua bool) (mismatch int, miscompare bool, err error)
	// Allocation returns the end of the run of bytes from off (within
	// [off, off+limit), in units of unit bytes) that are all mapped or
	// all deallocated (GET LBA STATUS).
	Allocation(off, limit int64, unit int) (end int64, allocated bool, err error)
}

// PeerNotifier is implemented by stores several nodes serve at once (an
// RBD image exported by two daemons): a LUN reset on one node raises a
// unit attention on the other nodes' devices, as it does for every other
// I_T nexus of a single-node LU.
type PeerNotifier interface {
	// WatchPeers starts delivering the other nodes' resets to onReset;
	// onError reports a broken watch.
	WatchPeers(onReset func(), onError func(error)) error
	// NotifyPeersReset announces a reset of this node's device and
	// returns once the other nodes have raised their unit attention (or
	// after a bounded wait for nodes that do not answer).
	NotifyPeersReset()
}

// StoreOpener opens the stores whose FILE argument it recognises, such as
// /rbd/POOL/IMAGE. ok is false for a path that is not its own (a file).
type StoreOpener interface {
	OpenStore(path string, readOnly bool) (s Store, ok bool, err error)
}

// openBacking opens path for v: a store when the manager's StoreOpener
// recognises the path, a file or block device otherwise.
func (m *Manager) openBacking(v *vdev, path string, f Flags) (*medium, error) {
	if m.opts.Stores != nil {
		s, ok, err := m.opts.Stores.OpenStore(path, f.ReadOnly)
		if err != nil {
			return nil, err
		}
		if ok {
			size, err := s.Size()
			if err != nil {
				s.Engine().Close()
				return nil, err
			}
			med := &medium{path: path, ext: s, eng: s.Engine()}
			med.nblocks.Store(uint64(size) >> v.shift)
			if pn, ok := s.(PeerNotifier); ok {
				err := pn.WatchPeers(func() { v.hooks.RaiseUA(scsi.ASCBusDeviceResetFunctionOccurred) },
					func(err error) { v.log.WithError(err).Warn("resets of other nodes may be missed") })
				if err != nil {
					v.log.WithError(err).Warn("resets of other nodes will not be reported")
				}
			}
			return med, nil
		}
	}
	return m.openMedium(v, path, f.ReadOnly, f.ODirect || f.BlockIO)
}

// setStoreThin is setThin for a store: discarded ranges read as zeros, so
// thin provisioning is on unless turned off or the disk is read-only.
func (v *vdev) setStoreThin(m *medium) (thin, lbprz bool) {
	thin = v.thinMode != ThinOff && !v.flags.ReadOnly
	return thin, thin
}

// notifyPeersReset tells the other nodes of a shared store about a reset.
func (d *vdev) notifyPeersReset() {
	if m := d.med.Load(); m != nil {
		if pn, ok := m.ext.(PeerNotifier); ok {
			pn.NotifyPeersReset()
		}
	}
}

// resyncStore reads a store's size again (resync_size after rbd resize).
func (v *vdev) resyncStore(med *medium) error {
	size, err := med.ext.Size()
	if err != nil {
		return fmt.Errorf("resync_size %s: %w", v.name, err)
	}
	med.nblocks.Store(uint64(size) >> v.shift)
	v.hooks.RaiseUA(scsi.ASCCapacityDataHasChanged)
	return nil
}

// storeCompareAndWrite runs COMPARE AND WRITE as one store operation, so
// that it is atomic against every node that writes the same image and not
// only against this device's other commands.
func storeCompareAndWrite(d *vdev, c *target.Command, m *medium) (outcome, scsi.Sense) {
	lba, n := binary.BigEndian.Uint64(c.CDB[2:]), int(c.CDB[13])<<d.shift
	diff, miscompare, err := m.ext.CompareAndWrite(int64(lba<<d.shift), c.DataOut[:n], c.DataOut[n:2*n], d.fua(c.CDB[1]&0x08 != 0))
	switch {
	case err != nil:
		return check, ioSense(err, true)
	case miscompare:
		return check, scsi.Sense{Key: scsi.SenseMiscompare, ASC: scsi.ASCMiscompareDuringVerify,
			Info: uint64(diff), InfoValid: true}
	}
	return done, scsi.Sense{}
}

// storeExtent is extent for a store.
func (d *vdev) storeExtent(m *medium, lba, nb uint64) (end uint64, deallocated bool, err error) {
	e, allocated, err := m.ext.Allocation(int64(lba<<d.shift), int64((nb-lba)<<d.shift), int(d.blockSize))
	if err != nil {
		return 0, false, err
	}
	return min(max(uint64(e)>>d.shift, lba+1), nb), !allocated, nil
}

// storeWriteSame runs WRITE SAME (without UNMAP) as one store operation.
func storeWriteSame(d *vdev, m *medium, off, length int64, block []byte) (outcome, scsi.Sense) {
	if block == nil {
		// NDOB: a block of zeros.
		buf := d.bufs.Get(int(d.blockSize))
		defer d.bufs.Put(buf)
		block = *buf
		clear(block)
	}
	if err := m.ext.WriteSame(off, length, block, d.fua(false)); err != nil {
		return check, ioSense(err, true)
	}
	return done, scsi.Sense{}
}
