package generate

import (
	"fmt"
	"slices"

	networking "istio.io/api/networking/v1"

	"github.com/meshplane/meshplane/internal/model"
)

// Unsupported is a piece of configuration a proxy type cannot honour, and
// which the generators therefore leave out for it: reported, never
// silently dropped (meshctl render prints them; meshd reports them on the
// objects).
type Unsupported struct {
	Kind, Namespace, Name string
	// Field is the path of the ignored field, e.g. spec.http[0].mirror.
	Field   string
	Message string
}

// GRPCUnsupported lists what proxyless gRPC clients in namespace ns do not
// get of the VirtualServices and DestinationRules that apply to them, and
// what gRPC servers there do not get of the security policies
// (grpcSecurityUnsupported).
func GRPCUnsupported(world *model.World, ns string) []Unsupported {
	var out []Unsupported
	for _, vs := range world.VirtualServicesFor("mesh", ns) {
		add := func(field, msg string) {
			out = append(out, Unsupported{Kind: "VirtualService", Namespace: vs.Namespace, Name: vs.Name, Field: field, Message: msg})
		}
		for i, hr := range vs.Spec.GetHttp() {
			p := fmt.Sprintf("spec.http[%d]", i)
			switch {
			case hr.GetRedirect() != nil:
				add(p+".redirect", "redirects are not supported by proxyless gRPC; the rule is left out for gRPC clients")
			case hr.GetDirectResponse() != nil:
				add(p+".directResponse", "direct responses are not supported by proxyless gRPC; the rule is left out for gRPC clients")
			}
			if hr.GetRewrite() != nil {
				add(p+".rewrite", "rewrites are not supported by proxyless gRPC and are ignored for gRPC clients")
			}
			if hr.GetMirror() != nil || len(hr.GetMirrors()) > 0 {
				add(p+".mirror", "mirroring is not supported by proxyless gRPC and is ignored for gRPC clients")
			}
			if hr.GetCorsPolicy() != nil {
				add(p+".corsPolicy", "CORS is not supported by proxyless gRPC and is ignored for gRPC clients")
			}
			if hr.GetHeaders() != nil || slices.ContainsFunc(hr.GetRoute(), func(d *networking.HTTPRouteDestination) bool { return d.GetHeaders() != nil }) {
				add(p+".headers", "header operations are not supported by proxyless gRPC and are ignored for gRPC clients")
			}
			for j, m := range hr.GetMatch() {
				if m.GetIgnoreUriCase() {
					continue // grpc-go honours case_sensitive
				}
				if len(m.GetQueryParams()) > 0 {
					add(fmt.Sprintf("%s.match[%d].queryParams", p, j), "query parameters do not exist in gRPC; the match never applies for gRPC clients")
				}
			}
		}
		if len(vs.Spec.GetTcp()) > 0 {
			add("spec.tcp", "TCP routes do not apply to proxyless gRPC")
		}
		if len(vs.Spec.GetTls()) > 0 {
			add("spec.tls", "TLS routes do not apply to proxyless gRPC")
		}
	}
	for _, dr := range world.Config.DestinationRules {
		if !model.Exported(dr.Spec.GetExportTo(), dr.Namespace, ns) {
			continue
		}
		add := func(field, msg string) {
			out = append(out, Unsupported{Kind: "DestinationRule", Namespace: dr.Namespace, Name: dr.Name, Field: field, Message: msg})
		}
		check := func(p string, tp *networking.TrafficPolicy) {
			if tp == nil {
				return
			}
			if ch := tp.GetLoadBalancer().GetConsistentHash(); ch != nil {
				if ch.GetMaglev() != nil {
					add(p+".loadBalancer.consistentHash.maglev", "proxyless gRPC balances with a ring hash instead of Maglev")
				}
				if ch.GetHttpCookie() != nil || ch.GetUseSourceIp() || ch.GetHttpQueryParameterName() != "" {
					add(p+".loadBalancer.consistentHash", "proxyless gRPC hashes on headers only; this hash key is ignored")
				}
			}
			if tp.GetLoadBalancer().GetSimple() == networking.LoadBalancerSettings_RANDOM {
				add(p+".loadBalancer.simple", "proxyless gRPC has no RANDOM balancing; it stays round robin")
			}
			if od := tp.GetOutlierDetection(); od != nil && (od.GetConsecutive_5XxErrors() != nil || od.GetConsecutiveGatewayErrors() != nil || od.GetConsecutiveErrors() > 0) {
				add(p+".outlierDetection", "proxyless gRPC ejects by failure percentage and success rate, not by consecutive errors")
			}
			if tls := tp.GetTls(); tls != nil && tls.GetMode() != networking.ClientTLSSettings_DISABLE {
				add(p+".tls", "proxyless gRPC takes TLS from its bootstrap's certificate providers, not from DestinationRules")
			}
			if pool := tp.GetConnectionPool(); pool != nil && (pool.GetTcp().GetMaxConnections() > 0 || pool.GetHttp().GetHttp1MaxPendingRequests() > 0 ||
				pool.GetHttp().GetMaxRetries() > 0 || pool.GetHttp().GetMaxRequestsPerConnection() > 0) {
				add(p+".connectionPool", "proxyless gRPC honours http2MaxRequests only")
			}
			for i, pl := range tp.GetPortLevelSettings() {
				if tls := pl.GetTls(); tls != nil && tls.GetMode() != networking.ClientTLSSettings_DISABLE {
					add(fmt.Sprintf("%s.portLevelSettings[%d].tls", p, i), "proxyless gRPC takes TLS from its bootstrap's certificate providers, not from DestinationRules")
				}
			}
		}
		check("spec.trafficPolicy", dr.Spec.GetTrafficPolicy())
		for i, s := range dr.Spec.GetSubsets() {
			check(fmt.Sprintf("spec.subsets[%d].trafficPolicy", i), s.GetTrafficPolicy())
		}
	}
	return append(out, grpcSecurityUnsupported(world, ns)...)
}
