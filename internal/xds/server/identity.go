package server

import (
	"encoding/json"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshplane/meshplane/internal/model"
)

// Node metadata keys meshd reads to identify a proxy. Keys are matched
// case-insensitively, so internal/bootstrap's "proxy_type" is PROXY_TYPE.
//
// Identification, in order of precedence:
//
//   - type: PROXY_TYPE ("sidecar", "router", "grpc"; "gateway" is read as
//     router, "proxyless" as grpc); else GENERATOR "grpc" (Istio's proxyless
//     convention) makes a grpc proxy; else the prefix of an Istio-style node
//     id; else the proxy is treated as a sidecar and that is logged.
//   - namespace, pod, IP: NAMESPACE, POD_NAME, and the first of the
//     comma-separated INSTANCE_IPS; else taken from the node id, which may be
//     Istio-style, <type>~<ip>~<pod>.<namespace>~<namespace>.svc.<suffix>, or
//     meshplane's bootstrap style, <pod>.<namespace>.
//   - workload: world.Workload(namespace, pod) when both are known, else
//     world.WorkloadByIP(ip); resolved again on every build.
//
// A grpc-go client's bootstrap, for example:
//
//	"node": {"id": "client-7f9c.shop", "metadata": {
//	    "PROXY_TYPE": "grpc", "NAMESPACE": "shop", "POD_NAME": "client-7f9c",
//	    "INSTANCE_IPS": "10.0.3.7"}}
const (
	MetaProxyType   = "PROXY_TYPE"
	MetaGenerator   = "GENERATOR"
	MetaNamespace   = "NAMESPACE"
	MetaPodName     = "POD_NAME"
	MetaInstanceIPs = "INSTANCE_IPS"
)

// identify derives a proxy's identity from its xDS node. Workload is left
// nil (see resolve). known is false when the type had to be defaulted.
func identify(node *corev3.Node) (p model.Proxy, known bool) {
	p.ID = node.GetId()
	p.Metadata = flatten(node.GetMetadata())
	upper := make(map[string]string, len(p.Metadata))
	for k, v := range p.Metadata {
		upper[strings.ToUpper(k)] = v
	}

	var idType, idIP, idPod, idNS string
	if parts := strings.Split(p.ID, "~"); len(parts) == 4 {
		// Istio: type~ip~pod.namespace~namespace.svc.cluster.local
		idType, idIP = parts[0], parts[1]
		idPod, idNS = cutLast(parts[2])
		if idNS == "" {
			idNS, _, _ = strings.Cut(parts[3], ".")
		}
	} else if !strings.Contains(p.ID, "~") {
		// meshplane bootstrap: pod.namespace (namespaces have no dots).
		idPod, idNS = cutLast(p.ID)
	}

	switch {
	case upper[MetaProxyType] != "":
		p.Type, known = proxyType(upper[MetaProxyType])
	case strings.EqualFold(upper[MetaGenerator], "grpc"):
		p.Type, known = model.ProxyGRPC, true
	case idType != "":
		p.Type, known = proxyType(idType)
	}
	if !known {
		p.Type = model.ProxySidecar
	}

	p.Namespace = first(upper[MetaNamespace], idNS)
	p.Pod = first(upper[MetaPodName], idPod)
	ip, _, _ := strings.Cut(upper[MetaInstanceIPs], ",")
	p.IP = first(strings.TrimSpace(ip), idIP)
	return p, known
}

// resolve returns the proxy as generators see it in world: its identity
// plus the workload it runs for, when the world knows it.
func resolve(world *model.World, ident *model.Proxy) *model.Proxy {
	p := *ident
	if world == nil {
		return &p
	}
	var wl *model.Workload
	if p.Namespace != "" && p.Pod != "" {
		wl = world.Workload(p.Namespace, p.Pod)
	} else if p.IP != "" {
		wl = world.WorkloadByIP(p.IP)
	}
	if wl != nil {
		p.Workload = wl
		p.Namespace = first(p.Namespace, wl.Namespace)
		p.Pod = first(p.Pod, wl.Name)
		p.IP = first(p.IP, wl.IP)
	}
	return &p
}

func proxyType(s string) (model.ProxyType, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "sidecar":
		return model.ProxySidecar, true
	case "router", "gateway":
		return model.ProxyRouter, true
	case "grpc", "proxyless":
		return model.ProxyGRPC, true
	}
	return model.ProxySidecar, false
}

// cutLast splits "pod.name.namespace" at its last dot.
func cutLast(s string) (pod, ns string) {
	i := strings.LastIndexByte(s, '.')
	if i <= 0 || i == len(s)-1 {
		return "", ""
	}
	return s[:i], s[i+1:]
}

func first(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// flatten turns node metadata into strings: strings as they are, anything
// else as JSON.
func flatten(md *structpb.Struct) map[string]string {
	out := make(map[string]string, len(md.GetFields()))
	for k, v := range md.GetFields() {
		if sv, ok := v.GetKind().(*structpb.Value_StringValue); ok {
			out[k] = sv.StringValue
			continue
		}
		b, err := json.Marshal(v.AsInterface())
		if err != nil {
			continue
		}
		out[k] = string(b)
	}
	return out
}

// NodeNamespace is the namespace meshd takes a node to be in (from its
// metadata or its id), as it identifies proxies; "" when it cannot tell.
func NodeNamespace(node *corev3.Node) string {
	p, _ := identify(node)
	return p.Namespace
}
