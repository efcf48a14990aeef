package bootstrap

import (
	"bytes"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/meshplane/meshplane/internal/golden"
	"github.com/meshplane/meshplane/internal/xds/generate"
)

// Regenerate golden files with UPDATE_GOLDEN=1 go test ./internal/bootstrap/

var goldenCases = map[string]Options{
	"sidecar": {
		ProxyType: Sidecar,
		NodeID:    "reviews-v1-7d4b9c-x2x8q.bookinfo",
		Cluster:   "reviews.bookinfo",
		Metadata:  map[string]string{"revision": "default", "namespace": "bookinfo"},
		XDSHost:   "meshd-default.meshplane-system.svc",
	},
	// As the gateway chart uses it: node id from --service-node.
	"router": {
		ProxyType: Router,
		Cluster:   "istio-ingressgateway",
		Metadata:  map[string]string{"revision": "default", "gateway_kind": "ingress"},
		XDSHost:   "meshd-default.meshplane-system.svc",
		XDSPort:   15010,
	},
}

func TestGolden(t *testing.T) {
	for name, opts := range goldenCases {
		t.Run(name, func(t *testing.T) {
			got, err := EnvoyYAML(opts)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", name+".golden.yaml")
			golden.Check(t, path, got)
		})
	}
}

// The YAML is what Envoy reads: it must parse back, as proto3 JSON with
// unknown fields rejected, into the same validated bootstrap.
func TestYAMLRoundTrips(t *testing.T) {
	for name, opts := range goldenCases {
		want, err := Envoy(opts)
		if err != nil {
			t.Fatal(err)
		}
		y, err := EnvoyYAML(opts)
		if err != nil {
			t.Fatal(err)
		}
		js, err := yaml.YAMLToJSON(y)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := &bootstrapv3.Bootstrap{}
		if err := protojson.Unmarshal(js, got); err != nil {
			t.Fatalf("%s: YAML does not parse as a Bootstrap: %v", name, err)
		}
		if err := got.ValidateAll(); err != nil {
			t.Errorf("%s: parsed bootstrap is invalid: %v", name, err)
		}
		if !proto.Equal(got, want) {
			t.Errorf("%s: bootstrap changed through YAML", name)
		}
	}
}

func TestDeterministic(t *testing.T) {
	opts := goldenCases["sidecar"]
	opts.Metadata = map[string]string{"a": "1", "b": "2", "c": "3", "d": "4", "e": "5"}
	first, err := EnvoyYAML(opts)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if got, _ := EnvoyYAML(opts); !bytes.Equal(got, first) {
			t.Fatalf("output differs between calls:\n%s\n---\n%s", first, got)
		}
	}
}

func TestContent(t *testing.T) {
	for _, pt := range []ProxyType{Sidecar, Router} {
		b, err := Envoy(Options{ProxyType: pt, XDSHost: "10.0.0.1", XDSPort: 15012,
			Metadata: map[string]string{"revision": "canary"}})
		if err != nil {
			t.Fatalf("%s: %v", pt, err)
		}
		if err := b.ValidateAll(); err != nil {
			t.Errorf("%s: %v", pt, err)
		}
		md := b.GetNode().GetMetadata().GetFields()
		if md[MetadataProxyType].GetStringValue() != string(pt) || md["revision"].GetStringValue() != "canary" {
			t.Errorf("%s: node metadata = %v", pt, md)
		}
		if b.GetNode().GetId() != "" {
			t.Errorf("%s: node id %q set although none was given", pt, b.GetNode().GetId())
		}
		ads := b.GetDynamicResources().GetAdsConfig()
		if !ads.GetSetNodeOnFirstMessageOnly() || ads.GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName() != XDSClusterName {
			t.Errorf("%s: ADS config = %v", pt, ads)
		}
		if b.GetDynamicResources().GetLdsConfig().GetAds() == nil || b.GetDynamicResources().GetCdsConfig().GetAds() == nil {
			t.Errorf("%s: LDS and CDS must come over ADS", pt)
		}
		if a := b.GetAdmin().GetAddress().GetSocketAddress(); a.GetAddress() != "127.0.0.1" || a.GetPortValue() != AdminPort {
			t.Errorf("%s: admin on %v, want loopback:%d", pt, a, AdminPort)
		}
		clusters := map[string]string{}
		for _, c := range b.GetStaticResources().GetClusters() {
			sa := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
			clusters[c.GetName()] = c.GetType().String() + " " + sa.GetAddress() + ":" + strconv.FormatUint(uint64(sa.GetPortValue()), 10)
		}
		if clusters[XDSClusterName] != "STRICT_DNS 10.0.0.1:15012" || clusters[AdminClusterName] != "STATIC 127.0.0.1:15000" {
			t.Errorf("%s: static clusters = %v", pt, clusters)
		}
		// The status listener routes the readiness path, and only it, to admin /ready.
		var status *hcmv3.HttpConnectionManager
		for _, l := range b.GetStaticResources().GetListeners() {
			if l.GetAddress().GetSocketAddress().GetPortValue() != StatusPort {
				continue
			}
			status = &hcmv3.HttpConnectionManager{}
			if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(status); err != nil {
				t.Fatal(err)
			}
		}
		if status == nil {
			t.Fatalf("%s: no listener on %d", pt, StatusPort)
		}
		routes := status.GetRouteConfig().GetVirtualHosts()[0].GetRoutes()
		if routes[0].GetMatch().GetPath() != StatusPath || routes[0].GetRoute().GetPrefixRewrite() != "/ready" ||
			routes[0].GetRoute().GetCluster() != AdminClusterName || routes[1].GetDirectResponse().GetStatus() != 404 {
			t.Errorf("%s: status routes = %v", pt, routes)
		}
	}
}

func TestBadOptions(t *testing.T) {
	good := goldenCases["router"]
	for _, tc := range []struct {
		name   string
		modify func(*Options)
		want   string
	}{
		{"no proxy type", func(o *Options) { o.ProxyType = "" }, "proxy type is required"},
		{"unknown proxy type", func(o *Options) { o.ProxyType = "gateway" }, `unknown proxy type "gateway"`},
		{"empty xDS host", func(o *Options) { o.XDSHost = "" }, "xDS host is required"},
		{"blank xDS host", func(o *Options) { o.XDSHost = "  " }, "xDS host is required"},
		{"host with port", func(o *Options) { o.XDSHost = "meshd.ns.svc:15010" }, "not a host name or IP address"},
		{"port too high", func(o *Options) { o.XDSPort = 65536 }, "xDS port 65536 out of range"},
		{"negative port", func(o *Options) { o.XDSPort = -1 }, "xDS port -1 out of range"},
		{"reserved metadata", func(o *Options) { o.Metadata = map[string]string{MetadataProxyType: "x"} }, `"proxy_type" is reserved`},
	} {
		opts := good
		tc.modify(&opts)
		for _, f := range []func(Options) error{
			func(o Options) error { _, err := Envoy(o); return err },
			func(o Options) error { _, err := EnvoyYAML(o); return err },
		} {
			err := f(opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: error = %v, want one containing %q", tc.name, err, tc.want)
			}
		}
	}
	// Several mistakes are reported together.
	_, err := Envoy(Options{ProxyType: "x", XDSPort: 70000})
	for _, want := range []string{"unknown proxy type", "xDS host is required", "out of range"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error = %v, want one containing %q", err, want)
		}
	}
}

func TestIPv6Host(t *testing.T) {
	if _, err := Envoy(Options{ProxyType: Sidecar, XDSHost: "fd00::1"}); err != nil {
		t.Error(err)
	}
}

// The generators' TLS contexts fetch certificates through the bootstrap's SDS
// cluster: the names must agree.
func TestSDSClusterNameMatchesGenerators(t *testing.T) {
	if SDSClusterName != generate.SDSClusterName {
		t.Fatalf("bootstrap SDS cluster %q, generators use %q", SDSClusterName, generate.SDSClusterName)
	}
	b, err := Envoy(Options{ProxyType: Sidecar, XDSHost: "meshd.mesh.svc", SDSSocket: "/tmp/agent/sds.sock"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == SDSClusterName {
			if got := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetPipe().GetPath(); got != "/tmp/agent/sds.sock" {
				t.Fatalf("SDS cluster reaches %q", got)
			}
			return
		}
	}
	t.Fatalf("no %s cluster", SDSClusterName)
}
