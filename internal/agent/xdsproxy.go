package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sync/atomic"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
)

// DefaultXDSProxyListen is where the local xDS proxy listens: Istio's path,
// which proxyless gRPC bootstraps and Envoy's xds-grpc cluster point at.
const DefaultXDSProxyListen = "unix:///etc/istio/proxy/XDS"

// XDSProxy accepts ADS streams (state of the world and delta) from the
// workload without authentication and relays each, message by message, to
// meshd over TLS with the pod's token added. The application never holds the
// token, and only the agent's container mounts it.
//
// Each local stream gets its own stream to meshd. When either ends, the
// other is ended too, so the local client reconnects and starts over with
// the meshd it then reaches.
type XDSProxy struct {
	upstream string
	log      logr.Logger
	conn     *grpc.ClientConn
	ads      discoveryv3.AggregatedDiscoveryServiceClient
	streams  atomic.Int64
}

// XDSProxyOptions configure an XDSProxy.
type XDSProxyOptions struct {
	// Upstream is meshd's xDS address over TLS, host:port.
	Upstream string
	// RootCertFile holds the mesh root meshd's certificate is verified
	// against; read at every TLS handshake.
	RootCertFile string
	// Token is the pod's service-account token, read for every stream.
	Token  TokenSource
	Logger logr.Logger
}

// NewXDSProxy returns a proxy to o.Upstream. It connects when the first
// local stream arrives.
func NewXDSProxy(o XDSProxyOptions) (*XDSProxy, error) {
	conn, err := grpc.NewClient(o.Upstream,
		grpc.WithTransportCredentials(newRootFileCredentials(o.RootCertFile)),
		grpc.WithPerRPCCredentials(bearerCredentials{token: o.Token}),
		// A full configuration can exceed gRPC's 4 MiB default.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32)),
		// meshd allows pings every 10 s; these notice a meshd gone silently.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	)
	if err != nil {
		return nil, fmt.Errorf("xDS proxy: client for %s: %w", o.Upstream, err)
	}
	return &XDSProxy{
		upstream: o.Upstream,
		log:      o.Logger,
		conn:     conn,
		ads:      discoveryv3.NewAggregatedDiscoveryServiceClient(conn),
	}, nil
}

// Close closes the connection to meshd, ending every relayed stream.
func (p *XDSProxy) Close() error { return p.conn.Close() }

// Serve relays the streams accepted on lis until ctx ends, then ends them
// (the clients reconnect to the next agent), closes lis and returns nil.
func (p *XDSProxy) Serve(ctx context.Context, lis net.Listener) error {
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(math.MaxInt32))
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(srv, adsRelay{p})
	stop := context.AfterFunc(ctx, srv.Stop) // ADS streams never end by themselves
	defer stop()
	p.log.Info("Serving the xDS proxy", "address", lis.Addr().String(), "upstream", p.upstream)
	if err := srv.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serving the xDS proxy on %s: %w", lis.Addr(), err)
	}
	return nil
}

// adsRelay keeps the gRPC handlers off XDSProxy's exported API.
type adsRelay struct{ p *XDSProxy }

func (a adsRelay) StreamAggregatedResources(down grpc.BidiStreamingServer[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse]) error {
	return relay(a.p, "sotw", down, a.p.ads.StreamAggregatedResources)
}

func (a adsRelay) DeltaAggregatedResources(down grpc.BidiStreamingServer[discoveryv3.DeltaDiscoveryRequest, discoveryv3.DeltaDiscoveryResponse]) error {
	return relay(a.p, "delta", down, a.p.ads.DeltaAggregatedResources)
}

// relay copies down's requests to a new upstream stream and its responses
// back until either side ends. Only the handler's goroutine sends on down,
// and only one goroutine sends upstream, as gRPC requires.
func relay[Req, Resp any](
	p *XDSProxy,
	kind string,
	down grpc.BidiStreamingServer[Req, Resp],
	open func(context.Context, ...grpc.CallOption) (grpc.BidiStreamingClient[Req, Resp], error),
) error {
	log := p.log.WithValues("stream", p.streams.Add(1), "kind", kind)
	// Incoming metadata is not forwarded by gRPC, so the only credentials
	// meshd sees are the agent's, whatever the local client sent.
	ctx, cancel := context.WithCancel(down.Context())
	defer cancel()

	up, err := open(ctx)
	if err != nil {
		st := status.Convert(err)
		log.Info("Opening the xDS stream to meshd failed", "upstream", p.upstream, "error", st.Message())
		return status.Errorf(st.Code(), "xDS proxy: opening the stream to meshd at %s: %s", p.upstream, st.Message())
	}
	log.V(1).Info("Relaying an xDS stream", "upstream", p.upstream)

	responses := make(chan *Resp)
	upErr := make(chan error, 1)
	go func() {
		for {
			resp, err := up.Recv()
			if err != nil {
				upErr <- err
				return
			}
			select {
			case responses <- resp:
			case <-ctx.Done():
				return
			}
		}
	}()
	downErr := make(chan error, 1)
	go func() {
		for {
			req, err := down.Recv()
			if err != nil {
				downErr <- err
				return
			}
			// A failed Send means the upstream stream is over; Recv above
			// reports why.
			if up.Send(req) != nil {
				return
			}
		}
	}()

	for {
		select {
		case resp := <-responses:
			if err := down.Send(resp); err != nil {
				log.V(1).Info("The local xDS client went away", "error", err.Error())
				return nil
			}
		case err := <-downErr:
			if !errors.Is(err, io.EOF) && status.Code(err) != codes.Canceled {
				log.Info("The local xDS stream failed", "error", err.Error())
			} else {
				log.V(1).Info("The local xDS client closed its stream")
			}
			return nil // the deferred cancel ends the upstream stream
		case err := <-upErr:
			if errors.Is(err, io.EOF) {
				log.Info("The xDS stream was closed by meshd; ending the local one so that the client reconnects")
				return status.Error(codes.Unavailable, "xDS proxy: meshd closed the stream")
			}
			st := status.Convert(err)
			log.Info("The xDS stream to meshd failed; ending the local one so that the client reconnects",
				"code", st.Code().String(), "error", st.Message())
			return status.Errorf(st.Code(), "xDS proxy: stream to meshd at %s: %s", p.upstream, st.Message())
		}
	}
}
