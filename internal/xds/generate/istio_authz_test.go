package generate

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	extauthznetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rbacnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	security "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"

	"github.com/meshplane/meshplane/internal/golden"
	"github.com/meshplane/meshplane/internal/model"
	"github.com/meshplane/meshplane/internal/xds"
)

// securityResources runs a case's views, each as one section.
func securityResources(t *testing.T, tc securityCase) xds.Resources {
	t.Helper()
	w := securityWorld(tc.config())
	pod := tc.pod
	if pod == "" {
		pod = "web-0"
	}
	wl := w.Workload("shop", pod)
	views := tc.views
	if views == nil {
		views = defaultViews
	}
	res := xds.Resources{}
	for _, v := range views {
		rs := []types.Resource{}
		switch v.kind {
		case targetHTTP:
			fs, err := inboundSecurityHTTPFilters(w, "shop", wl, v.port)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range fs {
				rs = append(rs, f)
			}
		case targetTCP:
			fs, err := inboundSecurityNetworkFilters(w, "shop", wl, v.port)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range fs {
				rs = append(rs, f)
			}
		case targetGRPC:
			fs, err := grpcServerSecurityHTTPFilters(w, "shop", wl, v.port)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range fs {
				rs = append(rs, f)
			}
		}
		res[v.section] = rs
	}
	return res
}

// TestSecurityGolden renders the security filters of every case and
// compares them with testdata/security/<case>.golden.yaml; every filter
// passes ValidateAll, typed configs included. Regenerate with
// UPDATE_GOLDEN=1 go test ./internal/xds/generate/ -run Security.
func TestSecurityGolden(t *testing.T) {
	for _, tc := range securityCases {
		t.Run(tc.name, func(t *testing.T) {
			res := securityResources(t, tc)
			if err := Validate(res); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			got, err := RenderYAML(res)
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join("testdata", "security", tc.name+".golden.yaml"), got)
			again, _ := RenderYAML(securityResources(t, tc))
			if string(again) != string(got) {
				t.Error("a second translation differs from the first")
			}
		})
	}
}

func unpack[T proto.Message](t *testing.T, a *anypb.Any, m T) T {
	t.Helper()
	if err := a.UnmarshalTo(m); err != nil {
		t.Fatalf("unpack %s: %v", a.GetTypeUrl(), err)
	}
	return m
}

func httpFilterNames(fs []*hcmv3.HttpFilter) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.GetName())
	}
	return out
}

// httpRBAC is the RBAC config of the filter named name, or nil.
func httpRBAC(t *testing.T, fs []*hcmv3.HttpFilter, name string) *rbachttpv3.RBAC {
	t.Helper()
	for _, f := range fs {
		if f.GetName() == name {
			return unpack(t, f.GetTypedConfig(), &rbachttpv3.RBAC{})
		}
	}
	return nil
}

func mustHTTP(t *testing.T, w *model.World, pod string, port uint32) []*hcmv3.HttpFilter {
	t.Helper()
	fs, err := inboundSecurityHTTPFilters(w, "shop", w.Workload("shop", pod), port)
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(xds.Resources{"f": toResources(fs)}); err != nil {
		t.Fatal(err)
	}
	return fs
}

func toResources[T types.Resource](fs []T) []types.Resource {
	out := make([]types.Resource, 0, len(fs))
	for _, f := range fs {
		out = append(out, f)
	}
	return out
}

// principalNames collects the principal_name matchers of a principal tree
// as "exact:x", "prefix:x", "suffix:x", "regex:x".
func principalNames(p *rbacv3.Principal) []string {
	var out []string
	var walk func(p *rbacv3.Principal)
	walk = func(p *rbacv3.Principal) {
		switch id := p.GetIdentifier().(type) {
		case *rbacv3.Principal_AndIds:
			for _, c := range id.AndIds.GetIds() {
				walk(c)
			}
		case *rbacv3.Principal_OrIds:
			for _, c := range id.OrIds.GetIds() {
				walk(c)
			}
		case *rbacv3.Principal_NotId:
			walk(id.NotId)
		case *rbacv3.Principal_Authenticated_:
			m := id.Authenticated.GetPrincipalName()
			switch {
			case m.GetExact() != "":
				out = append(out, "exact:"+m.GetExact())
			case m.GetPrefix() != "":
				out = append(out, "prefix:"+m.GetPrefix())
			case m.GetSuffix() != "":
				out = append(out, "suffix:"+m.GetSuffix())
			case m.GetSafeRegex() != nil:
				out = append(out, "regex:"+m.GetSafeRegex().GetRegex())
			}
		}
	}
	walk(p)
	return out
}

// TestAuthzApplicability: which policies reach which workload.
func TestAuthzApplicability(t *testing.T) {
	sel := func(p *model.AuthorizationPolicy, labels map[string]string) *model.AuthorizationPolicy {
		p.Spec.Selector = &typev1beta1.WorkloadSelector{MatchLabels: labels}
		return p
	}
	targeted := authzPolicy("shop", "gateway-only", actDeny, nil, &security.Rule{})
	targeted.Spec.TargetRefs = []*typev1beta1.PolicyTargetReference{{Kind: "Gateway", Group: "gateway.networking.k8s.io", Name: "ingress"}}
	w := securityWorld(model.Config{AuthorizationPolicies: []*model.AuthorizationPolicy{
		authzPolicy(rootNS, "mesh-wide", actDeny, nil, &security.Rule{}),
		sel(authzPolicy(rootNS, "root-selector", actDeny, nil, &security.Rule{}), map[string]string{"app": "web"}),
		authzPolicy("shop", "namespace-wide", actDeny, nil, &security.Rule{}),
		sel(authzPolicy("shop", "web-only", actDeny, nil, &security.Rule{}), map[string]string{"app": "web"}),
		sel(authzPolicy("shop", "v2-only", actDeny, nil, &security.Rule{}), map[string]string{"version": "v2"}),
		sel(authzPolicy("data", "other-ns-web", actDeny, nil, &security.Rule{}), map[string]string{"app": "web"}),
		authzPolicy("data", "other-ns", actDeny, nil, &security.Rule{}),
		targeted,
	}})
	names := func(ns string, wl *model.Workload) []string {
		var out []string
		for _, p := range applicableAuthz(w, ns, workloadLabels(wl)) {
			out = append(out, p.Namespace+"/"+p.Name)
		}
		return out
	}
	cases := []struct {
		name string
		ns   string
		wl   *model.Workload
		want []string
	}{
		{"web-0", "shop", w.Workload("shop", "web-0"),
			[]string{rootNS + "/mesh-wide", rootNS + "/root-selector", "shop/namespace-wide", "shop/web-only"}},
		{"client-0 (no labels)", "shop", w.Workload("shop", "client-0"), []string{rootNS + "/mesh-wide", "shop/namespace-wide"}},
		{"unknown workload", "shop", nil, []string{rootNS + "/mesh-wide", "shop/namespace-wide"}},
		{"a web workload elsewhere", "data", &model.Workload{Namespace: "data", Labels: map[string]string{"app": "web"}},
			[]string{"data/other-ns", "data/other-ns-web", rootNS + "/mesh-wide", rootNS + "/root-selector"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := names(tc.ns, tc.wl)
			if !slices.Equal(got, tc.want) {
				t.Errorf("applicable %v, want %v", got, tc.want)
			}
		})
	}
}

// TestAuthzActions: the filters, their order and actions, and the
// principals an ALLOW rule names.
func TestAuthzActions(t *testing.T) {
	cases := []struct {
		name      string
		policies  []*model.AuthorizationPolicy
		tweak     func(*model.MeshConfig)
		wantNames []string
		check     func(t *testing.T, fs []*hcmv3.HttpFilter)
	}{
		{
			name: "allow by principal",
			policies: []*model.AuthorizationPolicy{authzPolicy("shop", "p", actAllow, nil, &security.Rule{
				From: []*security.Rule_From{apFrom(&security.Source{Principals: []string{"cluster.local/ns/shop/sa/client", "*/sa/admin", "cluster.local/ns/ops/*", "*"}})},
			})},
			wantNames: []string{authzAllowFilterName},
			check: func(t *testing.T, fs []*hcmv3.HttpFilter) {
				r := httpRBAC(t, fs, authzAllowFilterName).GetRules()
				if r.GetAction() != rbacv3.RBAC_ALLOW || len(r.GetPolicies()) != 1 {
					t.Fatalf("rules %v", r)
				}
				got := principalNames(r.GetPolicies()["ns[shop]-policy[p]-rule[0]"].GetPrincipals()[0])
				want := []string{"exact:spiffe://cluster.local/ns/shop/sa/client", `regex:spiffe://.*/sa/admin`, "prefix:spiffe://cluster.local/ns/ops/", "regex:.+"}
				if !slices.Equal(got, want) {
					t.Errorf("principal names %q, want %q", got, want)
				}
			},
		},
		{
			name: "trust domain cluster.local means the mesh's",
			policies: []*model.AuthorizationPolicy{authzPolicy("shop", "p", actAllow, nil, &security.Rule{
				From: []*security.Rule_From{apFrom(&security.Source{Principals: []string{"cluster.local/ns/shop/sa/client", "other.org/ns/shop/sa/client"}})},
			})},
			tweak:     func(m *model.MeshConfig) { m.TrustDomain = "example.org" },
			wantNames: []string{authzAllowFilterName},
			check: func(t *testing.T, fs []*hcmv3.HttpFilter) {
				p := httpRBAC(t, fs, authzAllowFilterName).GetRules().GetPolicies()["ns[shop]-policy[p]-rule[0]"]
				got := principalNames(p.GetPrincipals()[0])
				want := []string{"exact:spiffe://example.org/ns/shop/sa/client", "exact:spiffe://other.org/ns/shop/sa/client"}
				if !slices.Equal(got, want) {
					t.Errorf("principal names %q, want %q", got, want)
				}
			},
		},
		{
			name: "an ALLOW without rules denies everything",
			policies: []*model.AuthorizationPolicy{
				authzPolicy("shop", "nothing", actAllow, nil),
				authzPolicy("shop", "no-deny", actDeny, nil),
			},
			wantNames: []string{authzAllowFilterName},
			check: func(t *testing.T, fs []*hcmv3.HttpFilter) {
				r := httpRBAC(t, fs, authzAllowFilterName).GetRules()
				if r.GetAction() != rbacv3.RBAC_ALLOW || len(r.GetPolicies()) != 0 {
					t.Errorf("want an ALLOW with no policies (deny all), got %v", r)
				}
			},
		},
		{
			name: "a DENY with an empty rule denies everything",
			policies: []*model.AuthorizationPolicy{
				authzPolicy("shop", "all", actDeny, nil, &security.Rule{}),
			},
			wantNames: []string{authzDenyFilterName},
			check: func(t *testing.T, fs []*hcmv3.HttpFilter) {
				p := httpRBAC(t, fs, authzDenyFilterName).GetRules().GetPolicies()["ns[shop]-policy[all]-rule[0]"]
				if !proto.Equal(p.GetPrincipals()[0], anyPrincipal) || !proto.Equal(p.GetPermissions()[0], anyPermission) {
					t.Errorf("want any/any, got %v", p)
				}
			},
		},
		{
			name: "order: jwt, custom, audit, deny, allow",
			policies: []*model.AuthorizationPolicy{
				authzPolicy("shop", "a", actAllow, nil, &security.Rule{}),
				authzPolicy("shop", "d", actDeny, nil, &security.Rule{To: []*security.Rule_To{apTo(&security.Operation{Methods: []string{"DELETE"}})}}),
				authzPolicy("shop", "log", actAudit, nil, &security.Rule{}),
				customPolicy("shop", "c", "opa-grpc", &security.Rule{}),
				customPolicy("shop", "c2", "opa-http", &security.Rule{}),
			},
			wantNames: []string{jwtAuthnFilterName,
				authzCustomFilterName + "opa-grpc", extAuthzFilterName + "opa-grpc",
				authzCustomFilterName + "opa-http", extAuthzFilterName + "opa-http",
				authzAuditFilterName, authzDenyFilterName, authzAllowFilterName},
		},
		{
			name: "an invalid value fails an ALLOW rule but only drops out of a DENY rule",
			policies: []*model.AuthorizationPolicy{
				authzPolicy("shop", "a", actAllow, nil, &security.Rule{From: []*security.Rule_From{apFrom(&security.Source{IpBlocks: []string{"x"}})}}),
				authzPolicy("shop", "d", actDeny, nil, &security.Rule{From: []*security.Rule_From{apFrom(&security.Source{IpBlocks: []string{"x"}})}}),
			},
			wantNames: []string{authzDenyFilterName, authzAllowFilterName},
			check: func(t *testing.T, fs []*hcmv3.HttpFilter) {
				if n := len(httpRBAC(t, fs, authzAllowFilterName).GetRules().GetPolicies()); n != 0 {
					t.Errorf("ALLOW has %d policies, want none", n)
				}
				p := httpRBAC(t, fs, authzDenyFilterName).GetRules().GetPolicies()["ns[shop]-policy[d]-rule[0]"]
				if !proto.Equal(p.GetPrincipals()[0], anyPrincipal) {
					t.Errorf("DENY principal %v, want any (denies more)", p.GetPrincipals()[0])
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := model.Config{AuthorizationPolicies: tc.policies}
			if slices.Contains(tc.wantNames, jwtAuthnFilterName) {
				cfg.RequestAuthentications = []*model.RequestAuthentication{requestAuthn("shop", "jwt", nil, &security.JWTRule{Issuer: "i", Jwks: testJWKS})}
			}
			tweak := tc.tweak
			if tweak == nil {
				tweak = func(*model.MeshConfig) {}
			}
			fs := mustHTTP(t, securityWorldMesh(cfg, tweak), "web-0", 8080)
			if got := httpFilterNames(fs); !slices.Equal(got, tc.wantNames) {
				t.Fatalf("filters %q, want %q", got, tc.wantNames)
			}
			if tc.check != nil {
				tc.check(t, fs)
			}
		})
	}
}

// TestAuthzNothingApplies: no filters at all without applicable policies.
func TestAuthzNothingApplies(t *testing.T) {
	w := securityWorld(model.Config{AuthorizationPolicies: []*model.AuthorizationPolicy{
		authzPolicy("data", "elsewhere", actDeny, nil, &security.Rule{}),
	}})
	if fs := mustHTTP(t, w, "web-0", 8080); fs != nil {
		t.Errorf("filters %q, want none", httpFilterNames(fs))
	}
	if fs, _ := inboundSecurityNetworkFilters(w, "shop", w.Workload("shop", "web-0"), 5432); fs != nil {
		t.Errorf("network filters %v, want none", fs)
	}
	if fs, _ := grpcServerSecurityHTTPFilters(w, "shop", w.Workload("shop", "web-0"), 8080); fs != nil {
		t.Errorf("gRPC filters %v, want none", fs)
	}
}

// TestAuthzPorts: a rule for other ports is left out of a port's filters;
// one satisfied by the port carries no port matcher; an unknown port (0)
// leaves the port to Envoy.
func TestAuthzPorts(t *testing.T) {
	w := securityWorld(model.Config{AuthorizationPolicies: []*model.AuthorizationPolicy{
		authzPolicy("shop", "p", actAllow, nil,
			&security.Rule{To: []*security.Rule_To{apTo(&security.Operation{Ports: []string{"8080"}})}},
			&security.Rule{To: []*security.Rule_To{apTo(&security.Operation{NotPorts: []string{"8080"}})}},
		),
	}})
	cases := []struct {
		port uint32
		want []string
	}{
		{8080, []string{"ns[shop]-policy[p]-rule[0]"}},
		{9090, []string{"ns[shop]-policy[p]-rule[1]"}},
		{0, []string{"ns[shop]-policy[p]-rule[0]", "ns[shop]-policy[p]-rule[1]"}},
	}
	for _, tc := range cases {
		pols := httpRBAC(t, mustHTTP(t, w, "web-0", tc.port), authzAllowFilterName).GetRules().GetPolicies()
		if got := sortedKeys(pols); !slices.Equal(got, tc.want) {
			t.Errorf("port %d: policies %q, want %q", tc.port, got, tc.want)
			continue
		}
		perm := pols[tc.want[0]].GetPermissions()[0]
		if tc.port != 0 && !proto.Equal(perm, anyPermission) {
			t.Errorf("port %d: permission %v, want any (the port is known)", tc.port, perm)
		}
		if tc.port == 0 && perm.GetDestinationPort() != 8080 {
			t.Errorf("unknown port: permission %v, want destination_port 8080", perm)
		}
	}
}

// TestAuthzTCP: on a TCP port an ALLOW rule with HTTP attributes is left
// out, and a DENY rule drops them, so it matches more; CUSTOM goes to a gRPC
// provider only.
func TestAuthzTCP(t *testing.T) {
	w := securityWorld(model.Config{AuthorizationPolicies: []*model.AuthorizationPolicy{
		authzPolicy("shop", "a", actAllow, nil,
			&security.Rule{To: []*security.Rule_To{apTo(&security.Operation{Methods: []string{"GET"}})}},
			&security.Rule{From: []*security.Rule_From{apFrom(&security.Source{Namespaces: []string{"shop"}})}},
		),
		authzPolicy("shop", "d", actDeny, nil, &security.Rule{
			From: []*security.Rule_From{apFrom(&security.Source{Namespaces: []string{"untrusted"}, RequestPrincipals: []string{"*"}})},
			To:   []*security.Rule_To{apTo(&security.Operation{Paths: []string{"/admin"}})},
		}),
		customPolicy("shop", "c-http", "opa-http", &security.Rule{}),
		customPolicy("shop", "c-grpc", "opa-grpc", &security.Rule{}),
	}})
	fs, err := inboundSecurityNetworkFilters(w, "shop", w.Workload("shop", "web-0"), 5432)
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(xds.Resources{"f": toResources(fs)}); err != nil {
		t.Fatal(err)
	}
	var names []string
	rbacs := map[string]*rbacnetv3.RBAC{}
	for _, f := range fs {
		names = append(names, f.GetName())
		if strings.HasPrefix(f.GetName(), "istio.authorization.") {
			rbacs[f.GetName()] = unpack(t, f.GetTypedConfig(), &rbacnetv3.RBAC{})
		}
	}
	want := []string{authzCustomFilterName + "opa-grpc", extAuthzFilterName + "opa-grpc", authzDenyFilterName, authzAllowFilterName}
	if !slices.Equal(names, want) {
		t.Fatalf("filters %q, want %q", names, want)
	}
	if got := sortedKeys(rbacs[authzAllowFilterName].GetRules().GetPolicies()); !slices.Equal(got, []string{"ns[shop]-policy[a]-rule[1]"}) {
		t.Errorf("ALLOW policies %q, want only rule 1 (rule 0 needs HTTP)", got)
	}
	d := rbacs[authzDenyFilterName].GetRules().GetPolicies()["ns[shop]-policy[d]-rule[0]"]
	if !proto.Equal(d.GetPermissions()[0], anyPermission) {
		t.Errorf("DENY permission %v, want any (the path cannot be seen on TCP)", d.GetPermissions()[0])
	}
	if got := principalNames(d.GetPrincipals()[0]); !slices.Equal(got, []string{"regex:.*/ns/untrusted/.*"}) {
		t.Errorf("DENY principals %q, want the namespace only", got)
	}
	ext := unpack(t, fs[1].GetTypedConfig(), &extauthznetv3.ExtAuthz{})
	if c := ext.GetGrpcService().GetEnvoyGrpc().GetClusterName(); c != "outbound|9000||"+authzHost {
		t.Errorf("ext_authz cluster %q", c)
	}
	if k := ext.GetFilterEnabledMetadata().GetPath()[0].GetKey(); k != "istio_ext_authz_opa_grpc_shadow_effective_policy_id" ||
		ext.GetFilterEnabledMetadata().GetFilter() != rbacNetworkMetadataNamespace {
		t.Errorf("ext_authz enabled by %v", ext.GetFilterEnabledMetadata())
	}
}

// TestAuthzCustom: CUSTOM rules become the shadow rules of their
// provider's RBAC filter, which enables its ext_authz filter; a provider
// that cannot be called turns its rules into DENY rules.
func TestAuthzCustom(t *testing.T) {
	cfg := model.Config{AuthorizationPolicies: []*model.AuthorizationPolicy{
		customPolicy("shop", "c", "opa-http", &security.Rule{To: []*security.Rule_To{apTo(&security.Operation{Paths: []string{"/admin*"}})}}),
	}}
	t.Run("HTTP provider", func(t *testing.T) {
		fs := mustHTTP(t, securityWorld(cfg), "web-0", 8080)
		shadow := httpRBAC(t, fs, authzCustomFilterName+"opa-http")
		if shadow.GetRules() != nil || shadow.GetShadowRules().GetPolicies()["ns[shop]-policy[c]-rule[0]"] == nil ||
			shadow.GetShadowRulesStatPrefix() != "istio_ext_authz_opa_http_" {
			t.Fatalf("shadow RBAC %v", shadow)
		}
		ext := unpack(t, fs[1].GetTypedConfig(), &extauthzv3.ExtAuthz{})
		uri := ext.GetHttpService().GetServerUri()
		if uri.GetCluster() != "outbound|8000||"+authzHost || ext.GetHttpService().GetPathPrefix() != "/check" || ext.GetStatusOnError().GetCode() != 503 {
			t.Errorf("ext_authz %v", ext)
		}
		m := ext.GetFilterEnabledMetadata()
		if m.GetFilter() != rbacHTTPMetadataNamespace || m.GetPath()[0].GetKey() != "istio_ext_authz_opa_http_shadow_effective_policy_id" || !m.GetValue().GetPresentMatch() {
			t.Errorf("filter_enabled_metadata %v", m)
		}
	})
	unusable := []struct {
		name  string
		tweak func(*model.MeshConfig)
	}{
		{"provider not configured", func(m *model.MeshConfig) { m.ExtAuthz = nil }},
		{"service unknown", func(m *model.MeshConfig) {
			m.ExtAuthz = model.NewExtAuthzProviders([]model.ExtAuthzProvider{{Name: "opa-http", Service: "nowhere/authz", Port: 8000}})
		}},
		{"port not on the service", func(m *model.MeshConfig) {
			m.ExtAuthz = model.NewExtAuthzProviders([]model.ExtAuthzProvider{{Name: "opa-http", Service: "authz-system/authz", Port: 1234}})
		}},
		{"short host without namespace", func(m *model.MeshConfig) {
			m.ExtAuthz = model.NewExtAuthzProviders([]model.ExtAuthzProvider{{Name: "opa-http", Service: "authz", Port: 8000}})
		}},
	}
	for _, tc := range unusable {
		t.Run(tc.name, func(t *testing.T) {
			fs := mustHTTP(t, securityWorldMesh(cfg, tc.tweak), "web-0", 8080)
			if got := httpFilterNames(fs); !slices.Equal(got, []string{authzDenyFilterName}) {
				t.Fatalf("filters %q, want the DENY filter only", got)
			}
			pols := httpRBAC(t, fs, authzDenyFilterName).GetRules().GetPolicies()
			if pols["ns[shop]-policy[c]-rule[0]"+unusableCustomSuffix] == nil {
				t.Errorf("DENY policies %q, want the CUSTOM rule", sortedKeys(pols))
			}
		})
	}
	t.Run("service hidden from the proxy", func(t *testing.T) {
		w := securityWorld(cfg)
		var visible []*model.Service
		for _, s := range w.Services {
			if s.Namespace != "authz-system" {
				visible = append(visible, s)
			}
		}
		scoped := model.NewWorldWithConfig(w.Mesh, visible, w.Workloads, w.Config)
		fs := mustHTTP(t, scoped, "web-0", 8080)
		if got := httpFilterNames(fs); !slices.Equal(got, []string{authzDenyFilterName}) {
			t.Errorf("filters %q, want the DENY filter only", got)
		}
	})
}

// TestRequestAuthentication: one provider per rule with the keys it can
// have, and the requirement "a token present must verify".
func TestRequestAuthentication(t *testing.T) {
	w := securityWorld(model.Config{
		RequestAuthentications: []*model.RequestAuthentication{
			requestAuthn(rootNS, "mesh", nil, &security.JWTRule{Issuer: "fetched", JwksUri: fetchedJWKSURI}),
			requestAuthn("shop", "web", map[string]string{"app": "web"},
				&security.JWTRule{Issuer: "inline", Jwks: testJWKS},
				&security.JWTRule{Issuer: "not-fetched", JwksUri: missingJWKSURI},
				&security.JWTRule{Issuer: "bad-inline", Jwks: `{"keys":[{"kty":"RSA"}]}`},
				&security.JWTRule{Issuer: "bad-header", Jwks: testJWKS, FromHeaders: []*security.JWTHeader{{Name: "bad\nheader"}}},
			),
			requestAuthn("shop", "v2", map[string]string{"version": "v2"}, &security.JWTRule{Issuer: "v2 only", Jwks: testJWKS}),
		},
		JWKS: map[string]string{fetchedJWKSURI: fetchedJWKS},
	})
	fs := mustHTTP(t, w, "web-0", 8080)
	if len(fs) != 1 || fs[0].GetName() != jwtAuthnFilterName {
		t.Fatalf("filters %q, want jwt_authn only", httpFilterNames(fs))
	}
	cfg := unpack(t, fs[0].GetTypedConfig(), &jwtv3.JwtAuthentication{})
	keys := map[string]string{}
	for name, p := range cfg.GetProviders() {
		keys[p.GetIssuer()] = p.GetLocalJwks().GetInlineString()
		if p.GetPayloadInMetadata() != jwtPayloadMetadataKey {
			t.Errorf("provider %s: payload in metadata %q", name, p.GetPayloadInMetadata())
		}
	}
	want := map[string]string{"fetched": fetchedJWKS, "inline": testJWKS, "not-fetched": unusableJWKS, "bad-inline": unusableJWKS, "bad-header": unusableJWKS}
	for iss, k := range want {
		if keys[iss] != k {
			t.Errorf("issuer %s: keys %.40q, want %.40q", iss, keys[iss], k)
		}
	}
	if len(keys) != len(want) {
		t.Errorf("issuers %v, want %d (v2 only does not apply)", sortedKeys(keys), len(want))
	}
	req := cfg.GetRules()[0].GetRequires().GetRequiresAny().GetRequirements()
	if len(req) != len(want)+1 || req[len(req)-1].GetRequiresAll() == nil {
		t.Fatalf("requirement %v: want any(each provider, all(provider or missing))", cfg.GetRules()[0].GetRequires())
	}
	for _, each := range req[len(req)-1].GetRequiresAll().GetRequirements() {
		alts := each.GetRequiresAny().GetRequirements()
		if len(alts) != 2 || alts[0].GetProviderName() == "" || alts[1].GetAllowMissing() == nil {
			t.Errorf("per-provider requirement %v, want provider or missing", each)
		}
	}

	t.Run("single and required", func(t *testing.T) {
		one := jwtRequirement([]string{"a"}, nil)
		if alts := one.GetRequiresAny().GetRequirements(); len(alts) != 2 || alts[0].GetProviderName() != "a" || alts[1].GetAllowMissing() == nil {
			t.Errorf("one optional provider: %v", one)
		}
		req := jwtRequirement([]string{"a"}, []string{"r"})
		all := req.GetRequiresAll().GetRequirements()
		if len(all) != 2 || all[0].GetProviderName() != "r" || all[1].GetRequiresAny() == nil {
			t.Errorf("required r and optional a: %v", req)
		}
	})
}

// TestRequestPrincipalMatchers: Istio's "<iss>/<sub>" wildcards.
func TestRequestPrincipalMatchers(t *testing.T) {
	str := func(p *rbacv3.Principal) string {
		m := p.GetMetadata().GetValue().GetStringMatch()
		switch {
		case m.GetSafeRegex() != nil:
			return "regex:" + m.GetSafeRegex().GetRegex()
		case m.GetPrefix() != "":
			return "prefix:" + m.GetPrefix()
		case m.GetSuffix() != "":
			return "suffix:" + m.GetSuffix()
		}
		return "exact:" + m.GetExact()
	}
	cases := []struct{ in, iss, sub string }{
		{"*", "regex:.+", "regex:.+"},
		{"issuer.example.com/alice", "exact:issuer.example.com", "exact:alice"},
		{"https://login.example.com/tenant/alice", "exact:https://login.example.com/tenant", "exact:alice"},
		{"issuer.example.com/*", "exact:issuer.example.com", "regex:.+"},
		{"issuer.example.com/adm*", "exact:issuer.example.com", "prefix:adm"},
		{"*/bob", "regex:.+", "exact:bob"},
		{"*.example.com/bob", "suffix:.example.com", "exact:bob"},
		{"*bob", "regex:.+", "suffix:bob"},
		{"issuer*", "prefix:issuer", "regex:.+"},
	}
	for _, tc := range cases {
		p, err := requestPrincipal(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		ids := p.GetAndIds().GetIds()
		if len(ids) != 2 || ids[0].GetMetadata().GetFilter() != jwtAuthnFilterName ||
			ids[0].GetMetadata().GetPath()[0].GetKey() != "payload" || ids[0].GetMetadata().GetPath()[1].GetKey() != "iss" {
			t.Fatalf("%s: %v", tc.in, p)
		}
		if got := [2]string{str(ids[0]), str(ids[1])}; got != [2]string{tc.iss, tc.sub} {
			t.Errorf("%s: iss/sub %q, want %q/%q", tc.in, got, tc.iss, tc.sub)
		}
	}
}

// TestPathTemplate: Istio's {*} and {**} as Envoy templates and regexes.
func TestPathTemplate(t *testing.T) {
	cases := []struct{ in, template, regex string }{
		{"/v1/{*}/items", "/v1/*/items", `/v1/[^/]+/items`},
		{"/v1/{**}", "/v1/**", `/v1/.*`},
		{"/a.b/{*}/{**}", "/a.b/*/**", `/a\.b/[^/]+/.*`},
	}
	for _, tc := range cases {
		tmpl, re, err := pathTemplate(tc.in)
		if err != nil || tmpl != tc.template || re != tc.regex {
			t.Errorf("%s: %q %q %v, want %q %q", tc.in, tmpl, re, err, tc.template, tc.regex)
		}
	}
	for _, bad := range []string{"/a/{**}/b", "v1/{*}", "/a/{*}x", "/a/b?c/{*}"} {
		if _, _, err := pathTemplate(bad); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

// TestAuthzGRPC: what grpc-go cannot honour errs on the side of denying,
// and the filters hold only matchers grpc-go implements (gRFC A41).
func TestAuthzGRPC(t *testing.T) {
	w := securityWorld(model.Config{AuthorizationPolicies: []*model.AuthorizationPolicy{
		authzPolicy("shop", "a", actAllow, nil,
			&security.Rule{From: []*security.Rule_From{apFrom(&security.Source{RequestPrincipals: []string{"*"}})}},
			&security.Rule{From: []*security.Rule_From{apFrom(&security.Source{NotRequestPrincipals: []string{"*"}})}},
			&security.Rule{When: []*security.Condition{apWhen("connection.sni", "x")}},
			&security.Rule{To: []*security.Rule_To{apTo(&security.Operation{Paths: []string{"/pkg.Svc/{*}"}})}},
		),
		authzPolicy("shop", "d", actDeny, nil, &security.Rule{
			From: []*security.Rule_From{apFrom(&security.Source{RequestPrincipals: []string{"*"}, Namespaces: []string{"untrusted"}})},
			When: []*security.Condition{apWhen("request.headers[grpc-timeout]", "*")},
		}),
		authzPolicy("shop", "log", actAudit, nil, &security.Rule{}),
		customPolicy("shop", "c", "opa-grpc", &security.Rule{To: []*security.Rule_To{apTo(&security.Operation{Methods: []string{"POST"}})}}),
	}})
	fs, err := grpcServerSecurityHTTPFilters(w, "shop", w.Workload("shop", "greeter-0"), 50051)
	if err != nil {
		t.Fatal(err)
	}
	if got := httpFilterNames(fs); !slices.Equal(got, []string{authzDenyFilterName, authzAllowFilterName}) {
		t.Fatalf("filters %q, want DENY and ALLOW only", got)
	}
	allow := httpRBAC(t, fs, authzAllowFilterName).GetRules().GetPolicies()
	if got := sortedKeys(allow); !slices.Equal(got, []string{"ns[shop]-policy[a]-rule[3]"}) {
		t.Errorf("ALLOW policies %q, want only the path rule", got)
	}
	if re := allow["ns[shop]-policy[a]-rule[3]"].GetPermissions()[0].GetUrlPath().GetPath().GetSafeRegex().GetRegex(); re != `/pkg\.Svc/[^/]+` {
		t.Errorf("path template as regex %q", re)
	}
	denyPols := httpRBAC(t, fs, authzDenyFilterName).GetRules().GetPolicies()
	if got := sortedKeys(denyPols); !slices.Equal(got, []string{"ns[shop]-policy[c]-rule[0]" + unusableCustomSuffix, "ns[shop]-policy[d]-rule[0]"}) {
		t.Errorf("DENY policies %q, want the DENY rule and the CUSTOM rule", got)
	}
	if got := principalNames(denyPols["ns[shop]-policy[d]-rule[0]"].GetPrincipals()[0]); !slices.Equal(got, []string{"regex:.*/ns/untrusted/.*"}) {
		t.Errorf("DENY principals %q, want the namespace only", got)
	}
	for _, tc := range securityCases {
		res := securityResources(t, tc)
		for section, rs := range res {
			if !strings.HasPrefix(section, "grpc_") {
				continue
			}
			for _, r := range rs {
				f := r.(*hcmv3.HttpFilter)
				for name, p := range unpack(t, f.GetTypedConfig(), &rbachttpv3.RBAC{}).GetRules().GetPolicies() {
					if err := grpcSupports(p); err != "" {
						t.Errorf("%s: %s: policy %s: %s", tc.name, section, name, err)
					}
				}
			}
		}
	}
}

// grpcSupports reports what of p grpc-go would refuse or never match.
func grpcSupports(p *rbacv3.Policy) string {
	header := func(name string) string {
		if n := strings.ToLower(name); n == ":scheme" || strings.HasPrefix(n, "grpc-") {
			return "header matcher for " + name
		}
		return ""
	}
	var perm func(*rbacv3.Permission) string
	perm = func(x *rbacv3.Permission) string {
		switch r := x.GetRule().(type) {
		case *rbacv3.Permission_AndRules:
			for _, c := range r.AndRules.GetRules() {
				if e := perm(c); e != "" {
					return e
				}
			}
		case *rbacv3.Permission_OrRules:
			for _, c := range r.OrRules.GetRules() {
				if e := perm(c); e != "" {
					return e
				}
			}
		case *rbacv3.Permission_NotRule:
			return perm(r.NotRule)
		case *rbacv3.Permission_Header:
			return header(r.Header.GetName())
		case *rbacv3.Permission_Any, *rbacv3.Permission_UrlPath, *rbacv3.Permission_DestinationIp, *rbacv3.Permission_DestinationPort:
		default:
			return "permission " + string(x.ProtoReflect().WhichOneof(x.ProtoReflect().Descriptor().Oneofs().Get(0)).Name())
		}
		return ""
	}
	var prin func(*rbacv3.Principal) string
	prin = func(x *rbacv3.Principal) string {
		switch id := x.GetIdentifier().(type) {
		case *rbacv3.Principal_AndIds:
			for _, c := range id.AndIds.GetIds() {
				if e := prin(c); e != "" {
					return e
				}
			}
		case *rbacv3.Principal_OrIds:
			for _, c := range id.OrIds.GetIds() {
				if e := prin(c); e != "" {
					return e
				}
			}
		case *rbacv3.Principal_NotId:
			return prin(id.NotId)
		case *rbacv3.Principal_Header:
			return header(id.Header.GetName())
		case *rbacv3.Principal_Any, *rbacv3.Principal_Authenticated_, *rbacv3.Principal_DirectRemoteIp, *rbacv3.Principal_RemoteIp, *rbacv3.Principal_UrlPath:
		default:
			return "principal " + string(x.ProtoReflect().WhichOneof(x.ProtoReflect().Descriptor().Oneofs().Get(0)).Name())
		}
		return ""
	}
	for _, x := range p.GetPermissions() {
		if e := perm(x); e != "" {
			return e
		}
	}
	for _, x := range p.GetPrincipals() {
		if e := prin(x); e != "" {
			return e
		}
	}
	if p.GetCondition() != nil || p.GetCheckedCondition() != nil {
		return "condition"
	}
	return ""
}

// TestGRPCUnsupportedSecurity: GRPCUnsupported names what gRPC servers do
// not get.
func TestGRPCUnsupportedSecurity(t *testing.T) {
	w := securityWorld(model.Config{
		AuthorizationPolicies: []*model.AuthorizationPolicy{
			authzPolicy("shop", "a", actAllow, nil, &security.Rule{
				From: []*security.Rule_From{apFrom(&security.Source{Principals: []string{"x"}}), apFrom(&security.Source{RequestPrincipals: []string{"*"}})},
				When: []*security.Condition{apWhen("source.ip", "10.0.0.1"), apWhen("request.auth.claims[groups]", "g")},
			}),
			authzPolicy("shop", "log", actAudit, nil, &security.Rule{}),
			customPolicy(rootNS, "c", "opa-grpc", &security.Rule{}),
			authzPolicy("data", "elsewhere", actAudit, nil, &security.Rule{}),
		},
		RequestAuthentications: []*model.RequestAuthentication{requestAuthn("shop", "jwt", nil, &security.JWTRule{Issuer: "i", Jwks: testJWKS})},
	})
	var got []string
	for _, u := range GRPCUnsupported(w, "shop") {
		got = append(got, u.Kind+" "+u.Namespace+"/"+u.Name+" "+u.Field)
	}
	want := []string{
		"AuthorizationPolicy " + rootNS + "/c spec.action",
		"AuthorizationPolicy shop/a spec.rules[0].from[1].source.requestPrincipals",
		"AuthorizationPolicy shop/a spec.rules[0].when[1]",
		"AuthorizationPolicy shop/log spec.action",
		"RequestAuthentication shop/jwt spec.jwtRules",
	}
	if !slices.Equal(got, want) {
		t.Errorf("unsupported:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
