package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
)

// CertificateRequestResource is cert-manager's CertificateRequest API, which
// meshd needs create, get, watch and delete on in its namespace.
var CertificateRequestResource = schema.GroupVersionResource{Group: "cert-manager.io", Version: "v1", Resource: "certificaterequests"}

// DefaultCertManagerTimeout bounds how long a CertManagerSigner waits for a
// request to be approved and signed.
const DefaultCertManagerTimeout = 30 * time.Second

// SPIFFEIDAnnotation is set on every CertificateRequest to the identity it is
// for, so that approvers and auditors see it without decoding the CSR.
const SPIFFEIDAnnotation = "meshplane.io/spiffe-id"

// ServingDNSNamesAnnotation is set on the CertificateRequest of meshd's own
// serving certificate (IssueServing) to the DNS names it asks for, comma
// separated.
const ServingDNSNamesAnnotation = "meshplane.io/serving-dns-names"

// ErrRootsUnknown: the issuer returned meshd's serving certificate without
// saying which roots it chains to (no status.ca, and a chain that does not end
// with a self-signed root), so meshd has no roots to publish. It comes wrapped
// with ErrUnavailable.
var ErrRootsUnknown = errors.New("the issuer's roots are unknown")

// IssuerRef names a cert-manager issuer, field for field as cert-manager's
// issuerRef (and the MeshControlPlane's spec.ca.certManager.issuerRef).
type IssuerRef struct {
	Name  string
	Kind  string // Issuer (in Namespace) or ClusterIssuer; empty: Issuer
	Group string // empty: cert-manager.io
}

// CertManagerOptions configure a CertManagerSigner.
type CertManagerOptions struct {
	// Namespace the CertificateRequests are created in (meshd's); an Issuer
	// must be in it. Required.
	Namespace string
	// IssuerRef is the issuer that signs. Name is required.
	IssuerRef IssuerRef
	// Timeout bounds each request, from creation to Ready; zero:
	// DefaultCertManagerTimeout. A shorter deadline of the caller's context
	// wins.
	Timeout time.Duration
	// Logger; the zero value discards.
	Logger logr.Logger
}

// CertManagerSigner issues workload certificates through cert-manager (CA type
// CertManager): each CSR becomes a CertificateRequest for the configured
// issuer; the signer waits until it is Ready, Denied or Failed, returns the
// issued chain and deletes the request.
//
// cert-manager signs what the CSR says, so the CSR must ask for exactly the
// caller's SPIFFE ID (a URI SAN) and nothing else; a CSR without SANs is
// refused too, unlike with a local Authority, which writes the identity
// itself. The issued certificate is checked again before it is returned.
// Approval is cert-manager's business (its default approver, or
// approver-policy): meshd never approves its own requests.
//
// IssueServing obtains meshd's own serving certificate from the same issuer,
// for DNS names, and with it the issuer's roots; an approver policy must allow
// that request too.
type CertManagerSigner struct {
	client    dynamic.ResourceInterface
	namespace string
	issuer    IssuerRef
	timeout   time.Duration
	log       logr.Logger
}

// NewCertManagerSigner returns a signer that creates CertificateRequests
// through client.
func NewCertManagerSigner(client dynamic.Interface, o CertManagerOptions) (*CertManagerSigner, error) {
	if client == nil {
		return nil, errors.New("cert-manager signer: a client is required")
	}
	if o.Namespace == "" {
		return nil, errors.New("cert-manager signer: a namespace is required")
	}
	if o.IssuerRef.Name == "" {
		return nil, errors.New("cert-manager signer: an issuer name is required")
	}
	if o.IssuerRef.Kind == "" {
		o.IssuerRef.Kind = "Issuer"
	}
	if o.IssuerRef.Group == "" {
		o.IssuerRef.Group = "cert-manager.io"
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultCertManagerTimeout
	}
	return &CertManagerSigner{
		client:    client.Resource(CertificateRequestResource).Namespace(o.Namespace),
		namespace: o.Namespace,
		issuer:    o.IssuerRef,
		timeout:   o.Timeout,
		log:       o.Logger,
	}, nil
}

// Sign has cert-manager sign csrPEM for id, valid for ttl (cert-manager's
// issuer may shorten it), and returns the PEM chain, leaf first, ending with
// the issuer's CA (status.ca) when it reports one. A CSR asking for anything
// but id fails with ErrInvalidRequest; a request that is denied, fails, is not
// Ready within the timeout, or cannot be created fails with ErrUnavailable.
func (s *CertManagerSigner) Sign(ctx context.Context, csrPEM []byte, id Identity, ttl time.Duration) ([]string, error) {
	if ttl <= 0 {
		return nil, invalidRequest("the requested validity %s is not positive", ttl)
	}
	csr, err := parseCSR(csrPEM)
	if err != nil {
		return nil, err
	}
	if err := checkIdentity(csr, id, false); err != nil {
		return nil, err
	}

	usages := []any{"digital signature", "server auth", "client auth"}
	if _, ok := csr.PublicKey.(*rsa.PublicKey); ok {
		usages = append(usages, "key encipherment")
	}
	log := s.log.WithValues("identity", id.String())
	done, err := s.submit(ctx, log, s.request("meshd-", csrPEM, usages, map[string]any{SPIFFEIDAnnotation: id.String()}, ttl))
	if err != nil {
		return nil, err
	}
	chain, err := issuedChain(done, csr.PublicKey, id)
	if err != nil {
		return nil, fmt.Errorf("%w: CertificateRequest %s/%s: %w", ErrUnavailable, s.namespace, done.GetName(), err)
	}
	log.V(1).Info("Issued certificate through cert-manager", "issuer", s.issuer.Name, "certificateRequest", s.namespace+"/"+done.GetName())
	return chain, nil
}

// IssueServing has the issuer sign meshd's own serving certificate: a new
// ECDSA P-256 key and a CSR for exactly dnsNames (no URI, an empty subject),
// usages server auth, valid for ttl (the issuer may shorten it). It returns
// the certificate, with the chain the issuer returned short of a self-signed
// root, and the roots (PEM) that clients verify it with and that the mesh
// publishes: the issuer's CA (status.ca) or, when the issuer reports none,
// the top of the chain if it is self-signed. When neither says what the
// roots are it fails with ErrRootsUnknown; the certificate must verify
// against the roots for server auth.
//
// meshd calls it for the names its clients verify it by. The certificate
// service never reaches it: it calls Sign, which signs nothing but a SPIFFE
// ID. Failures of the request itself are ErrUnavailable, as with Sign.
func (s *CertManagerSigner) IssueServing(ctx context.Context, dnsNames []string, ttl time.Duration) (*tls.Certificate, []byte, error) {
	if err := checkServingNames(dnsNames); err != nil {
		return nil, nil, err
	}
	if ttl <= 0 {
		return nil, nil, fmt.Errorf("serving certificate validity %s is not positive", ttl)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating the serving key: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: dnsNames}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("creating the serving CSR: %w", err)
	}
	csrPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})

	log := s.log.WithValues("dnsNames", dnsNames)
	done, err := s.submit(ctx, log, s.request("meshd-serving-", csrPEM, []any{"digital signature", "server auth"},
		map[string]any{ServingDNSNamesAnnotation: strings.Join(dnsNames, ",")}, ttl))
	if err != nil {
		return nil, nil, err
	}
	cert, roots, err := servingChain(done, key, dnsNames)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: CertificateRequest %s/%s for meshd's serving certificate: %w", ErrUnavailable, s.namespace, done.GetName(), err)
	}
	log.V(1).Info("Issued meshd's serving certificate through cert-manager", "issuer", s.issuer.Name,
		"certificateRequest", s.namespace+"/"+done.GetName(), "notAfter", cert.Leaf.NotAfter)
	return cert, roots, nil
}

func checkServingNames(dnsNames []string) error {
	if len(dnsNames) == 0 {
		return errors.New("a serving certificate needs at least one DNS name")
	}
	for _, n := range dnsNames {
		if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 {
			return fmt.Errorf("DNS name %q: %s", n, strings.Join(errs, "; "))
		}
	}
	return nil
}

// submit creates cr, waits until it is finished (see wait) and deletes it;
// the timeout bounds all of it.
func (s *CertManagerSigner) submit(ctx context.Context, log logr.Logger, cr *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	created, err := s.client.Create(ctx, cr, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("%w: creating a cert-manager CertificateRequest in %s: %w", ErrUnavailable, s.namespace, err)
	}
	log = log.WithValues("certificateRequest", s.namespace+"/"+created.GetName())
	log.V(1).Info("Created CertificateRequest")
	defer s.delete(ctx, log, created.GetName(), created.GetUID())
	return s.wait(ctx, created)
}

// request builds a CertificateRequest for a checked CSR.
func (s *CertManagerSigner) request(generateName string, csrPEM []byte, usages []any, annotations map[string]any, ttl time.Duration) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cert-manager.io/v1",
		"kind":       "CertificateRequest",
		"metadata": map[string]any{
			"generateName": generateName,
			"namespace":    s.namespace,
			"labels":       map[string]any{"app.kubernetes.io/managed-by": "meshd"},
			"annotations":  annotations,
		},
		"spec": map[string]any{
			// []byte fields travel as base64 in JSON.
			"request":  base64.StdEncoding.EncodeToString(csrPEM),
			"duration": ttl.String(),
			"isCA":     false,
			"usages":   usages,
			"issuerRef": map[string]any{
				"name":  s.issuer.Name,
				"kind":  s.issuer.Kind,
				"group": s.issuer.Group,
			},
		},
	}}
}

// wait watches the request until it is Ready, Denied or Failed, or ctx ends.
// A watch that closes early is resumed after reading the object again.
func (s *CertManagerSigner) wait(ctx context.Context, cr *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	name := cr.GetName()
	for {
		if finished, err := outcome(cr); finished || err != nil {
			return cr, err
		}
		w, err := s.client.Watch(ctx, metav1.ListOptions{
			FieldSelector:   fields.OneTermEqualSelector("metadata.name", name).String(),
			ResourceVersion: cr.GetResourceVersion(),
		})
		if err != nil {
			// Without a watch, fall back to reading the object, slowly.
			s.log.V(1).Info("Watching CertificateRequest failed; reading it instead", "certificateRequest", s.namespace+"/"+name, "error", err.Error())
			select {
			case <-ctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		} else {
			cr, err = s.watchUntilFinished(ctx, w, cr)
			w.Stop()
			if err != nil {
				return nil, err
			}
			if finished, _ := outcome(cr); finished {
				continue // reported by outcome at the top
			}
		}
		if ctx.Err() != nil {
			return nil, s.timedOut(ctx, name)
		}
		// The watch failed or closed (an expired resource version, an API
		// server restart): read the object and watch again from there.
		got, err := s.client.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			if ctx.Err() != nil {
				return nil, s.timedOut(ctx, name)
			}
			return nil, fmt.Errorf("%w: reading CertificateRequest %s/%s: %w", ErrUnavailable, s.namespace, name, err)
		}
		cr = got
	}
}

// watchUntilFinished returns the request once it is finished, or the last
// version seen when the watch closes.
func (s *CertManagerSigner) watchUntilFinished(ctx context.Context, w watch.Interface, last *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	for {
		select {
		case <-ctx.Done():
			return nil, s.timedOut(ctx, last.GetName())
		case ev, ok := <-w.ResultChan():
			if !ok {
				return last, nil
			}
			switch ev.Type {
			case watch.Deleted:
				return nil, fmt.Errorf("%w: CertificateRequest %s/%s was deleted before it was issued", ErrUnavailable, s.namespace, last.GetName())
			case watch.Added, watch.Modified:
				if u, ok := ev.Object.(*unstructured.Unstructured); ok {
					last = u
					if finished, _ := outcome(u); finished {
						return u, nil
					}
				}
			default: // watch.Error (e.g. resource version too old), bookmarks
				return last, nil
			}
		}
	}
}

func (s *CertManagerSigner) timedOut(ctx context.Context, name string) error {
	if errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
		return fmt.Errorf("%w: CertificateRequest %s/%s for issuer %s %q was not issued in time (is cert-manager running, and was the request approved?): %w",
			ErrUnavailable, s.namespace, name, s.issuer.Kind, s.issuer.Name, ctx.Err())
	}
	return fmt.Errorf("waiting for CertificateRequest %s/%s: %w", s.namespace, name, ctx.Err())
}

// delete removes the request whatever happened: it holds nothing worth
// keeping once the chain is returned, and an abandoned one should not be
// signed later. It runs even when the caller's context has ended.
func (s *CertManagerSigner) delete(ctx context.Context, log logr.Logger, name string, uid types.UID) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	// The UID precondition keeps a late delete from removing a request that
	// reused the name.
	err := s.client.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) {
		log.Error(err, "Deleting CertificateRequest")
	}
}

// outcome reads a request's conditions: finished once Ready, Denied,
// InvalidRequest or Failed; the error says why it will never be issued.
func outcome(cr *unstructured.Unstructured) (bool, error) {
	conds, _, _ := unstructured.NestedSlice(cr.Object, "status", "conditions")
	ref := cr.GetNamespace() + "/" + cr.GetName()
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if !ok {
			continue
		}
		typ, _ := m["type"].(string)
		status, _ := m["status"].(string)
		reason, _ := m["reason"].(string)
		message, _ := m["message"].(string)
		switch {
		case typ == "Denied" && status == "True":
			return true, fmt.Errorf("%w: cert-manager CertificateRequest %s was denied: %s: %s", ErrUnavailable, ref, reason, message)
		case typ == "InvalidRequest" && status == "True":
			return true, fmt.Errorf("%w: cert-manager found CertificateRequest %s invalid: %s: %s", ErrUnavailable, ref, reason, message)
		case typ == "Ready" && status == "False" && reason == "Failed":
			return true, fmt.Errorf("%w: cert-manager failed to issue CertificateRequest %s: %s", ErrUnavailable, ref, message)
		case typ == "Ready" && status == "True":
			return true, nil
		}
	}
	return false, nil
}

// issuedChain returns status.certificate followed by the certificates of
// status.ca it lacks, after checking that the leaf is for the CSR's key and
// has no identity but id: an issuer that adds names does not get them into
// the mesh.
func issuedChain(cr *unstructured.Unstructured, pub crypto.PublicKey, id Identity) ([]string, error) {
	certPEM, err := statusBytes(cr, "certificate")
	if err != nil {
		return nil, err
	}
	caPEM, err := statusBytes(cr, "ca")
	if err != nil {
		return nil, err
	}
	certs, err := pemCertificates(certPEM)
	if err != nil || len(certs) == 0 {
		return nil, fmt.Errorf("status.certificate holds no certificate: %w", err)
	}
	cas, err := pemCertificates(caPEM)
	if err != nil {
		return nil, fmt.Errorf("status.ca: %w", err)
	}
	leaf := certs[0]
	if k, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(pub) {
		return nil, errors.New("the issued certificate is not for the CSR's key")
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != id.String() || len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) > 0 {
		return nil, fmt.Errorf("the issuer returned a certificate for URIs %v, DNS names %v, IPs %v, emails %v; only %s is allowed",
			leaf.URIs, leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses, id)
	}
	if len(certs) > 1 {
		if err := leaf.CheckSignatureFrom(certs[1]); err != nil {
			return nil, fmt.Errorf("status.certificate is not a chain, leaf first: %w", err)
		}
	}
	chain := certs
	for _, c := range cas {
		present := false
		for _, have := range chain {
			present = present || have.Equal(c)
		}
		if !present {
			chain = append(chain, c)
		}
	}
	out := make([]string, len(chain))
	for i, c := range chain {
		out[i] = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
	}
	return out, nil
}

// servingChain checks meshd's serving certificate in a finished request: for
// key, for exactly dnsNames and no other identity, verifying for server auth
// against the issuer's roots, which it returns with the certificate.
func servingChain(cr *unstructured.Unstructured, key *ecdsa.PrivateKey, dnsNames []string) (*tls.Certificate, []byte, error) {
	certPEM, err := statusBytes(cr, "certificate")
	if err != nil {
		return nil, nil, err
	}
	caPEM, err := statusBytes(cr, "ca")
	if err != nil {
		return nil, nil, err
	}
	certs, err := pemCertificates(certPEM)
	if err != nil || len(certs) == 0 {
		return nil, nil, fmt.Errorf("status.certificate holds no certificate: %w", err)
	}
	roots, err := pemCertificates(caPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("status.ca: %w", err)
	}
	leaf, top := certs[0], certs[len(certs)-1]
	if k, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(key.Public()) {
		return nil, nil, errors.New("the issued certificate is not for the CSR's key")
	}
	if !sameNames(leaf.DNSNames, dnsNames) || len(leaf.URIs)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) > 0 {
		return nil, nil, fmt.Errorf("the issuer returned a certificate for DNS names %v, URIs %v, IPs %v, emails %v; only DNS names %v were asked for",
			leaf.DNSNames, leaf.URIs, leaf.IPAddresses, leaf.EmailAddresses, dnsNames)
	}
	if len(roots) == 0 {
		if !selfSigned(top) {
			return nil, nil, fmt.Errorf("%w: the issuer reported no CA (status.ca), and the chain it returned ends with %s, which is not self-signed; "+
				"use an issuer that reports its CA", ErrRootsUnknown, describe(top))
		}
		roots = []*x509.Certificate{top}
	}
	rootPool, intermediates := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range roots {
		rootPool.AddCert(r)
	}
	for _, c := range certs[1:] {
		intermediates.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: rootPool, Intermediates: intermediates, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return nil, nil, fmt.Errorf("the serving certificate does not verify for server auth against the issuer's CA: %w", err)
	}
	// Clients have the root: the handshake sends the chain below it.
	if len(certs) > 1 && selfSigned(top) {
		certs = certs[:len(certs)-1]
	}
	cert := &tls.Certificate{PrivateKey: key, Leaf: leaf}
	for _, c := range certs {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return cert, encodeCerts(roots), nil
}

func selfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

// sameNames: got holds each of want and nothing else, in any order.
func sameNames(got, want []string) bool {
	g, w := slices.Clone(got), slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	return slices.Equal(slices.Compact(g), slices.Compact(w))
}

func statusBytes(cr *unstructured.Unstructured, field string) ([]byte, error) {
	s, _, _ := unstructured.NestedString(cr.Object, "status", field)
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("status.%s is not base64: %w", field, err)
	}
	return b, nil
}

func pemCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := data; len(bytes.TrimSpace(rest)) > 0; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil || block.Type != "CERTIFICATE" {
			return nil, errors.New("not a PEM certificate")
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	return certs, nil
}
