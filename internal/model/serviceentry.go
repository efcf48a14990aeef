package model

import (
	"net/netip"
	"slices"
	"strings"
	"sync"

	networking "istio.io/api/networking/v1"
)

// serviceEntryServices caches a ServiceEntry's Services when they depend on
// the entry alone (no workloadSelector): the same pointers in every World,
// as discovery keeps an unchanged Service's.
type serviceEntryServices struct {
	once     sync.Once
	services []*Service
}

// Services returns the Services a ServiceEntry declares, one per host, with
// its ports and endpoints: the listed endpoints, or with a workloadSelector
// the workloads of its namespace whose labels match. A host a Kubernetes
// Service already has is left to the Kubernetes Service (known). The result
// must not be modified.
func (se *ServiceEntry) Services(workloads []*Workload) []*Service {
	if se.Spec.GetWorkloadSelector() != nil {
		return se.build(workloads)
	}
	se.derived.once.Do(func() { se.derived.services = se.build(nil) })
	return se.derived.services
}

func (se *ServiceEntry) build(workloads []*Workload) []*Service {
	spec := se.Spec
	resolution := Resolution(strings.TrimPrefix(spec.GetResolution().String(), "ServiceEntry_"))
	if resolution == "DYNAMIC_DNS" {
		resolution = ResolutionDNS
	}
	var vip string
	for _, a := range spec.GetAddresses() {
		if ip, err := netip.ParseAddr(a); err == nil {
			vip = ip.String()
			break
		}
	}
	var ports []ServicePort
	targets := map[string]int32{}
	for _, p := range spec.GetPorts() {
		name := p.GetName()
		if name == "" {
			name = strings.ToLower(p.GetProtocol()) + "-" + itoaPort(p.GetNumber())
		}
		ports = append(ports, ServicePort{Name: name, Port: int32(p.GetNumber()), Protocol: ProtocolOf("", p.GetProtocol())})
		targets[name] = int32(p.GetNumber())
		if p.GetTargetPort() != 0 {
			targets[name] = int32(p.GetTargetPort())
		}
	}
	slices.SortFunc(ports, func(a, b ServicePort) int { return int(a.Port) - int(b.Port) })

	endpoint := func(addr string, named map[string]uint32, labels map[string]string, sa, pod string) *Endpoint {
		ep := &Endpoint{Address: addr, Ports: map[string]int32{}, Ready: true, Serving: true,
			Labels: labels, ServiceAccount: sa, Pod: pod}
		for name, target := range targets {
			ep.Ports[name] = target
			if n, ok := named[name]; ok && n != 0 {
				ep.Ports[name] = int32(n)
			}
		}
		return ep
	}
	var endpoints []*Endpoint
	if sel := spec.GetWorkloadSelector(); sel != nil {
		for _, wl := range workloads {
			if wl.Namespace == se.Namespace && wl.IP != "" && LabelsMatch(sel.GetLabels(), wl.Labels) {
				endpoints = append(endpoints, endpoint(wl.IP, nil, wl.Labels, wl.ServiceAccount, wl.Name))
			}
		}
	} else {
		for _, we := range spec.GetEndpoints() {
			endpoints = append(endpoints, endpoint(we.GetAddress(), we.GetPorts(), we.GetLabels(), we.GetServiceAccount(), ""))
		}
	}
	slices.SortFunc(endpoints, func(a, b *Endpoint) int {
		if c := strings.Compare(a.Address, b.Address); c != 0 {
			return c
		}
		return strings.Compare(a.Pod, b.Pod)
	})

	var out []*Service
	for _, h := range spec.GetHosts() {
		svc := &Service{
			Name: h, Namespace: se.Namespace, Hostname: h, ClusterIP: vip,
			Ports: ports, Endpoints: endpoints,
			Resolution: resolution, ServiceEntry: se.Key(), ExportTo: spec.GetExportTo(),
			External: spec.GetLocation() == networking.ServiceEntry_MESH_EXTERNAL,
		}
		if resolution == ResolutionDNS || resolution == ResolutionDNSRoundRobin {
			if len(endpoints) == 0 && !strings.HasPrefix(h, "*") {
				svc.Endpoints = []*Endpoint{endpoint(h, nil, nil, "", "")}
			}
		}
		out = append(out, svc)
	}
	return out
}

// LabelsMatch reports whether have carries every label of want (a
// selector's labels).
func LabelsMatch(want, have map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func itoaPort(n uint32) string {
	const digits = "0123456789"
	if n == 0 {
		return "0"
	}
	var b [10]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = digits[n%10]
		n /= 10
	}
	return string(b[i:])
}
