package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/scstd/scstd/vdisk"
	"github.com/urfave/cli/v2"
)

// aluaOptions place the daemon among several scstd nodes exporting the
// same LUs (RBD images) under one target name.
type aluaOptions struct {
	RelPort, Group uint16
	Peers          []vdisk.PortGroup
}

func aluaFlags() []cli.Flag {
	return []cli.Flag{
		&cli.UintFlag{Name: "rel-port", Usage: "multi-node LUs: this node's relative target port identifier `N` (1-65535; 0 = single node)"},
		&cli.UintFlag{Name: "tpg-id", Usage: "multi-node LUs: this node's target port group `N` (default: --rel-port)"},
		&cli.StringFlag{Name: "tpg-peers", Usage: "multi-node LUs: the other nodes as `GROUP:RELPORT[,...]`, reported by REPORT TARGET PORT GROUPS"},
	}
}

// aluaOptionsFrom reads and checks the ALUA flags.
func aluaOptionsFrom(c *cli.Context) (aluaOptions, error) {
	var o aluaOptions
	rp, g := c.Uint("rel-port"), c.Uint("tpg-id")
	if rp == 0 {
		if g != 0 || c.String("tpg-peers") != "" {
			return o, errors.New("--tpg-id and --tpg-peers need --rel-port")
		}
		return o, nil
	}
	if g == 0 {
		g = rp
	}
	if rp > 0xffff || g > 0xffff {
		return o, fmt.Errorf("--rel-port %d / --tpg-id %d: must be 1-65535", rp, g)
	}
	o.RelPort, o.Group = uint16(rp), uint16(g)
	seenGroup := map[uint16]bool{o.Group: true}
	seenPort := map[uint16]bool{o.RelPort: true}
	if s := c.String("tpg-peers"); s != "" {
		for _, item := range strings.Split(s, ",") {
			gs, ps, ok := strings.Cut(strings.TrimSpace(item), ":")
			gid, gerr := strconv.ParseUint(gs, 10, 16)
			pid, perr := strconv.ParseUint(ps, 10, 16)
			if !ok || gerr != nil || perr != nil || gid == 0 || pid == 0 {
				return o, fmt.Errorf("--tpg-peers %q: want GROUP:RELPORT pairs of numbers 1-65535", item)
			}
			if seenGroup[uint16(gid)] || seenPort[uint16(pid)] {
				return o, fmt.Errorf("--tpg-peers %q: group or relative port used twice", item)
			}
			seenGroup[uint16(gid)], seenPort[uint16(pid)] = true, true
			o.Peers = append(o.Peers, vdisk.PortGroup{ID: uint16(gid), RelPorts: []uint16{uint16(pid)}})
		}
	}
	return o, nil
}

// identity is the vdisk port identity, nil for a single-node daemon.
func (o aluaOptions) identity() *vdisk.PortIdentity {
	if o.RelPort == 0 {
		return nil
	}
	return &vdisk.PortIdentity{RelPort: o.RelPort, Group: o.Group, Peers: o.Peers}
}
