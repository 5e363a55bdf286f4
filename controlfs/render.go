package controlfs

// Rendering of every readable file (spec/procfs.md §1). Each function is
// pure over a snapshot and reproduces the original's printf formats byte for
// byte. Widths are counted in bytes, as C's printf does (Go's fmt counts
// runes, so strings are padded by hand).

import (
	"net"
	"strconv"

	"github.com/scstd/scstd/iscsi"
	"github.com/scstd/scstd/target"
	"github.com/scstd/scstd/vdisk"
)

// versionString is SCST_VERSION_STRING / ISCSI_VERSION_STRING of the
// procfs build; scstadmin needs major.minor.release >= 2.0.0 on line 1.
const versionString = "3.3.0-pre1-procfs"

// padRight appends s left-justified in a field of at least width bytes
// (printf "%-*s": never truncated).
func padRight(b []byte, s string, width int) []byte {
	b = append(b, s...)
	for n := len(s); n < width; n++ {
		b = append(b, ' ')
	}
	return b
}

// padInt appends v as "%-*d".
func padInt(b []byte, v int64, width int) []byte {
	var tmp [24]byte
	return padRight(b, string(strconv.AppendInt(tmp[:0], v, 10)), width)
}

// deviceRow is one line of P/scsi_tgt.
type deviceRow struct {
	Name, Handler string
}

// renderScsiTgt renders P/scsi_tgt (§1.2).
func renderScsiTgt(devs []deviceRow) []byte {
	b := padRight(nil, "Device (host:ch:id:lun or name)", 60)
	b = append(b, "Device handler\n"...)
	for _, d := range devs {
		b = padRight(b, d.Name, 60)
		b = append(b, d.Handler...)
		b = append(b, '\n')
	}
	return b
}

// renderVersion renders P/version (§1.3). Only the version line is printed:
// none of the optional feature lines describes this implementation
// (TEST_IO_IN_SIRQ is a kernel softirq test mode that has no equivalent
// here).
func renderVersion() []byte { return []byte(versionString + "\n") }

// renderISCSIVersion renders P/iscsi/version (§1.17); no optional line
// (EXTRACHECKS, TRACING, DEBUG, DEBUG_DIGEST_FAILURES) applies.
func renderISCSIVersion() []byte { return []byte(versionString + "\n") }

// renderSessions renders P/sessions (§1.4).
func renderSessions(ss []target.SessionStat) []byte {
	b := padRight(nil, "Target name", 20)
	b = append(b, ' ')
	b = padRight(b, "Initiator name", 45)
	b = append(b, ' ')
	b = padRight(b, "Group name", 35)
	b = append(b, ' ')
	b = padRight(b, "Active/All Commands Count", 15)
	b = append(b, '\n')
	for _, s := range ss {
		b = padRight(b, s.Info.Transport, 20)
		b = append(b, ' ')
		b = padRight(b, s.Info.Initiator, 45)
		b = append(b, ' ')
		b = padRight(b, s.Group, 35)
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(s.ActiveCmds), 10)
		b = append(b, '/')
		b = strconv.AppendInt(b, int64(s.AllCmds), 10)
		b = append(b, '\n')
	}
	return b
}

// helpText is P/help (§1.5): the usage text plus the extra newline the
// original prints after it. The paths say /proc/scsi_tgt even in usermode.
const helpText = `   echo "assign H:C:I:L HANDLER_NAME" >/proc/scsi_tgt/scsi_tgt

   echo "add_group GROUP_NAME [FLAT]" >/proc/scsi_tgt/scsi_tgt
   echo "add_group GROUP_NAME [LUN]" >/proc/scsi_tgt/scsi_tgt
   echo "del_group GROUP_NAME" >/proc/scsi_tgt/scsi_tgt
   echo "rename_group OLD_NAME NEW_NAME" >/proc/scsi_tgt/scsi_tgt

   echo "add|del H:C:I:L lun [READ_ONLY]" >/proc/scsi_tgt/groups/GROUP_NAME/devices
   echo "replace H:C:I:L lun [READ_ONLY]" >/proc/scsi_tgt/groups/GROUP_NAME/devices
   echo "add|del V_NAME lun [READ_ONLY]" >/proc/scsi_tgt/groups/GROUP_NAME/devices
   echo "replace V_NAME lun [READ_ONLY]" >/proc/scsi_tgt/groups/GROUP_NAME/devices
   echo "clear" >/proc/scsi_tgt/groups/GROUP_NAME/devices

   echo "add|del NAME" >/proc/scsi_tgt/groups/GROUP_NAME/names
   echo "move NAME NEW_GROUP_NAME" >/proc/scsi_tgt/groups/OLD_GROUP_NAME/names
   echo "clear" >/proc/scsi_tgt/groups/GROUP_NAME/names

   echo "DEC|0xHEX|0OCT" >/proc/scsi_tgt/threads

`

func renderHelp() []byte { return []byte(helpText) }

// renderThreads renders P/threads (§1.6).
func renderThreads(n int32) []byte {
	return append(strconv.AppendInt(nil, int64(n), 10), '\n')
}

// renderAddrMethod renders groups/G/addr_method (§1.9).
func renderAddrMethod(m target.AddrMethod) []byte {
	switch m {
	case target.AddrFlat:
		return []byte("FLAT\n")
	case target.AddrPeripheral:
		return []byte("PERIPHERAL\n")
	case target.AddrLUN:
		return []byte("LUN\n")
	}
	return []byte("UNKNOWN\n")
}

// renderGroupDevices renders groups/G/devices (§1.10): rows end with the
// LUN column's padding when the mapping is not read-only.
func renderGroupDevices(luns []target.LUNInfo) []byte {
	b := padRight(nil, "Device (host:ch:id:lun or name)", 60)
	b = padRight(b, "LUN", 13)
	b = append(b, "Options\n"...)
	for _, l := range luns {
		b = padRight(b, l.Device, 60)
		// %-13lld of an unsigned long long: LUNs never reach 2^63.
		b = padInt(b, int64(l.LUN), 13)
		if l.ReadOnly {
			b = append(b, "RO"...)
		}
		b = append(b, '\n')
	}
	return b
}

// renderNames renders groups/G/names (§1.11).
func renderNames(names []string) []byte {
	var b []byte
	for _, n := range names {
		b = append(b, n...)
		b = append(b, '\n')
	}
	return b
}

// sgvStats is the content of P/sgv. scstd's buffers are plain Go memory, so
// every counter but the high watermark is zero.
type sgvStats struct {
	HiWatermark int32 // pages
}

// sgvPageKiB is the page size the sgv cache names are derived from.
const sgvPageKiB = 4

// renderSGV renders P/sgv (§1.12) for the pools sgv, sgv-clust and sgv-dma
// with their 11 caches each.
func renderSGV(st sgvStats) []byte {
	line42 := func(b []byte, label string, a, c int64) []byte {
		b = padRight(b, label, 42)
		b = append(b, ' ')
		b = strconv.AppendInt(b, a, 10)
		b = append(b, '/')
		b = strconv.AppendInt(b, c, 10)
		return append(b, '\n')
	}
	b := line42(nil, "Inactive/active pages", 0, 0)
	b = line42(b, "Hi/lo watermarks [pages]", int64(st.HiWatermark), 0)
	b = line42(b, "Hi watermark releases/failures", 0, 0)
	b = append(b, '\n')
	b = padRight(b, "Name", 30)
	for _, h := range []string{"Hit", "Total", "% merged", "Cached (P/I/O)"} {
		b = append(b, ' ')
		b = padRight(b, h, 11)
	}
	for _, pool := range []string{"sgv", "sgv-clust", "sgv-dma"} {
		b = append(b, '\n')
		b = padRight(b, pool, 30)
		for i := 0; i < 3; i++ {
			b = append(b, ' ')
			b = padInt(b, 0, 11)
		}
		b = append(b, " 0/0/0\n"...)
		for i := 0; i < 11; i++ {
			name := pool + "-" + strconv.Itoa(sgvPageKiB<<i) + "K"
			b = append(b, "  "...)
			b = padRight(b, name, 28)
			b = append(b, ' ')
			b = padInt(b, 0, 11)
			b = append(b, ' ')
			b = padInt(b, 0, 11)
			b = append(b, " 0\n"...)
		}
		b = append(b, "  "...)
		b = padRight(b, "big/other", 40)
		b = append(b, " 0/"...)
		b = padInt(b, 0, 9)
		b = append(b, " 0/0\n"...)
	}
	b = append(b, '\n')
	b = padRight(b, "other", 42)
	b = append(b, ' ')
	b = padInt(b, 0, 11)
	return append(b, '\n')
}

// peripheralTypes are the descriptions of dev handler "type" files (§1.13).
var peripheralTypes = [...]string{
	"Direct-access device (e.g., magnetic disk)",
	"Sequential-access device (e.g., magnetic tape)",
	"Printer device",
	"Processor device",
	"Write-once device (e.g., some optical disks)",
	"CD-ROM device",
	"Scanner device (obsolete)",
	"Optical memory device (e.g., some optical disks)",
	"Medium changer device (e.g., jukeboxes)",
	"Communications device (obsolete)",
	"Defined by ASC IT8 (Graphic arts pre-press devices)",
	"Defined by ASC IT8 (Graphic arts pre-press devices)",
	"Storage array controller device (e.g., RAID)",
	"Enclosure services device",
	"Simplified direct-access device (e.g., magnetic disk)",
	"Optical card reader/writer device",
}

// renderType renders vdisk/type and vcdrom/type (§1.13).
func renderType(t int) []byte {
	desc := "unknown"
	if t >= 0 && t < len(peripheralTypes) {
		desc = peripheralTypes[t]
	}
	b := strconv.AppendInt(nil, int64(t), 10)
	b = append(b, " - "...)
	b = append(b, desc...)
	return append(b, '\n')
}

// Handler usage texts (§1.14); no extra trailing newline.
const (
	vdiskHelpText = `echo "open|close|resync_size NAME [FILE_NAME [BLOCK_SIZE] [WRITE_THROUGH READ_ONLY O_DIRECT NULLIO NV_CACHE BLOCKIO]]" >/proc/scsi_tgt/vdisk/vdisk
echo "set_t10_dev_id NAME t10_dev_id" >/proc/scsi_tgt/vdisk/vdisk
`
	vcdromHelpText = `echo "open|change|close NAME [FILE_NAME]" >/proc/scsi_tgt/vcdrom/vcdrom
`
)

// sizeMB is the size column of the handler files: "%d" of
// (uint32_t)(size >> 20), so sizes of 2^31 MiB and more wrap like C.
func sizeMB(size int64) int64 {
	return int64(int32(uint32(uint64(size) >> 20)))
}

func fileName(p string) string {
	if p == "" {
		return "none"
	}
	return p
}

// renderVdisks renders vdisk/vdisk (§1.15).
func renderVdisks(disks []vdisk.DiskInfo) []byte {
	b := padRight(nil, "Name", 17)
	for _, h := range []struct {
		s string
		w int
	}{{"Size(MB)", 11}, {"Block size", 11}, {"Options", 15}, {"File name", 45}, {"T10 device id", 16}} {
		b = append(b, ' ')
		b = padRight(b, h.s, h.w)
	}
	b = append(b, '\n')
	for _, d := range disks {
		b = padRight(b, d.Name, 17)
		b = append(b, ' ')
		b = padInt(b, sizeMB(d.Size), 11)
		b = append(b, ' ')
		b = padInt(b, int64(d.BlockSize), 12)
		// The original counts "RM " as four columns, so a removable
		// device's options field is one space narrower; kept for
		// byte-exactness.
		col := 0
		for _, o := range []struct {
			on   bool
			text string
			cols int
		}{
			{d.Flags.WriteThrough, "WT ", 3},
			{d.Flags.NVCache, "NV ", 3},
			{d.Flags.ReadOnly, "RO ", 3},
			{d.Flags.ODirect, "DR ", 3},
			{d.Flags.NullIO, "NIO ", 4},
			{d.Flags.BlockIO, "BIO ", 4},
			{d.Flags.Removable, "RM ", 4},
		} {
			if o.on {
				b = append(b, o.text...)
				col += o.cols
			}
		}
		for ; col < 16; col++ {
			b = append(b, ' ')
		}
		b = padRight(b, fileName(d.Path), 45)
		b = append(b, ' ')
		b = padRight(b, d.T10ID, 16)
		b = append(b, '\n')
	}
	return b
}

// renderVcdroms renders vcdrom/vcdrom (§1.16).
func renderVcdroms(cds []vdisk.CDROMInfo) []byte {
	b := padRight(nil, "Name", 17)
	b = append(b, ' ')
	b = padRight(b, "Size(MB)", 9)
	b = append(b, " File name\n"...)
	for _, c := range cds {
		b = padRight(b, c.Name, 17)
		b = append(b, ' ')
		b = padInt(b, sizeMB(c.Size), 9)
		b = append(b, ' ')
		b = append(b, fileName(c.Path)...)
		b = append(b, '\n')
	}
	return b
}

// renderISCSISession renders iscsi/session (§1.18).
func renderISCSISession(ts []iscsi.TargetStat) []byte {
	var b []byte
	for _, t := range ts {
		b = append(b, "tid:"...)
		b = strconv.AppendUint(b, uint64(t.TID), 10)
		b = append(b, " name:"...)
		b = append(b, t.Name...)
		b = append(b, '\n')
		for _, s := range t.Sessions {
			b = append(b, "\tsid:"...)
			b = strconv.AppendUint(b, s.SID, 16)
			b = append(b, " initiator:"...)
			b = append(b, s.Initiator...)
			if s.Reinstating {
				b = append(b, " (reinstating yes)\n"...)
			} else {
				b = append(b, " (reinstating no)\n"...)
			}
			for _, c := range s.Conns {
				b = append(b, "\t\tcid:"...)
				b = strconv.AppendUint(b, uint64(c.CID), 10)
				b = append(b, " ip:"...)
				b = append(b, ipString(c.RemoteIP)...)
				b = append(b, " state:"...)
				b = append(b, c.State...)
				b = append(b, " hd:"...)
				b = append(b, digestName(c.HeaderDigest)...)
				b = append(b, " dd:"...)
				b = append(b, digestName(c.DataDigest)...)
				b = append(b, '\n')
			}
		}
	}
	return b
}

func ipString(ip net.IP) string {
	if v4 := ip.To4(); v4 != nil {
		return v4.String()
	}
	if ip == nil {
		return ""
	}
	return "[" + ip.String() + "]"
}

func digestName(d string) string {
	switch d {
	case "none", "crc32c":
		return d
	case "", "None":
		return "none"
	case "CRC32C":
		return "crc32c"
	}
	return "unknown"
}

// renderModuleParam renders a module-parameter file (§1.19): "%d 0x%x\n" of
// a C int.
func renderModuleParam(v int32) []byte {
	b := strconv.AppendInt(nil, int64(v), 10)
	b = append(b, " 0x"...)
	b = strconv.AppendUint(b, uint64(uint32(v)), 16)
	return append(b, '\n')
}
