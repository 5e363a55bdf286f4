package scstconf

import (
	"context"
	"fmt"
	"sort"

	"github.com/scstd/scstd/vdisk"
)

// Applier is what Apply changes: the vdisk/vcdrom handlers and the SCST
// core. The daemon passes a thin adapter over *vdisk.Manager (Open,
// SetT10ID, OpenCDROM) and *target.Core (AddGroup with the default
// addressing method, AddName, AddLUN).
type Applier interface {
	OpenDisk(name, path string, blockSize uint32, flags vdisk.Flags) error
	SetT10ID(name, id string) error
	OpenCDROM(name, path string) error
	AddGroup(name string) error
	AddName(group, name string) error
	AddLUN(group, dev string, lun uint64, readOnly bool) error
}

// DefaultGroup always exists in the core and is never created.
const DefaultGroup = "Default"

// Apply configures a fresh target (one whose only group is Default) from
// cfg in scstadmin's -config order (spec §4.5): devices of each handler
// (handlers sorted by name, devices in file order, T10 ids right after their
// device), then groups and their users, then LUN assignments (a missing
// group is created, a DEVICE without LUN gets the group's next LUN), then
// the TARGETS sections. It stops at the first error, naming the section and
// line. Unlike scstadmin, Default_ groups are created under their own name
// (no temporary-name dance: no session can log in while the daemon starts).
func Apply(ctx context.Context, cfg *Config, a Applier) error {
	handlers := append([]*Handler(nil), cfg.Handlers...)
	sort.SliceStable(handlers, func(i, j int) bool { return handlers[i].Name < handlers[j].Name })
	for _, h := range handlers {
		if h.Name != "vdisk" && h.Name != "vcdrom" {
			return fmt.Errorf("scst.conf line %d: [HANDLER %s]: handler does not exist (only vdisk and vcdrom)", h.Line, h.Name)
		}
		for _, d := range h.Devices {
			if err := ctx.Err(); err != nil {
				return err
			}
			var err error
			if h.Name == "vdisk" {
				err = a.OpenDisk(d.Name, d.Path, d.BlockSize, d.Flags)
			} else {
				err = a.OpenCDROM(d.Name, d.Path)
			}
			if err != nil {
				return fmt.Errorf("scst.conf line %d: [HANDLER %s] DEVICE %s: open %s: %w", d.Line, h.Name, d.Name, d.Path, err)
			}
			if d.T10ID != "" {
				if err := a.SetT10ID(d.Name, d.T10ID); err != nil {
					return fmt.Errorf("scst.conf line %d: [HANDLER %s] DEVICE %s: set T10 device id %q: %w", d.Line, h.Name, d.Name, d.T10ID, err)
				}
			}
		}
	}

	groups := map[string]bool{DefaultGroup: true}
	addGroup := func(name, section string, line int) error {
		if groups[name] {
			return nil
		}
		if err := a.AddGroup(name); err != nil {
			return fmt.Errorf("scst.conf line %d: [%s %s]: create group: %w", line, section, name, err)
		}
		groups[name] = true
		return nil
	}
	for _, g := range cfg.Groups {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := addGroup(g.Name, "GROUP", g.Line); err != nil {
			return err
		}
		for _, u := range g.Users {
			if err := a.AddName(g.Name, u.Name); err != nil {
				return fmt.Errorf("scst.conf line %d: [GROUP %s] USER %s: %w", u.Line, g.Name, u.Name, err)
			}
		}
	}

	for _, as := range cfg.Assignments {
		if err := addGroup(as.Group, "ASSIGNMENT", as.Line); err != nil {
			return err
		}
		// Next free LUN as scstadmin computes it: one past the highest LUN
		// of the group (explicit LUNs of this section count once applied).
		next := uint64(0)
		for _, l := range as.LUNs {
			if err := ctx.Err(); err != nil {
				return err
			}
			lun := l.LUN
			if l.Auto {
				lun = next
				if lun > MaxLUN {
					return fmt.Errorf("scst.conf line %d: [ASSIGNMENT %s] DEVICE %s: next available LUN %d out of range", l.Line, as.Group, l.Device, lun)
				}
			}
			if err := a.AddLUN(as.Group, l.Device, lun, l.ReadOnly); err != nil {
				return fmt.Errorf("scst.conf line %d: [ASSIGNMENT %s] DEVICE %s at LUN %d: %w", l.Line, as.Group, l.Device, lun, err)
			}
			next = max(next, lun+1)
		}
	}

	for _, t := range cfg.Targets {
		for _, h := range t.Hosts {
			// Only FC target drivers have HOST entries; there are none here.
			return fmt.Errorf("scst.conf line %d: [TARGETS %s] HOST %s: target not found on system", h.Line, enableWord(t.Enable), h.Name)
		}
	}
	return nil
}

func enableWord(b bool) string {
	if b {
		return "enable"
	}
	return "disable"
}
