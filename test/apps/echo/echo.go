// Package echo is the small proxyless gRPC application the xDS tests and the
// demo run: a server that answers with its own name, served through grpc-go's
// xDS server (its listener comes from meshd), and a client that dials
// xds:/// targets. It uses grpc's interop TestService, so no protos of our own.
package echo

import (
	"context"
	"encoding/json"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	testpb "google.golang.org/grpc/interop/grpc_testing"
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

// Server answers UnaryCall with its name as the server id.
type Server struct {
	testgrpc.UnimplementedTestServiceServer
	Name string
}

// UnaryCall tells the caller which backend answered.
func (s *Server) UnaryCall(context.Context, *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{ServerId: s.Name, Hostname: s.Name}, nil
}

// NewXDSServer is an xDS-enabled gRPC server for name; its listener
// configuration comes from the xDS server in bootstrap (nil: the process's
// GRPC_XDS_BOOTSTRAP). Serve it on a listener whose address meshd knows as an
// endpoint of a Service.
func NewXDSServer(name string, bootstrap []byte, opts ...grpc.ServerOption) (*xds.GRPCServer, error) {
	opts = append(opts, grpc.Creds(insecure.NewCredentials()))
	if bootstrap != nil {
		opts = append(opts, xds.BootstrapContentsForTesting(bootstrap))
	}
	srv, err := xds.NewGRPCServer(opts...)
	if err != nil {
		return nil, fmt.Errorf("creating the xDS gRPC server: %w", err)
	}
	testgrpc.RegisterTestServiceServer(srv, &Server{Name: name})
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

// Call makes one RPC and returns the name of the backend that answered.
func Call(ctx context.Context, conn *grpc.ClientConn) (string, error) {
	resp, err := testgrpc.NewTestServiceClient(conn).UnaryCall(ctx, &testpb.SimpleRequest{FillServerId: true})
	if err != nil {
		return "", err
	}
	return resp.GetServerId(), nil
}
