package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Demo setup: one target, one sparse 1 GiB image served as LUN 0 of group
// Default. The demo is nothing but two ordinary config files plus the image;
// samples/demo/ holds the same files as rendered for /var/lib/scst/demo.
const (
	DemoTarget    = "iqn.2026-11.org.scstd:demo"
	demoImageSize = 1 << 30
	demoImage     = "disk0.img"
)

// demoFiles are the paths writeDemo produced.
type demoFiles struct {
	Dir, Image, SCSTConfig, ISCSIConfig string
}

// demoSCSTConf renders the demo scst.conf for a demo directory (absolute).
func demoSCSTConf(dir string) string {
	return strings.ReplaceAll(`# scst.conf for the scstd demo, in the procfs format of scstadmin (spec §4.6).
# Written by "scstd --demo @DIR@"; the daemon applies it at start (--scst-config).

[HANDLER vdisk]
#DEVICE <vdisk name>,<device path>,<options>,<block size>,<t10 device id>
DEVICE disk0,@DIR@/disk0.img,,512,disk0

[GROUP Default]
#USER <user wwn>

[ASSIGNMENT Default]
#DEVICE <device name>,<lun>,<options>
DEVICE disk0,0
`, "@DIR@", dir)
}

// demoISCSIConf renders the demo iscsi-scstd.conf.
func demoISCSIConf() string {
	return `# iscsi-scstd.conf for the scstd demo (spec §2.2): one target, no CHAP.
# LUNs come from the SCST groups (scst.conf), not from this file.
Target ` + DemoTarget + `
	# A NOP-In every 30 s keeps idle sessions honest.
	NopInInterval 30
	NopInTimeout 30
`
}

// writeDemo creates dir, a sparse image and both config files, keeping
// any of them that already exist (the image holds the user's data, and
// edited config files are the user's choice). When the daemon will drop
// privileges, what it creates is handed to that user.
func writeDemo(dir string, cred *credentials) (*demoFiles, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	d := &demoFiles{
		Dir:         abs,
		Image:       filepath.Join(abs, demoImage),
		SCSTConfig:  filepath.Join(abs, "scst.conf"),
		ISCSIConfig: filepath.Join(abs, "iscsi-scstd.conf"),
	}
	if strings.ContainsAny(abs, " \t,") {
		// scst.conf fields are comma separated and paths may not hold blanks.
		return nil, fmt.Errorf("demo directory %q must not contain blanks or commas", abs)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, err
	}
	created := []string{}
	f, err := os.OpenFile(d.Image, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	switch {
	case err == nil:
		err = f.Truncate(demoImageSize)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("create %s: %w", d.Image, err)
		}
		created = append(created, d.Image)
	case !errors.Is(err, fs.ErrExist):
		return nil, err
	}
	for path, text := range map[string]string{d.SCSTConfig: demoSCSTConf(abs), d.ISCSIConfig: demoISCSIConf()} {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		_, err = f.WriteString(text)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("write %s: %w", path, err)
		}
	}
	if cred.drop {
		for _, p := range created {
			if err := os.Chown(p, cred.uid, cred.gid); err != nil {
				return nil, err
			}
		}
	}
	return d, nil
}
