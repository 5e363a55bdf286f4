// Package scstconf reads the procfs-era /etc/scst.conf of scstadmin
// (spec/procfs.md §4.6) and applies it to a target in scstadmin's -config
// order (§4.5), so that the daemon can come up configured without running
// scstadmin.
package scstconf

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/scstd/scstd/vdisk"
)

// Config is a parsed scst.conf.
type Config struct {
	KeepConfig, IssueLIP bool
	// Handlers in file order (a handler named by several sections is merged
	// into its first one); Apply processes them sorted by name.
	Handlers    []*Handler
	Groups      []*Group
	Assignments []*Assignment
	Targets     []*TargetsSection
}

// Handler is a [HANDLER name] section.
type Handler struct {
	Name    string // "vdisk" or "vcdrom" (others are kept and refused by Apply)
	Line    int
	Devices []Device
}

// Device is one DEVICE line of a HANDLER section.
type Device struct {
	Name      string
	Path      string
	Flags     vdisk.Flags
	BlockSize uint32 // 0 = handler default
	T10ID     string
	Line      int
}

// Group is a [GROUP name] section.
type Group struct {
	Name  string
	Line  int
	Users []User
}

// User is one USER line: an initiator name or pattern.
type User struct {
	Name string
	Line int
}

// Assignment is an [ASSIGNMENT group] section.
type Assignment struct {
	Group string
	Line  int
	LUNs  []LUN
}

// LUN is one DEVICE line of an ASSIGNMENT section.
type LUN struct {
	Device   string
	LUN      uint64
	Auto     bool // no LUN given: next free LUN of the group
	ReadOnly bool
	Line     int
}

// TargetsSection is a [TARGETS enable|disable] section.
type TargetsSection struct {
	Enable bool
	Line   int
	Hosts  []Host
}

// Host is one HOST line.
type Host struct {
	Name string
	Line int
}

// MaxLUN is the highest LUN scstadmin assigns.
const MaxLUN = 255

// ErrFatal is wrapped by the errors scstadmin treats as fatal before
// touching anything: a USER in two groups (or listed twice) and two devices
// at one LUN of an ASSIGNMENT section.
var ErrFatal = errors.New("configuration invalid")

// LineError is an error on one line of the file.
type LineError struct {
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("scst.conf line %d: %v", e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// Parse reads an scst.conf. All problems are reported (joined, each a
// *LineError naming its line); the Config is returned only when there are
// none.
func Parse(r io.Reader) (*Config, error) {
	p := parser{cfg: &Config{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	no := 0
	for sc.Scan() {
		no++
		p.line(no, sc.Text())
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading scst.conf: %w", err)
	}
	p.finish()
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return p.cfg, nil
}

type parser struct {
	cfg  *Config
	errs []error
	// Current section: "" before the first header, "skip" after a
	// rejected header.
	kind    string
	handler *Handler
	group   *Group
	assign  *Assignment
	targets *TargetsSection
	// Where each user was first listed, for the two-groups check.
	users map[string]int
}

func (p *parser) fail(no int, format string, a ...any) {
	p.errs = append(p.errs, &LineError{Line: no, Err: fmt.Errorf(format, a...)})
}

func (p *parser) line(no int, raw string) {
	// '#' starts a comment anywhere; lines are trimmed.
	if i := strings.IndexByte(raw, '#'); i >= 0 {
		raw = raw[:i]
	}
	l := strings.TrimSpace(raw)
	if l == "" {
		return
	}
	if strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]") {
		p.header(no, strings.TrimSpace(l[1:len(l)-1]))
		return
	}
	var key, value string
	if i := strings.IndexAny(l, " \t\v\f\r"); i >= 0 {
		key, value = l[:i], strings.TrimSpace(l[i:])
	} else {
		key, value = l, ""
	}
	switch p.kind {
	case "":
		p.fail(no, "line outside of a section: %q", l)
	case "skip":
		// Body of a section whose header was rejected.
	case "OPTIONS":
		p.option(no, key, value)
	case "HANDLER":
		p.device(no, key, value)
	case "GROUP":
		p.user(no, key, value)
	case "ASSIGNMENT":
		p.lun(no, key, value)
	case "TARGETS":
		if key != "HOST" || value == "" {
			p.fail(no, "[TARGETS] expects HOST lines, got %q", l)
			return
		}
		p.targets.Hosts = append(p.targets.Hosts, Host{Name: value, Line: no})
	}
}

func (p *parser) header(no int, h string) {
	section, arg := h, ""
	if i := strings.IndexAny(h, " \t"); i >= 0 {
		section, arg = h[:i], strings.TrimSpace(h[i:])
	}
	p.kind = "skip"
	switch section {
	case "OPTIONS":
		p.kind = section
	case "HANDLER":
		if arg == "" {
			p.fail(no, "[HANDLER] needs a handler name")
			return
		}
		p.kind = section
		for _, hd := range p.cfg.Handlers {
			if hd.Name == arg {
				p.handler = hd
				return
			}
		}
		p.handler = &Handler{Name: arg, Line: no}
		p.cfg.Handlers = append(p.cfg.Handlers, p.handler)
	case "GROUP":
		if arg == "" {
			p.fail(no, "[GROUP] needs a group name")
			return
		}
		p.kind = section
		for _, g := range p.cfg.Groups {
			if g.Name == arg {
				p.group = g
				return
			}
		}
		p.group = &Group{Name: arg, Line: no}
		p.cfg.Groups = append(p.cfg.Groups, p.group)
	case "ASSIGNMENT":
		if arg == "" {
			p.fail(no, "[ASSIGNMENT] needs a group name")
			return
		}
		p.kind = section
		for _, a := range p.cfg.Assignments {
			if a.Group == arg {
				p.assign = a
				return
			}
		}
		p.assign = &Assignment{Group: arg, Line: no}
		p.cfg.Assignments = append(p.cfg.Assignments, p.assign)
	case "TARGETS":
		var enable bool
		switch arg {
		case "enable":
			enable = true
		case "disable":
		default:
			p.fail(no, "[TARGETS %s]: expected enable or disable", arg)
			return
		}
		p.kind = section
		for _, t := range p.cfg.Targets {
			if t.Enable == enable {
				p.targets = t
				return
			}
		}
		p.targets = &TargetsSection{Enable: enable, Line: no}
		p.cfg.Targets = append(p.cfg.Targets, p.targets)
	default:
		p.fail(no, "unknown section [%s]", h)
	}
}

func (p *parser) option(no int, key, value string) {
	var b bool
	switch strings.ToUpper(value) {
	case "1", "YES", "TRUE":
		b = true
	case "0", "NO", "FALSE":
	default:
		p.fail(no, "option %s: value %q is not 1|0|YES|NO|TRUE|FALSE", key, value)
		return
	}
	switch key {
	case "KEEP_CONFIG":
		p.cfg.KeepConfig = b
	case "ISSUE_LIP":
		p.cfg.IssueLIP = b
	default:
		p.fail(no, "unknown option %q", key)
	}
}

// splitFields splits at ',' and trims each field.
func splitFields(v string) []string {
	f := strings.Split(v, ",")
	for i := range f {
		f[i] = strings.TrimSpace(f[i])
	}
	return f
}

// validName rejects names the proc interface could not carry as one token.
func validName(s string) bool {
	return s != "" && !strings.ContainsAny(s, " \t\v\f\r\n")
}

// device parses `DEVICE name,path,options,blocksize,t10id`.
func (p *parser) device(no int, key, value string) {
	if key != "DEVICE" {
		p.fail(no, "[HANDLER %s] expects DEVICE lines, got %q", p.handler.Name, key)
		return
	}
	f := splitFields(value)
	if len(f) > 5 {
		p.fail(no, "DEVICE %q: more than 5 fields", value)
		return
	}
	for len(f) < 5 {
		f = append(f, "")
	}
	d := Device{Name: f[0], Path: f[1], T10ID: f[4], Line: no}
	if !validName(d.Name) {
		p.fail(no, "DEVICE %q: bad device name", value)
		return
	}
	if strings.ContainsAny(d.Path, " \t\v\f\r") {
		p.fail(no, "DEVICE %s: path %q contains whitespace", d.Name, d.Path)
		return
	}
	flags, err := parseOptions(f[2])
	if err != nil {
		p.fail(no, "DEVICE %s: %v", d.Name, err)
		return
	}
	d.Flags = flags
	if bs := strings.Join(strings.Fields(f[3]), ""); bs != "" {
		n, err := strconv.ParseUint(bs, 10, 32)
		if err != nil {
			p.fail(no, "DEVICE %s: bad block size %q", d.Name, f[3])
			return
		}
		d.BlockSize = uint32(n)
	}
	if p.handler.Name == "vcdrom" && (d.T10ID != "" || d.BlockSize != 0 || flags != (vdisk.Flags{})) {
		p.fail(no, "DEVICE %s: vcdrom devices take only a name and a path", d.Name)
		return
	}
	p.handler.Devices = append(p.handler.Devices, d)
}

// parseOptions parses the options field: names joined by '|' or '+',
// whitespace ignored, with the aliases of spec §4.3.
func parseOptions(v string) (vdisk.Flags, error) {
	var f vdisk.Flags
	v = strings.Join(strings.Fields(v), "")
	for _, o := range strings.FieldsFunc(v, func(r rune) bool { return r == '|' || r == '+' }) {
		switch strings.ToUpper(o) {
		case "WRITE_THROUGH", "WT":
			f.WriteThrough = true
		case "O_DIRECT", "DR":
			f.ODirect = true
		case "READ_ONLY", "RO":
			f.ReadOnly = true
		case "NULLIO", "NIO":
			f.NullIO = true
		case "NV_CACHE", "NV":
			f.NVCache = true
		case "BLOCKIO", "BIO":
			f.BlockIO = true
		case "REMOVABLE", "RM":
			f.Removable = true
		default:
			return f, fmt.Errorf("unknown option %q", o)
		}
	}
	return f, nil
}

func (p *parser) user(no int, key, value string) {
	if key != "USER" || value == "" {
		p.fail(no, "[GROUP %s] expects USER lines", p.group.Name)
		return
	}
	if p.users == nil {
		p.users = map[string]int{}
	}
	if first, dup := p.users[value]; dup {
		p.fail(no, "%w: user %q is in more than one group (first at line %d)", ErrFatal, value, first)
		return
	}
	p.users[value] = no
	p.group.Users = append(p.group.Users, User{Name: value, Line: no})
}

// lun parses `DEVICE name[,lun[,options]]`.
func (p *parser) lun(no int, key, value string) {
	if key != "DEVICE" {
		p.fail(no, "[ASSIGNMENT %s] expects DEVICE lines, got %q", p.assign.Group, key)
		return
	}
	f := splitFields(value)
	if len(f) > 3 {
		p.fail(no, "DEVICE %q: more than 3 fields", value)
		return
	}
	l := LUN{Device: f[0], Line: no, Auto: true}
	if !validName(l.Device) {
		p.fail(no, "DEVICE %q: bad device name", value)
		return
	}
	if len(f) > 1 && f[1] != "" {
		n, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil || n > MaxLUN {
			p.fail(no, "DEVICE %s: LUN %q is not in 0..%d", l.Device, f[1], MaxLUN)
			return
		}
		l.LUN, l.Auto = n, false
	}
	if len(f) > 2 {
		for _, o := range strings.FieldsFunc(strings.Join(strings.Fields(f[2]), ""), func(r rune) bool { return r == '|' || r == '+' }) {
			switch strings.ToUpper(o) {
			case "READ_ONLY", "RO":
				l.ReadOnly = true
			default:
				p.fail(no, "DEVICE %s: unknown assignment option %q", l.Device, o)
				return
			}
		}
	}
	for i, o := range p.assign.LUNs {
		if !l.Auto && !o.Auto && o.LUN == l.LUN && o.Device != l.Device {
			p.fail(no, "%w: group %q has devices %s and %s at LUN %d", ErrFatal, p.assign.Group, o.Device, l.Device, l.LUN)
			return
		}
		if o.Device == l.Device {
			// scstadmin keeps one entry per device: the last one wins.
			p.assign.LUNs[i] = l
			return
		}
	}
	p.assign.LUNs = append(p.assign.LUNs, l)
}

// finish checks what needs the whole file.
func (p *parser) finish() {
	// An explicit LUN may collide with a device replaced later in the same
	// section; re-check the final table.
	for _, a := range p.cfg.Assignments {
		seen := map[uint64]LUN{}
		for _, l := range a.LUNs {
			if l.Auto {
				continue
			}
			if o, ok := seen[l.LUN]; ok {
				p.fail(max(l.Line, o.Line), "%w: group %q has devices %s and %s at LUN %d", ErrFatal, a.Group, o.Device, l.Device, l.LUN)
				continue
			}
			seen[l.LUN] = l
		}
	}
}
