package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// unmountHelperEnv marks a process started as the unmount helper; its value
// is the mountpoint.
const unmountHelperEnv = "SCSTD_UNMOUNT_HELPER"

// A daemon that drops root cannot unmount the mount it made as root. Before
// dropping, it therefore starts a copy of itself that stays root, does
// nothing but wait for the daemon's end (EOF on its stdin, however the
// daemon ends, SIGKILL included) and then detaches the mount. It is the
// job fusermount's auto_unmount does for libfuse.

// unmountHelper is the daemon's handle on its helper process.
type unmountHelper struct {
	w    *os.File      // the daemon's end of the pipe; closing it ends the helper's wait
	done chan struct{} // closed when the helper process has exited
}

// startUnmountHelper starts the helper for dir, which must be mounted
// already: the helper notes which mount it guards, so that it never detaches
// a later daemon's mount on the same directory.
func startUnmountHelper(dir string) (*unmountHelper, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cmd := exec.Command(exe)
	cmd.Env = []string{unmountHelperEnv + "=" + dir, "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Stdin = r
	// Its own session: a ^C for the daemon's terminal must not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, fmt.Errorf("start unmount helper: %w", err)
	}
	h := &unmountHelper{w: w, done: make(chan struct{})}
	// Reap it in the background so that it does not linger as a zombie
	// should it end before the daemon.
	go func() { _ = cmd.Wait(); close(h.done) }()
	return h, nil
}

// finish closes the pipe and waits (bounded) for the helper to detach the
// mount, so that a daemon started right after this one exits finds the
// directory free.
func (h *unmountHelper) finish(timeout time.Duration) {
	h.w.Close()
	select {
	case <-h.done:
	case <-time.After(timeout):
	}
}

// runUnmountHelper is the helper's main: note the FUSE mount at dir, wait for
// EOF, then detach dir if that same mount is still there.
func runUnmountHelper(dir string, stdin io.Reader) int {
	id := fuseMountID(dir)
	_, _ = io.Copy(io.Discard, stdin)
	if id == "" || fuseMountID(dir) != id {
		return 0
	}
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
		fmt.Fprintf(os.Stderr, "scstd unmount helper: %s: %v\n", dir, err)
		return 1
	}
	return 0
}

// fuseMountedAt reports whether a fuse filesystem is mounted at dir.
func fuseMountedAt(dir string) bool { return fuseMountID(dir) != "" }

// fuseMountID returns the device number ("major:minor", unique per mount) of
// the topmost FUSE filesystem mounted at dir, or "" if there is none. It reads
// /proc/self/mountinfo, which answers even when the FUSE server is dead.
func fuseMountID(dir string) string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	id := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
		line := sc.Text()
		sep := strings.Index(line, " - ")
		if sep < 0 {
			continue
		}
		fields, tail := strings.Fields(line[:sep]), strings.Fields(line[sep+3:])
		if len(fields) >= 5 && len(tail) >= 1 && unescapeMount(fields[4]) == dir && strings.HasPrefix(tail[0], "fuse") {
			id = fields[2] // later lines are mounted on top of earlier ones
		}
	}
	return id
}

// unescapeMount undoes the octal escapes of /proc/mounts (\040 for a blank).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range s[i+1 : i+4] {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + byte(c-'0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
