package xds_test

// End-to-end tests of meshd's xDS serving with Envoy-like ADS clients (see
// test/adsclient): state of the world and delta agree, and a NACK is reported
// and stays with the proxy that sent it. meshd runs in-process against
// envtest with real discovery, generators and xDS server.

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshplane/meshplane/internal/xds/generate"
	"github.com/meshplane/meshplane/internal/xds/server"
	"github.com/meshplane/meshplane/test/adsclient"
	"github.com/meshplane/meshplane/test/framework"
)

var xdsTypes = []string{adsclient.ClusterType, adsclient.EndpointType, adsclient.ListenerType, adsclient.RouteType}

// meshService is a Service with one port and its EndpointSlice.
type meshService struct {
	name, portName string
	port           int32
	ips            []string
}

func (s meshService) fqdn(ns string) string { return s.name + "." + ns + ".svc.cluster.local" }

func (s meshService) cluster(ns string) string {
	return generate.OutboundClusterName(s.port, "", s.fqdn(ns))
}

// createMeshService creates the Service (and its namespace when missing) and
// its EndpointSlice.
func createMeshService(t *testing.T, ns string, s meshService) {
	t.Helper()
	nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(nsObj), nsObj); err != nil {
		if err := k8s.Create(ctx, nsObj); err != nil {
			t.Fatal(err)
		}
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: ns},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{
			Name: s.portName, Port: s.port, Protocol: corev1.ProtocolTCP,
		}}},
	}
	if err := k8s.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	setSliceEndpoints(t, ns, s)
	// Namespaces are never deleted in envtest; the Service and its slice are,
	// so that the test can run again (-count) in the same API server.
	t.Cleanup(func() {
		slice := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: s.name + "-slice", Namespace: ns}}
		_ = k8s.Delete(ctx, slice)
		_ = k8s.Delete(ctx, svc)
	})
}

// setSliceEndpoints writes the Service's EndpointSlice with s.ips, all ready.
func setSliceEndpoints(t *testing.T, ns string, s meshService) {
	t.Helper()
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: s.name + "-slice", Namespace: ns,
			Labels: map[string]string{discoveryv1.LabelServiceName: s.name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(s.portName), Port: ptr.To(s.port), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for _, ip := range s.ips {
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{ip},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true)},
		})
	}
	writeSlice(t, slice)
}

// sidecar connects an Envoy-like ADS client as a sidecar proxy of ns whose
// pod has no endpoints of its own.
func sidecar(t *testing.T, xdsAddr string, mode adsclient.Mode, ns, pod, ip string, nack func(string) string) *adsclient.Client {
	t.Helper()
	c, err := adsclient.Dial(xdsAddr, adsclient.Options{
		Mode: mode,
		Node: adsclient.Node(pod+"."+ns, map[string]string{
			"PROXY_TYPE": "sidecar", "NAMESPACE": ns, "POD_NAME": pod, "INSTANCE_IPS": ip,
		}),
		Nack: nack,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// endpointIPs are the addresses of a held ClusterLoadAssignment, sorted.
func endpointIPs(c *adsclient.Client, cluster string) []string {
	cla, _ := c.Resource(adsclient.EndpointType, cluster).(*endpointv3.ClusterLoadAssignment)
	var ips []string
	for _, l := range cla.GetEndpoints() {
		for _, e := range l.GetLbEndpoints() {
			ips = append(ips, e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
		}
	}
	slices.Sort(ips)
	return ips
}

// holds checks that a client is consistent, alive and holds the named
// resources.
func holds(c *adsclient.Client, want map[string][]string) error {
	if err := c.Err(); err != nil {
		return fmt.Errorf("stream ended: %w", err)
	}
	if err := c.Consistent(); err != nil {
		return err
	}
	have := c.Resources()
	for typ, names := range want {
		for _, n := range names {
			if have[typ][n] == nil {
				return fmt.Errorf("%s %q not held; holding %v", shortType(typ), n, slices.Sorted(maps.Keys(have[typ])))
			}
		}
	}
	return nil
}

// sameResources compares two clients' holdings: names and deterministic
// protobuf bytes, per type.
func sameResources(a, b map[string]map[string][]byte) error {
	for _, typ := range xdsTypes {
		an, bn := slices.Sorted(maps.Keys(a[typ])), slices.Sorted(maps.Keys(b[typ]))
		if !slices.Equal(an, bn) {
			return fmt.Errorf("%s names differ:\n  sotw:  %v\n  delta: %v", shortType(typ), an, bn)
		}
		for _, n := range an {
			if !bytes.Equal(a[typ][n], b[typ][n]) {
				return fmt.Errorf("%s %q differs (%d vs %d bytes)", shortType(typ), n, len(a[typ][n]), len(b[typ][n]))
			}
		}
	}
	return nil
}

func shortType(typ string) string { return typ[strings.LastIndexByte(typ, '.')+1:] }

// proxyStatus finds a proxy in syncz.
func proxyStatus(statuses []server.SyncStatus, id string) (server.SyncStatus, error) {
	for _, s := range statuses {
		if s.ID == id {
			return s, nil
		}
	}
	ids := make([]string, 0, len(statuses))
	for _, s := range statuses {
		ids = append(ids, s.ID)
	}
	return server.SyncStatus{}, fmt.Errorf("proxy %s not in syncz (%v)", id, ids)
}

// allAcked: the proxy is a sidecar and, for each of types, the version set in
// its snapshot was sent and ACKed, without a NACK.
func allAcked(statuses []server.SyncStatus, id string, types ...string) (server.SyncStatus, error) {
	p, err := proxyStatus(statuses, id)
	if err != nil {
		return p, err
	}
	if p.Type != "sidecar" {
		return p, fmt.Errorf("proxy %s has type %q, want sidecar", id, p.Type)
	}
	for _, typ := range types {
		st := p.Types[typ]
		if st.Acked == "" || st.Set != st.Sent || st.Sent != st.Acked || st.LastNack != nil {
			return p, fmt.Errorf("proxy %s %s: set %q sent %q acked %q nack %+v", id, shortType(typ), st.Set, st.Sent, st.Acked, st.LastNack)
		}
	}
	return p, nil
}

func TestSotWAndDeltaSidecarsAgree(t *testing.T) {
	const ns = "xds-agree"
	web := meshService{"web", "http-web", 80, []string{"10.11.0.1", "10.11.0.2"}}
	api := meshService{"api", "grpc-api", 9090, []string{"10.11.1.1"}}
	db := meshService{"db", "tcp-db", 5432, []string{"10.11.2.1", "10.11.2.2"}}
	m := startMeshd(t, "127.0.0.1:0", prometheus.NewRegistry())
	xdsAddr := m.cp.XDSAddr().String()
	for _, s := range []meshService{web, api, db} {
		createMeshService(t, ns, s)
	}

	sotw := sidecar(t, xdsAddr, adsclient.SotW, ns, "sotw", "10.11.9.1", nil)
	delta := sidecar(t, xdsAddr, adsclient.Delta, ns, "delta", "10.11.9.2", nil)

	want := map[string][]string{
		adsclient.ClusterType:  {web.cluster(ns), api.cluster(ns), db.cluster(ns), generate.PassthroughCluster},
		adsclient.EndpointType: {web.cluster(ns), api.cluster(ns), db.cluster(ns)},
		adsclient.ListenerType: {
			generate.VirtualOutboundListener, generate.VirtualInboundListener,
			generate.OutboundListenerName(80), generate.OutboundListenerName(9090), generate.OutboundListenerName(5432),
		},
		adsclient.RouteType: {generate.SidecarRouteName(80), generate.SidecarRouteName(9090)},
	}
	converged := func(what string, webIPs []string) {
		t.Helper()
		framework.Poll(t, wait, what, func() error {
			for _, c := range []struct {
				name string
				c    *adsclient.Client
			}{{"sotw", sotw}, {"delta", delta}} {
				if err := holds(c.c, want); err != nil {
					return fmt.Errorf("%s client: %w", c.name, err)
				}
				if got := endpointIPs(c.c, web.cluster(ns)); !slices.Equal(got, webIPs) {
					return fmt.Errorf("%s client: web endpoints %v, want %v", c.name, got, webIPs)
				}
			}
			if err := sameResources(sotw.Resources(), delta.Resources()); err != nil {
				return err
			}
			statuses := m.syncz(t)
			for _, id := range []string{"sotw." + ns, "delta." + ns} {
				if _, err := allAcked(statuses, id, xdsTypes...); err != nil {
					return err
				}
			}
			return nil
		})
	}
	converged("SotW and delta sidecars hold the same, complete configuration, all ACKed", web.ips)

	have := sotw.Resources()
	t.Logf("both sidecars hold %d clusters, %d endpoints, %d listeners, %d routes",
		len(have[adsclient.ClusterType]), len(have[adsclient.EndpointType]), len(have[adsclient.ListenerType]), len(have[adsclient.RouteType]))
	before, err := proxyStatus(m.syncz(t), "delta."+ns)
	if err != nil {
		t.Fatal(err)
	}
	mark := len(delta.Received())

	// An endpoint is added to web.
	web.ips = append(web.ips, "10.11.0.3")
	setSliceEndpoints(t, ns, web)
	converged("both sidecars converge on the added endpoint", web.ips)

	after, err := proxyStatus(m.syncz(t), "delta."+ns)
	if err != nil {
		t.Fatal(err)
	}
	if after.Types[adsclient.EndpointType].Acked == before.Types[adsclient.EndpointType].Acked {
		t.Errorf("syncz: the delta sidecar's endpoint version did not change: %q", after.Types[adsclient.EndpointType].Acked)
	}
	// Let a late push, if any, arrive (the debounce window is 200ms at most).
	time.Sleep(time.Second)
	var pushed []string
	for _, r := range delta.Received()[mark:] {
		for _, n := range r.Names {
			pushed = append(pushed, shortType(r.TypeURL)+" "+n)
		}
		for _, n := range r.Removed {
			pushed = append(pushed, shortType(r.TypeURL)+" removed "+n)
		}
		if len(r.Names) == 0 && len(r.Removed) == 0 {
			pushed = append(pushed, shortType(r.TypeURL)+" (empty response)")
		}
	}
	if wantPushed := []string{"ClusterLoadAssignment " + web.cluster(ns)}; !slices.Equal(pushed, wantPushed) {
		t.Errorf("after one endpoint was added, the delta sidecar received %q, want only %q", pushed, wantPushed)
	}
	if err := sameResources(sotw.Resources(), delta.Resources()); err != nil {
		t.Errorf("after the quiet period: %v", err)
	}
}

// nacks reads meshd_xds_nacks_total{type=typ} from the registry.
func nacks(t *testing.T, reg *prometheus.Registry, typ string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "meshd_xds_nacks_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "type" && l.GetValue() == typ {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("meshd_xds_nacks_total{type=%q} not gathered", typ)
	return 0
}

func nackedCount(c *adsclient.Client) (n int, versions []string) {
	for _, r := range c.Received() {
		if r.Nacked {
			n++
			versions = append(versions, r.Version)
		}
	}
	return n, versions
}

func TestNACKIsReportedAndIsolated(t *testing.T) {
	for i, mode := range []adsclient.Mode{adsclient.SotW, adsclient.Delta} {
		// Each subtest's later Service gets a port of its own, so that it
		// adds a listener (the world holds the other subtest's Services too).
		extraPort := 8181 + int32(i)
		t.Run(mode.String(), func(t *testing.T) {
			ns := "xds-nack-" + mode.String()
			reg := prometheus.NewRegistry()
			m := startMeshd(t, "127.0.0.1:0", reg)
			xdsAddr := m.cp.XDSAddr().String()
			web := meshService{"web", "http-web", 80, []string{"10.12.0.1"}}
			createMeshService(t, ns, web)
			if got := nacks(t, reg, "lds"); got != 0 {
				t.Fatalf("meshd_xds_nacks_total{type=lds} is %v before any proxy connected", got)
			}

			const reason = "test proxy rejects listeners: unsupported filter"
			badID, goodID := "bad."+ns, "good."+ns
			bad := sidecar(t, xdsAddr, mode, ns, "bad", "10.12.9.1", func(typ string) string {
				if typ == adsclient.ListenerType {
					return reason
				}
				return ""
			})
			good := sidecar(t, xdsAddr, mode, ns, "good", "10.12.9.2", nil)

			check := func(what string, want map[string][]string) {
				t.Helper()
				var lastNackVersion string
				framework.Poll(t, wait, what, func() error {
					if err := holds(good, want); err != nil {
						return fmt.Errorf("good proxy: %w", err)
					}
					if err := bad.Err(); err != nil {
						return fmt.Errorf("bad proxy's stream ended: %w", err)
					}
					statuses := m.syncz(t)
					if _, err := allAcked(statuses, goodID, xdsTypes...); err != nil {
						return err
					}
					b, err := allAcked(statuses, badID, adsclient.ClusterType, adsclient.EndpointType)
					if err != nil {
						return err
					}
					lds := b.Types[adsclient.ListenerType]
					if lds.LastNack == nil {
						return fmt.Errorf("syncz shows no listener NACK for %s: %+v", badID, b.Types)
					}
					if lds.LastNack.Error != reason {
						return fmt.Errorf("syncz: %s's NACK error is %q, want %q", badID, lds.LastNack.Error, reason)
					}
					if lds.LastNack.Version != lds.Set || lds.Sent != lds.Set {
						return fmt.Errorf("syncz: %s's listeners: set %q sent %q, last NACK of %q", badID, lds.Set, lds.Sent, lds.LastNack.Version)
					}
					if lds.Acked != "" {
						return fmt.Errorf("syncz: %s ACKed listener version %q, yet it NACKs every one", badID, lds.Acked)
					}
					n, _ := nackedCount(bad)
					if got := nacks(t, reg, "lds"); got != float64(n) {
						return fmt.Errorf("meshd_xds_nacks_total{type=lds} is %v, the bad proxy sent %d NACKs", got, n)
					}
					for _, typ := range []string{"cds", "eds", "rds"} {
						if got := nacks(t, reg, typ); got != 0 {
							return fmt.Errorf("meshd_xds_nacks_total{type=%s} is %v", typ, got)
						}
					}
					lastNackVersion = lds.LastNack.Version
					return nil
				})
				// The NACKed version is not re-sent in a loop.
				n1, _ := nackedCount(bad)
				time.Sleep(time.Second)
				if n2, versions := nackedCount(bad); n2 != n1 {
					t.Errorf("%s: the bad proxy NACKed %d more times while nothing changed (versions %v)", what, n2-n1, versions)
				}
				if _, err := proxyStatus(m.syncz(t), badID); err != nil {
					t.Error(err)
				}
				t.Logf("%s: last NACKed listener version %s", what, lastNackVersion)
			}

			want := map[string][]string{
				adsclient.ClusterType:  {web.cluster(ns)},
				adsclient.EndpointType: {web.cluster(ns)},
				adsclient.ListenerType: {generate.OutboundListenerName(80)},
				adsclient.RouteType:    {generate.SidecarRouteName(80)},
			}
			check("the NACK is reported for the bad proxy only", want)
			first, _ := nackedCount(bad)
			if first < 1 {
				t.Fatalf("the bad proxy sent no NACK")
			}
			before, _ := proxyStatus(m.syncz(t), badID)

			// A change that touches every type: a new HTTP Service on a new port.
			extra := meshService{"extra", "http-extra", extraPort, []string{"10.12.1.1"}}
			createMeshService(t, ns, extra)
			want[adsclient.ClusterType] = append(want[adsclient.ClusterType], extra.cluster(ns))
			want[adsclient.EndpointType] = append(want[adsclient.EndpointType], extra.cluster(ns))
			want[adsclient.ListenerType] = append(want[adsclient.ListenerType], generate.OutboundListenerName(extra.port))
			want[adsclient.RouteType] = append(want[adsclient.RouteType], generate.SidecarRouteName(extra.port))
			check("the good proxy receives a later change; the bad one NACKs its new listeners", want)

			after, _ := proxyStatus(m.syncz(t), badID)
			if b, a := before.Types[adsclient.ListenerType].LastNack, after.Types[adsclient.ListenerType].LastNack; b.Version == a.Version {
				t.Errorf("the bad proxy's last NACK is still of listener version %q after the change", a.Version)
			}
			if n, _ := nackedCount(bad); n <= first {
				t.Errorf("the bad proxy NACKed %d times, no more than before the change", n)
			}
			if bad.Resource(adsclient.ClusterType, extra.cluster(ns)) == nil {
				t.Errorf("the bad proxy did not receive the new cluster %s", extra.cluster(ns))
			}
			if got := bad.Resources()[adsclient.ListenerType]; len(got) != 0 {
				t.Errorf("the bad proxy holds listeners it NACKed: %v", slices.Sorted(maps.Keys(got)))
			}
		})
	}
}
