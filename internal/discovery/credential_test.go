package discovery

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshplane/meshplane/internal/model"
)

// testSecret is a Secret with the three credential keys, derived from cert,
// and one key no credential uses.
func testSecret(ns, name string, secretType corev1.SecretType, cert string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Type:       secretType,
		Data: map[string][]byte{
			corev1.TLSCertKey:       []byte(cert),
			corev1.TLSPrivateKeyKey: []byte(cert + "-key"),
			CACertKey:               []byte(cert + "-ca"),
			"unrelated":             []byte("not for meshd"),
		},
	}
}

// sameMap reports whether two maps are one map object.
func sameMap[K comparable, V any](a, b map[K]V) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

func TestCredentialFromSecret(t *testing.T) {
	s := testSecret("ns", "gw-cert", corev1.SecretTypeTLS, "cert")
	s.CreationTimestamp = metav1.Unix(1700000000, 0)
	c, ok := CredentialFromSecret(s)
	if !ok {
		t.Fatal("a kubernetes.io/tls Secret was not converted")
	}
	want := model.Meta{Name: "gw-cert", Namespace: "ns", CreationUnix: 1700000000}
	if c.Meta != want || string(c.Cert) != "cert" || string(c.Key) != "cert-key" || string(c.CA) != "cert-ca" {
		t.Fatalf("credential %+v cert=%q key=%q ca=%q", c.Meta, c.Cert, c.Key, c.CA)
	}
	// The credential holds copies.
	s.Data[corev1.TLSCertKey][0] = 'X'
	if string(c.Cert) != "cert" {
		t.Errorf("cert %q after the input changed", c.Cert)
	}

	// No CA: none in the credential.
	delete(s.Data, CACertKey)
	if c, _ := CredentialFromSecret(s); c.CA != nil {
		t.Errorf("CA %q from a Secret without ca.crt", c.CA)
	}

	// stringData (a Secret from a file) wins over data, as on write.
	s.StringData = map[string]string{corev1.TLSPrivateKeyKey: "from-string-data"}
	if c, _ := CredentialFromSecret(s); string(c.Key) != "from-string-data" || string(c.Cert) != "Xert" {
		t.Errorf("with stringData: cert=%q key=%q", c.Cert, c.Key)
	}

	for _, typ := range []corev1.SecretType{corev1.SecretTypeOpaque, "", corev1.SecretTypeServiceAccountToken} {
		if c, ok := CredentialFromSecret(testSecret("ns", "x", typ, "cert")); ok || c != nil {
			t.Errorf("a Secret of type %q was converted: %+v", typ, c)
		}
	}
}

// TestTrimSecret checks that the cache keeps a Secret's identity, type and
// credential keys only, idempotently.
func TestTrimSecret(t *testing.T) {
	s := testSecret("ns", "gw-cert", corev1.SecretTypeTLS, "cert")
	s.UID, s.ResourceVersion, s.CreationTimestamp = "uid-1", "17", metav1.Unix(1700000000, 0)
	s.Annotations = map[string]string{"kubectl.kubernetes.io/last-applied-configuration": `{"data":{"tls.key":"..."}}`}
	s.Labels = map[string]string{"app": "gw"}
	s.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	s.Immutable = ptr.To(true)
	var in any = s
	for range 2 {
		out, err := trimObject(in)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := out.(*corev1.Secret)
		if !ok {
			t.Fatalf("trimmed into %T", out)
		}
		if got.Name != "gw-cert" || got.Namespace != "ns" || got.UID != "uid-1" || got.ResourceVersion != "17" ||
			got.CreationTimestamp.Unix() != 1700000000 || got.Type != corev1.SecretTypeTLS {
			t.Errorf("kept: %+v type %q", got.ObjectMeta, got.Type)
		}
		if keys := slices.Sorted(maps.Keys(got.Data)); !slices.Equal(keys, []string{CACertKey, corev1.TLSCertKey, corev1.TLSPrivateKeyKey}) {
			t.Errorf("data keys %v", keys)
		}
		if string(got.Data[corev1.TLSPrivateKeyKey]) != "cert-key" {
			t.Errorf("key %q", got.Data[corev1.TLSPrivateKeyKey])
		}
		if got.Annotations != nil || got.Labels != nil || got.ManagedFields != nil || got.Immutable != nil {
			t.Errorf("not dropped: annotations %v labels %v managed %v immutable %v", got.Annotations, got.Labels, got.ManagedFields, got.Immutable)
		}
		in = got
	}
	// A TLS Secret whose data has none of the keys keeps no data.
	empty := &corev1.Secret{Type: corev1.SecretTypeTLS, Data: map[string][]byte{"other": []byte("x")}}
	if out, _ := trimObject(empty); out.(*corev1.Secret).Data != nil {
		t.Errorf("data %v", out.(*corev1.Secret).Data)
	}
}

// TestCredentialIntake follows TLS Secrets through the index: scope, the
// Credentials map and its entries shared across Worlds until a Secret
// changes, no World for an unchanged Secret, deletion.
func TestCredentialIntake(t *testing.T) {
	sel, _ := CompileSelectors(meshSelector)
	x := newIndex(model.MeshConfig{}, sel)
	x.upsertNamespace(&testNamespace("in", map[string]string{"mesh": "on"}).ObjectMeta)
	x.upsertNamespace(&testNamespace("out", nil).ObjectMeta)
	x.upsertService(testService("in", "web", "10.96.0.1"))
	x.upsertConfig(testVirtualService("in", "web", "web", 1))
	x.upsertSecret(testSecret("in", "a", corev1.SecretTypeTLS, "a1"))
	x.upsertSecret(testSecret("in", "b", corev1.SecretTypeTLS, "b1"))
	x.upsertSecret(testSecret("in", "opaque", corev1.SecretTypeOpaque, "o1"))
	x.upsertSecret(testSecret("out", "a", corev1.SecretTypeTLS, "out1"))
	keys := func(w *model.World) []string { return slices.Sorted(maps.Keys(w.Config.Credentials)) }

	w1 := x.build()
	if got, want := keys(w1), []string{"in/a", "in/b"}; !slices.Equal(got, want) {
		t.Fatalf("credentials in scope: %v, want %v", got, want)
	}
	if c := w1.Credential("in", "a"); c == nil || string(c.Cert) != "a1" || string(c.Key) != "a1-key" || string(c.CA) != "a1-ca" {
		t.Fatalf("in/a: %+v", c)
	}

	// An unchanged Secret (a resync, a label or annotation edit) makes no World.
	same := testSecret("in", "a", corev1.SecretTypeTLS, "a1")
	same.ResourceVersion, same.Annotations = "42", map[string]string{"cert-manager.io/issuer": "x"}
	x.upsertSecret(same)
	if x.build() != w1 {
		t.Fatal("an unchanged Secret made a new World")
	}

	// An endpoint change and a config change keep the map and its entries.
	x.upsertSlice(testSlice("in", "web-abc", "web", testEP{ip: "10.0.0.1", ready: true}))
	x.upsertConfig(testVirtualService("in", "web", "web-v2", 2))
	w2 := x.build()
	if w2 == w1 || !sameMap(w1.Config.Credentials, w2.Config.Credentials) {
		t.Fatalf("after other changes: new World %v, same Credentials map %v", w2 != w1, sameMap(w1.Config.Credentials, w2.Config.Credentials))
	}

	// New bytes: a new entry for that Secret only, in a new map.
	x.upsertSecret(testSecret("in", "a", corev1.SecretTypeTLS, "a2"))
	w3 := x.build()
	if w3 == w2 || model.SameConfig(w2, w3) || sameMap(w2.Config.Credentials, w3.Config.Credentials) {
		t.Fatal("a changed Secret did not make a new World with a new Credentials map")
	}
	if c := w3.Credential("in", "a"); c == w2.Credential("in", "a") || string(c.Cert) != "a2" {
		t.Errorf("in/a after its update: %+v", c)
	}
	if w3.Credential("in", "b") != w2.Credential("in", "b") {
		t.Error("the unchanged Secret got a new pointer")
	}
	if string(w2.Credential("in", "a").Cert) != "a1" || len(w2.Config.Credentials) != 2 {
		t.Error("the previous World changed")
	}
	if !slices.Equal(w3.Config.VirtualServices, w2.Config.VirtualServices) || w3.Services[0] != w2.Services[0] {
		t.Error("a Secret change replaced config objects or Services")
	}

	// Out of scope: no new World; brought into scope: there, same pointers.
	x.upsertSecret(testSecret("out", "a", corev1.SecretTypeTLS, "out2"))
	x.deleteSecret(objKey{"out", "missing"})
	if x.build() != w3 {
		t.Error("an out-of-scope Secret change made a new World")
	}
	x.upsertNamespace(&testNamespace("out", map[string]string{"mesh": "on"}).ObjectMeta)
	w4 := x.build()
	if got, want := keys(w4), []string{"in/a", "in/b", "out/a"}; !slices.Equal(got, want) {
		t.Fatalf("after relabelling: %v, want %v", got, want)
	}
	if w4.Credential("in", "a") != w3.Credential("in", "a") || string(w4.Credential("out", "a").Cert) != "out2" {
		t.Error("a scope change replaced a credential, or missed an update")
	}

	// Deletion removes; a Secret turning Opaque (only files can) too;
	// deleting what is not there changes nothing.
	x.deleteSecret(objKey{"in", "a"})
	x.upsertSecret(testSecret("out", "a", corev1.SecretTypeOpaque, "out3"))
	w5 := x.build()
	if got, want := keys(w5), []string{"in/b"}; !slices.Equal(got, want) {
		t.Fatalf("after the deletes: %v, want %v", got, want)
	}
	x.deleteSecret(objKey{"in", "a"})
	x.upsertSecret(testSecret("in", "opaque", corev1.SecretTypeOpaque, "o2"))
	if x.build() != w5 {
		t.Error("deleting absent Secrets made a new World")
	}
	x.deleteSecret(objKey{"in", "b"})
	if w6 := x.build(); w6.Config.Credentials != nil {
		t.Errorf("no credentials left, yet %v", keys(w6))
	}
}

func TestBuildWorldWithSecrets(t *testing.T) {
	fromFile := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "file", Namespace: "a"},
		Type:       corev1.SecretTypeTLS,
		StringData: map[string]string{corev1.TLSCertKey: "file-cert", corev1.TLSPrivateKeyKey: "file-key"},
	}
	w, err := BuildWorld(Options{DiscoverySelectors: meshSelector},
		testNamespace("a", map[string]string{"mesh": "on"}), testNamespace("b", nil),
		testSecret("a", "gw-cert", corev1.SecretTypeTLS, "cert"), fromFile,
		testSecret("a", "opaque", corev1.SecretTypeOpaque, "cert"),
		testSecret("b", "gw-cert", corev1.SecretTypeTLS, "cert"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := slices.Sorted(maps.Keys(w.Config.Credentials)), []string{"a/file", "a/gw-cert"}; !slices.Equal(got, want) {
		t.Fatalf("credentials %v, want %v", got, want)
	}
	if c := w.Credential("a", "gw-cert"); string(c.Cert) != "cert" || string(c.Key) != "cert-key" || string(c.CA) != "cert-ca" {
		t.Errorf("a/gw-cert: cert=%q key=%q ca=%q", c.Cert, c.Key, c.CA)
	}
	if c := w.Credential("a", "file"); string(c.Cert) != "file-cert" || string(c.Key) != "file-key" || c.CA != nil {
		t.Errorf("a/file: cert=%q key=%q ca=%q", c.Cert, c.Key, c.CA)
	}
}

// TestDiscoveryCredentials follows TLS Secrets from the API server into
// Worlds: only kubernetes.io/tls ones are listed at all, trimmed, in scope
// only; an update gives new bytes behind a new pointer, an annotation edit
// or any change to another Secret no World; deletion removes.
func TestDiscoveryCredentials(t *testing.T) {
	cfg, c := apiServer(t)
	ctx := context.Background()
	const nsIn, nsOut = "cred-in", "cred-out"
	create(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsIn, Labels: map[string]string{"mesh": "on"}}})
	create(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsOut}})
	tlsSecret := testSecret(nsIn, "gw-cert", corev1.SecretTypeTLS, "cert-1")
	tlsSecret.Annotations = map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{...}"}
	create(t, c, tlsSecret)
	// The keys of a credential, but Opaque: not one.
	opaque := testSecret(nsIn, "opaque", corev1.SecretTypeOpaque, "opaque-1")
	create(t, c, opaque)
	create(t, c, testSecret(nsOut, "gw-cert", corev1.SecretTypeTLS, "out-1"))

	d := startDiscovery(t, cfg, Options{DiscoverySelectors: meshSelector})
	w0 := d.World()
	got := w0.Credential(nsIn, "gw-cert")
	if got == nil || string(got.Cert) != "cert-1" || string(got.Key) != "cert-1-key" || string(got.CA) != "cert-1-ca" {
		t.Fatalf("the TLS Secret in the first World: %+v", got)
	}
	if got.CreationUnix != tlsSecret.CreationTimestamp.Unix() || got.CreationUnix == 0 {
		t.Errorf("credential meta %+v, Secret created %v", got.Meta, tlsSecret.CreationTimestamp)
	}
	for k := range w0.Config.Credentials {
		if k == nsIn+"/opaque" || k == nsOut+"/gw-cert" {
			t.Errorf("%s is in the World", k)
		}
	}
	func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.idx.credentials.objs[objKey{nsOut, "gw-cert"}] == nil {
			t.Error("the out-of-scope Secret was not seen, so its absence proves nothing")
		}
	}()
	// The field selector keeps the Opaque Secret out of the cache; the TLS
	// one is there, trimmed.
	if err := d.cache.Get(ctx, client.ObjectKeyFromObject(opaque), &corev1.Secret{}); !apierrors.IsNotFound(err) {
		t.Errorf("getting the Opaque Secret from the cache: %v, want not found", err)
	}
	var cached corev1.Secret
	if err := d.cache.Get(ctx, client.ObjectKeyFromObject(tlsSecret), &cached); err != nil {
		t.Fatal(err)
	}
	if len(cached.Data) != 3 || cached.Data["unrelated"] != nil || cached.Annotations != nil || cached.ManagedFields != nil {
		t.Errorf("cached Secret not trimmed: %d keys, annotations %v, %d managed fields", len(cached.Data), cached.Annotations, len(cached.ManagedFields))
	}

	// Neither a change to the Opaque Secret nor an annotation edit of the TLS
	// one makes a World. One watch stream carries both, in order: once the
	// cache holds the later write, the earlier was delivered, were it watched.
	select {
	case <-d.Changes():
	default:
	}
	opaque.Data[corev1.TLSCertKey] = []byte("opaque-2")
	update(t, c, opaque)
	tlsSecret.Annotations["example.com/touched"] = "yes"
	update(t, c, tlsSecret)
	eventually(t, "the cache to see the annotation edit", func() (bool, string) {
		var s corev1.Secret
		if err := d.cache.Get(ctx, client.ObjectKeyFromObject(tlsSecret), &s); err != nil {
			return false, err.Error()
		}
		return s.ResourceVersion == tlsSecret.ResourceVersion, s.ResourceVersion
	})
	select {
	case <-d.Changes():
		t.Fatal("an Opaque Secret change or an annotation edit signalled a change")
	case <-time.After(2 * time.Second):
	}
	if d.World() != w0 {
		t.Fatal("an Opaque Secret change or an annotation edit made a new World")
	}

	// New tls.crt: a new World, a new credential with the new bytes.
	tlsSecret.Data[corev1.TLSCertKey] = []byte("cert-2")
	expectChange(t, d, "updating tls.crt", func() { update(t, c, tlsSecret) })
	eventually(t, "the new certificate", func() (bool, string) {
		cred := d.World().Credential(nsIn, "gw-cert")
		return cred != nil && string(cred.Cert) == "cert-2", fmt.Sprintf("%+v", cred)
	})
	w1 := d.World()
	if w1.Credential(nsIn, "gw-cert") == got || model.SameConfig(w0, w1) {
		t.Error("the updated Secret kept its pointer")
	}
	if string(got.Cert) != "cert-1" {
		t.Errorf("the first World's credential changed to %q", got.Cert)
	}

	// A change elsewhere keeps the credentials.
	expectChange(t, d, "creating a Service", func() { create(t, c, kubeService(nsIn, "gw")) })
	eventually(t, "the Service", func() (bool, string) {
		return d.World().ServiceByHostname("gw.cred-in.svc.cluster.local") != nil, "absent"
	})
	if w2 := d.World(); !model.SameConfig(w1, w2) {
		t.Error("a Service change replaced the credentials")
	}

	// Deletion removes it.
	expectChange(t, d, "deleting the TLS Secret", func() {
		if err := c.Delete(ctx, tlsSecret); err != nil {
			t.Fatal(err)
		}
	})
	eventually(t, "the credential deleted", func() (bool, string) {
		cred := d.World().Credential(nsIn, "gw-cert")
		return cred == nil, fmt.Sprintf("%+v", cred)
	})
}
