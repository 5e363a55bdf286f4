//go:build rbd

// Trampolines from librados watch callbacks into Go (watch.go).
#include <stdint.h>
#include <stdlib.h>
#include <rados/librados.h>
#include "_cgo_export.h"

void scstd_watch_cb(void *arg, uint64_t notify_id, uint64_t cookie, uint64_t notifier_id,
		    void *data, size_t len) {
	scstdWatchNotify(arg, notify_id, cookie, data, len);
}

void scstd_watch_err(void *arg, uint64_t cookie, int err) {
	scstdWatchError(arg, err);
}
