package target

import (
	"fmt"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// ModuleParam names one of the usermode module parameters that the control
// filesystem shows in its root (spec/procfs.md §1.19).
type ModuleParam int

// Module parameters, in the order the control filesystem lists them.
const (
	ParamNumThreads ModuleParam = iota
	ParamVdiskID
	ParamSCSTThreads
	ParamMaxCmdMem
	ParamMaxDevCmdMem
	ParamForciblyCloseSessions
	numModuleParams
)

var moduleParamNames = [numModuleParams]string{
	ParamNumThreads:            "num_threads",
	ParamVdiskID:               "scst_vdisk_ID",
	ParamSCSTThreads:           "scst_threads",
	ParamMaxCmdMem:             "scst_max_cmd_mem",
	ParamMaxDevCmdMem:          "scst_max_dev_cmd_mem",
	ParamForciblyCloseSessions: "forcibly_close_sessions",
}

// ModuleParams returns every module parameter in listing order.
func ModuleParams() []ModuleParam {
	ps := make([]ModuleParam, numModuleParams)
	for i := range ps {
		ps[i] = ModuleParam(i)
	}
	return ps
}

// Name is the file name of the parameter.
func (p ModuleParam) Name() string {
	if p < 0 || p >= numModuleParams {
		return fmt.Sprintf("ModuleParam(%d)", int(p))
	}
	return moduleParamNames[p]
}

// Tunables holds the run-time tunables that SCST keeps as module parameters
// and the number of main command threads (P/threads). Each value is a C int
// in the original, hence int32. All methods are safe for concurrent use.
//
// The values are stored, not acted upon, except where a consumer reads them:
// like the original usermode build, nothing re-reads a module parameter after
// start-up.
type Tunables struct {
	params  [numModuleParams]atomic.Int32
	threads atomic.Int32
}

// NewTunables returns the usermode defaults: num_threads 1, scst_vdisk_ID 0,
// scst_threads 1 (0 = auto resolves to 1 in usermode), scst_max_cmd_mem a
// quarter of RAM in MiB, scst_max_dev_cmd_mem 2/5 of that,
// forcibly_close_sessions 0, and one main command thread.
func NewTunables() *Tunables {
	t := &Tunables{}
	t.params[ParamNumThreads].Store(1)
	t.params[ParamSCSTThreads].Store(1)
	mem := defaultMaxCmdMemMiB()
	t.params[ParamMaxCmdMem].Store(mem)
	t.params[ParamMaxDevCmdMem].Store(mem * 2 / 5)
	t.threads.Store(1)
	return t
}

// defaultMaxCmdMemMiB is SCST's default: total RAM / 4, in MiB.
func defaultMaxCmdMemMiB() int32 {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return 0
	}
	mib := uint64(si.Totalram) * uint64(si.Unit) >> 20 >> 2
	if mib > 1<<31-1 {
		mib = 1<<31 - 1
	}
	return int32(mib)
}

// Param returns the value of p.
func (t *Tunables) Param(p ModuleParam) int32 {
	if p < 0 || p >= numModuleParams {
		return 0
	}
	return t.params[p].Load()
}

// SetParam stores v as the value of p.
func (t *Tunables) SetParam(p ModuleParam, v int32) error {
	if p < 0 || p >= numModuleParams {
		return fmt.Errorf("set %s: %w", p.Name(), syscall.EINVAL)
	}
	t.params[p].Store(v)
	return nil
}

// Threads returns the number of main command threads (P/threads).
func (t *Tunables) Threads() int32 { return t.threads.Load() }

// SetThreads sets the number of main command threads; n must be positive.
func (t *Tunables) SetThreads(n int32) error {
	if n <= 0 {
		return fmt.Errorf("threads %d: %w", n, syscall.EINVAL)
	}
	t.threads.Store(n)
	return nil
}
