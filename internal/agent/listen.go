package agent

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

const unixScheme = "unix://"

// ParseLocalAddress reads an address the agent serves on inside the pod:
// "unix:///absolute/path" or a loopback "host:port" (127.0.0.1, [::1],
// localhost). Anything reachable from outside the pod is refused: the xDS
// proxy adds the pod's token to whatever it is sent.
func ParseLocalAddress(addr string) (network, address string, err error) {
	if path, ok := strings.CutPrefix(addr, unixScheme); ok {
		if !filepath.IsAbs(path) {
			return "", "", fmt.Errorf("%q: the socket path must be absolute (unix:///path)", addr)
		}
		return "unix", filepath.Clean(path), nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", "", fmt.Errorf("%q: want unix:///path or 127.0.0.1:port: %w", addr, err)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n > 65535 {
		return "", "", fmt.Errorf("%q: port must be a number from 0 to 65535", addr)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return "", "", fmt.Errorf("%q: only loopback addresses (127.0.0.1, [::1], localhost) or unix:///path are allowed, so that nothing outside the pod can use it", addr)
	}
	return "tcp", addr, nil
}

// ListenLocal listens on an address accepted by ParseLocalAddress. A Unix
// socket is made reachable by every user in the pod (mode 0666), since the
// application's container may run under any uid.
func ListenLocal(addr string) (net.Listener, error) {
	network, address, err := ParseLocalAddress(addr)
	if err != nil {
		return nil, err
	}
	if network == "unix" {
		return ListenUnix(address, 0o666)
	}
	lis, err := net.Listen(network, address)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", address, err)
	}
	return lis, nil
}

// ListenUnix listens on a Unix socket at path with the given mode, creating
// its directory and replacing a socket left by an agent that did not stop
// cleanly. Closing the listener removes the socket.
func ListenUnix(path string, mode os.FileMode) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("creating the directory of socket %s: %w", path, err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket; refusing to replace it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing stale socket %s: %w", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("checking socket path %s: %w", path, err)
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	if err := os.Chmod(path, mode); err != nil {
		_ = lis.Close()
		return nil, fmt.Errorf("setting the mode of socket %s: %w", path, err)
	}
	return lis, nil
}

// grpcTarget is the gRPC target that reaches lis.
func grpcTarget(lis net.Listener) string {
	if lis.Addr().Network() == "unix" {
		return unixScheme + lis.Addr().String()
	}
	return lis.Addr().String()
}
