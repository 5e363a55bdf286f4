package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"

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

// startUnmountHelper starts the helper for dir. The returned file is the
// daemon's end of the pipe; it must stay open for the daemon's lifetime.
func startUnmountHelper(dir string) (*os.File, error) {
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
	// Reap it in the background so that it does not linger as a zombie
	// should it end before the daemon.
	go func() { _ = cmd.Wait() }()
	return w, nil
}

// runUnmountHelper is the helper's main: wait for EOF, then detach dir if a
// FUSE filesystem is still mounted there.
func runUnmountHelper(dir string, stdin io.Reader) int {
	_, _ = io.Copy(io.Discard, stdin)
	if !fuseMountedAt(dir) {
		return 0
	}
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
		fmt.Fprintf(os.Stderr, "scstd unmount helper: %s: %v\n", dir, err)
		return 1
	}
	return 0
}

// fuseMountedAt reports whether a fuse filesystem is mounted at dir.
func fuseMountedAt(dir string) bool {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 3 && unescapeMount(fields[1]) == dir && strings.HasPrefix(fields[2], "fuse") {
			return true
		}
	}
	return false
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
