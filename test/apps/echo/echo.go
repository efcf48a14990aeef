// Package echo is the small proxyless gRPC application the xDS tests and the
// demo run: a server that answers with its own name, served through grpc-go's
// xDS server (its listener comes from meshd), and a client that dials
// xds:/// targets. It uses grpc's interop TestService, so no protos of our own.
package echo

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds"
)

// ServerListenerTemplate is the server_listener_resource_name_template meshd
// generates inbound listeners for.
const ServerListenerTemplate = "xds.meshplane.io/grpc/lds/inbound/%s"

// Bootstrap is grpc-go's xDS bootstrap for a proxyless workload of meshd.
func Bootstrap(xdsAddr, nodeID string, metadata map[string]string) ([]byte, error) {
	md := map[string]any{"PROXY_TYPE": "grpc"}
	for k, v := range metadata {
		md[k] = v
	}
	return json.Marshal(map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri":      xdsAddr,
			"channel_creds":   []any{map[string]any{"type": "insecure"}},
			"server_features": []any{"xds_v3"},
		}},
		"node":                                   map[string]any{"id": nodeID, "metadata": md},
		"server_listener_resource_name_template": ServerListenerTemplate,
	})
}

// Server answers UnaryCall with its name as the server id. The zero values of
// FailFirstAttempt and Delay answer at once; tests of retries and timeouts set
// them to misbehave on purpose.
type Server struct {
	testgrpc.UnimplementedTestServiceServer
	Name string
	// FailFirstAttempt fails the first attempt of every RPC with UNAVAILABLE.
	// A retry is told apart by the grpc-previous-rpc-attempts metadata gRPC
	// clients send on every attempt after the first.
	FailFirstAttempt bool
	// Delay is how long every call waits before answering; a caller that gives
	// up earlier ends the wait.
	Delay time.Duration

	attempts atomic.Int64
}

// PreviousAttemptsKey is the metadata key gRPC clients put on retries.
const PreviousAttemptsKey = "grpc-previous-rpc-attempts"

// UnaryCall tells the caller which backend answered.
func (s *Server) UnaryCall(ctx context.Context, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	s.attempts.Add(1)
	if s.Delay > 0 {
		timer := time.NewTimer(s.Delay)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	if s.FailFirstAttempt {
		md, _ := metadata.FromIncomingContext(ctx)
		if len(md.Get(PreviousAttemptsKey)) == 0 {
			return nil, status.Errorf(codes.Unavailable, "%s fails the first attempt of every call", s.Name)
		}
	}
	return &testpb.SimpleResponse{ServerId: s.Name, Hostname: s.Name, Username: PeerIdentity(ctx)}, nil
}

// PeerIdentity is the SPIFFE ID (URI SAN) of the caller's TLS client
// certificate, or "" when the call came in plaintext or without one.
func PeerIdentity(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ""
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return ""
	}
	for _, u := range info.State.PeerCertificates[0].URIs {
		if u.Scheme == "spiffe" {
			return u.String()
		}
	}
	return ""
}

// Attempts is how many calls (first attempts and retries) reached the server.
func (s *Server) Attempts() int64 { return s.attempts.Load() }

// NewXDSServer is an xDS-enabled gRPC server for name; its listener
// configuration comes from the xDS server in bootstrap (nil: the process's
// GRPC_XDS_BOOTSTRAP). Serve it on a listener whose address meshd knows as an
// endpoint of a Service.
func NewXDSServer(name string, bootstrap []byte, opts ...grpc.ServerOption) (*xds.GRPCServer, error) {
	return NewXDSServerFor(&Server{Name: name}, bootstrap, opts...)
}

// NewXDSServerFor is NewXDSServer serving impl, for a backend that misbehaves
// on purpose.
func NewXDSServerFor(impl *Server, bootstrap []byte, opts ...grpc.ServerOption) (*xds.GRPCServer, error) {
	opts = append(opts, grpc.Creds(insecure.NewCredentials()))
	return newXDSServer(impl, bootstrap, opts...)
}

// NewMeshXDSServerFor is NewXDSServerFor with grpc-go's xDS credentials: the
// listener meshd sends decides mTLS (certificates from the bootstrap's
// certificate providers) or plaintext (the fallback).
func NewMeshXDSServerFor(impl *Server, bootstrap []byte, opts ...grpc.ServerOption) (*xds.GRPCServer, error) {
	creds, err := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		return nil, fmt.Errorf("xDS server credentials: %w", err)
	}
	return newXDSServer(impl, bootstrap, append(opts, grpc.Creds(creds))...)
}

func newXDSServer(impl *Server, bootstrap []byte, opts ...grpc.ServerOption) (*xds.GRPCServer, error) {
	if bootstrap != nil {
		opts = append(opts, xds.BootstrapContentsForTesting(bootstrap))
	}
	srv, err := xds.NewGRPCServer(opts...)
	if err != nil {
		return nil, fmt.Errorf("creating the xDS gRPC server: %w", err)
	}
	testgrpc.RegisterTestServiceServer(srv, impl)
	return srv, nil
}

// Dial connects to an xds:/// target with the bootstrap (nil: the process's
// GRPC_XDS_BOOTSTRAP); test pod IPs are reached on loopback (see PodDialer).
func Dial(target string, bootstrap []byte) (*grpc.ClientConn, error) {
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()), PodDialer()}
	if bootstrap != nil {
		resolver, err := xds.NewXDSResolverWithConfigForTesting(bootstrap)
		if err != nil {
			return nil, fmt.Errorf("building the xDS resolver: %w", err)
		}
		opts = append(opts, grpc.WithResolvers(resolver))
	}
	return grpc.NewClient(target, opts...)
}

// DialMesh is Dial for a mesh client pod: grpc-go's xDS credentials (the
// cluster meshd sends decides mTLS or plaintext), connections from podIP.
func DialMesh(target string, bootstrap []byte, podIP string) (*grpc.ClientConn, error) {
	creds, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		return nil, fmt.Errorf("xDS client credentials: %w", err)
	}
	resolver, err := xds.NewXDSResolverWithConfigForTesting(bootstrap)
	if err != nil {
		return nil, fmt.Errorf("building the xDS resolver: %w", err)
	}
	return grpc.NewClient(target, grpc.WithTransportCredentials(creds), PodDialerFrom(podIP), grpc.WithResolvers(resolver))
}

// CallIdentity makes one RPC and returns the backend that answered and the
// identity it saw the call from ("" for plaintext).
func CallIdentity(ctx context.Context, conn *grpc.ClientConn, opts ...grpc.CallOption) (backend, peerIdentity string, err error) {
	resp, err := testgrpc.NewTestServiceClient(conn).UnaryCall(ctx, &testpb.SimpleRequest{FillServerId: true, FillUsername: true}, opts...)
	if err != nil {
		return "", "", err
	}
	return resp.GetServerId(), resp.GetUsername(), nil
}

// Call makes one RPC and returns the name of the backend that answered.
func Call(ctx context.Context, conn *grpc.ClientConn) (string, error) {
	resp, err := testgrpc.NewTestServiceClient(conn).UnaryCall(ctx, &testpb.SimpleRequest{FillServerId: true})
	if err != nil {
		return "", err
	}
	return resp.GetServerId(), nil
}
