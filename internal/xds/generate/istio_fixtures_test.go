package generate

import (
	"slices"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1"

	"github.com/meshplane/meshplane/internal/model"
)

// istioWorld is fixtureWorld with web's endpoints labelled by version and
// traffic configuration: a DestinationRule for web (subsets v1 and v2, a
// connection pool and outlier detection; consistent hashing on a header for
// v2), one for greeter (least request), and VirtualServices: web in-mesh
// (header match to v2, then 90/10 v1/v2 with a timeout, retries and a
// delay fault), greeter (abort fault for a header, weighted otherwise), and
// one that only clients labelled app=canary-client see.
func istioWorld() *model.World {
	base := fixtureWorld(true)
	services := slices.Clone(base.Services)
	for i, svc := range services {
		if svc.Name != "web" {
			continue
		}
		web := *svc
		web.Endpoints = nil
		for j, ep := range svc.Endpoints {
			e := *ep
			v := "v1"
			if j%2 == 1 {
				v = "v2"
			}
			e.Labels = map[string]string{"app": "web", "version": v}
			web.Endpoints = append(web.Endpoints, &e)
		}
		services[i] = &web
	}
	return model.NewWorldWithConfig(base.Mesh, services, base.Workloads, istioConfig())
}

func istioConfig() model.Config {
	pct := func(v float64) *networking.Percent { return &networking.Percent{Value: v} }
	exact := func(s string) *networking.StringMatch {
		return &networking.StringMatch{MatchType: &networking.StringMatch_Exact{Exact: s}}
	}
	webDR := &model.DestinationRule{Meta: model.Meta{Name: "web", Namespace: "shop", CreationUnix: 1}, Spec: &networking.DestinationRule{
		Host: "web",
		TrafficPolicy: &networking.TrafficPolicy{
			ConnectionPool: &networking.ConnectionPoolSettings{
				Tcp:  &networking.ConnectionPoolSettings_TCPSettings{MaxConnections: 100, ConnectTimeout: durationpb.New(3e9)},
				Http: &networking.ConnectionPoolSettings_HTTPSettings{Http1MaxPendingRequests: 10, Http2MaxRequests: 50, MaxRequestsPerConnection: 5},
			},
			OutlierDetection: &networking.OutlierDetection{
				Consecutive_5XxErrors: wrapperspb.UInt32(3), Interval: durationpb.New(5e9),
				BaseEjectionTime: durationpb.New(30e9), MaxEjectionPercent: 50,
			},
		},
		Subsets: []*networking.Subset{
			{Name: "v1", Labels: map[string]string{"version": "v1"}},
			{Name: "v2", Labels: map[string]string{"version": "v2"}, TrafficPolicy: &networking.TrafficPolicy{
				LoadBalancer: &networking.LoadBalancerSettings{LbPolicy: &networking.LoadBalancerSettings_ConsistentHash{
					ConsistentHash: &networking.LoadBalancerSettings_ConsistentHashLB{
						HashKey: &networking.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName{HttpHeaderName: "x-user"},
					},
				}},
			}},
		},
	}}
	greeterDR := &model.DestinationRule{Meta: model.Meta{Name: "greeter", Namespace: "shop", CreationUnix: 2}, Spec: &networking.DestinationRule{
		Host: "greeter.shop.svc.cluster.local",
		TrafficPolicy: &networking.TrafficPolicy{LoadBalancer: &networking.LoadBalancerSettings{
			LbPolicy: &networking.LoadBalancerSettings_Simple{Simple: networking.LoadBalancerSettings_LEAST_REQUEST},
		}},
		Subsets: []*networking.Subset{{Name: "all", Labels: map[string]string{}}},
	}}
	webVS := &model.VirtualService{Meta: model.Meta{Name: "web", Namespace: "shop", CreationUnix: 3}, Spec: &networking.VirtualService{
		Hosts: []string{"web"},
		Http: []*networking.HTTPRoute{
			{
				Name:  "jason",
				Match: []*networking.HTTPMatchRequest{{Headers: map[string]*networking.StringMatch{"end-user": exact("jason")}}},
				Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "web", Subset: "v2"}}},
			},
			{
				Match: []*networking.HTTPMatchRequest{{Uri: &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: "/api"}}, Port: 80}},
				Route: []*networking.HTTPRouteDestination{
					{Destination: &networking.Destination{Host: "web", Subset: "v1"}, Weight: 90},
					{Destination: &networking.Destination{Host: "web", Subset: "v2"}, Weight: 10},
					{Destination: &networking.Destination{Host: "web", Subset: "v9"}, Weight: 0},
				},
				Timeout: durationpb.New(2e9),
				Retries: &networking.HTTPRetry{Attempts: 3, PerTryTimeout: durationpb.New(5e8)},
				Fault: &networking.HTTPFaultInjection{Delay: &networking.HTTPFaultInjection_Delay{
					HttpDelayType: &networking.HTTPFaultInjection_Delay_FixedDelay{FixedDelay: durationpb.New(7e9)},
					Percentage:    pct(10),
				}},
				Headers: &networking.Headers{Request: &networking.Headers_HeaderOperations{Set: map[string]string{"x-canary": "web"}}},
			},
			{Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "web", Subset: "v1"}}}},
		},
	}}
	greeterVS := &model.VirtualService{Meta: model.Meta{Name: "greeter", Namespace: "shop", CreationUnix: 4}, Spec: &networking.VirtualService{
		Hosts: []string{"greeter.shop.svc.cluster.local"},
		Http: []*networking.HTTPRoute{
			{
				Match: []*networking.HTTPMatchRequest{{Headers: map[string]*networking.StringMatch{"x-fail": exact("yes")}}},
				Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "greeter"}}},
				Fault: &networking.HTTPFaultInjection{Abort: &networking.HTTPFaultInjection_Abort{
					ErrorType:  &networking.HTTPFaultInjection_Abort_GrpcStatus{GrpcStatus: "UNAVAILABLE"},
					Percentage: pct(50),
				}},
			},
			{
				Route: []*networking.HTTPRouteDestination{
					{Destination: &networking.Destination{Host: "greeter", Subset: "all"}, Weight: 70},
					{Destination: &networking.Destination{Host: "greeter"}, Weight: 30},
				},
				Retries: &networking.HTTPRetry{Attempts: 2, RetryOn: "unavailable"},
				Timeout: durationpb.New(1e9),
			},
		},
	}}
	canaryVS := &model.VirtualService{Meta: model.Meta{Name: "db-canary", Namespace: "data", CreationUnix: 5}, Spec: &networking.VirtualService{
		Hosts: []string{"cache.data.svc.cluster.local"},
		Http: []*networking.HTTPRoute{{
			Match:          []*networking.HTTPMatchRequest{{SourceLabels: map[string]string{"app": "canary-client"}}},
			DirectResponse: &networking.HTTPDirectResponse{Status: 418},
		}},
	}}
	external := &model.ServiceEntry{Meta: model.Meta{Name: "example", Namespace: "shop", CreationUnix: 6}, Spec: &networking.ServiceEntry{
		Hosts:      []string{"api.example.com"},
		Ports:      []*networking.ServicePort{{Number: 443, Name: "tls", Protocol: "TLS"}, {Number: 80, Name: "http", Protocol: "HTTP"}},
		Location:   networking.ServiceEntry_MESH_EXTERNAL,
		Resolution: networking.ServiceEntry_DNS,
	}}
	legacy := &model.ServiceEntry{Meta: model.Meta{Name: "legacy", Namespace: "data", CreationUnix: 7}, Spec: &networking.ServiceEntry{
		Hosts:      []string{"legacy.internal"},
		Addresses:  []string{"240.0.0.1"},
		Ports:      []*networking.ServicePort{{Number: 8080, Name: "http-legacy", Protocol: "HTTP", TargetPort: 9080}},
		Location:   networking.ServiceEntry_MESH_INTERNAL,
		Resolution: networking.ServiceEntry_STATIC,
		Endpoints: []*networking.WorkloadEntry{
			{Address: "10.9.0.2", Labels: map[string]string{"version": "old"}},
			{Address: "10.9.0.1", Ports: map[string]uint32{"http-legacy": 9081}},
		},
	}}
	wiki := &model.ServiceEntry{Meta: model.Meta{Name: "wiki", Namespace: "shop", CreationUnix: 8}, Spec: &networking.ServiceEntry{
		Hosts:      []string{"*.wikipedia.org"},
		Ports:      []*networking.ServicePort{{Number: 443, Name: "tls", Protocol: "TLS"}},
		Resolution: networking.ServiceEntry_NONE,
	}}
	externalTLS := &model.DestinationRule{Meta: model.Meta{Name: "example-tls", Namespace: "shop", CreationUnix: 9}, Spec: &networking.DestinationRule{
		Host: "api.example.com",
		TrafficPolicy: &networking.TrafficPolicy{PortLevelSettings: []*networking.TrafficPolicy_PortTrafficPolicy{{
			Port: &networking.PortSelector{Number: 443},
			Tls:  &networking.ClientTLSSettings{Mode: networking.ClientTLSSettings_SIMPLE, CaCertificates: "/etc/ssl/certs/ca-certificates.crt"},
		}}},
	}}
	legacyMTLS := &model.DestinationRule{Meta: model.Meta{Name: "legacy-mtls", Namespace: "shop", CreationUnix: 10}, Spec: &networking.DestinationRule{
		Host: "legacy.internal",
		TrafficPolicy: &networking.TrafficPolicy{Tls: &networking.ClientTLSSettings{
			Mode: networking.ClientTLSSettings_MUTUAL, CredentialName: "legacy-client", SubjectAltNames: []string{"legacy.internal"},
		}},
	}}
	return model.Config{
		VirtualServices:  []*model.VirtualService{webVS, greeterVS, canaryVS},
		DestinationRules: []*model.DestinationRule{webDR, greeterDR, externalTLS, legacyMTLS},
		ServiceEntries:   []*model.ServiceEntry{external, legacy, wiki},
		Credentials: map[string]*model.Credential{"shop/legacy-client": {
			Meta: model.Meta{Name: "legacy-client", Namespace: "shop"},
			Cert: []byte("-----BEGIN CERTIFICATE-----\nclient\n-----END CERTIFICATE-----\n"),
			Key:  []byte("-----BEGIN PRIVATE KEY-----\nclient\n-----END PRIVATE KEY-----\n"),
			CA:   []byte("-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n"),
		}},
	}
}
