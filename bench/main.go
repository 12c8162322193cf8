// Command bench measures what Gatehouse costs per authenticated request,
// against a floor: a bare net/http/httputil.ReverseProxy (bench/floor) with
// no authentication in front of the same upstream, on loopback, in one run.
//
// Targets: the floor; Gatehouse with the memory store; Gatehouse with the
// memcache store (a real memcached, whose CPU counts as Gatehouse's); and
// Gatehouse with a large identity (300 groups, 50 route policies that never
// match the benchmarked path). Gatehouse signs in against demo/idp, a real
// OIDC provider, before it is measured.
//
// Per target: req/s at -concurrency connections, the proxy process's CPU
// time per request (utime+stime from /proc/<pid>/stat over the measured
// window, divided by the requests), p50/p99 at 1 connection and at
// -concurrency connections, 64 KiB responses (req/s, MB/s), peak RSS
// (VmHWM) and, for Gatehouse, cold start to the first 200 on /ready; and
// each one's ratio to the floor.
//
// Method: with two or more CPUs the load generator and the upstream (this
// process) run on one CPU and the proxy under test (and memcached) on
// another, via taskset. Targets are measured in alternating rounds (floor,
// memory, memcache, large, floor, …) and the table shows medians over the
// rounds; ratios are medians of the per-round ratios. Each window is
// preceded by an unmeasured warm-up.
//
//	go run ./bench [-duration 5s] [-concurrency 32] [-rounds 5]
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type options struct {
	duration    time.Duration // measured time per target per round
	concurrency int
	rounds      int
	assertion   bool
}

// Environment of the pinned child (see main).
const (
	envBinDir = "GATEHOUSE_BENCH_BIN_DIR"
	envCPUs   = "GATEHOUSE_BENCH_CPUS"
)

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 5*time.Second,
		"measured time per target per round, split over its three windows (40% at -concurrency, 30% at 1 connection, 30% with 64 KiB responses)")
	flag.IntVar(&o.concurrency, "concurrency", 32, "connections of the concurrent windows")
	flag.IntVar(&o.rounds, "rounds", 5, "rounds; the table shows medians")
	flag.BoolVar(&o.assertion, "assertion", true, "Gatehouse signs the identity assertion (the default configuration)")
	flag.Parse()
	if o.duration < 100*time.Millisecond || o.concurrency < 1 || o.rounds < 1 {
		fmt.Fprintln(os.Stderr, "bench: need -duration >= 100ms, -concurrency >= 1, -rounds >= 1")
		os.Exit(2)
	}
	var err error
	if dir := os.Getenv(envBinDir); dir != "" {
		err = run(o, dir, strings.Split(os.Getenv(envCPUs), ","))
	} else {
		err = parent(o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// parent builds the binaries (on all CPUs), then runs the bench itself
// pinned to one CPU by re-executing this program under taskset, so the
// load generator and the upstream share that CPU and every thread the Go
// runtime starts inherits the pinning. With one CPU, or without taskset,
// it runs unpinned.
func parent(o options) error {
	dir, err := os.MkdirTemp("", "gatehouse-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	start := time.Now()
	for _, b := range []struct{ out, pkg string }{{"gatehouse", "./cmd/gatehouse"}, {"floor", "./bench/floor"}} {
		build := exec.Command("go", "build", "-o", filepath.Join(dir, b.out), b.pkg)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("building %s: %w", b.pkg, err)
		}
	}
	fmt.Fprintf(os.Stderr, "built gatehouse and floor in %s\n", time.Since(start).Round(time.Millisecond))

	cpus := allowedCPUs()
	_, tsErr := exec.LookPath("taskset")
	if len(cpus) < 2 || tsErr != nil {
		fmt.Fprintf(os.Stderr, "bench: not pinning (CPUs %v, taskset: %v); numbers are noisier\n", cpus, tsErr)
		return run(o, dir, nil)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	pinned := cpus[:2]
	child := exec.Command("taskset", append([]string{"-c", pinned[0], self}, os.Args[1:]...)...)
	child.Env = append(os.Environ(), envBinDir+"="+dir, envCPUs+"="+strings.Join(pinned, ","))
	child.Stdin, child.Stdout, child.Stderr = os.Stdin, os.Stdout, os.Stderr
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	if err := child.Start(); err != nil {
		return err
	}
	go func() {
		for s := range sig {
			_ = child.Process.Signal(s)
		}
	}()
	if err := child.Wait(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("pinned run failed (%v)", ee)
		}
		return err
	}
	return nil
}

// allowedCPUs lists the CPUs this process may run on (Cpus_allowed_list).
func allowedCPUs() []string {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(status), "\n") {
		list, ok := strings.CutPrefix(line, "Cpus_allowed_list:")
		if !ok {
			continue
		}
		for _, part := range strings.Split(strings.TrimSpace(list), ",") {
			lo, hi, isRange := strings.Cut(part, "-")
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if !isRange {
				b, err2 = a, nil
			}
			if err1 != nil || err2 != nil {
				return nil
			}
			for c := a; c <= b; c++ {
				out = append(out, strconv.Itoa(c))
			}
		}
	}
	return out
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
var clockTicks = func() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err != nil {
		return 100
	}
	if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && n > 0 {
		return float64(n)
	}
	return 100
}()

// cpuTime is utime+stime of a process (all its threads, live and exited).
func cpuTime(pid int) time.Duration {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return 0
	}
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return time.Duration(float64(ut+st) / clockTicks * float64(time.Second))
}

// busyTime is the CPU time all processes of the machine have used (the
// first line of /proc/stat, less idle and iowait).
func busyTime() time.Duration {
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(stat), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0
	}
	var busy uint64
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest time is already in user
			continue
		}
		n, _ := strconv.ParseUint(v, 10, 64)
		busy += n
	}
	return time.Duration(float64(busy) / clockTicks * float64(time.Second))
}

// peakRSS is VmHWM of a process in bytes.
func peakRSS(pid int) int64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// resetPeakRSS sets VmHWM back to the current RSS (Linux >= 4.0), so the
// next reading is the peak of what follows. It reports whether it could.
func resetPeakRSS(pid int) bool {
	return os.WriteFile("/proc/"+strconv.Itoa(pid)+"/clear_refs", []byte("5"), 0) == nil
}

func cpuModel() string {
	info, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(info), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "unknown CPU"
}

func goVersion() string { return runtime.Version() }
