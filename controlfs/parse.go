package controlfs

// Command parsing for every writable file (spec/procfs.md §0 and §1). Every
// function here is pure: bytes in, a typed command or an errno out. The
// parsers follow the C tokenizers of the original closely because scstadmin
// and hand-written scripts depend on their exact tolerance (trailing blanks,
// prefix-matched keywords, base-auto numbers).

import (
	"strings"
	"syscall"

	"github.com/scstd/scstd/target"
	"github.com/scstd/scstd/vdisk"
)

// maxWrite is SCST_PROC_BLOCK_SIZE of the usermode build: PAGE_SIZE - 512
// with UMC's 64 KiB pages. Longer writes fail with EOVERFLOW.
const maxWrite = 65536 - 512

// maxLUN is SCST_MAX_LUN.
const maxLUN = 16383

// maxDevName is the longest vdisk/vcdrom name (the C buffer holds 64+NUL).
const maxDevName = 64

// maxT10ID is the longest T10 device id (the C buffer holds 25+NUL).
const maxT10ID = 25

// maxGroupName bounds group names to what a directory entry can hold.
const maxGroupName = 255

// isspace is C's isspace() in the "C" locale.
func isspace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

// commandText turns the bytes of one write(2) into the command string: the
// text ends at the first NUL (§0.3) and exactly one trailing newline is
// stripped (§0.4).
func commandText(data []byte) string {
	if i := indexNUL(data); i >= 0 {
		data = data[:i]
	}
	if n := len(data); n > 0 && data[n-1] == '\n' {
		data = data[:n-1]
	}
	return string(data)
}

func indexNUL(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return -1
}

// hasPrefixFold reports whether s starts with prefix, ignoring ASCII case
// (strncasecmp(prefix, s, len(prefix)) == 0).
func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// keyword is one command of a proc file: its case-insensitive prefix
// (including the separating space when arguments follow) and its op.
type keyword[Op any] struct {
	prefix string
	op     Op
}

// matchKeyword returns the op of the first keyword s starts with and the
// text after it.
func matchKeyword[Op any](s string, kws []keyword[Op]) (op Op, rest string, ok bool) {
	for _, k := range kws {
		if hasPrefixFold(s, k.prefix) {
			return k.op, s[len(k.prefix):], true
		}
	}
	return op, s, false
}

// skipSpace drops leading isspace characters.
func skipSpace(s string) string {
	i := 0
	for i < len(s) && isspace(s[i]) {
		i++
	}
	return s[i:]
}

// nextToken splits s (after leading blanks) into its first run of
// non-space characters and the remainder (which starts at the separating
// blank, if any).
func nextToken(s string) (tok, rest string) {
	s = skipSpace(s)
	i := 0
	for i < len(s) && !isspace(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

// trimSpace drops leading and trailing isspace characters.
func trimSpace(s string) string {
	s = skipSpace(s)
	j := len(s)
	for j > 0 && isspace(s[j-1]) {
		j--
	}
	return s[:j]
}

func digitVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'z':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'Z':
		return int(c-'A') + 10
	}
	return 99
}

func isxdigit(c byte) bool { return digitVal(c) < 16 }

// strtoul parses an unsigned number with base auto-detection as the kernel's
// simple_strtoul(s, &end, 0) does: "0x"/"0X" followed by a hex digit selects
// base 16, a leading "0" base 8, otherwise base 10; no blanks or sign are
// accepted. It returns the value, the unparsed rest, whether any digit was
// consumed, and whether the value overflowed 64 bits.
func strtoul(s string) (v uint64, rest string, ok, overflow bool) {
	base := uint64(10)
	i := 0
	if len(s) > 0 && s[0] == '0' {
		if len(s) > 2 && (s[1] == 'x' || s[1] == 'X') && isxdigit(s[2]) {
			base, i = 16, 2
		} else {
			base = 8
		}
	}
	start := i
	for i < len(s) {
		d := uint64(digitVal(s[i]))
		if d >= base {
			break
		}
		if v > (^uint64(0)-d)/base {
			overflow = true
		}
		v = v*base + d
		i++
	}
	return v, s[i:], i > start, overflow
}

// strtol parses like C's strtol(s, &end, 0): leading blanks and an optional
// sign are accepted. ok is false when no digit was found; overflow reports a
// value outside int64 (strtol's ERANGE).
func strtol(s string) (v int64, rest string, ok, overflow bool) {
	t := skipSpace(s)
	neg := false
	if len(t) > 0 && (t[0] == '+' || t[0] == '-') {
		neg = t[0] == '-'
		t = t[1:]
	}
	u, r, ok, of := strtoul(t)
	if !ok {
		return 0, s, false, false
	}
	switch {
	case of:
		overflow = true
	case neg && u > 1<<63:
		overflow = true
	case !neg && u > 1<<63-1:
		overflow = true
	}
	if neg {
		v = -int64(u)
	} else {
		v = int64(u)
	}
	return v, r, true, overflow
}

// --- scsi_tgt (§1.2) ---

type scsiTgtOp int

const (
	opAddGroup scsiTgtOp = iota + 1
	opDelGroup
	opRenameGroup
)

type scsiTgtCmd struct {
	Op      scsiTgtOp
	Group   string
	NewName string
	Addr    target.AddrMethod
}

// validGroupName rejects what cannot be a directory under groups/ (the spec
// recommends rejecting empty names and names containing '/').
func validGroupName(name string) bool {
	return name != "" && name != "." && name != ".." &&
		len(name) <= maxGroupName && !strings.ContainsRune(name, '/')
}

// parseScsiTgt parses a write to P/scsi_tgt.
func parseScsiTgt(s string) (scsiTgtCmd, syscall.Errno) {
	var c scsiTgtCmd
	// "assign" is not a keyword: only pass-through SCSI devices (H:C:I:L)
	// can be re-assigned to a handler, and usermode has none, so it fails
	// with EINVAL like any unknown command.
	var ok bool
	c.Op, s, ok = matchKeyword(s, []keyword[scsiTgtOp]{
		{"add_group ", opAddGroup}, {"del_group ", opDelGroup}, {"rename_group ", opRenameGroup}})
	if !ok {
		return c, syscall.EINVAL
	}
	name, rest := nextToken(s)
	arg, rest := nextToken(rest)
	extra, _ := nextToken(rest)
	c.Group = name
	switch c.Op {
	case opAddGroup:
		if extra != "" {
			return c, syscall.EINVAL
		}
		switch {
		case arg == "":
			c.Addr = target.AddrPeripheral
		case strings.EqualFold(arg, "FLAT"):
			c.Addr = target.AddrFlat
		case strings.EqualFold(arg, "LUN"):
			c.Addr = target.AddrLUN
		default:
			return c, syscall.EINVAL
		}
	case opDelGroup:
		if arg != "" {
			return c, syscall.EINVAL
		}
	case opRenameGroup:
		if extra != "" {
			return c, syscall.EINVAL
		}
		// The original accepts any NEW; an empty, unrepresentable or
		// "Default" one is refused as the spec recommends.
		if !validGroupName(arg) || arg == "Default" {
			return c, syscall.EINVAL
		}
		c.NewName = arg
	}
	if name == "" || name == "Default" {
		return c, syscall.EINVAL
	}
	if c.Op == opAddGroup && !validGroupName(name) {
		return c, syscall.EINVAL
	}
	return c, 0
}

// --- groups/G/devices (§1.10) ---

type devicesOp int

const (
	opLUNAdd devicesOp = iota + 1
	opLUNReplace
	opLUNDel
	opLUNClear
)

type devicesCmd struct {
	Op       devicesOp
	Dev      string
	LUN      uint64
	ReadOnly bool
}

// parseDevices parses a write to groups/G/devices.
func parseDevices(s string) (devicesCmd, syscall.Errno) {
	var c devicesCmd
	// "clear" is matched as a 5-character prefix: "clearXYZ" clears too.
	var ok bool
	c.Op, s, ok = matchKeyword(s, []keyword[devicesOp]{
		{"clear", opLUNClear}, {"add ", opLUNAdd}, {"del ", opLUNDel}, {"replace ", opLUNReplace}})
	switch {
	case !ok:
		return c, syscall.EINVAL
	case c.Op == opLUNClear:
		return c, 0
	}
	dev, rest := nextToken(s)
	if dev == "" {
		// No such device can be registered.
		return c, syscall.EINVAL
	}
	c.Dev = dev
	if c.Op == opLUNDel {
		return c, 0 // anything after DEV is ignored
	}
	// A missing LUN is 0; text that is not a number is left for the option
	// check below.
	rest = skipSpace(rest)
	lun, rest, _, overflow := strtoul(rest)
	if overflow || lun > maxLUN {
		return c, syscall.EINVAL
	}
	c.LUN = lun
	rest = skipSpace(rest)
	if rest != "" {
		if !hasPrefixFold(rest, "READ_ONLY") {
			return c, syscall.EINVAL
		}
		c.ReadOnly = true // text after READ_ONLY is ignored
	}
	return c, 0
}

// --- groups/G/names (§1.11) ---

type namesOp int

const (
	opNameAdd namesOp = iota + 1
	opNameDel
	opNameMove
	opNameClear
)

type namesCmd struct {
	Op       namesOp
	Name     string
	NewGroup string
}

// parseNames parses a write to groups/G/names.
func parseNames(s string) (namesCmd, syscall.Errno) {
	var c namesCmd
	var ok bool
	c.Op, s, ok = matchKeyword(s, []keyword[namesOp]{
		{"clear", opNameClear}, {"add ", opNameAdd}, {"del ", opNameDel}, {"move ", opNameMove}})
	switch {
	case !ok:
		return c, syscall.EINVAL
	case c.Op == opNameClear:
		return c, 0
	}
	name, rest := nextToken(s)
	arg, rest := nextToken(rest)
	extra, _ := nextToken(rest)
	if name == "" {
		// The spec recommends rejecting empty names.
		return c, syscall.EINVAL
	}
	c.Name = name
	switch c.Op {
	case opNameAdd, opNameDel:
		if arg != "" {
			return c, syscall.EINVAL
		}
	case opNameMove:
		if arg == "" || extra != "" {
			// An empty NEWGROUP is "group not found".
			return c, syscall.EINVAL
		}
		c.NewGroup = arg
	}
	return c, 0
}

// --- threads (§1.6) ---

// parseThreads parses a write to P/threads: a base-auto number as
// simple_strtoul reads it (no leading blanks, trailing text ignored) that
// must be positive and fit a C int.
func parseThreads(s string) (int32, syscall.Errno) {
	v, _, _, overflow := strtoul(s)
	if overflow || v == 0 || v > 1<<31-1 {
		return 0, syscall.EINVAL
	}
	return int32(v), 0
}

// --- vdisk/vdisk (§1.15) and vcdrom/vcdrom (§1.16) ---

type vdiskOp int

const (
	opVdiskOpen vdiskOp = iota + 1
	opVdiskClose
	opVdiskResync
	opVdiskSetT10
	opCDROMOpen
	opCDROMChange
	opCDROMClose
)

type vdiskCmd struct {
	Op        vdiskOp
	Name      string
	Path      string
	BlockSize uint32
	Flags     vdisk.Flags
	T10ID     string
}

// vdiskFlags are the open flags, matched case-sensitively as prefixes at the
// current position exactly as the original does ("READ_ONLYNULLIO" sets
// both).
var vdiskFlags = []struct {
	name string
	set  func(*vdisk.Flags)
}{
	{"WRITE_THROUGH", func(f *vdisk.Flags) { f.WriteThrough = true }},
	{"NV_CACHE", func(f *vdisk.Flags) { f.NVCache = true }},
	{"READ_ONLY", func(f *vdisk.Flags) { f.ReadOnly = true }},
	{"O_DIRECT", func(f *vdisk.Flags) { f.ODirect = true }},
	{"NULLIO", func(f *vdisk.Flags) { f.NullIO = true }},
	{"BLOCKIO", func(f *vdisk.Flags) { f.BlockIO = true }},
	{"REMOVABLE", func(f *vdisk.Flags) { f.Removable = true }},
}

// devName extracts and checks the NAME token common to every vdisk/vcdrom
// command.
func devName(s string) (name, rest string, errno syscall.Errno) {
	name, rest = nextToken(s)
	if name == "" || len(name) > maxDevName || strings.ContainsAny(name, "/.") {
		return "", rest, syscall.EINVAL
	}
	return name, rest, 0
}

// parseVdisk parses a write to vdisk/vdisk. The caller has already handled
// the empty command (a no-op).
func parseVdisk(s string) (vdiskCmd, syscall.Errno) {
	var c vdiskCmd
	switch {
	case strings.HasPrefix(s, "close "):
		c.Op, s = opVdiskClose, s[len("close "):]
	case strings.HasPrefix(s, "open "):
		c.Op, s = opVdiskOpen, s[len("open "):]
	case strings.HasPrefix(s, "resync_size "):
		c.Op, s = opVdiskResync, s[len("resync_size "):]
	case strings.HasPrefix(s, "set_t10_dev_id "):
		c.Op, s = opVdiskSetT10, s[len("set_t10_dev_id "):]
	default:
		return c, syscall.EINVAL
	}
	name, rest, errno := devName(s)
	if errno != 0 {
		return c, errno
	}
	c.Name = name
	switch c.Op {
	case opVdiskClose, opVdiskResync:
		return c, 0 // anything after NAME is ignored
	case opVdiskSetT10:
		// Everything after NAME, leading blanks skipped, internal and
		// trailing blanks kept.
		id := skipSpace(rest)
		if id == "" {
			return c, syscall.EINVAL
		}
		if len(id) > maxT10ID {
			id = id[:maxT10ID]
		}
		c.T10ID = id
		return c, 0
	}
	path, rest := nextToken(rest)
	if path == "" {
		return c, syscall.EINVAL
	}
	c.Path = path
	rest = skipSpace(rest)
	if len(rest) > 0 && rest[0] >= '0' && rest[0] <= '9' {
		bs, r, _, overflow := strtoul(rest)
		if len(r) > 0 && !isspace(r[0]) {
			return c, syscall.EINVAL // "Parse error"
		}
		// SCST keeps floor(log2(size)) as the block shift; below 512 is
		// refused, 0 means the default.
		if overflow || bs > 1<<31 || (bs != 0 && bs < 512) {
			return c, syscall.EINVAL
		}
		c.BlockSize = uint32(bs)
		rest = skipSpace(r)
	}
	for rest != "" {
		matched := false
		for _, f := range vdiskFlags {
			if strings.HasPrefix(rest, f.name) {
				f.set(&c.Flags)
				rest = rest[len(f.name):]
				matched = true
				break
			}
		}
		if !matched {
			return c, syscall.EINVAL
		}
		rest = skipSpace(rest)
	}
	if !c.Flags.NullIO && !strings.HasPrefix(c.Path, "/") {
		return c, syscall.EINVAL
	}
	return c, 0
}

// parseVcdrom parses a write to vcdrom/vcdrom.
func parseVcdrom(s string) (vdiskCmd, syscall.Errno) {
	var c vdiskCmd
	switch {
	case strings.HasPrefix(s, "close "):
		c.Op, s = opCDROMClose, s[len("close "):]
	case strings.HasPrefix(s, "change "):
		c.Op, s = opCDROMChange, s[len("change "):]
	case strings.HasPrefix(s, "open "):
		c.Op, s = opCDROMOpen, s[len("open "):]
	default:
		return c, syscall.EINVAL
	}
	name, rest, errno := devName(s)
	if errno != 0 {
		return c, errno
	}
	c.Name = name
	switch c.Op {
	case opCDROMOpen:
		c.Path, _ = nextToken(rest) // tokens after FILE are ignored
	case opCDROMChange:
		c.Path = trimSpace(rest)
	}
	if c.Path != "" && !strings.HasPrefix(c.Path, "/") {
		return c, syscall.EINVAL
	}
	return c, 0
}

// --- module parameters (§1.19) ---

// parseModuleParam parses a write to a module-parameter file: strtol base 0
// (blanks, sign, trailing text allowed); no number → EINVAL; a value with
// any bit above bit 31 (negative numbers included) → ERANGE. Values from
// 2^31 to 2^32-1 are stored as the C int they become.
func parseModuleParam(data []byte) (int32, syscall.Errno) {
	if len(data) == 0 {
		return 0, syscall.EINVAL
	}
	s := string(data)
	if i := strings.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	v, _, ok, overflow := strtol(s)
	if !ok || overflow {
		return 0, syscall.EINVAL
	}
	if uint64(v)&^0xffffffff != 0 {
		return 0, syscall.ERANGE
	}
	return int32(uint32(v)), 0
}
