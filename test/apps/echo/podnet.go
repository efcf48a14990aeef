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

// PodDialerFrom is PodDialer for a client pod: its connections leave from
// the loopback address of podIP, so servers see them coming from the pod
// (ListenPod reports the pod address), as on a pod network.
func PodDialerFrom(podIP string) grpc.DialOption {
	return grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(Loopback(podIP))}}
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

// Accept reports both ends of a connection by their pod addresses, so that
// an xDS server matches filter chains on the source pod (PERMISSIVE mTLS
// tells mesh clients by address) as it would on a pod network.
func (l *podListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &podConn{Conn: c, local: podAddr(c.LocalAddr()), remote: podAddr(c.RemoteAddr())}, nil
}

type podConn struct {
	net.Conn
	local, remote net.Addr
}

func (c *podConn) LocalAddr() net.Addr  { return c.local }
func (c *podConn) RemoteAddr() net.Addr { return c.remote }

// podAddr maps a loopback TCP address 127.0.0.N back onto the pod address
// 192.0.2.N; other addresses are returned as they are.
func podAddr(a net.Addr) net.Addr {
	mapped, err := net.ResolveTCPAddr("tcp", translate(a.String(), loopbackNet, podNet))
	if err != nil {
		return a
	}
	return mapped
}
