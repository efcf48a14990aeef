package webhook

import (
	"bytes"
	"cmp"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	admissionregistrationv1ac "k8s.io/client-go/applyconfigurations/admissionregistration/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// Defaults of CABundleOptions.
const (
	DefaultFieldManager  = "meshd"
	DefaultCheckInterval = 30 * time.Second
)

// firstRetry is the delay after a first failure; it doubles up to the check interval. The
// webhook configuration is applied by the operator after meshd's Deployment, so meshd often
// starts before it exists.
const firstRetry = time.Second

// maxBundleCAs bounds how many CAs of meshd processes a caBundle keeps. Every meshd replica
// makes its own CA, and during a rollout the old and new replicas serve side by side, so the
// bundle must trust several; the newest are kept (10 replicas at most, plus a surge).
const maxBundleCAs = 16

// CABundleOptions configure a CABundlePatcher.
type CABundleOptions struct {
	Client kubernetes.Interface
	// ConfigurationName is the ValidatingWebhookConfiguration whose webhooks call this meshd.
	ConfigurationName string
	// CABundle is the PEM certificate of the CA that signed the serving certificate.
	CABundle []byte
	// FieldManager of the server-side apply; DefaultFieldManager when empty.
	FieldManager string
	// Interval between checks that the configuration still trusts the CA (it may have been
	// re-created without a caBundle); DefaultCheckInterval when zero.
	Interval time.Duration
	// Logger; discarded when unset.
	Logger logr.Logger
	// Now tells the time, for dropping expired CAs; time.Now when nil.
	Now func() time.Time
}

// CABundlePatcher keeps the caBundle of every webhook of a ValidatingWebhookConfiguration
// trusting a CA. It writes nothing else: its server-side apply names only the webhooks (the
// list's keys) and their clientConfig.caBundle, so the operator, which applies everything else
// and never the caBundle, and meshd each own their fields and never undo each other's writes.
type CABundlePatcher struct {
	opts CABundleOptions
	log  logr.Logger
	ca   *x509.Certificate
}

// NewCABundlePatcher checks the options.
func NewCABundlePatcher(opts CABundleOptions) (*CABundlePatcher, error) {
	if opts.Client == nil || opts.ConfigurationName == "" {
		return nil, errors.New("caBundle patcher: a client and a webhook configuration name are required")
	}
	certs := parseCertificates(opts.CABundle)
	if len(certs) != 1 {
		return nil, fmt.Errorf("caBundle patcher: want the PEM of one CA certificate, got %d certificates", len(certs))
	}
	if opts.FieldManager == "" {
		opts.FieldManager = DefaultFieldManager
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultCheckInterval
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log.GetSink() == nil {
		log = logr.Discard()
	}
	return &CABundlePatcher{opts: opts, log: log, ca: certs[0]}, nil
}

// Run ensures the caBundle now and every Interval until ctx is done, retrying failures sooner.
// Failures are logged (once until they change) and never end Run: without the patch the
// webhook is not called (failurePolicy Ignore), which is no reason to stop serving xDS.
func (p *CABundlePatcher) Run(ctx context.Context) {
	retryDelay := firstRetry
	var lastErr string
	for {
		delay := p.opts.Interval
		if _, err := p.Ensure(ctx); err != nil {
			if err.Error() != lastErr && ctx.Err() == nil {
				if apierrors.IsNotFound(err) {
					p.log.Info("Waiting for the ValidatingWebhookConfiguration to exist to patch its caBundle", "validatingWebhookConfiguration", p.opts.ConfigurationName)
				} else {
					p.log.Error(err, "Cannot patch the webhook caBundle; retrying", "validatingWebhookConfiguration", p.opts.ConfigurationName)
				}
			}
			lastErr = err.Error()
			delay, retryDelay = retryDelay, min(retryDelay*2, p.opts.Interval)
		} else {
			lastErr, retryDelay = "", firstRetry
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

// Ensure patches the caBundle of every webhook of the configuration that does not trust the
// CA yet, and reports whether it patched.
func (p *CABundlePatcher) Ensure(ctx context.Context) (patched bool, err error) {
	webhooks := p.opts.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		patched = false
		current, err := webhooks.Get(ctx, p.opts.ConfigurationName, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("reading ValidatingWebhookConfiguration %s: %w", p.opts.ConfigurationName, err)
		}
		if len(current.Webhooks) == 0 || p.trusted(current) {
			return nil
		}
		var bundles [][]byte
		for _, w := range current.Webhooks {
			bundles = append(bundles, w.ClientConfig.CABundle)
		}
		bundle, kept := mergeCABundle(p.ca, bundles, p.opts.Now())
		// The resourceVersion makes the apply fail with a conflict, and be retried, when
		// another meshd replica patched in between: it would otherwise drop that one's CA.
		_, err = webhooks.Apply(ctx, caBundleApply(current, bundle),
			metav1.ApplyOptions{FieldManager: p.opts.FieldManager, Force: true})
		if err != nil {
			return fmt.Errorf("patching the caBundle of ValidatingWebhookConfiguration %s: %w", p.opts.ConfigurationName, err)
		}
		names := make([]string, 0, len(current.Webhooks))
		for _, w := range current.Webhooks {
			names = append(names, w.Name)
		}
		p.log.Info("Patched the caBundle of the validating webhooks to trust this meshd's self-signed CA",
			"validatingWebhookConfiguration", current.Name, "webhooks", names,
			"ca", p.ca.SerialNumber.Text(16), "earlierCAsKept", kept)
		patched = true
		return nil
	})
	return patched, err
}

// trusted reports whether every webhook's caBundle holds the CA.
func (p *CABundlePatcher) trusted(cfg *admissionregistrationv1.ValidatingWebhookConfiguration) bool {
	for _, w := range cfg.Webhooks {
		if !slices.ContainsFunc(parseCertificates(w.ClientConfig.CABundle), p.ca.Equal) {
			return false
		}
	}
	return true
}

// caBundleApply is the server-side apply configuration that sets bundle as the caBundle of
// every webhook of current, and nothing else.
func caBundleApply(current *admissionregistrationv1.ValidatingWebhookConfiguration, bundle []byte) *admissionregistrationv1ac.ValidatingWebhookConfigurationApplyConfiguration {
	apply := admissionregistrationv1ac.ValidatingWebhookConfiguration(current.Name).
		WithResourceVersion(current.ResourceVersion)
	for _, w := range current.Webhooks {
		apply.WithWebhooks(admissionregistrationv1ac.ValidatingWebhook().
			WithName(w.Name).
			WithClientConfig(admissionregistrationv1ac.WebhookClientConfig().WithCABundle(bundle...)))
	}
	return apply
}

// mergeCABundle returns the PEM bundle of ca followed by the CAs of other meshd processes
// found in bundles that have not expired, newest first, at most maxBundleCAs in all, and
// how many of those others it kept. Anything else in bundles (another issuer's CA, expired or
// unparsable certificates) is dropped: with a self-signed CA, meshd owns the bundle.
func mergeCABundle(ca *x509.Certificate, bundles [][]byte, now time.Time) (bundle []byte, kept int) {
	var others []*x509.Certificate
	for _, b := range bundles {
		for _, cert := range parseCertificates(b) {
			if cert.Subject.CommonName != selfSignedCACommonName || !cert.IsCA || !now.Before(cert.NotAfter) ||
				cert.Equal(ca) || slices.ContainsFunc(others, cert.Equal) {
				continue
			}
			others = append(others, cert)
		}
	}
	slices.SortStableFunc(others, func(a, b *x509.Certificate) int { return cmp.Compare(b.NotBefore.UnixNano(), a.NotBefore.UnixNano()) })
	others = others[:min(len(others), maxBundleCAs-1)]

	var out bytes.Buffer
	for _, cert := range append([]*x509.Certificate{ca}, others...) {
		_ = pem.Encode(&out, &pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	}
	return out.Bytes(), len(others)
}

// parseCertificates returns the certificates of a PEM bundle, skipping what does not parse.
func parseCertificates(bundle []byte) []*x509.Certificate {
	var certs []*x509.Certificate
	for rest := bundle; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return certs
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if cert, err := x509.ParseCertificate(block.Bytes); err == nil {
			certs = append(certs, cert)
		}
	}
}
