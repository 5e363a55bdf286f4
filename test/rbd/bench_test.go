//go:build rbd

package rbd

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/scstd/scstd/iscsi/iscsitest"
	"github.com/scstd/scstd/iscsi/pdu"
	"github.com/scstd/scstd/vdisk/backend"
	"github.com/scstd/scstd/vdisk/rbd"
)

const (
	benchQD    = 32
	benchBlock = 4096
	benchSize  = 256 << 20
	// userHZ is the unit of utime/stime in /proc/PID/stat (fixed by the
	// kernel ABI, whatever CONFIG_HZ is).
	userHZ = 100
)

// benchEnvInt reads a positive integer setting, def when unset.
func benchEnvInt(t testing.TB, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return n
}

// minRatio is the ratio below which the benchmark fails
// (SCSTD_RBD_MIN_RATIO, default 0.4). The goal is 0.8; on a
// 2-core machine the OSD, librbd, scstd and the initiator share the CPUs,
// so every microsecond the iSCSI path spends is taken from the OSD, and
// the ratio follows the machine's other load; writes wait on the host
// disk, whose latency other jobs vary by 2-3x within seconds. The floor
// catches a data path that lost its queue depth (QD1 gives about 0.3 of
// QD32 for reads here, less for writes).
func minRatio(t testing.TB) float64 {
	t.Helper()
	s := os.Getenv("SCSTD_RBD_MIN_RATIO")
	if s == "" {
		return 0.4
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("SCSTD_RBD_MIN_RATIO=%q: %v", s, err)
	}
	return f
}

// cpuTime is the CPU time (user+system, every thread) of process pid.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which may contain spaces; utime and
	// stime are the 14th and 15th fields of the line.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	var ticks int64
	for _, v := range f[11:13] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// cpuMeter samples the CPU time of the processes a run is charged with.
type cpuMeter struct {
	pids []int // 0: this process; negative: none (reads as 0)
	at   []time.Duration
}

func startCPU(t testing.TB, pids ...int) *cpuMeter {
	t.Helper()
	m := &cpuMeter{pids: pids, at: make([]time.Duration, len(pids))}
	for i, p := range pids {
		m.at[i] = mustCPU(t, p)
	}
	return m
}

func mustCPU(t testing.TB, pid int) time.Duration {
	t.Helper()
	if pid < 0 {
		return 0
	}
	if pid == 0 {
		pid = os.Getpid()
	}
	c, err := cpuTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// perIO returns, for each process, the CPU time used since startCPU
// divided by ios.
func (m *cpuMeter) perIO(t testing.TB, ios int) []time.Duration {
	t.Helper()
	out := make([]time.Duration, len(m.pids))
	for i, p := range m.pids {
		if ios > 0 {
			out[i] = (mustCPU(t, p) - m.at[i]) / time.Duration(ios)
		}
	}
	return out
}

// osdPID is the OSD of a cluster started by scripts/ceph-up.sh (its pid
// file beside ceph.conf), or -1 when there is none to measure.
func osdPID() int {
	b, err := os.ReadFile(filepath.Join(filepath.Dir(testEnv.conf), "run", "osd.0.pid"))
	if err != nil {
		return -1
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return -1
	}
	if _, err := cpuTime(pid); err != nil {
		return -1
	}
	return pid
}

// runResult is one timed run of one path.
type runResult struct {
	iops float64
	// Client-side CPU per I/O: the load generator's process (this test
	// for the direct engine and the iSCSI initiator, fio for fio), the
	// target (scstd; 0 for the direct paths), and the OSD (0 when unknown).
	client, target, osd time.Duration
}

// benchPath is one way of running the pattern.
type benchPath struct {
	name string
	run  func(t *testing.T, write bool, d time.Duration) runResult
}

// directPath runs 4k random I/O at QD32 on the image straight through the
// librbd engine scstd uses (no SCSI, no iSCSI), from this process.
func directPath(img *rbd.Image, osd int) benchPath {
	return benchPath{name: "direct", run: func(t *testing.T, write bool, d time.Duration) runResult {
		e := img.Engine()
		rng := rand.New(rand.NewPCG(1, 2))
		var mu sync.Mutex
		var done int
		var firstErr error
		finished := make(chan struct{})
		inflight := benchQD
		var stop time.Time
		next := func(r *backend.Request) {
			r.Off = int64(rng.IntN(benchSize/benchBlock)) * benchBlock
			e.Submit(r)
		}
		resubmit := func(r *backend.Request) {
			mu.Lock()
			defer mu.Unlock()
			if r.Err != nil && firstErr == nil {
				firstErr = r.Err
			}
			done++
			if time.Now().Before(stop) && firstErr == nil {
				next(r)
				return
			}
			inflight--
			if inflight == 0 {
				close(finished)
			}
		}
		op := backend.OpRead
		if write {
			op = backend.OpWrite
		}
		reqs := make([]*backend.Request, benchQD)
		for i := range reqs {
			reqs[i] = &backend.Request{Op: op, Buf: make([]byte, benchBlock), Done: resubmit}
		}
		cpu := startCPU(t, 0, osd)
		start := time.Now()
		mu.Lock()
		stop = start.Add(d)
		for _, r := range reqs {
			next(r)
		}
		mu.Unlock()
		<-finished
		el := time.Since(start)
		if firstErr != nil {
			t.Fatal(firstErr)
		}
		c := cpu.perIO(t, done)
		return runResult{iops: float64(done) / el.Seconds(), client: c[0], osd: c[1]}
	}}
}

// scstdPath runs the same pattern through scstd over one iSCSI session
// (READ16/WRITE16 of one 4 KiB block, QD32, immediate data). After a
// login through iscsitest, the timed loop speaks raw PDUs: it parses
// responses in place from the connection's read buffer, and when several
// responses arrive together it sends their replacements in one write. On
// a 2-core machine every microsecond the load generator spends is taken
// from the OSD, so it has to come close to what a kernel or libiscsi
// initiator costs per command (17-30 µs here, against 9-11 for libiscsi's
// iscsi-perf, which perfPath uses for the reads).
func scstdPath(dm *daemon, osd int) benchPath {
	return benchPath{name: "scstd", run: func(t *testing.T, write bool, dur time.Duration) runResult {
		c, err := iscsitest.Dial(dm.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Login(iscsitest.Options{InitiatorName: "iqn.2026-11.test:bench", TargetName: targetIQN}); err != nil {
			t.Fatal(err)
		}
		if !c.ImmediateData || c.TargetMRDSL < benchBlock || c.FirstBurst < benchBlock {
			t.Fatalf("session without 4k immediate data (ImmediateData %v, MaxRecvDataSegmentLength %d, FirstBurstLength %d)",
				c.ImmediateData, c.TargetMRDSL, c.FirstBurst)
		}
		// Consume the power-on unit attention before the timed run.
		for i := 0; ; i++ {
			res, err := c.Do(&iscsitest.Cmd{CDB: make([]byte, 6), Attr: 1})
			if err != nil {
				t.Fatal(err)
			}
			if res.Status == 0 {
				break
			}
			if i == 8 {
				t.Fatalf("TEST UNIT READY status %#x", res.Status)
			}
		}
		if err := c.NC.SetDeadline(time.Now().Add(dur + 30*time.Second)); err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(3, 4))
		data := make([]byte, benchBlock)
		out := make([]byte, 0, benchQD*(pdu.BHSLen+benchBlock))
		flags := byte(pdu.FlagFinal|pdu.FlagRead) | 1 // simple task attribute
		op := byte(0x88)                              // READ(16)
		if write {
			flags, op = byte(pdu.FlagFinal|pdu.FlagWrite)|1, 0x8a // WRITE(16)
		}
		queue := func() {
			var h pdu.BHS
			h.SetOpcode(pdu.OpSCSICmd, false)
			h.SetFlags(flags)
			h.SetITT(c.NextITT())
			h.SetEDTL(benchBlock)
			h.SetCmdSN(c.CmdSN)
			h.SetExpStatSN(c.ExpStatSN)
			cdb := h.CDB()
			cdb[0] = op
			binary.BigEndian.PutUint64(cdb[2:], uint64(rng.IntN(benchSize/benchBlock)))
			binary.BigEndian.PutUint32(cdb[10:], 1)
			if write {
				h.SetDataSegmentLength(benchBlock)
			}
			out = append(out, h[:]...)
			if write {
				out = append(out, data...)
			}
			c.CmdSN++
		}
		send := func() {
			if len(out) == 0 {
				return
			}
			if _, err := c.NC.Write(out); err != nil {
				t.Fatal(err)
			}
			out = out[:0]
		}
		cpu := startCPU(t, 0, dm.proc.Cmd.Process.Pid, osd)
		start := time.Now()
		stop := start.Add(dur)
		inflight, done := 0, 0
		window := func() bool { return int32(c.MaxCmdSN-c.CmdSN) >= 0 }
		for inflight < benchQD && window() {
			queue()
			inflight++
		}
		send()
		var h pdu.Header
		for inflight > 0 {
			if err := c.R.ReadHeader(&h); err != nil {
				t.Fatal(err)
			}
			if err := c.R.DiscardData(); err != nil {
				t.Fatal(err)
			}
			opc := h.Opcode()
			switch {
			case opc == pdu.OpSCSIResp || opc == pdu.OpDataIn && h.Flags()&pdu.FlagStatus != 0:
				if h.Status() != 0 {
					t.Fatalf("status %#x", h.Status())
				}
				c.ExpStatSN = h.StatSN() + 1
				c.ExpCmdSN, c.MaxCmdSN = h.ExpCmdSN(), h.MaxCmdSN()
				inflight--
				done++
			case opc == pdu.OpDataIn:
				c.ExpCmdSN, c.MaxCmdSN = h.ExpCmdSN(), h.MaxCmdSN()
			case opc == pdu.OpNOPIn && h.TTT() != pdu.ReservedTag:
				var o pdu.BHS
				o.SetOpcode(pdu.OpNOPOut, true)
				o.SetFinal(true)
				o.SetITT(pdu.ReservedTag)
				o.SetTTT(h.TTT())
				o.SetCmdSN(c.CmdSN)
				o.SetExpStatSN(c.ExpStatSN)
				out = append(out, o[:]...)
			default:
				t.Fatalf("unexpected %v", opc)
			}
			// More responses already here: take them before writing.
			if c.R.Buffered() >= pdu.BHSLen {
				continue
			}
			for time.Now().Before(stop) && inflight < benchQD && window() {
				queue()
				inflight++
			}
			send()
		}
		el := time.Since(start)
		c3 := cpu.perIO(t, done)
		return runResult{iops: float64(done) / el.Seconds(), client: c3[0], target: c3[1], osd: c3[2]}
	}}
}

// perfPath runs the reads through scstd with libiscsi's iscsi-perf as the
// initiator: on one machine every microsecond the initiator spends is
// taken from the OSD and the target, and iscsi-perf, a C event loop, is
// the cheapest initiator here (9 µs of CPU per read against 17-23 for the
// test's own loop). With the LUN's 4 KiB blocks, its random LBAs are the
// pattern's aligned 4 KiB offsets. It only reads; writes go through
// scstdPath.
func perfPath(dm *daemon, osd int) benchPath {
	return benchPath{name: "scstd", run: func(t *testing.T, write bool, d time.Duration) runResult {
		if write {
			return scstdPath(dm, osd).run(t, write, d)
		}
		ctx, cancel := context.WithTimeout(context.Background(), d+time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "iscsi-perf", "-i", "iqn.2026-11.test:bench", "-r", "-b", "1",
			"-m", strconv.Itoa(benchQD), "-t", strconv.Itoa(int(d/time.Second)), dm.URL(0))
		cpu := startCPU(t, -1, dm.proc.Cmd.Process.Pid, osd)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("iscsi-perf: %v\n%s", err, out)
		}
		// The last progress line, after the final carriage return:
		// "iops average N (M MB/s)".
		m := regexp.MustCompile(`iops average (\d+) \(`).FindAllSubmatch(out, -1)
		if m == nil {
			t.Fatalf("iscsi-perf printed no average:\n%s", out)
		}
		iops, _ := strconv.ParseFloat(string(m[len(m)-1][1]), 64)
		ios := int(iops * d.Seconds())
		r := runResult{iops: iops}
		c := cpu.perIO(t, ios)
		r.target, r.osd = c[1], c[2]
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && ios > 0 {
			r.client = time.Duration(ru.Utime.Nano()+ru.Stime.Nano()) / time.Duration(ios)
		}
		return r
	}}
}

// fioPath runs the pattern with fio's rbd engine: librbd driven by a C
// load generator, the reference for what the direct engine achieves.
// ok is false when fio has no rbd engine.
func fioPath(t *testing.T, img string, osd int) (benchPath, bool) {
	requireTools(t, "fio")
	if out, err := exec.Command("fio", "--enghelp=rbd").CombinedOutput(); err != nil || !strings.Contains(string(out), "rbdname") {
		return benchPath{}, false
	}
	return benchPath{name: "fio-rbd", run: func(t *testing.T, write bool, d time.Duration) runResult {
		rw := "randread"
		if write {
			rw = "randwrite"
		}
		ctx, cancel := context.WithTimeout(context.Background(), d+time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "fio", "--name=bench", "--ioengine=rbd", "--clientname=admin",
			"--pool=rbd", "--rbdname="+img, "--rw="+rw, "--bs="+strconv.Itoa(benchBlock),
			"--iodepth="+strconv.Itoa(benchQD), "--size="+strconv.Itoa(benchSize), "--norandommap",
			"--time_based", "--runtime="+strconv.Itoa(int(d/time.Second)), "--output-format=json")
		// fio's rbd engine reads the configuration CEPH_CONF names.
		cmd.Env = append(os.Environ(), "CEPH_CONF="+testEnv.conf)
		cmd.Stderr = os.Stderr
		osdCPU := startCPU(t, osd)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("fio: %v\n%s", err, out)
		}
		var res struct {
			Jobs []struct {
				Read, Write struct {
					IOPS     float64 `json:"iops"`
					TotalIOs int     `json:"total_ios"`
				}
			} `json:"jobs"`
		}
		// fio may print notes before the JSON document.
		if i := strings.IndexByte(string(out), '{'); i > 0 {
			out = out[i:]
		}
		if err := json.Unmarshal(out, &res); err != nil || len(res.Jobs) != 1 {
			t.Fatalf("fio output (%v):\n%s", err, out)
		}
		st := res.Jobs[0].Read
		if write {
			st = res.Jobs[0].Write
		}
		r := runResult{iops: st.IOPS}
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && st.TotalIOs > 0 {
			cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			r.client = cpu / time.Duration(st.TotalIOs)
		}
		r.osd = osdCPU.perIO(t, st.TotalIOs)[0]
		return r
	}}, true
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func medianDur(v []time.Duration) time.Duration {
	f := make([]float64, len(v))
	for i, d := range v {
		f[i] = float64(d)
	}
	return time.Duration(median(f))
}

func us(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return strconv.FormatFloat(float64(d)/float64(time.Microsecond), 'f', 1, 64)
}

// TestIOPSRatio measures 4k random read and write IOPS at QD32 through
// scstd and straight through librbd (the engine scstd uses, from this
// process) on the same image in the same run, and reports the ratio of
// the medians, scstd/direct. fio's rbd engine runs in the same rotation
// as a reference for the direct figure. Each round runs every path once,
// starting with a different one each round, so that drift of the
// machine's load and of the OSD's background work spreads evenly.
// SCSTD_RBD_BENCH_ROUNDS (default 6) and SCSTD_RBD_BENCH_SECS (default 2)
// size the measurement; the table also gives the CPU time per I/O of the
// load generator, of scstd and of the OSD.
func TestIOPSRatio(t *testing.T) {
	rounds := benchEnvInt(t, "SCSTD_RBD_BENCH_ROUNDS", 6)
	dur := time.Duration(benchEnvInt(t, "SCSTD_RBD_BENCH_SECS", 2)) * time.Second
	floor := minRatio(t)
	name := newImage(t, fmt.Sprintf("%dM", benchSize>>20))
	// Prefill, so that reads hit data rather than holes.
	rbdCLI(t, "bench", "--io-type", "write", "--io-size", "4M", "--io-total", fmt.Sprint(benchSize), "--io-pattern", "seq", "rbd/"+name)
	requireTools(t, "iscsi-perf")
	dm := startDaemon(t, daemonConfig{LUNs: []lunSpec{{Image: name, BlockSize: benchBlock}}})
	conn, err := rbd.Connect(rbd.Options{ConfFile: testEnv.conf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := conn.Close(); err != nil {
			t.Error(err)
		}
	})
	img, err := conn.Open("rbd", name, rbd.ImageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := img.Engine().Close(); err != nil {
			t.Error(err)
		}
	})
	osd := osdPID()
	paths := []benchPath{directPath(img, osd), perfPath(dm, osd)}
	if p, ok := fioPath(t, name, osd); ok {
		paths = append(paths, p)
	} else {
		t.Log("fio has no rbd engine: no fio reference")
	}
	if only := os.Getenv("SCSTD_RBD_BENCH_PATHS"); only != "" {
		// A subset of the paths, e.g. to profile one of them.
		paths = slices.DeleteFunc(paths, func(p benchPath) bool { return !slices.Contains(strings.Split(only, ","), p.name) })
	}
	for _, write := range []bool{false, true} {
		op := "randread"
		if write {
			op = "randwrite"
		}
		t.Run(op, func(t *testing.T) {
			// Warm up every path (session setup, the OSD's caches and
			// allocator) before the counted rounds.
			for _, p := range paths {
				p.run(t, write, time.Second)
			}
			res := make([][]runResult, len(paths))
			var tab strings.Builder
			fmt.Fprintf(&tab, "4k %s QD%d, %d rounds of %v per path (CPU in µs per I/O)\n", op, benchQD, rounds, dur)
			fmt.Fprintf(&tab, "%-7s %-8s %8s %9s %8s %8s\n", "round", "path", "IOPS", "cpu:gen", "scstd", "osd")
			for r := range rounds {
				for k := range paths {
					i := (r + k) % len(paths)
					x := paths[i].run(t, write, dur)
					res[i] = append(res[i], x)
					fmt.Fprintf(&tab, "%-7d %-8s %8.0f %9s %8s %8s\n", r+1, paths[i].name, x.iops, us(x.client), us(x.target), us(x.osd))
				}
			}
			med := make([]float64, len(paths))
			for i, p := range paths {
				var iops []float64
				var gen, tgt, osd []time.Duration
				for _, x := range res[i] {
					iops = append(iops, x.iops)
					gen, tgt, osd = append(gen, x.client), append(tgt, x.target), append(osd, x.osd)
				}
				med[i] = median(iops)
				fmt.Fprintf(&tab, "%-7s %-8s %8.0f %9s %8s %8s\n", "median", p.name, med[i], us(medianDur(gen)), us(medianDur(tgt)), us(medianDur(osd)))
			}
			if len(paths) < 2 || paths[0].name != "direct" || paths[1].name != "scstd" {
				t.Log("\n" + tab.String() + "(no ratio: SCSTD_RBD_BENCH_PATHS left out direct or scstd)")
				return
			}
			// The runs of one round are next to each other in time, so the
			// median of the rounds' own ratios is less exposed to load that
			// drifts over the whole test, the ratio of the medians less to
			// one round's burst. A data path that lost its queue depth
			// pulls both under the floor; the other load of a shared
			// machine rarely does.
			paired := make([]float64, rounds)
			for r := range rounds {
				paired[r] = res[1][r].iops / res[0][r].iops
			}
			ratio := med[1] / med[0]
			fmt.Fprintf(&tab, "scstd/direct: ratio of medians %.2f, median of the rounds' ratios %.2f (goal 0.8, floor %.2f)",
				ratio, median(paired), floor)
			if len(paths) > 2 {
				fmt.Fprintf(&tab, "\nreference: scstd/fio-rbd %.2f, direct/fio-rbd %.2f", med[1]/med[2], med[0]/med[2])
			}
			t.Log("\n" + tab.String())
			if pr := median(paired); ratio < floor && pr < floor {
				t.Errorf("%s: ratio of medians %.2f and median of the rounds' ratios %.2f both below %.2f", op, ratio, pr, floor)
			}
		})
	}
}
