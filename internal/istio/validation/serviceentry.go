package validation

import (
	"strings"

	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func (v *validator) serviceEntry(spec *networkingv1alpha3.ServiceEntry) {
	specPath := field.NewPath("spec")
	resolution := spec.Resolution

	if len(spec.Hosts) == 0 {
		v.required(specPath.Child("hosts"), "a ServiceEntry needs at least one host")
	}
	for i, host := range spec.Hosts {
		path := specPath.Child("hosts").Index(i)
		if host == "*" {
			v.invalid(CodeInvalidHost, path, host, `a ServiceEntry host cannot be "*"`)
		} else {
			v.host(path, host)
		}
	}

	cidr := false
	for i, address := range spec.Addresses {
		if !isIPOrCIDR(address) {
			v.invalid(CodeInvalidField, specPath.Child("addresses").Index(i), address, "%q is not an IP address or CIDR prefix", address)
		}
		cidr = cidr || strings.Contains(address, "/")
	}
	if cidr && resolution != networkingv1alpha3.ServiceEntry_NONE && resolution != networkingv1alpha3.ServiceEntry_STATIC {
		v.forbidden(specPath.Child("resolution"), "CIDR addresses are only allowed with resolution NONE or STATIC")
	}

	if len(spec.Ports) == 0 {
		v.warn(CodeIneffectiveConfig, specPath.Child("ports"), "",
			"a ServiceEntry without ports gets no listeners or clusters, so it has no effect on traffic to its hosts")
	}
	portNames := map[string]int{}
	portNumbers := map[uint32]int{}
	for i, port := range spec.Ports {
		path := specPath.Child("ports").Index(i)
		if port == nil {
			v.required(path, "a port must not be empty")
			continue
		}
		v.port(path.Child("number"), port.Number)
		if port.TargetPort != 0 {
			v.port(path.Child("targetPort"), port.TargetPort)
		}
		switch {
		case port.Name == "":
			v.required(path.Child("name"), "every ServiceEntry port needs a name")
		case !isDNSLabel(port.Name):
			v.invalid(CodeInvalidField, path.Child("name"), port.Name, "port name %q is not a DNS label", port.Name)
		}
		if first, ok := portNames[port.Name]; ok && port.Name != "" {
			v.invalid(CodeDuplicateEntry, path.Child("name"), port.Name, "port name %q is already used by ports[%d]", port.Name, first)
		} else {
			portNames[port.Name] = i
		}
		if first, ok := portNumbers[port.Number]; ok {
			v.invalid(CodeDuplicateEntry, path.Child("number"), port.Number, "port %d is already declared by ports[%d]", port.Number, first)
		} else {
			portNumbers[port.Number] = i
		}
		if port.Protocol != "" && !isKnownProtocol(port.Protocol) {
			v.invalid(CodeInvalidField, path.Child("protocol"), port.Protocol, "unknown protocol %q; use HTTP, HTTPS, HTTP2, GRPC, TCP, TLS, MONGO, REDIS or MYSQL", port.Protocol)
		}
		// With several hosts, only HTTP (Host header) and TLS (SNI) can tell them apart on one
		// port; resolution NONE ignores the hosts.
		if len(spec.Hosts) > 1 && resolution != networkingv1alpha3.ServiceEntry_NONE && !isHTTPProtocol(port.Protocol) && !isTLSProtocol(port.Protocol) {
			v.invalid(CodeInvalidField, path.Child("protocol"), port.Protocol,
				"with several hosts, a port must be HTTP or TLS so that requests can be told apart by host (or use resolution NONE)")
		}
	}

	if spec.WorkloadSelector != nil {
		v.labels(specPath.Child("workloadSelector", "labels"), spec.WorkloadSelector.Labels)
		if len(spec.Endpoints) > 0 {
			v.forbidden(specPath.Child("workloadSelector"), "workloadSelector and endpoints cannot be used together")
		}
	}

	switch resolution {
	case networkingv1alpha3.ServiceEntry_NONE:
		if len(spec.Endpoints) > 0 {
			v.forbidden(specPath.Child("endpoints"), "resolution NONE forwards to the address the client connected to, so endpoints cannot be set; use STATIC or DNS")
		}
	case networkingv1alpha3.ServiceEntry_STATIC:
		if len(spec.Endpoints) == 0 && spec.WorkloadSelector == nil {
			v.warn(CodeIneffectiveConfig, specPath.Child("endpoints"), "",
				"resolution STATIC without endpoints or workloadSelector leaves nothing to send traffic to")
		}
		for i, endpoint := range spec.Endpoints {
			if endpoint != nil && !isIPAddress(endpoint.Address) && !strings.HasPrefix(endpoint.Address, unixAddressPrefix) {
				v.invalid(CodeInvalidField, specPath.Child("endpoints").Index(i).Child("address"), endpoint.Address,
					"with resolution STATIC, endpoint addresses are IP addresses or unix:// paths, not %q", endpoint.Address)
			}
		}
	case networkingv1alpha3.ServiceEntry_DNS, networkingv1alpha3.ServiceEntry_DNS_ROUND_ROBIN:
		if len(spec.Endpoints) == 0 {
			for i, host := range spec.Hosts {
				if strings.HasPrefix(host, "*") {
					v.invalid(CodeInvalidHost, specPath.Child("hosts").Index(i), host,
						"with resolution %s and no endpoints each host is resolved by DNS, so it cannot be a wildcard", resolution)
				}
			}
		}
		if resolution == networkingv1alpha3.ServiceEntry_DNS_ROUND_ROBIN && len(spec.Endpoints) > 1 {
			v.invalid(CodeInvalidField, specPath.Child("endpoints"), len(spec.Endpoints), "resolution DNS_ROUND_ROBIN allows at most one endpoint")
		}
		for i, endpoint := range spec.Endpoints {
			if endpoint != nil && !isIPAddress(endpoint.Address) && hostNameProblem(endpoint.Address) != "" {
				v.invalid(CodeInvalidField, specPath.Child("endpoints").Index(i).Child("address"), endpoint.Address,
					"endpoint address %q is not a DNS name or IP address", endpoint.Address)
			}
		}
	}

	for i, endpoint := range spec.Endpoints {
		path := specPath.Child("endpoints").Index(i)
		if endpoint == nil {
			v.required(path, "an endpoint must not be empty")
			continue
		}
		if endpoint.Address == "" {
			v.required(path.Child("address"), "an endpoint needs an address")
		}
		for _, name := range sortedKeys(endpoint.Ports) {
			if _, declared := portNames[name]; !declared {
				v.invalid(CodeInvalidField, path.Child("ports").Key(name), name, "port name %q is not one of the ServiceEntry's ports", name)
			}
			v.port(path.Child("ports").Key(name), endpoint.Ports[name])
		}
		v.labels(path.Child("labels"), endpoint.Labels)
	}
	v.exportTo(specPath.Child("exportTo"), spec.ExportTo, true)
}
