package echo

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"google.golang.org/grpc"
)

// The API server refuses loopback addresses in EndpointSlices (they "may not be
// in the loopback range"), and tests may only use loopback. So tests give their
// workloads pod IPs from TEST-NET-1 (192.0.2.0/24), which is what meshd sees in
// EndpointSlices and node metadata, and this file maps each one onto the
// matching loopback address (192.0.2.N ↔ 127.0.0.N), the way a pod network
// makes a pod IP reachable. meshd itself is unaware of it.

var (
	podNet      = netip.MustParsePrefix("192.0.2.0/24")
	loopbackNet = netip.MustParsePrefix("127.0.0.0/24")
)

// PodIP is the n-th test pod IP (1 ≤ n ≤ 254).
func PodIP(n int) string { return netip.AddrFrom4([4]byte{192, 0, 2, byte(n)}).String() }

// Loopback maps a test pod address ("192.0.2.N" or "192.0.2.N:port") onto
// 127.0.0.N; other addresses are returned as they are.
func Loopback(addr string) string {
	return translate(addr, podNet, loopbackNet)
}

func translate(addr string, from, to netip.Prefix) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		host, port = addr, ""
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !from.Contains(ip) {
		return addr
	}
	b := ip.As4()
	t := to.Addr().As4()
	mapped := netip.AddrFrom4([4]byte{t[0], t[1], t[2], b[3]}).String()
	if port == "" {
		return mapped
	}
	return net.JoinHostPort(mapped, port)
}

// PodDialer is a grpc dial option that reaches test pod IPs on loopback.
func PodDialer() grpc.DialOption {
	return grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", Loopback(addr))
	})
}

// ListenPod listens on the loopback address of a test pod IP and port, and
// reports the pod address as its own, so that an xDS server asks meshd for the
// listener of its pod address, as it would in a cluster.
func ListenPod(podIP string, port int) (net.Listener, error) {
	podAddr := net.JoinHostPort(podIP, fmt.Sprint(port))
	lis, err := net.Listen("tcp", Loopback(podAddr))
	if err != nil {
		return nil, err
	}
	addr, err := net.ResolveTCPAddr("tcp", podAddr)
	if err != nil {
		lis.Close()
		return nil, err
	}
	return &podListener{Listener: lis, addr: addr}, nil
}

type podListener struct {
	net.Listener
	addr net.Addr
}

func (l *podListener) Addr() net.Addr { return l.addr }
