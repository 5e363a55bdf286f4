//go:build rbd

package rbd

/*
#include <errno.h>
#include <stdint.h>
#include <rbd/librbd.h>

// scstd_run describes the run of equally provisioned bytes starting at
// start, as far as the extents librbd reports (in ascending order) show.
struct scstd_run {
	uint64_t start, end;
	int decided;   // the first extent was seen
	int allocated; // the run holds data
};

// scstd_run_cb merges the data extents that continue the run and stops
// the iteration (-ECANCELED) at the first gap.
static int scstd_run_cb(uint64_t off, size_t len, int exists, void *arg) {
	struct scstd_run *r = arg;
	if (!exists)
		return 0;
	if (!r->decided) {
		r->decided = 1;
		if (off > r->start) {
			r->allocated = 0;
			r->end = off;
			return -ECANCELED;
		}
		r->allocated = 1;
		r->end = off + len;
		return 0;
	}
	if (off != r->end)
		return -ECANCELED;
	r->end = off + len;
	return 0;
}

static int scstd_run_at(rbd_image_t img, uint64_t start, uint64_t len, struct scstd_run *r) {
	r->start = start;
	r->end = start + len;
	r->decided = 0;
	r->allocated = 0;
	int ret = rbd_diff_iterate2(img, NULL, start, len, 1, 0, scstd_run_cb, r);
	if (ret == -ECANCELED)
		ret = 0;
	return ret;
}
*/
import "C"

// zeroScanMax bounds the bytes one Allocation call reads to tell zero
// blocks from data.
const zeroScanMax = 1 << 20

// Allocation reports the run of bytes starting at off, within
// [off, off+limit), that are all mapped or all deallocated, in units of
// unit bytes (the LUN block size; off and limit are multiples of it): it
// returns the end of the run. librbd's allocation map only has object
// granularity (an object written anywhere is data up to its end), so
// blocks it reports as data are read, and blocks of zeros count as
// deallocated: with discards zeroing what they cover (LBPRZ) an initiator
// cannot tell them apart, and they are what UNMAP leaves behind inside
// an object.
func (im *Image) Allocation(off, limit int64, unit int) (end int64, allocated bool, err error) {
	if limit <= 0 {
		return off, false, nil
	}
	var r C.struct_scstd_run
	if ret := C.scstd_run_at(im.img, C.uint64_t(off), C.uint64_t(limit), &r); ret < 0 {
		return 0, false, errnoErr("allocation map of "+im.name, ret)
	}
	if r.decided == 0 {
		return off + limit, false, nil // no data in the range
	}
	end = min(int64(r.end), off+limit)
	if r.allocated == 0 {
		return end, false, nil
	}
	n := min(end-off, zeroScanMax)
	n -= n % int64(unit)
	if n <= 0 {
		return end, true, nil
	}
	buf := make([]byte, n)
	if err := im.ReadAt(buf, off); err != nil {
		return 0, false, err
	}
	first := !isZero(buf[:unit])
	p := int64(unit)
	for p < n && !isZero(buf[p:p+int64(unit)]) == first {
		p += int64(unit)
	}
	return off + p, first, nil
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
