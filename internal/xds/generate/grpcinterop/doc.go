// Package grpcinterop holds only a test: it serves the proxyless gRPC
// configuration that package generate builds to real grpc-go xDS clients and
// xds.NewGRPCServer servers over loopback, through go-control-plane, and
// checks that they accept it (no NACK) and route by it. It lives apart from
// package generate so that generate's own tests do not link grpc-go's xDS
// stack.
package grpcinterop
