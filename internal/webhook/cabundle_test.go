package webhook

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"slices"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func selfSignedCA(t *testing.T, now time.Time) *x509.Certificate {
	t.Helper()
	selfSigned, err := NewSelfSigned([]string{"meshd.meshplane-system.svc"}, now)
	if err != nil {
		t.Fatal(err)
	}
	return parseCertificates(selfSigned.CABundle)[0]
}

// TestCABundleApplyNamesOnlyTheCABundles: the server-side apply configuration the patcher sends
// holds the object's name and resourceVersion, each webhook's name (the key of the list) and
// its caBundle: nothing the operator applies.
func TestCABundleApplyNamesOnlyTheCABundles(t *testing.T) {
	url := "https://meshd.meshplane-system.svc/validate"
	current := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "meshplane-validator-default", ResourceVersion: "42", Labels: map[string]string{"a": "b"}},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{
			{
				Name:                    "one.meshplane.io",
				ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: []byte("old")},
				Rules:                   istioRules(),
				FailurePolicy:           ptr.To(admissionregistrationv1.Ignore),
				SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
				AdmissionReviewVersions: []string{"v1"},
			},
			{Name: "two.meshplane.io", ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url}},
		},
	}
	data, err := json.Marshal(caBundleApply(current, []byte("PEM")))
	if err != nil {
		t.Fatal(err)
	}
	// caBundle is bytes, so JSON carries it base64-encoded: "PEM" is "UEVN".
	want := `{"kind":"ValidatingWebhookConfiguration","apiVersion":"admissionregistration.k8s.io/v1",` +
		`"metadata":{"name":"meshplane-validator-default","resourceVersion":"42"},` +
		`"webhooks":[{"name":"one.meshplane.io","clientConfig":{"caBundle":"UEVN"}},{"name":"two.meshplane.io","clientConfig":{"caBundle":"UEVN"}}]}`
	if string(data) != want {
		t.Errorf("apply configuration\n  %s\nwant\n  %s", data, want)
	}
}

func TestMergeCABundleKeepsOtherMeshdCAs(t *testing.T) {
	now := time.Now()
	ours := selfSignedCA(t, now)
	older := selfSignedCA(t, now.Add(-48*time.Hour))
	newer := selfSignedCA(t, now.Add(-time.Hour))
	expired := selfSignedCA(t, now.Add(-selfSignedValidity-time.Hour))
	anotherIssuer := caNamed(t, "cert-manager CA")
	serving, err := NewSelfSigned([]string{"meshd.meshplane-system.svc"}, now)
	if err != nil {
		t.Fatal(err)
	}
	garbage := []byte("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n")

	bundle, kept := mergeCABundle(ours, [][]byte{
		pemOf(older, expired, anotherIssuer),
		pemOf(newer, ours, serving.Certificate.Leaf),
		append(garbage, pemOf(older)...),
		nil,
	}, now)
	got := parseCertificates(bundle)
	if kept != 2 || !sameCertificates(got, []*x509.Certificate{ours, newer, older}) {
		t.Errorf("bundle holds %s (kept %d); want ours, then the newer and the older other meshd CA", describeCertificates(got), kept)
	}

	// At most maxBundleCAs, the newest.
	var many []*x509.Certificate
	for i := range maxBundleCAs + 3 {
		many = append(many, selfSignedCA(t, now.Add(-time.Duration(i+1)*time.Minute)))
	}
	reversed := slices.Clone(many)
	slices.Reverse(reversed)
	bundle, kept = mergeCABundle(ours, [][]byte{pemOf(reversed...)}, now)
	got = parseCertificates(bundle)
	if kept != maxBundleCAs-1 || !sameCertificates(got, append([]*x509.Certificate{ours}, many[:maxBundleCAs-1]...)) {
		t.Errorf("bundle of %d CAs, kept %d; want ours and the %d newest", len(got), kept, maxBundleCAs-1)
	}
}

// caNamed makes a CA certificate with another subject, standing for another issuer.
func caNamed(t *testing.T, commonName string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func pemOf(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, cert := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})...)
	}
	return out
}

func sameCertificates(a, b []*x509.Certificate) bool {
	return slices.EqualFunc(a, b, (*x509.Certificate).Equal)
}

func describeCertificates(certs []*x509.Certificate) []string {
	var out []string
	for _, cert := range certs {
		out = append(out, cert.Subject.CommonName+" from "+cert.NotBefore.Format(time.RFC3339))
	}
	return out
}
