// Package controlfs serves SCST's legacy procfs control interface
// (/proc/scsi_tgt, spec/procfs.md §0, §1, §3) as a FUSE tree, by default at
// /fuse/scst/proc, the way the usermode SCST build did for scstadmin.
//
// It is a thin view over the target core and the vdisk manager: a write
// parses one command (parse.go) and calls one of their methods (exec.go); a
// read renders their current state (render.go). The FUSE adapter (fuse.go)
// and the mount handling (mount.go) keep no configuration of their own:
// group directories are reconciled with the core's groups on every lookup
// and after every scsi_tgt command.
//
// Files are opened with DIRECT_IO and NONSEEKABLE; a read at offset 0
// renders a fresh snapshot and reads at later offsets of the same open file
// continue from it, so large files are never torn. The mount uses
// allow_other, default_permissions and atomic O_TRUNC, zero entry and
// attribute timeouts, and reports st_size 4096 for every node.
//
// Deliberate differences from the original, all small:
//   - Modes are those of kernel procfs (0644, 0444, dirs 0555) without the
//     usermode shim's extra group-write, and nodes belong to the daemon's
//     user (Options.Owner) instead of uid 0.
//   - P/version prints only "3.3.0-pre1-procfs": none of the optional
//     feature lines (TEST_IO_IN_SIRQ included) describes this
//     implementation.
//   - A vdisk/vcdrom write whose first byte is NUL is a no-op that returns
//     the full length, not 0 (a 0 return makes stdio and Perl writers loop).
//   - Group names that cannot be directory names (empty, ".", "..", "/",
//     longer than 255 bytes) are refused with EINVAL, and rename_group
//     refuses an existing NEW name (EEXIST from the core) and "Default", as
//     the spec recommends. LUNs above 16383 are refused without the C
//     truncation to 32 bits.
//   - The read-only module parameters (num_threads, scst_vdisk_ID,
//     scst_threads, scst_max_cmd_mem, scst_max_dev_cmd_mem) refuse writes
//     with EPERM even from root; forcibly_close_sessions follows UMC's
//     strtol rules (EINVAL, ERANGE).
//   - P/threads stores the thread count (target.Tunables); scstd has no
//     SCST command-thread pool to resize.
//   - P/sgv shows three pools (sgv, sgv-clust, sgv-dma) with 4 KiB-page
//     cache names, zero counters and the high watermark derived from
//     scst_max_cmd_mem.
//   - groups/ lists Default first, then groups in creation order (the shim
//     listed the most recent first).
//
// Kept quirks: keywords are prefix-matched ("clearXYZ" clears), text after
// READ_ONLY is ignored, "del DEV" of an unmapped device succeeds, vdisk
// flags are prefix-matched ("READ_ONLYNULLIO" sets both), and vdisk/vdisk
// counts the "RM " option as four columns when padding the options field.
package controlfs
