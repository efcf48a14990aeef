package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/meshplane/meshplane/test/harness"
)

// TestRunServesTheValidatingWebhook runs meshd as main would, with a self-signed webhook
// certificate and --webhook-config-name, against a webhook configuration that calls it and
// has no caBundle yet: meshd must patch the caBundle, after which the API server refuses an
// invalid VirtualService with meshd's message, and meshd's certificate verifies for its
// Service's names against that caBundle.
func TestRunServesTheValidatingWebhook(t *testing.T) {
	ctx := context.Background()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfigPath)
	if err != nil {
		t.Fatal(err)
	}
	c, err := harness.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const (
		configName  = "meshplane-validator-e2e"
		webhookAddr = "127.0.0.1:25117"
	)
	// A new namespace on every run, so that go test -count finds none of the last run's objects.
	namespace := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "webhook-e2e-"}}
	if err := c.Create(ctx, namespace); err != nil {
		t.Fatal(err)
	}
	ns := namespace.Name
	// What the chart renders, calling meshd on this machine instead of its Service.
	url := "https://localhost:25117/validate"
	config := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: configName},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:         "validation.networking.istio.io.meshplane.io",
			ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
				Rule: admissionregistrationv1.Rule{
					APIGroups:   []string{"networking.istio.io"},
					APIVersions: []string{"*"},
					Resources:   []string{"virtualservices"},
				},
			}},
			// Fail, unlike the chart: a webhook not reached must show in this test.
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{
				corev1.LabelMetadataName: ns,
			}},
		}},
	}
	if err := c.Create(ctx, config); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(ctx, config) })

	path := filepath.Join(t.TempDir(), "mesh.yaml")
	if err := os.WriteFile(path, []byte("trustDomain: example.org\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &harness.SyncBuffer{}
	cmd := newRootCommand()
	cmd.SetOut(logs)
	cmd.SetErr(logs)
	cmd.SetArgs([]string{
		"--mesh-config", path,
		"--monitoring-addr", "127.0.0.1:0",
		"--xds-addr", "127.0.0.1:25110",
		"--secure-xds-addr", "127.0.0.1:25112",
		"--webhook-addr", webhookAddr,
		"--webhook-service", "meshd-canary",
		"--webhook-service-namespace", "mesh",
		"--webhook-dns-names", "localhost",
		"--webhook-config-name", configName,
		"--kubeconfig", kubeconfigPath,
	})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(runCtx) }()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("meshd: %v", err)
			}
		case <-time.After(waitFor):
			t.Errorf("meshd did not stop within %s", waitFor)
		}
	})

	deadline := time.After(waitFor)
	for !strings.Contains(logs.String(), "Patched the caBundle") {
		select {
		case err := <-done:
			t.Fatalf("meshd returned early (%v); logs:\n%s", err, logs)
		case <-deadline:
			t.Fatalf("meshd did not patch the caBundle within %s; logs:\n%s", waitFor, logs)
		case <-time.After(20 * time.Millisecond):
		}
	}
	line := lineWith(logs.String(), "Patched the caBundle")
	for _, want := range []string{configName, "validation.networking.istio.io.meshplane.io"} {
		if !strings.Contains(line, want) {
			t.Errorf("the patch log line does not name %s: %s", want, line)
		}
	}

	// The API server now calls meshd and refuses what is invalid, with meshd's message.
	invalid := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(`apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: reviews, namespace: `+ns+`}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
      weight: -5
`), &invalid.Object); err != nil {
		t.Fatal(err)
	}
	err = c.Create(ctx, invalid)
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.http[0].route[0].weight: weight -5 is negative") ||
		!strings.Contains(err.Error(), "(MP0104 InvalidRouteWeights)") {
		t.Errorf("creating an invalid VirtualService: %v, want meshd's refusal naming the field", err)
	}
	valid := invalid.DeepCopy()
	if err := unstructured.SetNestedSlice(valid.Object, []any{map[string]any{"route": []any{
		map[string]any{"destination": map[string]any{"host": "reviews"}},
	}}}, "spec", "http"); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, valid); err != nil {
		t.Errorf("creating a valid VirtualService: %v", err)
	}

	// meshd's certificate verifies for its Service's names against the patched caBundle.
	patched := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := c.Get(ctx, client.ObjectKey{Name: configName}, patched); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(patched.Webhooks[0].ClientConfig.CABundle) {
		t.Fatal("the patched caBundle holds no PEM certificate")
	}
	for _, name := range []string{"meshd-canary.mesh.svc", "meshd-canary.mesh.svc.cluster.local", "localhost"} {
		conn, err := tls.Dial("tcp", webhookAddr, &tls.Config{RootCAs: roots, ServerName: name})
		if err != nil {
			t.Errorf("TLS to meshd as %s: %v", name, err)
			continue
		}
		_ = conn.Close()
	}
	if conn, err := tls.Dial("tcp", webhookAddr, &tls.Config{RootCAs: roots, ServerName: "meshd.meshplane-system.svc"}); err == nil {
		_ = conn.Close()
		t.Error("meshd's certificate verified for a Service it was not named after")
	}
}
