// Command scstd is the usermode SCST daemon: iscsi-scstd's command line, the
// SCST core with the vdisk handler, the iSCSI target and the FUSE tree that
// mirrors /proc/scsi_tgt, in one process.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/sirupsen/logrus"
)

func main() {
	if dir := os.Getenv(unmountHelperEnv); dir != "" {
		// Signals for the daemon's terminal or process group are not
		// for the helper: only the end of the daemon is.
		signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
		os.Exit(runUnmountHelper(dir, os.Stdin))
	}
	// A closed log reader (a pipe into a pager or a dead supervisor) must
	// not kill the daemon with SIGPIPE halfway through a shutdown; the
	// failed write is just lost.
	signal.Ignore(syscall.SIGPIPE)
	os.Exit(realMain(os.Args, os.Stdout, os.Stderr))
}

// realMain runs the command line and returns the exit status.
func realMain(args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr, func(o *options) error { return start(o, stdout, stderr) })
	if err := app.Run(args); err != nil {
		fmt.Fprintf(stderr, "scstd: %v\n", err)
		return 1
	}
	return 0
}

// start runs the daemon in the foreground, or backgrounds it.
func start(o *options, stdout, stderr io.Writer) error {
	n := childNotifier()
	_, isChild := n.(*pipeNotifier)
	if !o.Foreground && !isChild {
		return background(stdout)
	}
	out := stderr
	if o.LogFile != "" {
		f, err := os.OpenFile(o.LogFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			n.Failed(err)
			return fmt.Errorf("log file: %w", err)
		}
		defer f.Close()
		out = f
	}
	log := newLogger(out, o.LogLevel)
	defer startProfiling(log)()
	if err := serve(context.Background(), o, log, n); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// newLogger returns the root log entry; packages get children of it.
func newLogger(w io.Writer, lvl logrus.Level) *logrus.Entry {
	l := logrus.New()
	l.SetOutput(w)
	l.SetLevel(lvl)
	l.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, DisableColors: true})
	return logrus.NewEntry(l)
}
