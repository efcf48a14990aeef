package xds_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	grpcmetadata "google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/agent"
	"github.com/meshplane/meshplane/internal/ca"
	"github.com/meshplane/meshplane/internal/controlplane"
	"github.com/meshplane/meshplane/internal/meshd"
	"github.com/meshplane/meshplane/internal/xds/server"
	"github.com/meshplane/meshplane/test/apps/echo"
	"github.com/meshplane/meshplane/test/framework"
)

// The security test runs the whole chain with real parts: meshd's control
// plane with its CA on the TLS port, mesh-agent per workload (token from the
// TokenRequest API, certificates over the TLS port, files for grpc-go, xDS
// proxied with the token), and grpc-go servers and clients with xDS
// credentials, over loopback with real TLS.
const (
	securityNS    = "mesh-security"
	meshRootNS    = "meshplane-system"
	greeterPort   = 50151
	trustDomain   = "cluster.local"
	rootConfigMap = "meshplane-ca-root-cert"
)

func spiffe(sa string) string { return "spiffe://" + trustDomain + "/ns/" + securityNS + "/sa/" + sa }

// meshWorkload is a pod with a mesh agent: its token, certificates and
// grpc-go bootstrap (pointing at the agent's xDS proxy).
type meshWorkload struct {
	name, sa, ip string
	dir          string
	bootstrap    []byte
}

func (w *meshWorkload) certChainFile() string {
	return filepath.Join(w.dir, "certs", agent.CertChainFile)
}

func TestMeshSecurity(t *testing.T) {
	kube := kubernetes.NewForConfigOrDie(restConfig)
	ensureNamespace(t, meshRootNS)
	ensureNamespace(t, securityNS)
	installIstioCRDs(t, istioClient(t))
	ensureSelfSignedCA(t)

	// meshd: plaintext xDS for the non-mesh client, TLS xDS + the CA for
	// the agents. The serving certificate names localhost, which the agents
	// dial.
	cp, err := controlplane.New(controlplane.Options{
		RestConfig:      restConfig,
		XDSAddr:         "127.0.0.1:0",
		SecureXDSAddr:   "127.0.0.1:0",
		Namespace:       meshRootNS,
		ServingDNSNames: []string{"localhost"},
		Debounce:        server.Debounce{Quiet: 20 * time.Millisecond, Max: 200 * time.Millisecond},
		Logger:          testr.New(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	cp.SetMeshConfig(&meshd.MeshConfig{TrustDomain: trustDomain, OutboundTrafficPolicy: "ALLOW_ANY", CA: meshd.CAConfig{Type: meshd.CASelfSigned}})
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- cp.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
		}
	})
	framework.Poll(t, wait, "meshd ready", func() error {
		if ok, why := cp.Ready(); !ok {
			return errors.New(why)
		}
		return nil
	})
	_, securePort, _ := net.SplitHostPort(cp.SecureXDSAddr().String())
	secureAddr := net.JoinHostPort("localhost", securePort)

	// The root every workload trusts comes from the ConfigMap meshd
	// publishes in its namespace.
	rootFile := filepath.Join(t.TempDir(), "root-cert.pem")
	framework.Poll(t, wait, "root ConfigMap published in "+securityNS, func() error {
		var cm corev1.ConfigMap
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: securityNS, Name: rootConfigMap}, &cm); err != nil {
			return err
		}
		if cm.Data["root-cert.pem"] == "" {
			return errors.New("no root-cert.pem")
		}
		return os.WriteFile(rootFile, []byte(cm.Data["root-cert.pem"]), 0o644)
	})

	// Workloads: the greeter server and clients a and b run mesh agents;
	// certificates live 6 s, so that the test outlasts several of them.
	const certTTL = 6 * time.Second
	greeter := startMeshWorkload(t, kube, "greeter-0", "greeter", echo.PodIP(61), secureAddr, rootFile, certTTL)
	clientA := startMeshWorkload(t, kube, "client-a", "client-a", echo.PodIP(62), secureAddr, rootFile, certTTL)
	clientB := startMeshWorkload(t, kube, "client-b", "client-b", echo.PodIP(63), secureAddr, rootFile, certTTL)
	createSecuredService(t, "greeter", greeterPort, greeter)

	server := &echo.Server{Name: greeter.name}
	serveMesh(t, server, greeter)

	target := fmt.Sprintf("xds:///greeter.%s.svc.cluster.local:%d", securityNS, greeterPort)
	a := dialMesh(t, clientA, target)
	b := dialMesh(t, clientB, target)
	// The plaintext client is outside the mesh: no agent, no xDS, no
	// certificate; it dials the pod directly from an address meshd knows
	// no mesh workload at.
	plain, err := grpc.NewClient("passthrough:///"+net.JoinHostPort(greeter.ip, fmt.Sprint(greeterPort)),
		grpc.WithTransportCredentials(insecure.NewCredentials()), echo.PodDialer())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { plain.Close() })

	policies := &appliedPolicies{}
	t.Cleanup(func() { policies.deleteAll(t) })

	t.Run("PERMISSIVE by default: mesh clients use mTLS, plaintext clients are served", func(t *testing.T) {
		expectIdentity(t, a, spiffe("client-a"))
		expectIdentity(t, plain, "")
	})

	t.Run("STRICT refuses plaintext, serves mesh clients", func(t *testing.T) {
		policies.apply(t, peerAuthentication("default", "STRICT"))
		expectCode(t, plain, codes.Unavailable)
		expectIdentity(t, a, spiffe("client-a"))
	})

	t.Run("DISABLE: mTLS is not used", func(t *testing.T) {
		policies.apply(t, peerAuthentication("default", "DISABLE"))
		expectIdentity(t, a, "")
		expectIdentity(t, plain, "")
	})

	t.Run("AuthorizationPolicy: identity A allowed, B denied; DENY beats ALLOW; empty ALLOW denies all", func(t *testing.T) {
		policies.apply(t, peerAuthentication("default", "STRICT"))
		policies.apply(t, authorizationPolicy("allow-a", "ALLOW", `
  rules:
    - from:
        - source:
            principals: ["cluster.local/ns/`+securityNS+`/sa/client-a"]`))
		expectIdentity(t, a, spiffe("client-a"))
		expectCode(t, b, codes.PermissionDenied)

		policies.apply(t, authorizationPolicy("deny-a", "DENY", `
  rules:
    - from:
        - source:
            principals: ["cluster.local/ns/`+securityNS+`/sa/client-a"]`))
		expectCode(t, a, codes.PermissionDenied)
		policies.delete(t, "AuthorizationPolicy", "deny-a")
		expectIdentity(t, a, spiffe("client-a"))

		// An ALLOW policy with no rules, alone, allows nothing (another
		// ALLOW policy would still allow what it matches, as in Istio).
		policies.delete(t, "AuthorizationPolicy", "allow-a")
		policies.apply(t, authorizationPolicy("allow-nothing", "ALLOW", ""))
		expectCode(t, a, codes.PermissionDenied)
		expectCode(t, b, codes.PermissionDenied)
		policies.delete(t, "AuthorizationPolicy", "allow-nothing")
		expectIdentity(t, b, spiffe("client-b"))
	})

	t.Run("the certificate service gives a token only its own identity", func(t *testing.T) {
		certClient := certificateClient(t, secureAddr, rootFile)
		token := serviceAccountToken(t, kube, "client-b", "istio-ca")
		// Token for client-b, CSR asking for greeter's identity: refused.
		_, err := certClient.CreateCertificate(withToken(token),
			&securityv1alpha1.IstioCertificateRequest{Csr: string(csrFor(t, spiffe("greeter"))), ValidityDuration: 600})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("client-b's token asking for greeter's identity: %v, want InvalidArgument", err)
		}
		// A token that is not the API server's: refused.
		_, err = certClient.CreateCertificate(withToken("not-a-token"),
			&securityv1alpha1.IstioCertificateRequest{Csr: string(csrFor(t, "")), ValidityDuration: 600})
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("a bad token: %v, want Unauthenticated", err)
		}
		// Its own identity: issued, and only that identity.
		resp, err := certClient.CreateCertificate(withToken(token),
			&securityv1alpha1.IstioCertificateRequest{Csr: string(csrFor(t, "")), ValidityDuration: 600})
		if err != nil {
			t.Fatal(err)
		}
		leaf := parseLeaf(t, resp.GetCertChain()[0])
		if len(leaf.URIs) != 1 || leaf.URIs[0].String() != spiffe("client-b") || len(leaf.DNSNames) > 0 || len(leaf.IPAddresses) > 0 {
			t.Errorf("client-b's certificate names %v %v %v", leaf.URIs, leaf.DNSNames, leaf.IPAddresses)
		}
	})

	t.Run("certificates rotate before they expire while calls keep succeeding", func(t *testing.T) {
		// Connections live at most 2 s (the server's MaxConnectionAge), so
		// new handshakes keep using whatever certificates the agents hold.
		serials := map[string]map[string]bool{} // workload → serials seen
		var failed, ok int
		deadline := time.Now().Add(3 * certTTL)
		for time.Now().Before(deadline) {
			callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, id, err := echo.CallIdentity(callCtx, a, grpc.WaitForReady(true))
			cancel()
			switch {
			case err != nil:
				failed++
				t.Errorf("call failed during rotation: %v", err)
			case id != spiffe("client-a"):
				failed++
				t.Errorf("call seen from %q", id)
			default:
				ok++
			}
			for _, w := range []*meshWorkload{greeter, clientA} {
				if serial, err := leafSerial(w.certChainFile()); err == nil {
					if serials[w.name] == nil {
						serials[w.name] = map[string]bool{}
					}
					serials[w.name][serial] = true
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		if failed > 0 || ok == 0 {
			t.Fatalf("%d calls failed, %d succeeded", failed, ok)
		}
		// Over three lifetimes each agent held at least three certificates.
		for _, w := range []*meshWorkload{greeter, clientA} {
			if n := len(serials[w.name]); n < 3 {
				t.Errorf("%s held %d certificates over %s; want rotation at half life", w.name, n, 3*certTTL)
			}
		}
	})
}

// ensureSelfSignedCA creates the CA Secret the operator would (SelfSigned),
// once per API server.
func ensureSelfSignedCA(t *testing.T) {
	t.Helper()
	bundle, err := ca.GenerateRoot(trustDomain)
	if err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.SelfSignedCASecretName, Namespace: meshRootNS},
		Data:       bundle.SecretData(),
	}
	if err := k8s.Create(ctx, secret); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// startMeshWorkload creates the pod (labelled as injected: tlsMode istio)
// and its ServiceAccount, and runs its mesh agent in files mode until the
// test ends; it returns once the agent wrote the grpc-go bootstrap.
func startMeshWorkload(t *testing.T, kube kubernetes.Interface, name, sa, ip, secureAddr, rootFile string, ttl time.Duration) *meshWorkload {
	t.Helper()
	account := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa, Namespace: securityNS}}
	if err := k8s.Create(ctx, account); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: securityNS, Labels: map[string]string{
			"app": sa, "security.istio.io/tlsMode": "istio",
		}},
		Spec: corev1.PodSpec{ServiceAccountName: sa, Containers: []corev1.Container{{Name: "app", Image: "example.com/app:1"}}},
	}
	if err := k8s.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(ctx, pod, client.GracePeriodSeconds(0)) })
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}}
	if err := k8s.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}

	w := &meshWorkload{name: name, sa: sa, ip: ip, dir: t.TempDir()}
	tokenFile := filepath.Join(w.dir, "istio-token")
	if err := os.WriteFile(tokenFile, []byte(serviceAccountToken(t, kube, sa, "istio-ca")), 0o600); err != nil {
		t.Fatal(err)
	}
	bootstrapFile := filepath.Join(w.dir, "grpc-bootstrap.json")
	agentCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- agent.Run(agentCtx, agent.Config{
			Mode:              agent.ModeFiles,
			CAAddr:            secureAddr,
			XDSAddr:           secureAddr,
			RootCertFile:      rootFile,
			TokenFile:         tokenFile,
			CertTTL:           ttl,
			TrustDomain:       trustDomain,
			OutputDir:         filepath.Join(w.dir, "certs"),
			GRPCBootstrapFile: bootstrapFile,
			XDSProxyListen:    "unix://" + filepath.Join(w.dir, "xds.sock"),
			Node:              agent.Node{PodName: name, Namespace: securityNS, IP: ip},
			Logger:            testr.New(t).WithName(name),
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("mesh agent of %s: %v", name, err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("mesh agent of %s did not stop", name)
		}
	})
	framework.Poll(t, wait, name+"'s agent wrote its bootstrap", func() error {
		select {
		case err := <-done:
			t.Fatalf("mesh agent of %s ended: %v", name, err)
		default:
		}
		b, err := os.ReadFile(bootstrapFile)
		if err != nil {
			return err
		}
		w.bootstrap = b
		return nil
	})
	return w
}

// createSecuredService is the Service and EndpointSlice of the backends.
func createSecuredService(t *testing.T, name string, port int, backends ...*meshWorkload) {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: securityNS},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{
			Name: "grpc", Port: int32(port), Protocol: corev1.ProtocolTCP,
		}}},
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-slice", Namespace: securityNS,
			Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("grpc"), Port: ptr.To(int32(port)), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for _, b := range backends {
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{b.ip},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: securityNS, Name: b.name},
		})
	}
	for _, obj := range []client.Object{svc, slice} {
		if err := k8s.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = k8s.Delete(ctx, obj) })
	}
}

// serveMesh runs impl as w's xDS server with xDS credentials until the test
// ends; connections live at most 2 s, so clients handshake again and again.
func serveMesh(t *testing.T, impl *echo.Server, w *meshWorkload) {
	t.Helper()
	serving := make(chan struct{})
	var once sync.Once
	srv, err := echo.NewMeshXDSServerFor(impl, w.bootstrap,
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionAge: 2 * time.Second, MaxConnectionAgeGrace: 5 * time.Second}),
		xds.ServingModeCallback(func(_ net.Addr, args xds.ServingModeChangeArgs) {
			if args.Mode == connectivity.ServingModeServing {
				once.Do(func() { close(serving) })
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := echo.ListenPod(w.ip, greeterPort)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(lis) })
	t.Cleanup(func() { srv.Stop(); wg.Wait() })
	select {
	case <-serving:
	case <-time.After(wait):
		t.Fatalf("%s not serving after %s", w.name, wait)
	}
}

func dialMesh(t *testing.T, w *meshWorkload, target string) *grpc.ClientConn {
	t.Helper()
	conn, err := echo.DialMesh(target, w.bootstrap, w.ip)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// expectIdentity waits until a call through conn succeeds and the server
// saw it from identity ("" for plaintext): configuration takes a moment to
// reach every party.
func expectIdentity(t *testing.T, conn *grpc.ClientConn, identity string) {
	t.Helper()
	framework.Poll(t, wait, fmt.Sprintf("a call seen from %q", identity), func() error {
		callCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		_, got, err := echo.CallIdentity(callCtx, conn)
		if err != nil {
			return err
		}
		if got != identity {
			return fmt.Errorf("seen from %q", got)
		}
		return nil
	})
}

// expectCode waits until calls through conn fail with code.
func expectCode(t *testing.T, conn *grpc.ClientConn, code codes.Code) {
	t.Helper()
	framework.Poll(t, wait, "calls failing with "+code.String(), func() error {
		callCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		_, id, err := echo.CallIdentity(callCtx, conn)
		if status.Code(err) != code {
			return fmt.Errorf("call: %v (seen from %q)", err, id)
		}
		return nil
	})
}

// appliedPolicies applies security.istio.io objects in securityNS and deletes
// them at the end.
type appliedPolicies struct {
	objs map[string]*unstructured.Unstructured
}

func (p *appliedPolicies) apply(t *testing.T, doc string) {
	t.Helper()
	obj := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
		t.Fatal(err)
	}
	obj.SetNamespace(securityNS)
	existing := obj.DeepCopy()
	err := k8s.Get(ctx, client.ObjectKeyFromObject(obj), existing)
	switch {
	case apierrors.IsNotFound(err):
		err = k8s.Create(ctx, obj)
	case err == nil:
		obj.SetResourceVersion(existing.GetResourceVersion())
		err = k8s.Update(ctx, obj)
	}
	if err != nil {
		t.Fatalf("applying %s %s: %v", obj.GetKind(), obj.GetName(), err)
	}
	if p.objs == nil {
		p.objs = map[string]*unstructured.Unstructured{}
	}
	p.objs[obj.GetKind()+"/"+obj.GetName()] = obj
}

func (p *appliedPolicies) delete(t *testing.T, kind, name string) {
	t.Helper()
	obj := p.objs[kind+"/"+name]
	if obj == nil {
		t.Fatalf("%s/%s was not applied", kind, name)
	}
	if err := k8s.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	delete(p.objs, kind+"/"+name)
}

func (p *appliedPolicies) deleteAll(t *testing.T) {
	for _, obj := range p.objs {
		_ = k8s.Delete(ctx, obj)
	}
}

func peerAuthentication(name, mode string) string {
	return `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: ` + name + `
spec:
  mtls:
    mode: ` + mode
}

// authorizationPolicy selects the greeter; rules is YAML under spec (may be
// empty: a policy with no rules).
func authorizationPolicy(name, action, rules string) string {
	return `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ` + name + `
spec:
  selector:
    matchLabels:
      app: greeter
  action: ` + action + rules
}

func serviceAccountToken(t *testing.T, kube kubernetes.Interface, sa, audience string) string {
	t.Helper()
	tr, err := kube.CoreV1().ServiceAccounts(securityNS).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: ptr.To(int64(3600))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

func certificateClient(t *testing.T, addr, rootFile string) securityv1alpha1.IstioCertificateServiceClient {
	t.Helper()
	rootPEM, err := os.ReadFile(rootFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(rootPEM) {
		t.Fatal("no root in " + rootFile)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return securityv1alpha1.NewIstioCertificateServiceClient(conn)
}

func withToken(token string) context.Context {
	return grpcmetadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// csrFor is a CSR for a new key, asking for uri (none when empty).
func csrFor(t *testing.T, uri string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.CertificateRequest{}
	if uri != "" {
		u, err := url.Parse(uri)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func parseLeaf(t *testing.T, certPEM string) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode([]byte(certPEM))
	if block == nil {
		t.Fatal("no PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// leafSerial is the serial of the first certificate in a PEM file.
func leafSerial(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return "", errors.New("no PEM block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", err
	}
	return cert.SerialNumber.String(), nil
}
