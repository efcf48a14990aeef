package generate

import (
	"fmt"
	"net/netip"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	originaldstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Shared, immutable pieces. Generated resources point at these rather than
// copying them; nothing may modify a generated resource after it is returned.
var (
	// adsSource is "fetch over the ADS stream", the only source meshd uses.
	adsSource = &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
	}

	// routerFilter terminates every HTTP filter chain; grpc-go requires the
	// last HTTP filter to be terminal and knows only this one.
	routerFilter = &hcmv3.HttpFilter{
		Name:       wellknown.Router,
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustPack(&routerv3.Router{})},
	}
	httpFilters = []*hcmv3.HttpFilter{routerFilter}

	// Outbound HTTP chains run the filters VirtualServices configure per
	// route (faults, CORS) before the router; without per-route config they
	// do nothing. grpc-go knows the fault filter, not CORS.
	faultFilter = &hcmv3.HttpFilter{
		Name:       faultFilterName,
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustPack(&faultv3.HTTPFault{})},
	}
	corsFilter = &hcmv3.HttpFilter{
		Name:       corsFilterName,
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustPack(&corsfilterv3.Cors{})},
	}
	envoyOutboundFilters = []*hcmv3.HttpFilter{corsFilter, faultFilter, routerFilter}
	grpcClientFilters    = []*hcmv3.HttpFilter{faultFilter, routerFilter}

	// originalDst restores a redirected connection's destination, so the
	// inbound listener can match filter chains on the original port.
	originalDstFilter = &listenerv3.ListenerFilter{
		Name:       wellknown.OriginalDestination,
		ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustPack(&originaldstv3.OriginalDst{})},
	}

	// http2Options make a cluster speak HTTP/2 (h2c) to its endpoints.
	http2Options = map[string]*anypb.Any{
		httpProtocolOptionsKey: mustPack(&httpv3.HttpProtocolOptions{
			UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
				ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
					ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
						Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
					},
				},
			},
		}),
	}
	// downstreamProtocolOptions make a cluster use the protocol the client
	// used (HTTP/1.1 or HTTP/2).
	downstreamProtocolOptions = map[string]*anypb.Any{
		httpProtocolOptionsKey: mustPack(&httpv3.HttpProtocolOptions{
			UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_UseDownstreamProtocolConfig{
				UseDownstreamProtocolConfig: &httpv3.HttpProtocolOptions_UseDownstreamHttpConfig{
					HttpProtocolOptions:  &corev3.Http1ProtocolOptions{},
					Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
				},
			},
		}),
	}

	// connectTimeout is Istio's default connect timeout.
	connectTimeout = durationpb.New(10e9)
	// noTimeout disables Envoy's 15 s route timeout, which would cut
	// long-lived gRPC streams.
	noTimeout = durationpb.New(0)

	// prefixSlash matches every path.
	prefixSlash = &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}

	trueValue  = wrapperspb.Bool(true)
	falseValue = wrapperspb.Bool(false)
)

const httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// deterministic marshalling: the same resource always has the same bytes, so
// content hashes are stable.
var marshal = proto.MarshalOptions{Deterministic: true}

// pack puts m into an Any, deterministically.
func pack(m proto.Message) (*anypb.Any, error) {
	a := new(anypb.Any)
	if err := anypb.MarshalFrom(a, m, marshal); err != nil {
		return nil, fmt.Errorf("pack %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return a, nil
}

// mustPack is pack for the constant messages above.
func mustPack(m proto.Message) *anypb.Any {
	a, err := pack(m)
	if err != nil {
		panic(err)
	}
	return a
}

// socketAddress is a TCP address.
func socketAddress(host string, port int32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)},
	}}}
}

// hcmFilter wraps an HttpConnectionManager into a network filter.
func hcmFilter(hcm *hcmv3.HttpConnectionManager) (*listenerv3.Filter, error) {
	a, err := pack(hcm)
	if err != nil {
		return nil, err
	}
	return &listenerv3.Filter{
		Name:       wellknown.HTTPConnectionManager,
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: a},
	}, nil
}

// rdsHCM is an HttpConnectionManager that fetches route configuration name
// over ADS and runs filters.
func rdsHCM(statPrefix, routeName string, filters []*hcmv3.HttpFilter) *hcmv3.HttpConnectionManager {
	return &hcmv3.HttpConnectionManager{
		StatPrefix: statPrefix,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsSource,
			RouteConfigName: routeName,
		}},
		HttpFilters: filters,
	}
}

// inlineHCM is an HttpConnectionManager with its routes inline.
func inlineHCM(statPrefix string, rc *routev3.RouteConfiguration) *hcmv3.HttpConnectionManager {
	return &hcmv3.HttpConnectionManager{
		StatPrefix:     statPrefix,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: rc},
		HttpFilters:    httpFilters,
	}
}

// tcpProxyFilter forwards every connection to cluster.
func tcpProxyFilter(cluster string) (*listenerv3.Filter, error) {
	a, err := pack(&tcpproxyv3.TcpProxy{
		StatPrefix:       cluster,
		ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster},
	})
	if err != nil {
		return nil, err
	}
	return &listenerv3.Filter{
		Name:       wellknown.TCPProxy,
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: a},
	}, nil
}

// tcpChain is a filter chain proxying every connection to cluster.
func tcpChain(name, cluster string, match *listenerv3.FilterChainMatch) (*listenerv3.FilterChain, error) {
	f, err := tcpProxyFilter(cluster)
	if err != nil {
		return nil, err
	}
	return &listenerv3.FilterChain{Name: name, FilterChainMatch: match, Filters: []*listenerv3.Filter{f}}, nil
}

// routeTo is a catch-all route to cluster, without Envoy's default timeout.
func routeTo(cluster string) *routev3.Route {
	return &routev3.Route{
		Name:  "default",
		Match: prefixSlash,
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
			Timeout:          noTimeout,
		}},
	}
}

// hostCIDR is the single-address range of ip (/32 or /128), or nil when ip is
// not an IP address.
func hostCIDR(ip string) *corev3.CidrRange {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return nil
	}
	a = a.Unmap().WithZone("")
	return &corev3.CidrRange{AddressPrefix: a.String(), PrefixLen: wrapperspb.UInt32(uint32(a.BitLen()))}
}
