package controllers_test

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/controllers"
	"github.com/meshplane/meshplane/internal/ca"
	"github.com/meshplane/meshplane/internal/render"
	"github.com/meshplane/meshplane/test/framework"
	"github.com/meshplane/meshplane/test/harness"
)

// newRoot generates a CA bundle like the operator's SelfSigned one.
func newRoot(t *testing.T) ca.Bundle {
	t.Helper()
	b, err := ca.GenerateRoot(v1alpha1.DefaultTrustDomain)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func createNamespace(t *testing.T, name string) {
	t.Helper()
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatal(err)
	}
}

func createSecret(t *testing.T, namespace, name string, data map[string][]byte) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}, Type: corev1.SecretTypeOpaque, Data: data}
	if err := k8s.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	return s
}

func getSecret(t *testing.T, namespace, name string) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, s); err != nil {
		t.Fatal(err)
	}
	return s
}

// sameSecret fails unless got is want, unwritten: same object, same version, same bytes.
func sameSecret(t *testing.T, what string, got, want *corev1.Secret) {
	t.Helper()
	if got.UID != want.UID || got.ResourceVersion != want.ResourceVersion {
		t.Fatalf("%s: the CA Secret was replaced or written (uid %s→%s, resourceVersion %s→%s)",
			what, want.UID, got.UID, want.ResourceVersion, got.ResourceVersion)
	}
	if !maps.EqualFunc(got.Data, want.Data, bytes.Equal) {
		t.Fatalf("%s: the CA Secret's data changed", what)
	}
}

func conditionMessage(t *testing.T, name, condType string) string {
	t.Helper()
	c := meta.FindStatusCondition(get(t, name).Status.Conditions, condType)
	if c == nil {
		t.Fatalf("no %s condition", condType)
	}
	return c.Message
}

func TestSelfSignedCAIsCreatedOnceAndNeverRegenerated(t *testing.T) {
	counted, writes := harness.CountWrites(restConfig)
	first := framework.StartOperator(t, counted)
	mcp := newMesh("selfsigned")
	mcp.Spec.Gateways = nil
	mcp.Spec.MeshConfig.TrustDomain = "example.org"
	if err := k8s.Create(ctx, mcp); err != nil {
		t.Fatal(err)
	}

	framework.WaitForCondition(t, k8s, mcp.Name, v1alpha1.ConditionCAReady, metav1.ConditionTrue, v1alpha1.ReasonCAValid, wait)
	created := getSecret(t, mcp.Spec.Namespace, v1alpha1.SelfSignedCASecretName)
	if created.Type != corev1.SecretTypeOpaque {
		t.Errorf("type %q, want Opaque", created.Type)
	}
	if len(created.OwnerReferences) != 0 {
		t.Errorf("the CA Secret has owner references %v: deleting the MeshControlPlane would take the root with it", created.OwnerReferences)
	}
	if _, err := ca.NewAuthority(ca.BundleFromSecretData(created.Data)); err != nil {
		t.Fatalf("the generated CA is not valid: %v", err)
	}
	block, _ := pem.Decode(created.Data[ca.SecretKeyRootCert])
	root, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(root.Subject.Organization, []string{"example.org"}) {
		t.Errorf("root subject %s, want the trust domain example.org as organization", root.Subject)
	}

	markAvailable(t, mcp.Spec.Namespace, "meshd-"+mcp.Name)
	framework.WaitForCondition(t, k8s, mcp.Name, v1alpha1.ConditionReady, metav1.ConditionTrue, "", wait)
	writes.Reset()
	time.Sleep(3 * time.Second)
	if n := writes.Count(); n != 0 {
		t.Fatalf("%d writes in a steady state:\n%s", n, writes.Summary())
	}

	// A reconcile of a changed spec keeps the root.
	updateSpec(t, mcp.Name, func(mcp *v1alpha1.MeshControlPlane) { mcp.Spec.ControlPlane.LogLevel = "debug" })
	framework.WaitForCondition(t, k8s, mcp.Name, v1alpha1.ConditionCAReady, metav1.ConditionTrue, v1alpha1.ReasonCAValid, wait)
	sameSecret(t, "after a reconcile", getSecret(t, mcp.Spec.Namespace, v1alpha1.SelfSignedCASecretName), created)

	// So does a new operator process.
	first.Stop(t)
	framework.StartOperator(t, restConfig)
	t.Cleanup(func() { deleteAndWait(t, mcp.Name) })
	updateSpec(t, mcp.Name, func(mcp *v1alpha1.MeshControlPlane) { mcp.Spec.ControlPlane.LogLevel = "warn" })
	framework.WaitForCondition(t, k8s, mcp.Name, v1alpha1.ConditionCAReady, metav1.ConditionTrue, v1alpha1.ReasonCAValid, wait)
	sameSecret(t, "after an operator restart", getSecret(t, mcp.Spec.Namespace, v1alpha1.SelfSignedCASecretName), created)
}

// A CA Secret that is already there is the operator's to read, never to write:
// whether valid (a reinstall, a root restored from backup) or not (edited).
func TestExistingSelfSignedCASecretIsNeverOverwritten(t *testing.T) {
	framework.StartOperator(t, restConfig)

	t.Run("valid", func(t *testing.T) {
		mcp := newMesh("keepvalid")
		mcp.Spec.Gateways = nil
		createNamespace(t, mcp.Spec.Namespace)
		existing := createSecret(t, mcp.Spec.Namespace, v1alpha1.SelfSignedCASecretName, newRoot(t).SecretData())
		create(t, mcp)

		framework.WaitForCondition(t, k8s, mcp.Name, v1alpha1.ConditionCAReady, metav1.ConditionTrue, v1alpha1.ReasonCAValid, wait)
		framework.WaitForCondition(t, k8s, mcp.Name, v1alpha1.ConditionReconciled, metav1.ConditionTrue, "", wait)
		sameSecret(t, "after install", getSecret(t, mcp.Spec.Namespace, v1alpha1.SelfSignedCASecretName), existing)

		// Uninstall keeps it, so that a reinstall signs under the same root.
		deleteAndWait(t, mcp.Name)
		sameSecret(t, "after uninstall", getSecret(t, mcp.Spec.Namespace, v1alpha1.SelfSignedCASecretName), existing)
	})

	t.Run("edited", func(t *testing.T) {
		mcp := newMesh("keepedited")
		mcp.Spec.Gateways = nil
		createNamespace(t, mcp.Spec.Namespace)
		data := newRoot(t).SecretData()
		delete(data, ca.SecretKeyCAKey)
		edited := createSecret(t, mcp.Spec.Namespace, v1alpha1.SelfSignedCASecretName, data)
		create(t, mcp)

		framework.WaitForCondition(t, k8s, mcp.Name, v1alpha1.ConditionCAReady, metav1.ConditionFalse, v1alpha1.ReasonCAInvalid, wait)
		framework.WaitForCondition(t, k8s, mcp.Name, v1alpha1.ConditionReconciled, metav1.ConditionTrue, "", wait)
		msg := conditionMessage(t, mcp.Name, v1alpha1.ConditionCAReady)
		for _, want := range []string{v1alpha1.SelfSignedCASecretName, ca.SecretKeyCAKey, string(ca.ReasonMissingKey), "never overwrites"} {
			if !strings.Contains(msg, want) {
				t.Errorf("CAReady message %q does not mention %q", msg, want)
			}
		}
		sameSecret(t, "after install", getSecret(t, mcp.Spec.Namespace, v1alpha1.SelfSignedCASecretName), edited)

		// Deleting it is how a user asks for a new root.
		if err := k8s.Delete(ctx, edited); err != nil {
			t.Fatal(err)
		}
		framework.WaitForCondition(t, k8s, mcp.Name, v1alpha1.ConditionCAReady, metav1.ConditionTrue, v1alpha1.ReasonCAValid, wait)
		if regenerated := getSecret(t, mcp.Spec.Namespace, v1alpha1.SelfSignedCASecretName); regenerated.UID == edited.UID {
			t.Fatal("CAReady is True but the Secret is still the edited one")
		}
	})
}

func TestProvidedCAIsValidatedAndFollowsItsSecret(t *testing.T) {
	framework.StartOperator(t, restConfig)
	mcp := newMesh("provided")
	mcp.Spec.Gateways = nil
	mcp.Spec.CA = v1alpha1.CASpec{Type: v1alpha1.CATypeProvided, Provided: &v1alpha1.ProvidedCA{SecretName: "cacerts"}}
	create(t, mcp)

	framework.WaitForCondition(t, k8s, mcp.Name, v1alpha1.ConditionCAReady, metav1.ConditionFalse, v1alpha1.ReasonCASecretMissing, wait)
	if msg := conditionMessage(t, mcp.Name, v1alpha1.ConditionCAReady); !strings.Contains(msg, "mesh-provided/cacerts") {
		t.Errorf("CAReady message %q does not name the Secret", msg)
	}
	// A missing CA does not hold the install back; meshd runs and reports it too.
	markAvailable(t, mcp.Spec.Namespace, "meshd-"+mcp.Name)
	framework.WaitForCondition(t, k8s, mcp.Name, v1alpha1.ConditionControlPlaneReady, metav1.ConditionTrue, "", wait)

	good, other := newRoot(t), newRoot(t)
	mismatched := good
	mismatched.CAKey = other.CAKey
	secret := createSecret(t, mcp.Spec.Namespace, "cacerts", mismatched.SecretData())

	got := framework.WaitForCondition(t, k8s, mcp.Name, v1alpha1.ConditionCAReady, metav1.ConditionFalse, v1alpha1.ReasonCAInvalid, wait)
	msg := conditionMessage(t, mcp.Name, v1alpha1.ConditionCAReady)
	for _, want := range []string{"mesh-provided/cacerts", ca.SecretKeyCAKey, string(ca.ReasonKeyMismatch)} {
		if !strings.Contains(msg, want) {
			t.Errorf("CAReady message %q does not mention %q", msg, want)
		}
	}
	if err := framework.HasCondition(got, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonComponentsNotReady); err != nil {
		t.Fatalf("Ready while the CA is invalid: %v", err)
	}
	if ready := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionReady); !strings.Contains(ready.Message, v1alpha1.ConditionCAReady) {
		t.Errorf("Ready message %q does not say CAReady is what is missing", ready.Message)
	}
	assertNoKeyMaterial(t, "the MeshControlPlane", toJSON(t, get(t, mcp.Name)), good.CAKey, other.CAKey)
	assertNoKeyMaterial(t, "the Events", allEvents(t), good.CAKey, other.CAKey)

	secret.Data = good.SecretData()
	if err := k8s.Update(ctx, secret); err != nil {
		t.Fatal(err)
	}
	framework.WaitForCondition(t, k8s, mcp.Name, v1alpha1.ConditionCAReady, metav1.ConditionTrue, v1alpha1.ReasonCAValid, wait)
	framework.WaitForCondition(t, k8s, mcp.Name, v1alpha1.ConditionReady, metav1.ConditionTrue, "", wait)
	sameSecret(t, "the user's Secret", getSecret(t, mcp.Spec.Namespace, "cacerts"), secret)
}

func TestCertManagerCAChecksTheIssuer(t *testing.T) {
	framework.StartOperator(t, restConfig)
	mcp := newMesh("certmanager")
	mcp.Spec.Gateways = nil
	mcp.Spec.CA = v1alpha1.CASpec{Type: v1alpha1.CATypeCertManager,
		CertManager: &v1alpha1.CertManagerCA{IssuerRef: v1alpha1.IssuerReference{Name: "mesh"}}}
	create(t, mcp)

	got := framework.WaitForCondition(t, k8s, mcp.Name, v1alpha1.ConditionCAReady, metav1.ConditionFalse,
		v1alpha1.ReasonCertManagerNotInstalled, wait)
	if err := framework.HasCondition(got, v1alpha1.ConditionReady, metav1.ConditionFalse, ""); err != nil {
		t.Fatal(err)
	}
	if err := framework.HasCondition(got, v1alpha1.ConditionReconciled, metav1.ConditionTrue, ""); err != nil {
		t.Fatalf("a missing cert-manager must not stop the install: %v", err)
	}

	// cert-manager arrives; a spec change reconciles now rather than at the next recheck.
	crds := []*apiextensionsv1.CustomResourceDefinition{
		certManagerCRD("Issuer", "issuers", apiextensionsv1.NamespaceScoped),
		certManagerCRD("ClusterIssuer", "clusterissuers", apiextensionsv1.ClusterScoped),
	}
	if err := harness.CreateCRDs(ctx, restConfig, crds); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, crd := range crds {
			if err := k8s.Delete(ctx, crd); client.IgnoreNotFound(err) != nil {
				t.Error(err)
			}
		}
	})
	updateSpec(t, mcp.Name, func(mcp *v1alpha1.MeshControlPlane) { mcp.Spec.ControlPlane.LogLevel = "debug" })
	framework.WaitForCondition(t, k8s, mcp.Name, v1alpha1.ConditionCAReady, metav1.ConditionFalse, v1alpha1.ReasonIssuerNotFound, wait)

	issuer := &unstructured.Unstructured{}
	issuer.SetAPIVersion("cert-manager.io/v1")
	issuer.SetKind("Issuer")
	issuer.SetNamespace(mcp.Spec.Namespace)
	issuer.SetName("mesh")
	if err := k8s.Create(ctx, issuer); err != nil {
		t.Fatal(err)
	}
	updateSpec(t, mcp.Name, func(mcp *v1alpha1.MeshControlPlane) { mcp.Spec.ControlPlane.LogLevel = "info" })
	framework.WaitForCondition(t, k8s, mcp.Name, v1alpha1.ConditionCAReady, metav1.ConditionTrue, v1alpha1.ReasonIssuerFound, wait)
}

func certManagerCRD(kind, plural string, scope apiextensionsv1.ResourceScope) *apiextensionsv1.CustomResourceDefinition {
	return &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: plural + ".cert-manager.io"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: "cert-manager.io",
			Names: apiextensionsv1.CustomResourceDefinitionNames{
				Kind: kind, ListKind: kind + "List", Plural: plural, Singular: strings.ToLower(kind),
			},
			Scope: scope,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object", XPreserveUnknownFields: ptr.To(true),
				}},
			}},
		},
	}
}

// The reconciler is run directly here, with a logger of the test's, so that
// its logs can be searched too. The logger is as verbose as the operator's
// --log-level=debug (V(1)); client-go dumps request bodies, Secrets included,
// only from V(8).
func TestCAKeyMaterialNeverLeaves(t *testing.T) {
	renderer, err := render.NewRenderer()
	if err != nil {
		t.Fatal(err)
	}
	r := &controllers.MeshControlPlaneReconciler{Client: k8s, APIReader: k8s, Renderer: renderer}
	var logs harness.SyncBuffer
	logCtx := ctrl.LoggerInto(ctx, funcr.New(func(prefix, args string) {
		logs.WriteString(prefix + " " + args + "\n")
	}, funcr.Options{Verbosity: 1}))
	reconcile := func(name string) {
		t.Helper()
		if _, err := r.Reconcile(logCtx, ctrl.Request{NamespacedName: client.ObjectKey{Name: name}}); err != nil {
			t.Fatalf("reconcile %s: %v", name, err)
		}
	}
	uninstall := func(name string) {
		t.Helper()
		if err := k8s.Delete(ctx, &v1alpha1.MeshControlPlane{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
			t.Fatal(err)
		}
		reconcile(name)
		if err := k8s.Get(ctx, client.ObjectKey{Name: name}, &v1alpha1.MeshControlPlane{}); !apierrors.IsNotFound(err) {
			t.Fatalf("MeshControlPlane %s not uninstalled: %v", name, err)
		}
	}

	selfSigned := newMesh("leakself")
	selfSigned.Spec.Gateways = nil
	if err := k8s.Create(ctx, selfSigned); err != nil {
		t.Fatal(err)
	}
	reconcile(selfSigned.Name)
	reconcile(selfSigned.Name)
	generated := getSecret(t, selfSigned.Spec.Namespace, v1alpha1.SelfSignedCASecretName)
	generatedKey := generated.Data[ca.SecretKeyCAKey]
	if _, found := keyFragmentIn(t, toJSON(t, generated), generatedKey); !found {
		t.Fatal("the search does not find the key even in the Secret's JSON")
	}

	provided := newMesh("leakprov")
	provided.Spec.Gateways = nil
	provided.Spec.CA = v1alpha1.CASpec{Type: v1alpha1.CATypeProvided, Provided: &v1alpha1.ProvidedCA{SecretName: "cacerts"}}
	createNamespace(t, provided.Spec.Namespace)
	good, other := newRoot(t), newRoot(t)
	mismatched := good
	mismatched.CAKey = other.CAKey
	createSecret(t, provided.Spec.Namespace, "cacerts", mismatched.SecretData())
	if err := k8s.Create(ctx, provided); err != nil {
		t.Fatal(err)
	}
	reconcile(provided.Name)
	if err := framework.HasCondition(get(t, provided.Name), v1alpha1.ConditionCAReady, metav1.ConditionFalse, v1alpha1.ReasonCAInvalid); err != nil {
		t.Fatal(err)
	}

	keys := [][]byte{generatedKey, good.CAKey, other.CAKey}
	statuses := toJSON(t, get(t, selfSigned.Name)) + toJSON(t, get(t, provided.Name))
	uninstall(selfSigned.Name)
	uninstall(provided.Name)
	assertNoKeyMaterial(t, "the MeshControlPlanes", statuses, keys...)
	assertNoKeyMaterial(t, "the Events", allEvents(t), keys...)
	if !strings.Contains(logs.String(), "Created the self-signed mesh CA") {
		t.Fatalf("the logs were not captured:\n%s", logs.String())
	}
	assertNoKeyMaterial(t, "the operator's logs", logs.String(), keys...)
}

func TestTrimSecretMetadataDropsWhatMayHoldSecretData(t *testing.T) {
	secret := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
		Namespace: "ns", Name: "cacerts", ResourceVersion: "7",
		Annotations:   map[string]string{"kubectl.kubernetes.io/last-applied-configuration": `{"data":{"ca-key.pem":"..."}}`},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
	}}
	out, err := controllers.TrimSecretMetadata(secret)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*metav1.PartialObjectMetadata)
	if got.Annotations != nil || got.ManagedFields != nil {
		t.Fatalf("annotations %v, managedFields %v left", got.Annotations, got.ManagedFields)
	}
	if got.Namespace != "ns" || got.Name != "cacerts" || got.ResourceVersion != "7" {
		t.Fatalf("the watch needs namespace, name and resourceVersion; left %+v", got.ObjectMeta)
	}
}

func toJSON(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func allEvents(t *testing.T) string {
	t.Helper()
	var events corev1.EventList
	if err := k8s.List(ctx, &events); err != nil {
		t.Fatal(err)
	}
	return toJSON(t, events)
}

// assertNoKeyMaterial fails if output holds a piece of any of the PEM private keys.
func assertNoKeyMaterial(t *testing.T, what, output string, keyPEMs ...[]byte) {
	t.Helper()
	if strings.Contains(output, "PRIVATE KEY") {
		t.Errorf("%s contain a PEM private key header", what)
	}
	for _, keyPEM := range keyPEMs {
		if f, found := keyFragmentIn(t, output, keyPEM); found {
			t.Errorf("%s contain key material (%q)", what, f)
		}
	}
}

// keyFragmentIn looks in output for a line of the PEM key, or 16 characters of
// its DER as base64 or hex, or of the PEM's body as base64 (how JSON carries
// []byte).
func keyFragmentIn(t *testing.T, output string, keyPEM []byte) (string, bool) {
	t.Helper()
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		t.Fatal("not a PEM key")
	}
	var fragments []string
	for _, line := range strings.Split(string(keyPEM), "\n") {
		if len(line) >= 16 && !strings.HasPrefix(line, "-----") {
			fragments = append(fragments, line)
		}
	}
	windows := func(s string) {
		for i := 0; i+16 <= len(s); i += 8 {
			fragments = append(fragments, s[i:i+16])
		}
	}
	windows(base64.StdEncoding.EncodeToString(block.Bytes))
	windows(hex.EncodeToString(block.Bytes))
	// Past the header and before the footer, which every PEM key shares.
	pemB64 := base64.StdEncoding.EncodeToString(keyPEM)
	windows(pemB64[40 : len(pemB64)-40])
	for _, f := range fragments {
		if strings.Contains(output, f) {
			return f, true
		}
	}
	return "", false
}
