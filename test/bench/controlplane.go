package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/meshplane/meshplane/internal/controlplane"
	"github.com/meshplane/meshplane/internal/meshd"
	"github.com/meshplane/meshplane/internal/xds/server"
)

// The control plane runs in a child process (this binary, -controlplane), so
// that its RSS and CPU time are its own, not the simulated clients'. The
// child prints "XDS <addr>" and "READY <seconds>" on stdout and exits when
// its stdin closes.

func runControlPlaneChild(kubeconfigPath, cpuprofile string, debounce server.Debounce) error {
	cfg, err := readKubeconfig(kubeconfigPath)
	if err != nil {
		return err
	}
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
		// And the heap as the run ends (after the changes: the steady
		// state), for memory work.
		defer func() {
			h, err := os.Create(strings.TrimSuffix(cpuprofile, ".prof") + ".heap")
			if err != nil {
				return
			}
			runtime.GC()
			_ = pprof.WriteHeapProfile(h)
			_ = h.Close()
		}()
	}
	ctrllog.SetLogger(logr.Discard())
	start := time.Now()
	cp, err := controlplane.New(controlplane.Options{
		RestConfig: cfg,
		XDSAddr:    "127.0.0.1:0",
		Debounce:   debounce,
		Logger:     logr.New(errorSink{}),
	})
	if err != nil {
		return err
	}
	cp.SetMeshConfig(&meshd.MeshConfig{TrustDomain: "cluster.local", OutboundTrafficPolicy: "ALLOW_ANY"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // the parent closes stdin (or dies): stop
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	done := make(chan error, 1)
	go func() { done <- cp.Run(ctx) }()
	fmt.Printf("XDS %s\n", cp.XDSAddr())
	go func() {
		for ctx.Err() == nil {
			if ok, _ := cp.Ready(); ok {
				fmt.Printf("READY %.3f\n", time.Since(start).Seconds())
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return <-done
}

// errorSink logs errors only (NACKs, invalid resources, build failures) to
// stderr; meshd's info logs (one per connecting proxy) are dropped.
type errorSink struct{ name string }

func (errorSink) Init(logr.RuntimeInfo) {}
func (errorSink) Enabled(int) bool      { return false }
func (errorSink) Info(int, string, ...any) {
}
func (s errorSink) Error(err error, msg string, kv ...any) {
	fmt.Fprintf(os.Stderr, "controlplane %s: %s: %v %v\n", s.name, msg, err, kv)
}
func (s errorSink) WithValues(...any) logr.LogSink { return s }
func (s errorSink) WithName(n string) logr.LogSink {
	if s.name != "" {
		n = s.name + "/" + n
	}
	return errorSink{name: n}
}

// childCP is the parent's handle on the control-plane child.
type childCP struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	addr    string
	readyIn float64
	peak    atomic.Int64 // highest RSS sampled by watchRSS
}

func startChild(ctx context.Context, kubeconfigPath, cpuprofile string, debounce server.Debounce, timeout time.Duration) (*childCP, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "-controlplane", "-cp-kubeconfig", kubeconfigPath, "-cpuprofile", cpuprofile,
		"-debounce-quiet", debounce.Quiet.String(), "-debounce-max", debounce.Max.String())
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &childCP{cmd: cmd, stdin: stdin}
	lines := make(chan string)
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			lines <- s.Text()
		}
		close(lines)
	}()
	deadline := time.After(timeout)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				c.stop()
				return nil, fmt.Errorf("control plane exited before it was ready")
			}
			f := strings.Fields(line)
			switch {
			case len(f) == 2 && f[0] == "XDS":
				c.addr = f[1]
			case len(f) == 2 && f[0] == "READY":
				c.readyIn, _ = strconv.ParseFloat(f[1], 64)
				go func() { // keep draining
					for range lines {
					}
				}()
				return c, nil
			}
		case <-deadline:
			c.stop()
			return nil, fmt.Errorf("control plane not ready (discovery synced) within %s", timeout)
		case <-ctx.Done():
			c.stop()
			return nil, ctx.Err()
		}
	}
}

// stop closes the child's stdin (it stops, writing its CPU profile) and
// kills it if it has not exited within 30s.
func (c *childCP) stop() {
	_ = c.stdin.Close()
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
	}
}

// procStatus returns VmRSS and VmHWM of pid, in bytes.
func procStatus(pid int) (rss, hwm int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = v << 10
		case "VmHWM:":
			hwm = v << 10
		}
	}
	return rss, hwm
}

// procCPU returns the user+system CPU time of pid (clock ticks of 1/100 s).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	// After the command: state(0) ... utime(11) stime(12).
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * 10 * time.Millisecond
}

// selfCPU is this process's (the clients') user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
