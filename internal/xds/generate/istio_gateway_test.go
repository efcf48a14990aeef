package generate

import (
	"slices"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	networkrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	networking "istio.io/api/networking/v1"
	securityv1beta1 "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"

	"github.com/meshplane/meshplane/internal/model"
)

// gatewayWorld is istioWorld with the ingress workload labelled
// istio=ingressgateway, a Gateway selecting it (HTTP 80 redirecting to
// HTTPS, HTTPS 443 terminating with the shop-cert Secret, TLS passthrough
// on 15443 — a reserved sidecar port, fine on a gateway — by SNI) and
// VirtualServices bound to it.
func gatewayWorld() *model.World {
	base := istioWorld()
	workloads := slices.Clone(base.Workloads)
	for i, wl := range workloads {
		if wl.Name == "ingress-0" {
			labelled := *wl
			labelled.Labels = map[string]string{"istio": "ingressgateway"}
			workloads[i] = &labelled
		}
	}
	cfg := base.Config
	cfg.Gateways = []*model.Gateway{{Meta: model.Meta{Name: "shop-gateway", Namespace: "shop"}, Spec: &networking.Gateway{
		Selector: map[string]string{"istio": "ingressgateway"},
		Servers: []*networking.Server{
			{Port: &networking.Port{Number: 80, Name: "http", Protocol: "HTTP"}, Hosts: []string{"shop.example.com"},
				Tls: &networking.ServerTLSSettings{HttpsRedirect: true}},
			{Port: &networking.Port{Number: 443, Name: "https", Protocol: "HTTPS"}, Hosts: []string{"shop/shop.example.com"},
				Tls: &networking.ServerTLSSettings{Mode: networking.ServerTLSSettings_SIMPLE, CredentialName: "shop-cert"}},
			{Port: &networking.Port{Number: 15443, Name: "tls", Protocol: "TLS"}, Hosts: []string{"db.example.com"},
				Tls: &networking.ServerTLSSettings{Mode: networking.ServerTLSSettings_PASSTHROUGH}},
		},
	}}}
	cfg.VirtualServices = append(slices.Clone(cfg.VirtualServices),
		&model.VirtualService{Meta: model.Meta{Name: "shop-ingress", Namespace: "shop", CreationUnix: 10}, Spec: &networking.VirtualService{
			Hosts:    []string{"shop.example.com"},
			Gateways: []string{"shop-gateway"},
			Http: []*networking.HTTPRoute{{
				Match: []*networking.HTTPMatchRequest{{Uri: &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: "/shop"}}}},
				Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "web.shop.svc.cluster.local", Port: &networking.PortSelector{Number: 80}, Subset: "v1"}}},
			}},
		}},
		&model.VirtualService{Meta: model.Meta{Name: "db-passthrough", Namespace: "shop", CreationUnix: 11}, Spec: &networking.VirtualService{
			Hosts:    []string{"db.example.com"},
			Gateways: []string{"shop/shop-gateway"},
			Tls: []*networking.TLSRoute{{
				Match: []*networking.TLSMatchAttributes{{SniHosts: []string{"db.example.com"}}},
				Route: []*networking.RouteDestination{{Destination: &networking.Destination{Host: "db.data.svc.cluster.local"}}},
			}},
		}},
	)
	cfg.Credentials = map[string]*model.Credential{
		"mesh-gateways/shop-cert": {Meta: model.Meta{Name: "shop-cert", Namespace: "mesh-gateways"},
			Cert: []byte("-----BEGIN CERTIFICATE-----\ntest\n-----END CERTIFICATE-----\n"),
			Key:  []byte("-----BEGIN PRIVATE KEY-----\ntest\n-----END PRIVATE KEY-----\n")},
	}
	var services []*model.Service
	for _, s := range base.Services {
		if s.ServiceEntry == "" {
			services = append(services, s)
		}
	}
	return model.NewWorldWithConfig(base.Mesh, services, workloads, cfg)
}

// TestGatewayServers: the ingress gets a listener per server port on the
// Service's target port: HTTP 80 (target 8080) whose virtual host for
// shop.example.com requires TLS; HTTPS 443 (target 8443) terminating with
// the Secret over SDS and routing /shop to web's v1 subset; TLS passthrough
// on 15443 proxying db.example.com by SNI to db. The Secret is served.
func TestGatewayServers(t *testing.T) {
	w := gatewayWorld()
	proxy := fixtureProxy(w, model.ProxyRouter, "mesh-gateways", "ingress-0")
	res := generateChecked(t, w, proxy)

	if got := names(res[resourcev3.ListenerType]); !slices.Equal(got, []string{"0.0.0.0_15443", "0.0.0.0_8080", "0.0.0.0_8443"}) {
		t.Fatalf("listeners %v", got)
	}
	http := vhostRoutes(t, res, "http.80", "shop.example.com:80")
	rc, _ := byName(res, resourcev3.RouteType, "http.80").(*routev3.RouteConfiguration)
	if rc.GetVirtualHosts()[0].GetRequireTls() != routev3.VirtualHost_ALL || len(http) != 1 {
		t.Errorf("http.80: %v", rc)
	}

	https, _ := byName(res, resourcev3.ListenerType, "0.0.0.0_8443").(*listenerv3.Listener)
	chain := https.GetFilterChains()[0]
	if !slices.Equal(chain.GetFilterChainMatch().GetServerNames(), []string{"shop.example.com"}) {
		t.Errorf("https chain match %v", chain.GetFilterChainMatch())
	}
	ctx := &tlsv3.DownstreamTlsContext{}
	if err := chain.GetTransportSocket().GetTypedConfig().UnmarshalTo(ctx); err != nil {
		t.Fatal(err)
	}
	if sds := ctx.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs(); len(sds) != 1 || sds[0].GetName() != "kubernetes://shop-cert" {
		t.Errorf("https certificate %v", sds)
	}
	if len(https.GetListenerFilters()) != 1 {
		t.Errorf("https listener filters %v, want the TLS inspector", https.GetListenerFilters())
	}
	routes := vhostRoutes(t, res, "https.443.0", "shop.example.com:443")
	if len(routes) != 1 || routes[0].GetRoute().GetCluster() != "outbound|80|v1|web.shop.svc.cluster.local" {
		t.Errorf("https routes %v", routes)
	}
	sec, _ := byName(res, resourcev3.SecretType, "kubernetes://shop-cert").(*tlsv3.Secret)
	if len(sec.GetTlsCertificate().GetPrivateKey().GetInlineBytes()) == 0 {
		t.Errorf("secret %v", sec)
	}

	pt, _ := byName(res, resourcev3.ListenerType, "0.0.0.0_15443").(*listenerv3.Listener)
	if len(pt.GetFilterChains()) != 1 || !slices.Equal(pt.GetFilterChains()[0].GetFilterChainMatch().GetServerNames(), []string{"db.example.com"}) {
		t.Fatalf("passthrough chains %v", pt.GetFilterChains())
	}
	tp := &tcpproxyv3.TcpProxy{}
	if err := pt.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(tp); err != nil || tp.GetCluster() != "outbound|5432||db.data.svc.cluster.local" {
		t.Errorf("passthrough proxy %v (%v)", tp, err)
	}

	// Without its Secret the HTTPS server is left out; the rest stays.
	cfg := w.Config
	cfg.Credentials = nil
	w2 := model.NewWorldWithConfig(w.Mesh, nonEntryServices(w), w.Workloads, cfg)
	res2 := generateChecked(t, w2, fixtureProxy(w2, model.ProxyRouter, "mesh-gateways", "ingress-0"))
	if got := names(res2[resourcev3.ListenerType]); !slices.Equal(got, []string{"0.0.0.0_15443", "0.0.0.0_8080"}) {
		t.Errorf("listeners without the Secret %v", got)
	}
}

func nonEntryServices(w *model.World) []*model.Service {
	var out []*model.Service
	for _, s := range w.Services {
		if s.ServiceEntry == "" {
			out = append(out, s)
		}
	}
	return out
}

// AuthorizationPolicies and RequestAuthentications selecting a gateway's
// workload reach its listeners: HTTP connection managers run them before
// CORS, faults and routes; TLS passthrough chains run the network RBAC
// before proxying.
func TestGatewayAuthorization(t *testing.T) {
	base := gatewayWorld()
	cfg := base.Config
	cfg.AuthorizationPolicies = []*model.AuthorizationPolicy{{
		Meta: model.Meta{Name: "ingress-deny", Namespace: "mesh-gateways"},
		Spec: &securityv1beta1.AuthorizationPolicy{
			Selector: &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"istio": "ingressgateway"}},
			Action:   securityv1beta1.AuthorizationPolicy_DENY,
			Rules: []*securityv1beta1.Rule{{From: []*securityv1beta1.Rule_From{{Source: &securityv1beta1.Source{
				IpBlocks: []string{"203.0.113.0/24"},
			}}}}},
		},
	}}
	w := model.NewWorldWithConfig(base.Mesh, base.Services, base.Workloads, cfg)
	res := mustGenerate(t, w, fixtureProxy(w, model.ProxyRouter, "mesh-gateways", "ingress-0"))
	var httpChains, tcpChains int
	for _, r := range res[resourcev3.ListenerType] {
		for _, fc := range r.(*listenerv3.Listener).GetFilterChains() {
			first := fc.GetFilters()[0]
			hcm := new(hcmv3.HttpConnectionManager)
			if first.GetTypedConfig().MessageIs(hcm) {
				if err := first.GetTypedConfig().UnmarshalTo(hcm); err != nil {
					t.Fatal(err)
				}
				if fs := hcm.GetHttpFilters(); len(fs) < 2 || fs[0].GetName() != "istio.authorization.deny" || !hcm.GetNormalizePath().GetValue() {
					t.Errorf("chain %q HTTP filters %v: want the DENY policy first", fc.GetName(), fs)
				}
				httpChains++
				continue
			}
			if !first.GetTypedConfig().MessageIs(&networkrbacv3.RBAC{}) || len(fc.GetFilters()) < 2 {
				t.Errorf("chain %q filters %v: want the network RBAC before the proxy", fc.GetName(), fc.GetFilters())
			}
			tcpChains++
		}
	}
	if httpChains == 0 || tcpChains == 0 {
		t.Fatalf("gateway has %d HTTP and %d TCP chains; the fixture has both", httpChains, tcpChains)
	}

	// Without policies the gateway's HCMs are unchanged: CORS first.
	res = mustGenerate(t, base, fixtureProxy(base, model.ProxyRouter, "mesh-gateways", "ingress-0"))
	for _, r := range res[resourcev3.ListenerType] {
		for _, fc := range r.(*listenerv3.Listener).GetFilterChains() {
			if fc.GetFilters()[0].GetTypedConfig().MessageIs(&networkrbacv3.RBAC{}) {
				t.Errorf("chain %q has RBAC without any policy", fc.GetName())
			}
		}
	}
}
