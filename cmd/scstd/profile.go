package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"

	"github.com/sirupsen/logrus"
)

// Profiling hooks for performance work (docs/performance.md). They are
// environment variables rather than flags so that they stay out of
// iscsi-scstd's documented command line:
//
//	SCSTD_CPUPROFILE=FILE  CPU profile from start to a clean stop
//	SCSTD_MEMPROFILE=FILE  allocation profile (go tool pprof -sample_index=alloc_space) written at stop
//
// Both files are opened before the daemon drops privileges.
const (
	envCPUProfile = "SCSTD_CPUPROFILE"
	envMemProfile = "SCSTD_MEMPROFILE"
)

// startProfiling starts what the environment asks for and returns the
// function that finishes the profiles; it never fails the daemon.
func startProfiling(log *logrus.Entry) (stop func()) {
	var stops []func()
	if path := os.Getenv(envCPUProfile); path != "" {
		if f, err := os.Create(path); err != nil {
			log.WithError(err).Warn("cpu profile not started")
		} else if err := pprof.StartCPUProfile(f); err != nil {
			log.WithError(err).Warn("cpu profile not started")
			f.Close()
		} else {
			log.WithField("file", path).Info("cpu profile started")
			stops = append(stops, func() {
				pprof.StopCPUProfile()
				closeProfile(log, f)
			})
		}
	}
	if path := os.Getenv(envMemProfile); path != "" {
		if f, err := os.Create(path); err != nil {
			log.WithError(err).Warn("allocation profile not started")
		} else {
			log.WithField("file", path).Info("allocation profile armed")
			stops = append(stops, func() {
				runtime.GC() // up-to-date in-use figures next to the cumulative ones
				if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
					log.WithError(err).Warn("allocation profile not written")
				}
				closeProfile(log, f)
			})
		}
	}
	return func() {
		for _, s := range stops {
			s()
		}
	}
}

func closeProfile(log *logrus.Entry, f *os.File) {
	if err := f.Close(); err != nil {
		log.WithError(fmt.Errorf("profile %s: %w", f.Name(), err)).Warn("profile not saved")
	}
}
