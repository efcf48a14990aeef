// Package bootstrap builds the Envoy bootstrap of every Envoy in the mesh,
// sidecars and gateways alike: the node identity, the ADS connection to meshd,
// the admin interface on loopback, and two static listeners, one for health
// checks and one for Prometheus. Everything else comes from meshd over ADS.
//
// The gateway chart and the sidecar injector both take their bootstrap from
// here, so there is one definition of how an Envoy finds meshd, and every
// bootstrap it returns has passed go-control-plane's generated validation.
//
// Node id: Envoy does not expand environment variables in its bootstrap, and a
// ConfigMap shared by the replicas of a Deployment cannot know a pod's name. So
// Options.NodeID may be left empty, and then the pod must start Envoy with
// --service-node <pod>.<namespace> (Envoy refuses ADS without a node id and
// cluster). When the id is known where the bootstrap is made, as in the sidecar
// injector, which sees the pod, pass it in Options.NodeID.
package bootstrap

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"sigs.k8s.io/yaml"
)

// ProxyType is the kind of Envoy a bootstrap is for. It is sent to meshd in
// the node metadata under MetadataProxyType, so meshd picks the generators.
type ProxyType string

const (
	// Sidecar is an Envoy injected next to a workload.
	Sidecar ProxyType = "sidecar"
	// Router is a standalone Envoy: an ingress or egress gateway.
	Router ProxyType = "router"
)

// Fixed addresses of every mesh Envoy. The ports are Istio's, so tooling and
// probes written for Istio's proxies work unchanged.
const (
	// AdminAddress and AdminPort: the admin interface, loopback only,
	// because it can change and stop the proxy.
	AdminAddress = "127.0.0.1"
	AdminPort    = 15000
	// StatusPort serves GET /healthz/ready for kubelet and load balancers.
	StatusPort = 15021
	// StatusPath is the readiness path on StatusPort.
	StatusPath = "/healthz/ready"
	// PrometheusPort serves GET /stats/prometheus.
	PrometheusPort = 15090
	// PrometheusPath is the metrics path on PrometheusPort.
	PrometheusPath = "/stats/prometheus"
	// DefaultXDSPort is meshd's plaintext xDS port.
	DefaultXDSPort = 15010

	// XDSClusterName is the static cluster that reaches meshd.
	XDSClusterName = "xds-grpc"
	// AdminClusterName is the static cluster that reaches the admin interface.
	AdminClusterName = "envoy-admin"
	// SDSClusterName is the static cluster that reaches mesh-agent's SDS
	// server (the workload certificate and the mesh root); the generators'
	// TLS contexts name it (generate.SDSClusterName).
	SDSClusterName = "sds-grpc"
	// DefaultSDSSocket is where mesh-agent serves SDS in the pod (Istio's path).
	DefaultSDSSocket = "/var/run/secrets/workload-spiffe-uds/socket"

	// MetadataProxyType is the node metadata key holding the ProxyType.
	MetadataProxyType = "proxy_type"
)

// Options describe one Envoy's bootstrap.
type Options struct {
	// ProxyType is Sidecar or Router. Required.
	ProxyType ProxyType
	// NodeID is node.id, by convention <pod>.<namespace>. Optional: when
	// empty, Envoy must be started with --service-node.
	NodeID string
	// Cluster is node.cluster: the gateway's name, or the workload's
	// <app>.<namespace> for a sidecar. Optional: when empty, Envoy must be
	// started with --service-cluster.
	Cluster string
	// Metadata is node.metadata, e.g. revision, namespace, gateway_kind.
	// MetadataProxyType is set from ProxyType and may not be given here.
	Metadata map[string]string
	// XDSHost is meshd's address, e.g. meshd-default.meshplane-system.svc.
	// It is resolved with DNS (STRICT_DNS), so an IP works too. Required.
	XDSHost string
	// XDSPort is meshd's xDS port; 0 means DefaultXDSPort.
	XDSPort int
	// SDSSocket is the Unix socket of mesh-agent's SDS server; empty means
	// DefaultSDSSocket.
	SDSSocket string
}

// Envoy returns the bootstrap described by opts, validated with
// go-control-plane's ValidateAll, including the typed configs inside it.
func Envoy(opts Options) (*bootstrapv3.Bootstrap, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	port := opts.XDSPort
	if port == 0 {
		port = DefaultXDSPort
	}
	metadata, err := nodeMetadata(opts)
	if err != nil {
		return nil, err
	}

	status, err := httpListener("status", StatusPort, route(StatusPath, "/ready"))
	if err != nil {
		return nil, err
	}
	prometheus, err := httpListener("prometheus", PrometheusPort, route(PrometheusPath, PrometheusPath))
	if err != nil {
		return nil, err
	}
	xds, err := xdsCluster(opts.XDSHost, uint32(port))
	if err != nil {
		return nil, err
	}
	sdsSocket := opts.SDSSocket
	if sdsSocket == "" {
		sdsSocket = DefaultSDSSocket
	}
	sds, err := sdsCluster(sdsSocket)
	if err != nil {
		return nil, err
	}

	ads := &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
	}
	b := &bootstrapv3.Bootstrap{
		Node: &corev3.Node{
			Id:       opts.NodeID,
			Cluster:  opts.Cluster,
			Metadata: metadata,
		},
		Admin: &bootstrapv3.Admin{Address: socketAddress(AdminAddress, AdminPort)},
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			AdsConfig: &corev3.ApiConfigSource{
				ApiType:                   corev3.ApiConfigSource_GRPC,
				TransportApiVersion:       corev3.ApiVersion_V3,
				SetNodeOnFirstMessageOnly: true,
				GrpcServices: []*corev3.GrpcService{{
					TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
						EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: XDSClusterName},
					},
				}},
			},
			LdsConfig: ads,
			CdsConfig: proto.Clone(ads).(*corev3.ConfigSource),
		},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{
			Listeners: []*listenerv3.Listener{status, prometheus},
			Clusters: []*clusterv3.Cluster{
				xds,
				sds,
				staticCluster(AdminClusterName, AdminAddress, AdminPort),
			},
		},
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("bootstrap: invalid: %w", err)
	}
	return b, nil
}

// EnvoyYAML returns Envoy(opts) as YAML. The bytes are deterministic (keys
// sorted) and use the proto field names (snake_case), which Envoy's proto3
// JSON/YAML parser accepts and its documentation uses.
func EnvoyYAML(opts Options) ([]byte, error) {
	b, err := Envoy(opts)
	if err != nil {
		return nil, err
	}
	return ToYAML(b)
}

// ToYAML renders a bootstrap as deterministic YAML. protojson's own output is
// deliberately unstable in whitespace; re-encoding through sigs.k8s.io/yaml
// sorts the keys and fixes the layout.
func ToYAML(b *bootstrapv3.Bootstrap) ([]byte, error) {
	js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: marshal: %w", err)
	}
	out, err := yaml.JSONToYAML(js)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: to YAML: %w", err)
	}
	return out, nil
}

func (o Options) check() error {
	var errs []error
	switch o.ProxyType {
	case Sidecar, Router:
	case "":
		errs = append(errs, errors.New("proxy type is required (sidecar or router)"))
	default:
		errs = append(errs, fmt.Errorf("unknown proxy type %q (want sidecar or router)", o.ProxyType))
	}
	host := o.XDSHost
	switch {
	case strings.TrimSpace(host) == "":
		errs = append(errs, errors.New("xDS host is required"))
	case strings.ContainsAny(host, " \t\r\n/:") && net.ParseIP(host) == nil:
		errs = append(errs, fmt.Errorf("xDS host %q is not a host name or IP address (give the port separately)", host))
	}
	if o.XDSPort < 0 || o.XDSPort > 65535 {
		errs = append(errs, fmt.Errorf("xDS port %d out of range 1-65535", o.XDSPort))
	}
	if _, ok := o.Metadata[MetadataProxyType]; ok {
		errs = append(errs, fmt.Errorf("metadata key %q is reserved: it is set from the proxy type", MetadataProxyType))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	return nil
}

func nodeMetadata(o Options) (*structpb.Struct, error) {
	m := make(map[string]any, len(o.Metadata)+1)
	for k, v := range o.Metadata {
		m[k] = v
	}
	m[MetadataProxyType] = string(o.ProxyType)
	s, err := structpb.NewStruct(m)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: node metadata: %w", err)
	}
	return s, nil
}

// route sends GET path to the admin interface's adminPath; every other
// request gets a 404, so nothing else of the admin interface is reachable.
func route(path, adminPath string) []*routev3.Route {
	action := &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: AdminClusterName}}
	if adminPath != path {
		action.PrefixRewrite = adminPath
	}
	return []*routev3.Route{
		{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: path}},
			Action: &routev3.Route_Route{Route: action},
		},
		{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 404}},
		},
	}
}

// httpListener is a plain HTTP listener on all addresses with the given routes.
//
// The status listener answers /healthz/ready with Envoy's own /ready, which
// turns 200 once Envoy has received its first configuration (or given up
// waiting for it), so kubelet and load balancers see the proxy ready only
// when it can serve.
func httpListener(name string, port uint32, routes []*routev3.Route) (*listenerv3.Listener, error) {
	router, err := typed(&routerv3.Router{})
	if err != nil {
		return nil, err
	}
	hcm, err := typed(&hcmv3.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: name,
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    name,
				Domains: []string{"*"},
				Routes:  routes,
			}},
		}},
		HttpFilters: []*hcmv3.HttpFilter{{
			Name:       "envoy.filters.http.router",
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router},
		}},
	})
	if err != nil {
		return nil, err
	}
	return &listenerv3.Listener{
		Name:    name,
		Address: socketAddress("0.0.0.0", port),
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{
				Name:       "envoy.filters.network.http_connection_manager",
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm},
			}},
		}},
	}, nil
}

// xdsCluster reaches meshd: ADS is gRPC, hence HTTP/2; keepalives notice a
// dead connection to a meshd that went away without closing it.
func xdsCluster(host string, port uint32) (*clusterv3.Cluster, error) {
	h2, err := http2Options()
	if err != nil {
		return nil, err
	}
	c := staticCluster(XDSClusterName, host, port)
	c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS}
	c.UpstreamConnectionOptions = &clusterv3.UpstreamConnectionOptions{TcpKeepalive: &corev3.TcpKeepalive{}}
	c.TypedExtensionProtocolOptions = map[string]*anypb.Any{
		"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": h2,
	}
	return c, nil
}

// sdsCluster reaches mesh-agent's SDS server (gRPC) on its Unix socket.
func sdsCluster(socket string) (*clusterv3.Cluster, error) {
	h2, err := http2Options()
	if err != nil {
		return nil, err
	}
	c := staticCluster(SDSClusterName, "", 0)
	c.LoadAssignment.Endpoints[0].LbEndpoints[0].HostIdentifier = &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
		Address: &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: socket}}},
	}}
	c.TypedExtensionProtocolOptions = map[string]*anypb.Any{
		"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": h2,
	}
	return c, nil
}

func http2Options() (*anypb.Any, error) {
	return typed(&httpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
					Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
				},
			},
		},
	})
}

func staticCluster(name, host string, port uint32) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(time.Second),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{{
					HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
						Address: socketAddress(host, port),
					}},
				}},
			}},
		},
	}
}

func socketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// validator is what every generated Envoy message implements.
type validator interface {
	proto.Message
	ValidateAll() error
}

// typed validates m and packs it into an Any. The bootstrap's ValidateAll does
// not look inside Any fields, so typed configs are validated here, before packing.
func typed(m validator) (*anypb.Any, error) {
	if err := m.ValidateAll(); err != nil {
		return nil, fmt.Errorf("bootstrap: invalid %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	a, err := anypb.New(m)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: pack %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return a, nil
}
