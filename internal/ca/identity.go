package ca

import (
	"fmt"
	"net/url"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Identity is a workload's SPIFFE identity,
// spiffe://<TrustDomain>/ns/<Namespace>/sa/<ServiceAccount>, the only identity
// a workload certificate carries. Build one with NewIdentity or ParseIdentity so
// that it is valid.
type Identity struct {
	TrustDomain    string
	Namespace      string
	ServiceAccount string
}

// NewIdentity returns the identity of service account serviceAccount in
// namespace in trustDomain, after checking each part: the trust domain as the
// SPIFFE specification allows (lower-case letters, digits, '.', '-', '_'), the
// namespace as a DNS label and the service account as a DNS subdomain, as
// Kubernetes names them.
func NewIdentity(trustDomain, namespace, serviceAccount string) (Identity, error) {
	if err := ValidateTrustDomain(trustDomain); err != nil {
		return Identity{}, err
	}
	if errs := validation.IsDNS1123Label(namespace); len(errs) > 0 {
		return Identity{}, fmt.Errorf("namespace %q: %s", namespace, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Subdomain(serviceAccount); len(errs) > 0 {
		return Identity{}, fmt.Errorf("service account %q: %s", serviceAccount, strings.Join(errs, "; "))
	}
	return Identity{TrustDomain: trustDomain, Namespace: namespace, ServiceAccount: serviceAccount}, nil
}

// ParseIdentity parses spiffe://<trust domain>/ns/<namespace>/sa/<service account>.
// Anything else (another path, a port, user info, a query, a fragment,
// percent-encoding) is an error.
func ParseIdentity(uri string) (Identity, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return Identity{}, fmt.Errorf("parsing SPIFFE ID %q: %w", uri, err)
	}
	if u.Scheme != "spiffe" {
		return Identity{}, fmt.Errorf("SPIFFE ID %q: scheme must be spiffe", uri)
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if len(parts) != 4 || parts[0] != "ns" || parts[2] != "sa" {
		return Identity{}, fmt.Errorf("SPIFFE ID %q: path must be /ns/<namespace>/sa/<service account>", uri)
	}
	id, err := NewIdentity(u.Host, parts[1], parts[3])
	if err != nil {
		return Identity{}, fmt.Errorf("SPIFFE ID %q: %w", uri, err)
	}
	// Rebuilding and comparing refuses everything url.Parse tolerates and
	// the format does not: ports, user info, queries, fragments, escapes.
	if id.String() != uri {
		return Identity{}, fmt.Errorf("SPIFFE ID %q is not in canonical form %q", uri, id.String())
	}
	return id, nil
}

// ValidateTrustDomain checks a SPIFFE trust domain name.
func ValidateTrustDomain(td string) error {
	if td == "" {
		return fmt.Errorf("trust domain is empty")
	}
	if len(td) > 255 {
		return fmt.Errorf("trust domain %q is longer than 255 characters", td)
	}
	for _, c := range td {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '.' && c != '-' && c != '_' {
			return fmt.Errorf("trust domain %q: only lower-case letters, digits, '.', '-' and '_' are allowed", td)
		}
	}
	return nil
}

// String returns the SPIFFE ID as a URI.
func (id Identity) String() string {
	return "spiffe://" + id.TrustDomain + "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount
}

// URL returns the SPIFFE ID as the URL a certificate's URI SAN holds.
func (id Identity) URL() *url.URL {
	return &url.URL{Scheme: "spiffe", Host: id.TrustDomain, Path: "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount}
}
