package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshplane/meshplane/internal/webhook"
)

// defaultNamespace is the MeshControlPlane's default spec.namespace, for a meshd run outside
// a pod (no POD_NAMESPACE) without --namespace.
const defaultNamespace = "meshplane-system"

// checkWebhookFlags refuses flag combinations that cannot work.
func checkWebhookFlags(o *options) error {
	if o.webhookCertDir != "" && o.webhookConfigName != "" {
		return errors.New("--webhook-config-name patches the caBundle with meshd's self-signed CA, which is not used with " +
			"--webhook-cert-dir: the caBundle then belongs to whoever issues those certificates (e.g. cert-manager's CA injector)")
	}
	if o.webhookService == "" {
		return errors.New("--webhook-service must name meshd's Service")
	}
	return nil
}

// webhooks serves the admission webhooks and, with a self-signed certificate, keeps the
// webhook configuration trusting it.
type webhooks struct {
	server  *webhook.Server
	patcher *webhook.CABundlePatcher // nil when there is nothing to patch
}

func newWebhooks(o *options, restConfig *rest.Config, registry prometheus.Registerer, log logr.Logger) (*webhooks, error) {
	handler, err := webhook.NewHandler(webhook.HandlerOptions{Registry: registry, Logger: log.WithName("webhook")})
	if err != nil {
		return nil, err
	}
	serverOpts := webhook.ServerOptions{Addr: o.webhookAddr, Handler: handler, CertDir: o.webhookCertDir, Logger: log}
	if o.webhookCertDir != "" {
		server, err := webhook.NewServer(serverOpts)
		return &webhooks{server: server}, err
	}

	// Until meshd has its CA, it makes a CA of its own at every start; the API server learns
	// to trust it through the caBundle meshd patches.
	namespace := o.webhookServiceNamespace
	if namespace == "" {
		namespace = o.namespace
	}
	dnsNames := append(webhook.ServiceDNSNames(o.webhookService, namespace), o.webhookDNSNames...)
	selfSigned, err := webhook.NewSelfSigned(dnsNames, time.Now())
	if err != nil {
		return nil, err
	}
	log.Info("Made a self-signed CA and serving certificate for the webhooks", "dnsNames", dnsNames)
	serverOpts.Certificate = &selfSigned.Certificate
	server, err := webhook.NewServer(serverOpts)
	if err != nil {
		return nil, err
	}
	w := &webhooks{server: server}
	if o.webhookConfigName == "" {
		log.Info("Not patching any webhook caBundle (no --webhook-config-name): the API server cannot call the webhooks until something trusts meshd's self-signed CA")
		return w, nil
	}
	clientset, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return nil, fmt.Errorf("client for patching the webhook caBundle: %w", err)
	}
	w.patcher, err = webhook.NewCABundlePatcher(webhook.CABundleOptions{
		Client:            clientset,
		ConfigurationName: o.webhookConfigName,
		CABundle:          selfSigned.CABundle,
		Logger:            log,
	})
	return w, err
}

// Listen binds the webhook address, so that a port in use fails meshd at start-up.
func (w *webhooks) Listen() error { return w.server.Listen() }

// Run serves until ctx is done or serving fails.
func (w *webhooks) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	if w.patcher != nil {
		wg.Go(func() { w.patcher.Run(ctx) })
	}
	err := w.server.Run(ctx)
	cancel()
	wg.Wait()
	return err
}
