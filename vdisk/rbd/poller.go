//go:build rbd

package rbd

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// poller waits for the completions of every image of a Conn: each
// engine's eventfd is in one epoll set, and one goroutine drains the
// engines whose eventfd fired.
//
// With two or more Ps the goroutine blocks in epoll_wait itself instead of
// in the runtime's netpoller. librbd's completion thread then wakes this
// thread directly, and the P it keeps while in the system call stops the
// scheduler from waking an idle thread for every goroutine a completion
// makes runnable, and sysmon from sleeping deeply and being woken by the
// next system call. Measured with 4k random reads at QD32 on a 2-core
// machine, that is about half of scstd's own CPU per I/O (docs/rbd.md).
// One poller per connection keeps the P it holds to one however many
// images are open. With a single P, blocking would stall every other
// goroutine until sysmon took the P back, so the epoll descriptor is then
// waited on through the netpoller.
type poller struct {
	epfd int
	// wake is an eventfd in the set that stop signals.
	wake int
	// ep is the netpoller's handle on epfd (nil: blocking mode).
	ep  *os.File
	raw syscall.RawConn

	// mu guards engines; the run loop holds it for reading while it
	// drains, so that unregister returns only once no drain of that
	// engine can still be running.
	mu      sync.RWMutex
	engines map[int32]*Engine
	stopped bool
	done    chan struct{}
}

func newPoller() (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	p := &poller{epfd: epfd, wake: wake, engines: make(map[int32]*Engine), done: make(chan struct{})}
	fail := func(err error) (*poller, error) {
		unix.Close(wake)
		if p.ep != nil {
			p.ep.Close()
		} else {
			unix.Close(epfd)
		}
		return nil, err
	}
	if err := p.add(wake); err != nil {
		return fail(err)
	}
	if runtime.GOMAXPROCS(0) < 2 {
		if err := unix.SetNonblock(epfd, true); err != nil {
			return fail(fmt.Errorf("epoll: %w", err))
		}
		p.ep = os.NewFile(uintptr(epfd), "rbd-epoll")
		if p.raw, err = p.ep.SyscallConn(); err != nil {
			return fail(fmt.Errorf("epoll: %w", err))
		}
	}
	go p.run()
	return p, nil
}

func (p *poller) add(fd int) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl add: %w", err)
	}
	return nil
}

// register has e's eventfd waited on.
func (p *poller) register(e *Engine) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return fmt.Errorf("rbd: connection closed: %w", syscall.ESHUTDOWN)
	}
	if err := p.add(e.efd); err != nil {
		return err
	}
	p.engines[int32(e.efd)] = e
	return nil
}

// unregister stops waiting for e; when it returns, e is not being drained
// and will not be again.
func (p *poller) unregister(e *Engine) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.engines, int32(e.efd))
	// Cannot fail for a descriptor that is in the set.
	unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, e.efd, nil)
}

// stop ends the run loop and closes the descriptors. No engine may be
// registered.
func (p *poller) stop() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	unix.Write(p.wake, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	<-p.done
	unix.Close(p.wake)
	if p.ep != nil {
		p.ep.Close()
	} else {
		unix.Close(p.epfd)
	}
}

func (p *poller) run() {
	defer close(p.done)
	var evs [64]unix.EpollEvent
	for {
		n, err := p.wait(evs[:])
		p.mu.RLock()
		stopped := p.stopped
		if err != nil {
			// Not expected of an epoll set this poller owns; keep the
			// images served by polling them all rather than stall them.
			for _, e := range p.engines {
				e.drain()
			}
			n = 0
		}
		for _, ev := range evs[:n] {
			if e := p.engines[ev.Fd]; e != nil {
				e.drain()
			}
		}
		p.mu.RUnlock()
		if stopped {
			return
		}
		if err != nil {
			time.Sleep(time.Millisecond)
		}
		// Let the goroutines these completions made runnable (the
		// transports' writers) run on this P before it blocks again.
		runtime.Gosched()
	}
}

// wait returns the ready descriptors, blocking in epoll_wait or, with a
// single P, in the netpoller.
func (p *poller) wait(evs []unix.EpollEvent) (int, error) {
	if p.ep == nil {
		for {
			n, err := unix.EpollWait(p.epfd, evs, -1)
			if !errors.Is(err, unix.EINTR) {
				return n, err
			}
		}
	}
	var n int
	var werr error
	err := p.raw.Read(func(fd uintptr) bool {
		n, werr = unix.EpollWait(int(fd), evs, 0)
		return n > 0 || werr != nil && !errors.Is(werr, unix.EINTR)
	})
	if err != nil {
		return 0, err
	}
	return n, werr
}
