package controlplane

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/ca"
	"github.com/meshplane/meshplane/internal/certservice"
	"github.com/meshplane/meshplane/internal/meshd"
	"github.com/meshplane/meshplane/internal/rootcert"
)

// caSettings are what the CA is built from. They are read from the first mesh
// config only: the certificate service's trust domain and signer, and the
// Secret watched, are fixed for the life of the process.
type caSettings struct {
	trustDomain string
	caType      string
	secretName  string // SelfSigned, Provided
	issuer      ca.IssuerRef
}

func (s caSettings) String() string {
	if s.caType == meshd.CACertManager {
		return fmt.Sprintf("{trustDomain %s, type %s, issuer %s %s/%s}", s.trustDomain, s.caType, s.issuer.Kind, s.issuer.Group, s.issuer.Name)
	}
	return fmt.Sprintf("{trustDomain %s, type %s, secret %s}", s.trustDomain, s.caType, s.secretName)
}

func caSettingsOf(cfg *meshd.MeshConfig) caSettings {
	s := caSettings{trustDomain: cfg.TrustDomain, caType: cfg.CA.Type}
	switch cfg.CA.Type {
	case meshd.CAProvided:
		if cfg.CA.Provided != nil {
			s.secretName = cfg.CA.Provided.SecretName
		}
	case meshd.CACertManager:
		if cm := cfg.CA.CertManager; cm != nil {
			s.issuer = ca.IssuerRef{Name: cm.IssuerRef.Name, Kind: cm.IssuerRef.Kind, Group: cm.IssuerRef.Group}
		}
	default: // SelfSigned, the default
		s.secretName = v1alpha1.SelfSignedCASecretName
	}
	return s
}

// caSource keeps the CA current until ctx ends and says whether meshd can
// issue and serve with it: secretSource (SelfSigned, Provided) or
// issuerSource (CertManager).
type caSource interface {
	run(ctx context.Context)
	ready() (ok bool, why string)
}

// buildCA builds the CA c.ca selects: its source, the certificate service's
// signer and the secure port's TLS. The source publishes the roots.
func (c *ControlPlane) buildCA(log logr.Logger, roots *rootcert.Publisher) (caSource, certservice.Signer, tlsSource, error) {
	if c.ca.caType == meshd.CACertManager {
		dyn, err := dynamic.NewForConfig(c.opts.RestConfig)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("client for cert-manager: %w", err)
		}
		signer, err := ca.NewCertManagerSigner(dyn, ca.CertManagerOptions{
			Namespace: c.opts.Namespace,
			IssuerRef: c.ca.issuer,
			Logger:    log.WithName("certmanager"),
		})
		if err != nil {
			return nil, nil, nil, err
		}
		src := newIssuerSource(signer, c.ca.issuer, c.opts.ServingDNSNames, log, roots.SetRoots)
		return src, signer, src, nil
	}
	src := newSecretSource(c.kube, types.NamespacedName{Namespace: c.opts.Namespace, Name: c.ca.secretName}, c.holder, log,
		func() { roots.SetRoots(c.holder.Authority().RootsPEM()) })
	serving := &servingTLS{holder: c.holder, opts: certservice.ServingOptions{DNSNames: c.opts.ServingDNSNames, Logger: log}}
	return src, c.holder, serving, nil
}

// secretSource keeps a Holder on the content of one CA Secret: every valid
// change replaces the CA (an intermediate rotation), an invalid one is logged
// and the CA loaded before keeps signing.
type secretSource struct {
	client   kubernetes.Interface
	key      types.NamespacedName
	holder   *ca.Holder
	log      logr.Logger
	onChange func() // after the holder took another CA

	mu sync.Mutex
	// problem says why the holder has no CA; empty once it has one.
	problem string
}

func newSecretSource(client kubernetes.Interface, key types.NamespacedName, holder *ca.Holder, log logr.Logger, onChange func()) *secretSource {
	return &secretSource{
		client:   client,
		key:      key,
		holder:   holder,
		log:      log.WithValues("secret", key.String()),
		onChange: onChange,
		problem:  fmt.Sprintf("the CA Secret %s has not been read yet", key),
	}
}

// ready reports whether the holder has a CA, and why not otherwise.
func (s *secretSource) ready() (bool, string) {
	if s.holder.Authority() != nil {
		return true, ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return false, s.problem
}

func (s *secretSource) setProblem(p string) {
	s.mu.Lock()
	s.problem = p
	s.mu.Unlock()
}

// run watches the Secret, and only it (a field selector on its name), until
// ctx ends.
func (s *secretSource) run(ctx context.Context) {
	factory := informers.NewSharedInformerFactoryWithOptions(s.client, 0,
		informers.WithNamespace(s.key.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", s.key.Name).String()
		}))
	informer := factory.Core().V1().Secrets().Informer()
	_, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.load(obj) },
		UpdateFunc: func(_, obj any) { s.load(obj) },
		DeleteFunc: func(any) { s.deleted() },
	})
	if err != nil { // only when the informer has stopped, which it has not
		s.log.Error(err, "Watching the CA Secret")
		return
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		return
	}
	if _, exists, _ := informer.GetStore().GetByKey(s.key.String()); !exists {
		s.missing()
	}
	<-ctx.Done()
}

func (s *secretSource) load(obj any) {
	secret, ok := obj.(*corev1.Secret)
	if !ok {
		return
	}
	gen := s.holder.Generation()
	// The bundle holds the key: neither it nor the Secret is ever logged,
	// only the BundleError, which names problems and certificates.
	if err := s.holder.Update(ca.BundleFromSecretData(secret.Data)); err != nil {
		reason := "Invalid"
		var be *ca.BundleError
		if errors.As(err, &be) {
			reason = string(be.Reason)
		}
		if s.holder.Authority() != nil {
			s.log.Error(err, "CA Secret refused; the CA loaded before keeps signing", "reason", reason)
			return
		}
		s.setProblem(fmt.Sprintf("the CA Secret %s is refused (%s): %s", s.key, reason, err.Error()))
		s.log.Error(err, "CA Secret refused; no certificates are issued until it is valid", "reason", reason)
		return
	}
	if s.holder.Generation() != gen {
		s.log.Info("Loaded the mesh CA", "ca", s.holder.Authority().String())
		s.onChange()
	}
}

func (s *secretSource) missing() {
	if s.holder.Authority() != nil {
		return
	}
	s.setProblem(fmt.Sprintf("the CA Secret %s does not exist", s.key))
	s.log.Info("Waiting for the CA Secret; no certificates are issued until it exists")
}

func (s *secretSource) deleted() {
	if s.holder.Authority() != nil {
		s.log.Info("CA Secret deleted; the CA loaded before keeps signing until meshd restarts")
		return
	}
	s.missing()
}

// servingIssuer issues meshd's serving certificate and says which roots it
// chains to: *ca.CertManagerSigner (a field of issuerSource, so tests can
// swap it).
type servingIssuer interface {
	IssueServing(ctx context.Context, dnsNames []string, ttl time.Duration) (*tls.Certificate, []byte, error)
}

// Retries of a failed serving certificate request back off from
// minIssueRetry, doubling, to maxIssueRetry.
const (
	minIssueRetry = time.Second
	maxIssueRetry = time.Minute
)

// issuerSource keeps meshd's serving certificate for the secure port, with CA
// type CertManager, where there is no CA key to issue it from: it is requested
// from the cert-manager issuer for the serving DNS names and renewed after two
// thirds of the life it had left when obtained (issuers backdate NotBefore).
// A failed request is retried with backoff; the current certificate serves
// until it expires. The roots the issuer reports with each certificate are
// the ones the secure port verifies client certificates with and the ones
// published (onRoots).
type issuerSource struct {
	issuer   servingIssuer
	describe string // the issuer, for messages
	dnsNames []string
	ttl      time.Duration
	log      logr.Logger
	onRoots  func(pem []byte) // the roots the issuer reports changed
	now      func() time.Time
	minRetry time.Duration
	maxRetry time.Duration

	current atomic.Pointer[issuedServing]

	mu      sync.Mutex
	lastErr error // the last request's failure; nil after a success
	roots   []byte
}

// issuedServing is a serving certificate from the issuer and the secure
// port's TLS configuration with it.
type issuedServing struct {
	cert   *tls.Certificate
	config *tls.Config
}

func newIssuerSource(issuer servingIssuer, ref ca.IssuerRef, dnsNames []string, log logr.Logger, onRoots func([]byte)) *issuerSource {
	return &issuerSource{
		issuer:   issuer,
		describe: fmt.Sprintf("cert-manager %s %q", ref.Kind, ref.Name),
		dnsNames: dnsNames,
		ttl:      certservice.DefaultServingTTL,
		log:      log.WithValues("issuer", ref.Name, "kind", ref.Kind),
		onRoots:  onRoots,
		now:      time.Now,
		minRetry: minIssueRetry,
		maxRetry: maxIssueRetry,
	}
}

// valid returns the current certificate while it has not expired.
func (s *issuerSource) valid() *issuedServing {
	if cur := s.current.Load(); cur != nil && s.now().Before(cur.cert.Leaf.NotAfter) {
		return cur
	}
	return nil
}

// ready reports whether meshd holds a serving certificate, and why not
// otherwise.
func (s *issuerSource) ready() (bool, string) {
	if s.valid() != nil {
		return true, ""
	}
	return false, s.why()
}

// why says why no serving certificate is held.
func (s *issuerSource) why() string {
	s.mu.Lock()
	lastErr := s.lastErr
	s.mu.Unlock()
	if cur := s.current.Load(); cur != nil {
		msg := fmt.Sprintf("meshd's serving certificate from %s expired at %s", s.describe, cur.cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
		if lastErr != nil {
			msg += " and renewing it failed: " + lastErr.Error()
		}
		return msg
	}
	if lastErr != nil {
		return fmt.Sprintf("meshd has no serving certificate: requesting it from %s failed: %s", s.describe, lastErr)
	}
	return fmt.Sprintf("meshd's serving certificate has not been issued by %s yet", s.describe)
}

// run requests and renews the serving certificate until ctx ends.
func (s *issuerSource) run(ctx context.Context) {
	retry := s.minRetry
	for {
		next, err := s.obtain(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			next = retry
			retry = min(2*retry, s.maxRetry)
		} else {
			retry = s.minRetry
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(next):
		}
	}
}

// obtain requests a serving certificate and, when it is issued, serves it and
// publishes its roots; it returns how long until the certificate is renewed.
func (s *issuerSource) obtain(ctx context.Context) (time.Duration, error) {
	cert, roots, err := s.issuer.IssueServing(ctx, s.dnsNames, s.ttl)
	if err != nil {
		if ctx.Err() != nil {
			return 0, err
		}
		s.mu.Lock()
		s.lastErr = err
		s.mu.Unlock()
		if cur := s.valid(); cur != nil {
			s.log.Error(err, "Renewing the serving certificate failed; serving the current one until it expires", "notAfter", cur.cert.Leaf.NotAfter)
		} else {
			s.log.Error(err, "Requesting the serving certificate failed; the secure port refuses handshakes until one is issued")
		}
		return 0, err
	}

	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(roots) { // IssueServing checked them: only a bug gets here
		err := fmt.Errorf("the roots %s returned are not PEM", s.describe)
		s.mu.Lock()
		s.lastErr = err
		s.mu.Unlock()
		return 0, err
	}
	s.current.Store(&issuedServing{cert: cert, config: &tls.Config{
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2"}, // gRPC clients insist on it
		Certificates: []tls.Certificate{*cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    pool,
	}})

	s.mu.Lock()
	s.lastErr = nil
	changed := !bytes.Equal(s.roots, roots)
	first := s.roots == nil
	s.roots = roots
	s.mu.Unlock()
	if changed {
		if !first {
			// Workloads holding certificates under the old roots are not
			// trusted by peers that only have the new ones until they renew.
			s.log.Info("The issuer's roots changed; publishing the new ones")
		}
		s.onRoots(roots)
	}

	now, leaf := s.now(), cert.Leaf
	from := now
	if leaf.NotBefore.After(now) {
		from = leaf.NotBefore
	}
	// An issuer that returns certificates about to expire is not asked
	// again more often than a failed request would be.
	renewIn := max(leaf.NotAfter.Sub(from)*2/3, s.minRetry)
	s.log.Info("Obtained the serving certificate", "dnsNames", s.dnsNames, "notAfter", leaf.NotAfter, "renewAt", now.Add(renewIn))
	return renewIn, nil
}
