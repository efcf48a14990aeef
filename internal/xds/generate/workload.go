package generate

import (
	"slices"
	"strings"

	"github.com/meshplane/meshplane/internal/model"
)

// workloadPort is a port the proxy's own workload serves, as the Services
// selecting it declare: the endpoint (target) port and its protocol.
type workloadPort struct {
	Port     int32
	Protocol model.Protocol
	// MTLS is the port's PeerAuthentication mode (inboundModes).
	MTLS model.MTLSMode
}

// workloadPorts lists, sorted by port, the endpoint ports of every endpoint
// whose address is ip. When Services disagree on a port's protocol, the port
// is HTTP if they are all HTTP-ish (HTTP when one says HTTP/1, else HTTP2),
// and TCP otherwise.
//
// It scans every endpoint of the world: ~3000 comparisons for 1000 services,
// cheap next to the rest, and an index in the model (IP → endpoints) would
// make it constant.
func workloadPorts(world *model.World, ip string) []workloadPort {
	if ip == "" {
		return nil
	}
	var out []workloadPort
	for _, svc := range world.Services {
		for _, ep := range svc.Endpoints {
			if !sameIP(ep.Address, ip) {
				continue
			}
			for _, sp := range svc.Ports {
				p, ok := ep.Ports[sp.Name]
				if !ok || p <= 0 || p > 65535 {
					continue
				}
				out = append(out, workloadPort{Port: p, Protocol: sp.Protocol})
			}
		}
	}
	if len(out) < 2 {
		return out
	}
	slices.SortStableFunc(out, func(a, b workloadPort) int { return int(a.Port) - int(b.Port) })
	merged := out[:1]
	for _, wp := range out[1:] {
		last := &merged[len(merged)-1]
		if wp.Port != last.Port {
			merged = append(merged, wp)
			continue
		}
		last.Protocol = mergeProtocol(last.Protocol, wp.Protocol)
	}
	return merged
}

func mergeProtocol(a, b model.Protocol) model.Protocol {
	switch {
	case a == b:
		return a
	case a.IsHTTP() && b.IsHTTP():
		if a == model.ProtocolHTTP || b == model.ProtocolHTTP {
			return model.ProtocolHTTP
		}
		return model.ProtocolHTTP2
	default:
		return model.ProtocolTCP
	}
}

// sameIP reports whether addr is the canonical address ip. Kubernetes writes
// addresses canonically, so only IPv6 text needs a second look.
func sameIP(addr, ip string) bool {
	if addr == ip {
		return true
	}
	if !strings.Contains(addr, ":") {
		return false
	}
	return canonicalIP(addr) == ip
}
