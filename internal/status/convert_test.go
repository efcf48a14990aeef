package status

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1"
	security "istio.io/api/security/v1beta1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/meshplane/meshplane/internal/istio/validation"
	"github.com/meshplane/meshplane/internal/model"
)

// routeTo is a VirtualService for host routing everything to destination (and subset).
func routeTo(ns, name, host, destination, subset string, generation int64) *model.VirtualService {
	return &model.VirtualService{
		Meta: model.Meta{Name: name, Namespace: ns, Generation: generation, CreationUnix: 1700000000},
		Spec: &networking.VirtualService{
			Hosts: []string{host},
			Http: []*networking.HTTPRoute{{Route: []*networking.HTTPRouteDestination{{
				Destination: &networking.Destination{Host: destination, Subset: subset},
			}}}},
		},
	}
}

// shopWorld has the web Service with a DestinationRule defining subset v1, a VirtualService
// routing to it and one routing to subset v9, which nothing defines; a Gateway, a Sidecar, a
// ServiceEntry for api.example.com, and a pod of web.
func shopWorld() *model.World {
	return model.NewWorldWithConfig(model.MeshConfig{},
		[]*model.Service{{
			Name: "web", Namespace: "shop", Hostname: "web.shop.svc.cluster.local", ClusterIP: "10.0.0.1",
			Labels: map[string]string{"app": "web"},
			Ports:  []model.ServicePort{{Name: "http", Port: 80, Protocol: model.ProtocolHTTP}},
		}},
		[]*model.Workload{{Name: "web-1", Namespace: "shop", IP: "10.1.0.1", Labels: map[string]string{"app": "web", "version": "v1"}}},
		model.Config{
			VirtualServices: []*model.VirtualService{
				routeTo("shop", "web", "web", "web", "v1", 1),
				routeTo("shop", "web-broken", "broken.example.com", "web", "v9", 3),
			},
			DestinationRules: []*model.DestinationRule{{
				Meta: model.Meta{Name: "web", Namespace: "shop", Generation: 2},
				Spec: &networking.DestinationRule{Host: "web", Subsets: []*networking.Subset{{Name: "v1", Labels: map[string]string{"version": "v1"}}}},
			}},
			Gateways: []*model.Gateway{{
				Meta: model.Meta{Name: "public", Namespace: "shop", Generation: 1},
				Spec: &networking.Gateway{Servers: []*networking.Server{{Hosts: []string{"*"}, Port: &networking.Port{Number: 80, Name: "http", Protocol: "HTTP"}}}},
			}},
			ServiceEntries: []*model.ServiceEntry{{
				Meta: model.Meta{Name: "api", Namespace: "shop", Generation: 1},
				Spec: &networking.ServiceEntry{
					Hosts: []string{"api.example.com"}, Resolution: networking.ServiceEntry_DNS,
					Ports: []*networking.ServicePort{{Number: 443, Name: "tls", Protocol: "TLS"}},
				},
			}},
			Sidecars: []*model.Sidecar{{
				Meta: model.Meta{Name: "default", Namespace: "shop", Generation: 1},
				Spec: &networking.Sidecar{Egress: []*networking.IstioEgressListener{{Hosts: []string{"./*"}}}},
			}},
		})
}

// TestAnalysisInput turns a World back into the analyzer's typed objects: every Istio kind with
// its name, namespace, generation and spec (a copy), Kubernetes Services with their ports but not
// the Services a ServiceEntry made, and workloads as Pods with their labels.
func TestAnalysisInput(t *testing.T) {
	world := shopWorld()
	if world.ServiceByHostname("api.example.com") == nil {
		t.Fatal("the World has no Service for the ServiceEntry, so leaving it out proves nothing")
	}
	objects := analysisInput(world)

	var got []string
	for _, o := range objects {
		got = append(got, fmt.Sprintf("%s %s %s/%s gen=%d", o.APIVersion, o.Kind, o.Namespace(), o.Name(), o.Object.GetGeneration()))
	}
	want := []string{
		"networking.istio.io/v1 VirtualService shop/web gen=1",
		"networking.istio.io/v1 VirtualService shop/web-broken gen=3",
		"networking.istio.io/v1 DestinationRule shop/web gen=2",
		"networking.istio.io/v1 Gateway shop/public gen=1",
		"networking.istio.io/v1 ServiceEntry shop/api gen=1",
		"networking.istio.io/v1 Sidecar shop/default gen=1",
		"v1 Service shop/web gen=0",
		"v1 Pod shop/web-1 gen=0",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("objects:\n%q\nwant\n%q", got, want)
	}

	vs := objects[1].Object.(*networkingv1.VirtualService)
	if !proto.Equal(&vs.Spec, world.Config.VirtualServices[1].Spec) {
		t.Errorf("VirtualService spec %v, want %v", &vs.Spec, world.Config.VirtualServices[1].Spec)
	}
	for i, spec := range []proto.Message{
		&objects[2].Object.(*networkingv1.DestinationRule).Spec,
		&objects[3].Object.(*networkingv1.Gateway).Spec,
		&objects[4].Object.(*networkingv1.ServiceEntry).Spec,
		&objects[5].Object.(*networkingv1.Sidecar).Spec,
	} {
		if proto.Size(spec) == 0 {
			t.Errorf("object %d has an empty spec", i+2)
		}
	}
	vs.Spec.Http[0].Route[0].Destination.Subset = "changed"
	if world.Config.VirtualServices[1].Spec.Http[0].Route[0].Destination.Subset != "v9" {
		t.Error("changing the converted spec changed the World's")
	}

	svc := objects[6].Object.(*corev1.Service)
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "http" || svc.Spec.Ports[0].Port != 80 {
		t.Errorf("Service ports %+v, want http 80", svc.Spec.Ports)
	}
	if pod := objects[7].Object.(*corev1.Pod); pod.Labels["version"] != "v1" {
		t.Errorf("Pod labels %v", pod.Labels)
	}
}

// TestAnalysisOfWorld runs the analyzer on the converted World: the route to the undefined
// subset is found and attributed to its VirtualService; the route to the defined one and the
// ServiceEntry's host are fine.
func TestAnalysisOfWorld(t *testing.T) {
	world := shopWorld()
	// A route to the ServiceEntry's host resolves through the ServiceEntry object.
	world.Config.VirtualServices[0].Spec.Http = append(world.Config.VirtualServices[0].Spec.Http, &networking.HTTPRoute{
		Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "api.example.com"}}},
	})
	findings := validation.Analyze(analysisInput(world))
	var got []string
	for _, f := range findings {
		got = append(got, f.Code.ID+" "+f.Object()+" "+f.Field)
	}
	want := []string{"MP1001 VirtualService shop/web-broken spec.http[0].route[0].destination.subset"}
	if !slices.Equal(got, want) {
		t.Fatalf("findings %q, want %q", got, want)
	}
}

// securityWorld has, in the root namespace mesh-root, two mesh-wide PeerAuthentications (strict
// is older, so permissive is ignored), and in shop an AuthorizationPolicy and a
// RequestAuthentication.
func securityWorld() *model.World {
	return model.NewWorldWithConfig(model.MeshConfig{RootNamespace: "mesh-root"}, nil, nil, model.Config{
		PeerAuthentications: []*model.PeerAuthentication{
			{
				Meta: model.Meta{Name: "permissive", Namespace: "mesh-root", Generation: 2, CreationUnix: 1700000100},
				Spec: &security.PeerAuthentication{Mtls: &security.PeerAuthentication_MutualTLS{Mode: security.PeerAuthentication_MutualTLS_PERMISSIVE}},
			},
			{
				Meta: model.Meta{Name: "strict", Namespace: "mesh-root", Generation: 1, CreationUnix: 1700000000},
				Spec: &security.PeerAuthentication{Mtls: &security.PeerAuthentication_MutualTLS{Mode: security.PeerAuthentication_MutualTLS_STRICT}},
			},
		},
		AuthorizationPolicies: []*model.AuthorizationPolicy{{
			Meta: model.Meta{Name: "viewer", Namespace: "shop", Generation: 4},
			Spec: &security.AuthorizationPolicy{Rules: []*security.Rule{{To: []*security.Rule_To{{
				Operation: &security.Operation{Methods: []string{"GET"}},
			}}}}},
		}},
		RequestAuthentications: []*model.RequestAuthentication{{
			Meta: model.Meta{Name: "jwt", Namespace: "shop", Generation: 1},
			Spec: &security.RequestAuthentication{JwtRules: []*security.JWTRule{{
				Issuer: "https://issuer.example.com", JwksUri: "https://issuer.example.com/jwks",
			}}},
		}},
	})
}

// TestAnalysisOfSecurityPolicies: the security kinds reach the analyzer as security.istio.io/v1
// objects with their specs and creation times, and the World's root namespace names the ignored
// PeerAuthentication mesh-wide.
func TestAnalysisOfSecurityPolicies(t *testing.T) {
	world := securityWorld()
	objects := analysisInput(world)
	var got []string
	for _, o := range objects {
		created := "none"
		if ts := o.Object.GetCreationTimestamp(); !ts.IsZero() {
			created = fmt.Sprint(ts.Unix())
		}
		got = append(got, fmt.Sprintf("%s %s %s/%s gen=%d created=%s", o.APIVersion, o.Kind, o.Namespace(), o.Name(),
			o.Object.GetGeneration(), created))
	}
	want := []string{
		"security.istio.io/v1 PeerAuthentication mesh-root/permissive gen=2 created=1700000100",
		"security.istio.io/v1 PeerAuthentication mesh-root/strict gen=1 created=1700000000",
		"security.istio.io/v1 AuthorizationPolicy shop/viewer gen=4 created=none",
		"security.istio.io/v1 RequestAuthentication shop/jwt gen=1 created=none",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("objects:\n%q\nwant\n%q", got, want)
	}
	if ap := objects[2].Object.(*securityv1.AuthorizationPolicy); !proto.Equal(&ap.Spec, world.Config.AuthorizationPolicies[0].Spec) {
		t.Errorf("AuthorizationPolicy spec %v", &ap.Spec)
	}
	if ra := objects[3].Object.(*securityv1.RequestAuthentication); !proto.Equal(&ra.Spec, world.Config.RequestAuthentications[0].Spec) {
		t.Errorf("RequestAuthentication spec %v", &ra.Spec)
	}

	findings := validation.AnalyzeWith(objects, validation.Options{RootNamespace: world.Mesh.RootNamespace})
	if len(findings) != 1 || findings[0].Code != validation.CodeConflictingPeerAuthentications || findings[0].Name != "permissive" ||
		!strings.Contains(findings[0].Message, "PeerAuthentication mesh-root/strict is the oldest mesh-wide PeerAuthentication") {
		t.Fatalf("findings: %+v", findings)
	}
}
