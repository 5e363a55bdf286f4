package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// readyFDEnv names the environment variable through which a backgrounded
// child learns the descriptor of its startup-report pipe.
const readyFDEnv = "SCSTD_READY_FD"

// background re-executes the daemon detached (new session, stdio on
// /dev/null) and waits until the child reports that it listens, so that the
// exit status of `scstd` without -f tells whether the daemon came up.
func background(stdout io.Writer) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("background: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("background: %w", err)
	}
	defer r.Close()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		w.Close()
		return fmt.Errorf("background: %w", err)
	}
	defer null.Close()
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Env = append(os.Environ(), readyFDEnv+"=3")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = null, null, null
	cmd.ExtraFiles = []*os.File{w} // fd 3 in the child
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("background: %w", err)
	}
	w.Close() // only the child holds the write end now: EOF means it is gone
	line, _ := bufio.NewReader(r).ReadString('\n')
	line = strings.TrimSpace(line)
	switch {
	case strings.HasPrefix(line, "ready "):
		fmt.Fprintf(stdout, "scstd: listening on %s, pid %d\n", strings.TrimPrefix(line, "ready "), cmd.Process.Pid)
		return cmd.Process.Release()
	case strings.HasPrefix(line, "error "):
		_ = cmd.Wait()
		return errors.New(strings.TrimPrefix(line, "error "))
	default:
		_ = cmd.Wait()
		return errors.New("daemon exited during startup (run with -f to see its log)")
	}
}

// pipeNotifier is the child's side of background().
type pipeNotifier struct{ f *os.File }

// childNotifier returns the notifier for a backgrounded child, or a no-op
// notifier in the foreground.
func childNotifier() notifier {
	s := os.Getenv(readyFDEnv)
	if s == "" {
		return nopNotifier{}
	}
	os.Unsetenv(readyFDEnv)
	fd, err := strconv.Atoi(s)
	if err != nil || fd < 3 {
		return nopNotifier{}
	}
	return &pipeNotifier{f: os.NewFile(uintptr(fd), "ready-pipe")}
}

func (p *pipeNotifier) Ready(addr string) {
	if p.f == nil {
		return
	}
	fmt.Fprintf(p.f, "ready %s\n", addr)
	p.f.Close()
	p.f = nil
}

func (p *pipeNotifier) Failed(err error) {
	if p.f == nil {
		return
	}
	fmt.Fprintf(p.f, "error %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
	p.f.Close()
	p.f = nil
}

type nopNotifier struct{}

func (nopNotifier) Ready(string) {}
func (nopNotifier) Failed(error) {}
