package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"
)

// Version strings. SCSTVersion is what SCST's procfs build reports (spec §1.3)
// and what scstadmin checks; Version is this implementation's own release.
const (
	SCSTVersion = "3.3.0-pre1-procfs"
	Version     = "0.1.0"
)

// Defaults of the original iscsi-scstd and of the usermode adaptation.
const (
	defaultConfig        = "/etc/iscsi-scstd.conf"
	defaultMount         = "/fuse/scst/proc"
	defaultStateDir      = "/var/lib/scst"
	defaultAllow         = "/etc/initiators.allow"
	defaultDeny          = "/etc/initiators.deny"
	defaultPort          = 3260
	defaultUser          = "nobody"
	defaultGroup         = "nogroup"
	defaultShutdownGrace = "30s"
)

// options is the parsed command line; everything the daemon needs to start.
type options struct {
	Foreground     bool
	Config         string
	ConfigExplicit bool // -c given: a missing file is an error
	Address        string
	Port           int
	LogLevel       logrus.Level
	User, Group    string
	SCSTConfig     string
	Mount          string // "" = do not mount the control filesystem
	StateDir       string
	Allow, Deny    string
	Demo           string
	LogFile        string
	ShutdownGrace  string
	Ceph           cephOptions // RBD LUNs (ceph.go)
	ALUA           aluaOptions // multi-node LUs (alua.go)
}

// listenAddr is the host:port the iSCSI listener binds.
func (o *options) listenAddr() string {
	return net.JoinHostPort(o.Address, strconv.Itoa(o.Port))
}

// parseLevel accepts a logrus level name or the numeric -d LEVEL of
// iscsi-scstd (0 = info, 1 = debug, 2 and more = trace).
func parseLevel(s string) (logrus.Level, error) {
	if n, err := strconv.Atoi(s); err == nil {
		switch {
		case n < 0:
			return 0, fmt.Errorf("debug level %d: must not be negative", n)
		case n == 0:
			return logrus.InfoLevel, nil
		case n == 1:
			return logrus.DebugLevel, nil
		default:
			return logrus.TraceLevel, nil
		}
	}
	l, err := logrus.ParseLevel(s)
	if err != nil {
		return 0, fmt.Errorf("debug level %q: %w", s, err)
	}
	return l, nil
}

// optionsFrom turns the parsed flags into options and checks them.
func optionsFrom(c *cli.Context) (*options, error) {
	o := &options{
		Foreground:     c.Bool("foreground"),
		Config:         c.String("config"),
		ConfigExplicit: c.IsSet("config"),
		Address:        c.String("address"),
		Port:           c.Int("port"),
		User:           c.String("uid"),
		Group:          c.String("gid"),
		SCSTConfig:     c.String("scst-config"),
		Mount:          c.String("mount"),
		StateDir:       c.String("state-dir"),
		Allow:          c.String("initiators-allow"),
		Deny:           c.String("initiators-deny"),
		Demo:           c.String("demo"),
		LogFile:        c.String("log-file"),
		ShutdownGrace:  c.String("shutdown-timeout"),
	}
	if c.Bool("no-mount") {
		o.Mount = ""
	}
	lvl, err := parseLevel(c.String("debug"))
	if err != nil {
		return nil, err
	}
	o.LogLevel = lvl
	if o.Ceph, err = cephOptionsFrom(c); err != nil {
		return nil, err
	}
	if o.ALUA, err = aluaOptionsFrom(c); err != nil {
		return nil, err
	}
	if o.Port < 0 || o.Port > 65535 {
		return nil, fmt.Errorf("port %d out of range", o.Port)
	}
	if c.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", c.Args().First())
	}
	if o.Demo != "" && (o.ConfigExplicit || o.SCSTConfig != "") {
		return nil, errors.New("--demo writes its own -c and --scst-config files; do not combine them")
	}
	if o.Mount != "" && !strings.HasPrefix(o.Mount, "/") {
		return nil, fmt.Errorf("--mount %q: must be an absolute path", o.Mount)
	}
	return o, nil
}

// newApp builds the command line. run is called with the parsed options;
// tests replace it to check flag handling without starting a daemon.
func newApp(stdout, stderr io.Writer, run func(*options) error) *cli.App {
	return &cli.App{
		Name:      "scstd",
		Usage:     "usermode SCST: an iSCSI target serving file-backed LUNs",
		UsageText: "scstd [-f] [-c FILE] [-a ADDR] [-p PORT] [-d LEVEL] [-u USER] [-g GROUP] [--scst-config FILE] [--mount DIR | --no-mount] [--state-dir DIR]",
		Writer:    stdout,
		ErrWriter: stderr,
		// A version flag of our own, so that -v prints both version strings.
		HideVersion:     true,
		HideHelpCommand: true,
		// Errors are printed by main, once, with the exit code it chooses.
		ExitErrHandler:         func(*cli.Context, error) {},
		UseShortOptionHandling: true,
		Flags: append([]cli.Flag{
			&cli.BoolFlag{Name: "foreground", Aliases: []string{"f"}, Usage: "stay in the foreground and log to stderr"},
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Value: defaultConfig, Usage: "iscsi-scstd.conf `FILE` (targets, CHAP, parameters); a missing default file is ignored"},
			&cli.StringFlag{Name: "address", Aliases: []string{"a"}, Usage: "listen `ADDR` (default: all addresses)"},
			&cli.IntFlag{Name: "port", Aliases: []string{"p"}, Value: defaultPort, Usage: "listen `PORT` (0 picks a free port, logged at start)"},
			&cli.StringFlag{Name: "debug", Aliases: []string{"d"}, Value: "info", Usage: "log `LEVEL`: panic..trace, or 0 (info), 1 (debug), 2 (trace)"},
			&cli.StringFlag{Name: "uid", Aliases: []string{"u"}, Value: defaultUser, Usage: "when started as root, run as this `USER` (name or number) once sockets and mount are open"},
			&cli.StringFlag{Name: "gid", Aliases: []string{"g"}, Value: defaultGroup, Usage: "when started as root, run as this `GROUP` (name or number)"},
			&cli.BoolFlag{Name: "version", Aliases: []string{"v"}, Usage: "print the version and exit"},
			&cli.StringFlag{Name: "scst-config", Usage: "procfs-format scst.conf `FILE` applied at start (devices, groups, LUNs)"},
			&cli.StringFlag{Name: "mount", Value: defaultMount, Usage: "mount the /proc/scsi_tgt control tree at `DIR`"},
			&cli.BoolFlag{Name: "no-mount", Usage: "do not mount the control tree"},
			&cli.StringFlag{Name: "state-dir", Value: defaultStateDir, Usage: "persistent state `DIR` (pr/, vdev_mode_pages/)"},
			&cli.StringFlag{Name: "initiators-allow", Value: defaultAllow, Usage: "host allow list `FILE` (re-read at each login)"},
			&cli.StringFlag{Name: "initiators-deny", Value: defaultDeny, Usage: "host deny list `FILE` (re-read at each login)"},
			&cli.StringFlag{Name: "demo", Usage: "demo mode: create `DIR`/disk0.img (1 GiB, sparse) and DIR's config files if missing, then serve them"},
			&cli.StringFlag{Name: "log-file", Usage: "append the log to `FILE` (in the background the log is discarded without it)"},
			&cli.StringFlag{Name: "shutdown-timeout", Value: defaultShutdownGrace, Usage: "on SIGINT/SIGTERM, wait this long for in-flight commands before aborting them"},
		}, append(cephFlags(), aluaFlags()...)...),
		Action: func(c *cli.Context) error {
			if c.Bool("version") {
				fmt.Fprintf(stdout, "%s\nscstd %s\n", SCSTVersion, Version)
				return nil
			}
			o, err := optionsFrom(c)
			if err != nil {
				return err
			}
			return run(o)
		},
	}
}
