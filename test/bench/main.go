// Command bench measures meshd's control plane at scale: a real API server
// (envtest) holding many Services with EndpointSlices, meshd's control plane
// (discovery + xDS server, internal/controlplane) in a child process, and N
// simulated Envoy sidecars speaking state-of-the-world ADS (or, with -delta,
// delta ADS) over loopback gRPC from this process. It prints a markdown
// table: time to the full initial config on every client,
// change-to-every-client latency for three changes, the control plane's RSS
// and CPU time.
//
// Run it with `make bench` (BENCH_CLIENTS=200 make bench for one size) or
// `go run ./test/bench -h`. It is a main package, so `go test ./...` does not
// run it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshplane/meshplane/internal/xds/generate"
	"github.com/meshplane/meshplane/internal/xds/server"
)

type options struct {
	clients       []int
	services      int
	namespaces    int
	workers       int
	readyTimeout  time.Duration
	syncTimeout   time.Duration
	changeTimeout time.Duration
	settle        time.Duration
	cpuprofile    string
	debounce      server.Debounce
	out           string
	maxRSS        int64
	delta         bool
}

func main() {
	var (
		o          options
		clientList string
		child      bool
		kubeconfig string
	)
	flag.StringVar(&clientList, "clients", "200,1000,2000", "comma-separated numbers of simulated Envoys, one run each (ascending is best: a failed run stops the bigger ones)")
	flag.IntVar(&o.services, "services", 1000, "Services (ports http-web 80 and grpc-api 9090, 3 endpoints each)")
	flag.IntVar(&o.namespaces, "namespaces", 10, "namespaces the Services and clients are spread over")
	flag.IntVar(&o.workers, "workers", 32, "parallel API writers while populating")
	flag.DurationVar(&o.readyTimeout, "ready-timeout", 5*time.Minute, "bound on the control plane's discovery sync")
	flag.DurationVar(&o.syncTimeout, "sync-timeout", 10*time.Minute, "bound on every client holding its initial config")
	flag.DurationVar(&o.changeTimeout, "change-timeout", 3*time.Minute, "bound on every client receiving one change")
	flag.DurationVar(&o.settle, "settle", 2*time.Second, "quiet time after the initial sync and after each change")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write the control plane's CPU profile of each run to <this>-N<clients>.prof, and its heap at the end of the run to <this>-N<clients>.heap")
	flag.DurationVar(&o.debounce.Quiet, "debounce-quiet", server.DefaultDebounceQuiet, "meshd's debounce quiet window")
	flag.DurationVar(&o.debounce.Max, "debounce-max", server.DefaultDebounceMax, "meshd's debounce max window")
	flag.DurationVar(&o.debounce.EndpointQuiet, "debounce-endpoint-quiet", server.DefaultDebounceEndpointQuiet, "meshd's quiet window for endpoint-only changes")
	var maxRSSMiB int64
	flag.Int64Var(&maxRSSMiB, "max-rss-mib", 10240, "kill the control plane and stop when its RSS exceeds this (protects the machine; 0: no limit)")
	flag.BoolVar(&o.delta, "delta", false, "simulated Envoys speak delta ADS (DeltaAggregatedResources) instead of state of the world")
	flag.StringVar(&o.out, "out", "", "also write the markdown report to this file")
	flag.BoolVar(&child, "controlplane", false, "internal: run the control plane (child process)")
	flag.StringVar(&kubeconfig, "cp-kubeconfig", "", "internal: the child's API server credentials")
	flag.Parse()

	o.maxRSS = maxRSSMiB << 20
	if child {
		if err := runControlPlaneChild(kubeconfig, o.cpuprofile, o.debounce); err != nil && !errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "control plane:", err)
			os.Exit(1)
		}
		return
	}
	for _, s := range strings.Split(clientList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "bad -clients %q\n", clientList)
			os.Exit(2)
		}
		o.clients = append(o.clients, n)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

func run(ctx context.Context, o options) (err error) {
	logf("%s ADS clients; starting envtest (etcd + kube-apiserver)", protocol(o))
	env, cfg, err := startEnvtest()
	if err != nil {
		return err
	}
	defer func() {
		logf("stopping envtest")
		if stopErr := env.Stop(); stopErr != nil {
			err = errors.Join(err, fmt.Errorf("stopping envtest: %w", stopErr))
		}
	}()
	cfg.QPS, cfg.Burst = 2000, 4000
	k8s, err := newBenchClient(cfg)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "meshplane-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	kubeconfig := filepath.Join(dir, "kubeconfig.json")
	if err := writeKubeconfig(cfg, kubeconfig); err != nil {
		return err
	}

	w := world{services: o.services, namespaces: o.namespaces}
	start := time.Now()
	if err := populate(ctx, k8s, w, o.workers); err != nil {
		return err
	}
	logf("created %d Services and EndpointSlices in %d namespaces in %s", o.services, o.namespaces, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	if err := installIstioCRDs(ctx, k8s, cfg); err != nil {
		return fmt.Errorf("installing Istio's CRDs: %w", err)
	}
	if err := createSubsets(ctx, k8s, w); err != nil {
		return err
	}
	logf("installed Istio's CRDs and the DestinationRule of %s (subsets v1, v2) in %s", w.fqdn(routeTarget), time.Since(start).Round(time.Millisecond))

	var results []result
	var stopped string
	for i, n := range o.clients {
		logf("run %d: %d clients", i+1, n)
		r, err := runOnce(ctx, o, k8s, w, kubeconfig, i, n)
		results = append(results, r)
		if err != nil {
			stopped = fmt.Sprintf("Stopped at %d clients: %v", n, err)
			logf("%s", stopped)
			break
		}
	}
	report := renderReport(o, results, stopped)
	fmt.Print(report)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(report), 0o644); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

// change is one measured change.
type change struct {
	label      string
	what       string // what is written and what the probe looks for, for the details
	p50, p99   time.Duration
	max        time.Duration
	got, of    int
	cpu        time.Duration // control plane, from the write to settle after the last client had it
	clientsCPU time.Duration
	err        error
}

type result struct {
	clients                    int
	cpReady                    float64
	syncAll, syncP50           time.Duration
	synced                     int
	bytesPerClient             int64
	cpuSync, clientsCPUSync    time.Duration
	rssIdle, rssSynced, rssHWM int64
	changes                    []change
	profile                    string
	sample                     string // what client 0 holds
	reconnects                 int64
	firstBreak                 string
}

func runOnce(ctx context.Context, o options, k8s client.Client, w world, kubeconfig string, runIdx, n int) (r result, err error) {
	r.clients = n
	if runIdx > 0 {
		if err := deleteCanary(ctx, k8s, w, runIdx); err != nil {
			return r, err
		}
	}
	profile := ""
	if o.cpuprofile != "" {
		profile = fmt.Sprintf("%s-N%d.prof", strings.TrimSuffix(o.cpuprofile, ".prof"), n)
		if abs, err := filepath.Abs(profile); err == nil {
			profile = abs
		}
		r.profile = profile
	}
	cp, err := startChild(ctx, kubeconfig, profile, o.debounce, o.readyTimeout)
	if err != nil {
		return r, err
	}
	defer cp.stop()
	pid := cp.cmd.Process.Pid
	r.cpReady = cp.readyIn
	// Let the first world be built before the clients come.
	if err := sleep(ctx, time.Second); err != nil {
		return r, err
	}
	r.rssIdle, _ = procStatus(pid)
	logf("control plane ready in %.1fs (xDS %s), RSS %s", cp.readyIn, cp.addr, mib(r.rssIdle))

	f := newFleet(n, o.delta)
	runCtx, cancel := context.WithCancel(ctx)
	defer func() { cancel(); f.close() }()
	if o.maxRSS > 0 {
		go watchRSS(runCtx, f, cp, o.maxRSS)
	}
	// Every client's initial config must have the DestinationRule's subset
	// clusters: else meshd does not see the Istio configuration, and the
	// route change could only time out.
	subsets := &probe{id: time.Now().UnixNano(), start: time.Now(), done: make([]atomic.Int64, n), conds: []condition{
		{typeURL: resourcev3.ClusterType, name: generate.OutboundClusterName(80, "v1", w.fqdn(routeTarget))},
		{typeURL: resourcev3.ClusterType, name: generate.OutboundClusterName(80, "v2", w.fqdn(routeTarget))},
	}}
	f.probe.Store(subsets)
	cpu0, self0 := procCPU(pid), selfCPU()
	if err := f.connect(runCtx, cp.addr, w); err != nil {
		return r, fmt.Errorf("connecting clients: %w", err)
	}
	logf("%d clients connected in %s; waiting for their initial config", n, time.Since(f.start).Round(time.Millisecond))
	err = waitFor(ctx, f, o.syncTimeout, fmt.Sprintf("every client holding its initial config (CDS, EDS, LDS, RDS)"), func() (int, int) {
		return int(f.synced.Load()), n
	})
	r.cpuSync, r.clientsCPUSync = procCPU(pid)-cpu0, selfCPU()-self0
	var times []time.Duration
	var bytes int64
	for _, c := range f.clients {
		if t := c.syncTime(); t != 0 {
			times = append(times, t)
			bytes += c.configBytes()
		}
	}
	r.synced = len(times)
	if c := f.clients[0]; c != nil {
		r.sample = c.holds()
	}
	if len(times) > 0 {
		slices.Sort(times)
		r.syncAll, r.syncP50 = times[len(times)-1], pct(times, 50)
		r.bytesPerClient = bytes / int64(len(times))
	}
	// What the report shows of the run's end, also when it fails.
	recordEnd := func() {
		_, r.rssHWM = procStatus(pid)
		r.rssHWM = max(r.rssHWM, cp.peak.Load())
		r.reconnects = f.reconnects.Load()
		if b := f.lastBreak.Load(); b != nil {
			r.firstBreak = *b
		}
	}
	if err != nil {
		recordEnd()
		return r, err
	}
	logf("all %d clients synced in %s (p50 %s), %s of config each; control plane CPU %s",
		n, r.syncAll.Round(time.Millisecond), r.syncP50.Round(time.Millisecond), mib(r.bytesPerClient), r.cpuSync.Round(time.Millisecond))
	f.probe.Store(nil)
	if got := subsets.count.Load(); got < int64(n) {
		recordEnd()
		return r, fmt.Errorf("%d of %d clients synced without the clusters of the subsets of DestinationRule %s/%s: meshd does not apply the Istio configuration (are its CRDs watched?)",
			int64(n)-got, n, w.namespace(routeTarget), subsetDestinationRule(w).Name)
	}
	if err := sleep(ctx, o.settle); err != nil {
		return r, err
	}
	r.rssSynced, _ = procStatus(pid)

	// (a) one endpoint added to an existing Service.
	ka := (1 + runIdx) % w.services
	clusterA := fmt.Sprintf("outbound|80||%s", w.fqdn(ka))
	r.changes = append(r.changes, measure(ctx, o, f, pid, "endpoint added", fmt.Sprintf("%s → EDS %s", podIP(ka, 3), clusterA), []condition{
		{typeURL: resourcev3.EndpointType, name: clusterA, contain: []byte(podIP(ka, 3))},
	}, func() error {
		s := &discoveryv1.EndpointSlice{}
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(sliceObject(w, ka, 0)), s); err != nil {
			return err
		}
		s.Endpoints = sliceObject(w, ka, 4).Endpoints
		return k8s.Update(ctx, s)
	}))

	// (b) one Service added (with its EndpointSlice).
	kb := w.services + runIdx
	r.changes = append(r.changes, measure(ctx, o, f, pid, "Service added", w.fqdn(kb), []condition{
		{typeURL: resourcev3.ClusterType, name: fmt.Sprintf("outbound|80||%s", w.fqdn(kb))},
		{typeURL: resourcev3.EndpointType, name: fmt.Sprintf("outbound|9090||%s", w.fqdn(kb))},
		{typeURL: resourcev3.RouteType, name: "80", contain: []byte(w.fqdn(kb))},
	}, func() error {
		if err := k8s.Create(ctx, serviceObject(w, kb)); err != nil {
			return err
		}
		return k8s.Create(ctx, sliceObject(w, kb, 3))
	}))

	// (c) route change: this run's VirtualService for the route target
	// replaces the default route of its virtual host in every sidecar's
	// route configuration "80" with a 90/10 split between its subsets.
	run := runIdx + 1
	canary := canaryVirtualService(w, run)
	what := fmt.Sprintf("%s/%s for %s → route %s in RDS 80", canary.Namespace, canary.Name, w.fqdn(routeTarget), canaryRouteName(canary))
	r.changes = append(r.changes, measure(ctx, o, f, pid, "route change (VirtualService)", what, []condition{
		{typeURL: resourcev3.RouteType, name: "80", contain: []byte(canaryRouteName(canary))},
	}, func() error {
		return createCanary(ctx, k8s, w, run)
	}))
	recordEnd()
	for _, c := range r.changes {
		if c.err != nil {
			return r, fmt.Errorf("%s: %w", c.label, c.err)
		}
	}
	return r, nil
}

// watchRSS kills the control plane when its RSS exceeds limit, reporting
// why through the fleet's error channel (which every wait watches).
func watchRSS(ctx context.Context, f *fleet, cp *childCP, limit int64) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rss, _ := procStatus(cp.cmd.Process.Pid)
		if rss > cp.peak.Load() {
			cp.peak.Store(rss)
		}
		if rss > limit {
			err := fmt.Errorf("control-plane RSS %s exceeded the -max-rss-mib limit of %s (killed it to protect the machine; %d/%d clients had their initial config)",
				mib(rss), mib(limit), f.synced.Load(), len(f.clients))
			select {
			case f.errs <- err:
			default:
			}
			_ = cp.cmd.Process.Kill()
			return
		}
	}
}

// measure installs a probe, makes the change and waits until every client
// holds it.
func measure(ctx context.Context, o options, f *fleet, pid int, label, what string, conds []condition, do func() error) (c change) {
	c.label, c.what, c.of = label, what, len(f.clients)
	p := &probe{id: time.Now().UnixNano(), conds: conds, done: make([]atomic.Int64, len(f.clients))}
	cpu0, self0 := procCPU(pid), selfCPU()
	p.start = time.Now()
	f.probe.Store(p)
	if err := do(); err != nil {
		c.err = fmt.Errorf("making the change: %w", err)
		return c
	}
	c.err = waitFor(ctx, f, o.changeTimeout, "every client holding the change: "+label, func() (int, int) {
		return int(p.count.Load()), len(f.clients)
	})
	if c.err == nil {
		c.err = sleep(ctx, o.settle)
	}
	c.cpu, c.clientsCPU = procCPU(pid)-cpu0, selfCPU()-self0
	f.probe.Store(nil)
	var times []time.Duration
	for i := range p.done {
		if d := p.done[i].Load(); d != 0 {
			times = append(times, time.Duration(d))
		}
	}
	c.got = len(times)
	if len(times) > 0 {
		slices.Sort(times)
		c.p50, c.p99, c.max = pct(times, 50), pct(times, 99), times[len(times)-1]
	}
	logf("%s: %d/%d clients, p50 %s p99 %s max %s; control plane CPU %s (incl. %s settle)",
		label, c.got, c.of, c.p50.Round(time.Millisecond), c.p99.Round(time.Millisecond), c.max.Round(time.Millisecond),
		c.cpu.Round(time.Millisecond), o.settle)
	return c
}

// waitFor polls progress until done == total, a client fails, ctx ends or
// the timeout passes.
func waitFor(ctx context.Context, f *fleet, timeout time.Duration, what string, progress func() (done, total int)) error {
	deadline := time.Now().Add(timeout)
	lastLog := time.Now()
	for {
		done, total := progress()
		if done >= total {
			return nil
		}
		select {
		case err := <-f.errs:
			return fmt.Errorf("waiting for %s: %w", what, err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s: %d of %d", timeout, what, done, total)
		}
		if time.Since(lastLog) > 10*time.Second {
			lastLog = time.Now()
			logf("  ... %d/%d (stream breaks so far: %d)", done, total, f.reconnects.Load())
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// pct is the p-th percentile (nearest rank) of sorted durations.
func pct(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100
	return sorted[max(i-1, 0)]
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

func dur(d time.Duration) string {
	switch {
	case d == 0:
		return "–"
	case d < time.Second:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	default:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
}

// protocol names the clients' ADS flavour for the log and the report.
func protocol(o options) string {
	if o.delta {
		return "delta"
	}
	return "state-of-the-world"
}

func renderReport(o options, results []result, stopped string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n## meshd control plane benchmark: %s ADS\n\n", protocol(o))
	fmt.Fprintf(&b, "%d Services (http-web 80, grpc-api 9090; 3 endpoints each) in %d namespaces; %s ADS clients as Envoy sidecars, one gRPC connection each; debounce %s quiet / %s max. RSS and CPU are the control-plane child process's only (discovery + xDS server); the clients run in the parent.\n\n",
		o.services, o.namespaces, protocol(o), o.debounce.Quiet, o.debounce.Max)
	b.WriteString("| clients | all clients synced (p50) | endpoint added p50 / p99 | Service added p50 / p99 | route change (VirtualService) p50 / p99 | RSS idle / after sync / peak | CPU-s per client, initial sync | CPU-s per client per push (a / b / c) | config per client |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		sync := fmt.Sprintf("%s (%s)", dur(r.syncAll), dur(r.syncP50))
		if r.synced < r.clients {
			sync = fmt.Sprintf("**%d/%d synced**", r.synced, r.clients)
		}
		cells := []string{strconv.Itoa(r.clients), sync}
		var pushCPU []string
		for i := range 3 {
			if i >= len(r.changes) {
				cells = append(cells, "–")
				pushCPU = append(pushCPU, "–")
				continue
			}
			c := r.changes[i]
			cell := dur(c.p50) + " / " + dur(c.p99)
			if c.got < c.of {
				cell = fmt.Sprintf("**%d/%d got it**", c.got, c.of)
			}
			cells = append(cells, cell)
			pushCPU = append(pushCPU, fmt.Sprintf("%.4f", c.cpu.Seconds()/float64(r.clients)))
		}
		cells = append(cells,
			fmt.Sprintf("%s / %s / %s", mib(r.rssIdle), mib(r.rssSynced), mib(r.rssHWM)),
			fmt.Sprintf("%.4f", r.cpuSync.Seconds()/float64(r.clients)),
			strings.Join(pushCPU, " / "),
			fmt.Sprintf("%.2f MiB", float64(r.bytesPerClient)/(1<<20)),
		)
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	b.WriteString("\nDetails:\n")
	for _, r := range results {
		fmt.Fprintf(&b, "- %d clients (client 0 holds %s): control plane ready (discovery synced) %.1f s after start; initial sync control-plane CPU %.1f s, client side (this process) %.1f s",
			r.clients, r.sample, r.cpReady, r.cpuSync.Seconds(), r.clientsCPUSync.Seconds())
		for _, c := range r.changes {
			fmt.Fprintf(&b, "; %s %s: max %s, CP CPU %.2f s, clients CPU %.2f s", c.label, c.what, dur(c.max), c.cpu.Seconds(), c.clientsCPU.Seconds())
		}
		if r.reconnects > 0 {
			fmt.Fprintf(&b, "; **%d ADS streams broke and were reopened** (first: %s)", r.reconnects, r.firstBreak)
		}
		if r.profile != "" {
			fmt.Fprintf(&b, "; CPU profile %s", r.profile)
		}
		b.WriteString("\n")
	}
	if stopped != "" {
		fmt.Fprintf(&b, "\n%s\n", stopped)
	}
	b.WriteString("\nPer-push CPU is the control plane's CPU time from the API write until " + o.settle.String() + " after the last client had the change, divided by the clients. Peak RSS is VmHWM of the control-plane process over the run (start-up, initial sync, the three changes). " +
		"The route change is a VirtualService created for one Service, splitting its port 80 90/10 between the subsets of a DestinationRule that was there before the control plane started: in every sidecar's route configuration \"80\", that Service's virtual host gets the VirtualService's route instead of its default one; nothing else changes.\n")
	return b.String()
}
