package agent

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
)

// DefaultCAPort is meshd's port for xDS and certificate signing over TLS.
const DefaultCAPort = 15012

// CAClient asks meshd's certificate service (Istio's
// IstioCertificateService/CreateCertificate) to sign certificate requests,
// over TLS verified against the mesh root, authenticated with the pod's token.
type CAClient struct {
	addr    string
	token   TokenSource
	timeout time.Duration
	conn    *grpc.ClientConn
	client  securityv1alpha1.IstioCertificateServiceClient
}

// CAClientOptions configure a CAClient.
type CAClientOptions struct {
	// Addr is meshd's certificate service, host:port. Its serving
	// certificate must be valid for host.
	Addr string
	// RootCertFile holds the mesh root certificate(s); read at every TLS
	// handshake.
	RootCertFile string
	// Token is the pod's service-account token, read for every request.
	Token TokenSource
	// Timeout bounds one request; 0 means 30s.
	Timeout time.Duration
}

// NewCAClient returns a client of the CA at o.Addr. It does not connect
// until the first request.
func NewCAClient(o CAClientOptions) (*CAClient, error) {
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	conn, err := grpc.NewClient(o.Addr, grpc.WithTransportCredentials(newRootFileCredentials(o.RootCertFile)))
	if err != nil {
		return nil, fmt.Errorf("creating the CA client for %s: %w", o.Addr, err)
	}
	return &CAClient{
		addr:    o.Addr,
		token:   o.Token,
		timeout: o.Timeout,
		conn:    conn,
		client:  securityv1alpha1.NewIstioCertificateServiceClient(conn),
	}, nil
}

// Close closes the connection to the CA.
func (c *CAClient) Close() error { return c.conn.Close() }

// Sign sends csrPEM to the CA asking for a certificate valid for ttl and
// returns the PEM chain it answers, leaf first. A token the CA refuses gives
// an error wrapping ErrTokenRefused.
func (c *CAClient) Sign(ctx context.Context, csrPEM []byte, ttl time.Duration) ([]string, error) {
	// Read here rather than in per-RPC credentials, so that a missing token
	// file is reported as such and not as a refusal by the CA.
	token, err := c.token()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := c.client.CreateCertificate(ctx, &securityv1alpha1.IstioCertificateRequest{
		Csr:              string(csrPEM),
		ValidityDuration: int64(math.Ceil(ttl.Seconds())),
	}, grpc.PerRPCCredentials(bearerCredentials{token: func() (string, error) { return token, nil }}))
	if err != nil {
		return nil, c.explain(err)
	}
	if len(resp.GetCertChain()) == 0 {
		return nil, fmt.Errorf("the CA at %s answered with an empty certificate chain", c.addr)
	}
	return resp.GetCertChain(), nil
}

// explain turns a gRPC error into one that says what to look at.
func (c *CAClient) explain(err error) error {
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.Unauthenticated, codes.PermissionDenied:
		return fmt.Errorf("certificate request to %s: %w (is the token projected with audience \"istio-ca\" and not expired?): %s: %s",
			c.addr, ErrTokenRefused, st.Code(), st.Message())
	case codes.Unavailable, codes.DeadlineExceeded:
		return fmt.Errorf("certificate request to %s: CA not reachable: %w", c.addr, err)
	}
	return fmt.Errorf("certificate request to %s failed: %w", c.addr, err)
}

// Issuer makes a fresh key, has it certified by the CA and checks the
// result: one call, one new Bundle.
type Issuer struct {
	CA *CAClient
	// TTL is the validity asked for; the CA may give less.
	TTL time.Duration
	// RootCertFile is the mesh root, re-read at every issuance.
	RootCertFile string
	// TrustDomain and Namespace, when set, must be those of the issued
	// SPIFFE ID.
	TrustDomain string
	Namespace   string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Issue returns a new, checked Bundle.
func (i *Issuer) Issue(ctx context.Context) (*Bundle, error) {
	if i.CA == nil {
		return nil, errors.New("issuer has no CA client")
	}
	now := time.Now
	if i.Now != nil {
		now = i.Now
	}
	rootsPEM, roots, err := readRoots(i.RootCertFile)
	if err != nil {
		return nil, err
	}
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	csr, err := newCSR(key)
	if err != nil {
		return nil, err
	}
	chain, err := i.CA.Sign(ctx, csr, i.TTL)
	if err != nil {
		return nil, err
	}
	return newBundle(key, chain, rootsPEM, roots, identityWant{TrustDomain: i.TrustDomain, Namespace: i.Namespace}, now())
}
