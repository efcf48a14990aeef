package validation

import (
	"fmt"
	"strings"

	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	k8svalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// unixAddressPrefix marks a bind address that is a Unix domain socket.
const unixAddressPrefix = "unix://"

func (v *validator) gateway(name string, spec *networkingv1alpha3.Gateway) {
	if name != "" && len(k8svalidation.IsDNS1123Label(name)) > 0 {
		v.invalid(CodeInvalidField, field.NewPath("metadata", "name"), name,
			"a Gateway name must be a DNS-1123 label (lowercase, no dots), because VirtualServices refer to it as namespace/name")
	}
	specPath := field.NewPath("spec")
	if len(spec.Servers) == 0 {
		v.required(specPath.Child("servers"), "a Gateway needs at least one server")
	}
	serverByPortName := map[string]int{}
	for i, server := range spec.Servers {
		path := specPath.Child("servers").Index(i)
		if server == nil {
			v.required(path, "a server must not be empty")
			continue
		}
		v.server(path, server)
		if server.Port != nil && server.Port.Name != "" {
			if first, ok := serverByPortName[server.Port.Name]; ok {
				v.invalid(CodeDuplicateEntry, path.Child("port", "name"), server.Port.Name, "port name %q is already used by servers[%d]; port names must be unique", server.Port.Name, first)
			} else {
				serverByPortName[server.Port.Name] = i
			}
		}
	}
	v.labels(specPath.Child("selector"), spec.Selector)
}

func (v *validator) server(path *field.Path, server *networkingv1alpha3.Server) {
	if len(server.Hosts) == 0 {
		v.required(path.Child("hosts"), `a server needs at least one host; use "*" for any`)
	}
	for i, host := range server.Hosts {
		if problem := gatewayHostProblem(host); problem != "" {
			v.invalid(CodeInvalidHost, path.Child("hosts").Index(i), host, "%s", problem)
		}
	}
	unixSocket := strings.HasPrefix(server.Bind, unixAddressPrefix)
	if server.Bind != "" && !unixSocket && !isIPAddress(server.Bind) {
		v.invalid(CodeInvalidField, path.Child("bind"), server.Bind, "bind must be an IP address or unix:// path")
	}
	if server.Port == nil {
		v.required(path.Child("port"), "a server needs a port with number, name and protocol")
	} else {
		portPath := path.Child("port")
		if !(unixSocket && server.Port.Number == 0) {
			v.port(portPath.Child("number"), server.Port.Number)
		}
		if server.Port.Name == "" {
			v.required(portPath.Child("name"), "a server port needs a name")
		}
		protocol := server.Port.Protocol
		switch {
		case !isKnownProtocol(protocol):
			v.invalid(CodeInvalidField, portPath.Child("protocol"), protocol, "unknown protocol %q; use HTTP, HTTPS, HTTP2, GRPC, TCP, TLS, MONGO, REDIS or MYSQL", protocol)
		case isTLSProtocol(protocol) && server.Tls == nil:
			v.required(path.Child("tls"), "a %s server needs tls settings", strings.ToUpper(protocol))
		case !isTLSProtocol(protocol) && server.Tls != nil && !(isHTTPProtocol(protocol) && onlyRedirectsToHTTPS(server.Tls)):
			v.forbidden(path.Child("tls"), "tls settings belong on HTTPS and TLS servers; a plain-text HTTP server may only set httpsRedirect")
		}
	}
	v.serverTLS(path.Child("tls"), server.Tls)
}

// onlyRedirectsToHTTPS reports whether TLS settings on a plain-text HTTP server just ask for a
// redirect to HTTPS, the one TLS setting such a server may have.
func onlyRedirectsToHTTPS(tls *networkingv1alpha3.ServerTLSSettings) bool {
	passThrough := tls.Mode == networkingv1alpha3.ServerTLSSettings_PASSTHROUGH || tls.Mode == networkingv1alpha3.ServerTLSSettings_AUTO_PASSTHROUGH
	return passThrough && tls.ServerCertificate == "" && tls.PrivateKey == "" && tls.CaCertificates == ""
}

func (v *validator) serverTLS(path *field.Path, tls *networkingv1alpha3.ServerTLSSettings) {
	if tls == nil {
		return
	}
	switch tls.Mode {
	case networkingv1alpha3.ServerTLSSettings_ISTIO_MUTUAL:
		for _, f := range []struct {
			name string
			set  bool
		}{
			{"serverCertificate", tls.ServerCertificate != ""},
			{"privateKey", tls.PrivateKey != ""},
			{"caCertificates", tls.CaCertificates != ""},
			{"credentialName", tls.CredentialName != ""},
			{"credentialNames", len(tls.CredentialNames) > 0},
			{"tlsCertificates", len(tls.TlsCertificates) > 0},
		} {
			if f.set {
				v.forbidden(path.Child(f.name), "ISTIO_MUTUAL uses the mesh's own certificates, so %s cannot be set", f.name)
			}
		}
	case networkingv1alpha3.ServerTLSSettings_SIMPLE, networkingv1alpha3.ServerTLSSettings_MUTUAL, networkingv1alpha3.ServerTLSSettings_OPTIONAL_MUTUAL:
		mode := tls.Mode.String()
		sources := 0
		for _, set := range []bool{tls.ServerCertificate != "" && tls.PrivateKey != "", tls.CredentialName != "", len(tls.CredentialNames) > 0, len(tls.TlsCertificates) > 0} {
			if set {
				sources++
			}
		}
		if sources > 1 {
			v.forbidden(path, "only one of credentialName, credentialNames, tlsCertificates or serverCertificate/privateKey may be set")
		}
		if tls.CredentialName != "" || len(tls.CredentialNames) > 0 {
			return // the Secret holds the certificate, key and (for MUTUAL) the CA
		}
		if len(tls.TlsCertificates) > 0 {
			for i, certificate := range tls.TlsCertificates {
				if certificate.GetServerCertificate() == "" || certificate.GetPrivateKey() == "" {
					v.required(path.Child("tlsCertificates").Index(i), "each of tlsCertificates needs serverCertificate and privateKey")
				}
			}
		} else {
			if tls.ServerCertificate == "" {
				v.required(path.Child("credentialName"), "%s TLS needs credentialName (a Kubernetes Secret with the certificate) or serverCertificate and privateKey", mode)
			} else if tls.PrivateKey == "" {
				v.required(path.Child("privateKey"), "%s TLS with serverCertificate needs privateKey", mode)
			}
		}
		if tls.Mode != networkingv1alpha3.ServerTLSSettings_SIMPLE && tls.CaCertificates == "" {
			v.required(path.Child("caCertificates"), "%s TLS without credentialName needs caCertificates to verify clients", mode)
		}
	}
}

// gatewayHostProblem checks a Gateway server host: "host" or "namespace/host", where namespace
// is "*", "." or a namespace name, and host is "*", a fully qualified (optionally "*."-prefixed)
// DNS name, or an IP address.
func gatewayHostProblem(entry string) string {
	host := entry
	if namespace, rest, ok := strings.Cut(entry, "/"); ok {
		host = rest
		if namespace == "" || host == "" {
			return fmt.Sprintf("host %q must be namespace/host with both parts set", entry)
		}
		if namespace != "*" && namespace != "." && !isDNSLabel(namespace) {
			return fmt.Sprintf("namespace %q in host %q must be \"*\", \".\" or a namespace name", namespace, entry)
		}
	}
	switch {
	case host == "*" || isIPAddress(host):
		return ""
	case !strings.Contains(host, "."):
		return fmt.Sprintf("host %q is a short name; Gateway hosts are fully qualified names (such as %s.example.com) or \"*\"", entry, host)
	case isPartialWildcard(host):
		return fmt.Sprintf("host %q has a partial wildcard; a wildcard must be a whole leading label, as in \"*.example.com\"", entry)
	default:
		return hostNameProblem(host)
	}
}
