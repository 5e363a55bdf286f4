package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"syscall"
	"time"
)

// listeningRE matches the daemon's start-up line that names its address.
var listeningRE = regexp.MustCompile(`msg=listening addr="?([0-9.]+:[0-9]+)`)

// Proc is a started daemon process. Its stdout and stderr go to Log; the
// address of its "listening" log line is available from WaitAddr.
type Proc struct {
	Cmd    *exec.Cmd
	Log    *LockedBuffer
	addr   chan string
	exited chan struct{}
	err    error // of Cmd.Wait, valid once exited is closed
}

// StartProc starts cmd with its output collected in log.
func StartProc(cmd *exec.Cmd, log *LockedBuffer) (*Proc, error) {
	p := &Proc{Cmd: cmd, Log: log, addr: make(chan string, 1), exited: make(chan struct{})}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = log
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			log.Write([]byte(line + "\n"))
			if m := listeningRE.FindStringSubmatch(line); m != nil && !sent {
				p.addr <- m[1]
				sent = true
			}
		}
		_, _ = io.Copy(log, stderr) // after an over-long line
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// WaitAddr returns the address the daemon listens on, or an error with the
// end of its log when it exits or stays silent for timeout.
func (p *Proc) WaitAddr(timeout time.Duration) (string, error) {
	select {
	case a := <-p.addr:
		return a, nil
	case <-p.exited:
		return "", fmt.Errorf("daemon exited during startup (%v):\n%s", p.err, Tail(p.Log.String(), 30))
	case <-time.After(timeout):
		return "", fmt.Errorf("daemon did not listen within %v:\n%s", timeout, Tail(p.Log.String(), 30))
	}
}

// Exited is closed when the process has ended.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// Alive reports whether the process still runs.
func (p *Proc) Alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Err is the result of Cmd.Wait; call it after Exited is closed.
func (p *Proc) Err() error { return p.err }

// Stop sends sig and waits up to timeout for the exit; after that it kills
// the process and reports false.
func (p *Proc) Stop(sig syscall.Signal, timeout time.Duration) bool {
	_ = p.Cmd.Process.Signal(sig)
	select {
	case <-p.exited:
		return true
	case <-time.After(timeout):
		_ = p.Cmd.Process.Kill()
		<-p.exited
		return false
	}
}

// ExitCode is the exit status once exited: 128+N for a death by signal N,
// -1 when the process could not be waited for.
func (p *Proc) ExitCode() int {
	if p.err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return -1
}
