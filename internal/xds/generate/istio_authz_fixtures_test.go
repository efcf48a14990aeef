package generate

import (
	"slices"
	"time"

	security "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"

	"github.com/meshplane/meshplane/internal/model"
)

// Security fixtures: fixtureWorld's services and workloads, with labels on
// the workloads (web-0: app=web, version=v1; greeter-0: app=greeter), the
// external authorizer's Service authz.authz-system (HTTP 8000, gRPC 9000),
// root namespace mesh-system, and three extension providers: opa-http and
// opa-grpc (on that Service) and ghost (a Service that does not exist).

const (
	rootNS         = "mesh-system"
	authzHost      = "authz.authz-system.svc.cluster.local"
	fetchedJWKSURI = "https://issuer.example.com/.well-known/jwks.json"
	missingJWKSURI = "https://down.example.com/jwks.json"
)

// testJWKS and fetchedJWKS are RSA public keys whose private halves were
// thrown away: valid key sets that verify nothing.
const (
	testJWKS = `{"keys":[{"kty":"RSA","kid":"inline-1","alg":"RS256","use":"sig","e":"AQAB",` +
		`"n":"nxKoGO1Bq-Zfh7cbyyWobNV804a3MzFmcxS68oWS8bG899WLhX8mKXJTkpRPROvM0s4h0iOnHBLanl-peDDUA9emheATmtdY5YlDvldi9OBRAx0PIswcm5rEaFGxt9gcfGJ4b14SwarVnLSzqIWH68Zx82190_WaO6FSrMaZNR-3zAnGAsiF6Qv_9QQKh_sCGkOhuCOiw78KZVUC-P1THc2dbygqZZtA239RYAE4S0L2Kk2vSmBUDBob0WC1-Iv7JAm2NObXfGbIf6Oxs8QsXnO2UfV5yniI7fNGirGYKgrc3PcPg5BBMTdlC8CCJhFM8968T4CKZizhuThVSYd4bw"}]}`
	fetchedJWKS = `{"keys":[{"kty":"RSA","kid":"fetched-1","alg":"RS256","use":"sig","e":"AQAB",` +
		`"n":"v4DCCu0XxCWmK5kwueKbcQMAcqM3hDtsSnY4xOolZ8f0PNzVcEYw_zygYkTUnRdWzBkdkmc0m8k3TwIxcI2s-CQgQAJYo8CW_VSCeNrnO4DMYVkVXvOOEv899zxMymn1QuvbQ9HSs3q1z7UCHnhR6O3UOI8bE1KPNzk2PGI3e00CCY57fJpszW5XinmsL1dBIUJhNty2rsa01dvyCo9Lzzmp8iIb92GpyVZPxxNxgwsvYJsP9H3CRRe3yFzRve8ejj7nQQk5jbqVxQLY5xFYcJifukFRit_4gG1ZN74Oz0GEJWCR14XGQ_MMqHXnQYQXd7N0S9J7pkBKlIfMmgcJ7Q"}]}`
)

// securityWorld is the security fixture world with cfg.
func securityWorld(cfg model.Config) *model.World {
	return securityWorldMesh(cfg, func(*model.MeshConfig) {})
}

func securityWorldMesh(cfg model.Config, tweak func(*model.MeshConfig)) *model.World {
	base := fixtureWorld(true)
	services := slices.Clone(base.Services)
	services = append(services, &model.Service{
		Name: "authz", Namespace: "authz-system", Hostname: authzHost, ClusterIP: "10.96.0.90",
		Ports: []model.ServicePort{
			{Name: "http-check", Port: 8000, Protocol: model.ProtocolHTTP},
			{Name: "grpc-check", Port: 9000, Protocol: model.ProtocolGRPC},
		},
	})
	var workloads []*model.Workload
	for _, wl := range base.Workloads {
		c := *wl
		switch c.Name {
		case "web-0":
			c.Labels = map[string]string{"app": "web", "version": "v1"}
		case "greeter-0":
			c.Labels = map[string]string{"app": "greeter"}
		}
		workloads = append(workloads, &c)
	}
	mesh := base.Mesh
	mesh.RootNamespace = rootNS
	mesh.ExtAuthz = model.NewExtAuthzProviders([]model.ExtAuthzProvider{
		{
			Name: "opa-http", Service: "authz-system/authz", Port: 8000, PathPrefix: "/check", StatusOnError: 503,
			IncludeRequestHeadersInCheck:    []string{"authorization", "x-ext-*"},
			IncludeAdditionalHeadersInCheck: map[string]string{"x-mesh": "meshplane", "x-a": "1"},
			HeadersToUpstreamOnAllow:        []string{"x-user-id"},
			HeadersToDownstreamOnAllow:      []string{"set-cookie"},
			HeadersToDownstreamOnDeny:       []string{"*-reason"},
			IncludeRequestBodyInCheck:       &model.ExtAuthzBody{MaxRequestBytes: 4096, AllowPartialMessage: true},
		},
		{Name: "opa-grpc", Service: authzHost, Port: 9000, GRPC: true, Timeout: 500 * time.Millisecond, FailOpen: true},
		{Name: "ghost", Service: "nowhere/ghost", Port: 80},
	})
	tweak(&mesh)
	return model.NewWorldWithConfig(mesh, services, workloads, cfg)
}

func authzPolicy(ns, name string, action security.AuthorizationPolicy_Action, selector map[string]string, rules ...*security.Rule) *model.AuthorizationPolicy {
	spec := &security.AuthorizationPolicy{Action: action, Rules: rules}
	if selector != nil {
		spec.Selector = &typev1beta1.WorkloadSelector{MatchLabels: selector}
	}
	return &model.AuthorizationPolicy{Meta: model.Meta{Name: name, Namespace: ns}, Spec: spec}
}

func customPolicy(ns, name, provider string, rules ...*security.Rule) *model.AuthorizationPolicy {
	p := authzPolicy(ns, name, security.AuthorizationPolicy_CUSTOM, nil, rules...)
	p.Spec.ActionDetail = &security.AuthorizationPolicy_Provider{Provider: &security.AuthorizationPolicy_ExtensionProvider{Name: provider}}
	return p
}

func apFrom(s *security.Source) *security.Rule_From { return &security.Rule_From{Source: s} }
func apTo(o *security.Operation) *security.Rule_To  { return &security.Rule_To{Operation: o} }
func apWhen(key string, values ...string) *security.Condition {
	return &security.Condition{Key: key, Values: values}
}
func apWhenNot(key string, values ...string) *security.Condition {
	return &security.Condition{Key: key, NotValues: values}
}

const (
	actAllow = security.AuthorizationPolicy_ALLOW
	actDeny  = security.AuthorizationPolicy_DENY
	actAudit = security.AuthorizationPolicy_AUDIT
)

func requestAuthn(ns, name string, selector map[string]string, rules ...*security.JWTRule) *model.RequestAuthentication {
	spec := &security.RequestAuthentication{JwtRules: rules}
	if selector != nil {
		spec.Selector = &typev1beta1.WorkloadSelector{MatchLabels: selector}
	}
	return &model.RequestAuthentication{Meta: model.Meta{Name: name, Namespace: ns}, Spec: spec}
}

// securityCase is one golden file: a configuration, translated for the
// workload shop/<pod> (web-0 when empty) by each view.
type securityCase struct {
	name   string
	pod    string
	config func() model.Config
	views  []securityView // defaultViews when nil
}

// securityView is one function applied to one port.
type securityView struct {
	section string // the golden file's key
	kind    authzTarget
	port    uint32
}

var defaultViews = []securityView{
	{"http_filters_8080", targetHTTP, 8080},
	{"network_filters_5432", targetTCP, 5432},
	{"grpc_server_filters_8080", targetGRPC, 8080},
}

var securityCases = []securityCase{
	{
		name: "allow-principal",
		config: func() model.Config {
			return model.Config{AuthorizationPolicies: []*model.AuthorizationPolicy{
				authzPolicy("shop", "web-clients", actAllow, map[string]string{"app": "web"}, &security.Rule{
					From: []*security.Rule_From{apFrom(&security.Source{Principals: []string{
						"cluster.local/ns/shop/sa/client", "*/sa/admin", "cluster.local/ns/ops/*",
					}})},
				}),
			}}
		},
	},
	{
		name: "deny-beats-allow",
		config: func() model.Config {
			return model.Config{AuthorizationPolicies: []*model.AuthorizationPolicy{
				authzPolicy(rootNS, "deny-untrusted", actDeny, nil, &security.Rule{
					From: []*security.Rule_From{apFrom(&security.Source{Namespaces: []string{"untrusted"}})},
					To:   []*security.Rule_To{apTo(&security.Operation{NotPaths: []string{"/public*"}})},
				}),
				authzPolicy("shop", "allow-all", actAllow, nil, &security.Rule{}),
			}}
		},
	},
	{
		name: "allow-nothing",
		config: func() model.Config {
			return model.Config{AuthorizationPolicies: []*model.AuthorizationPolicy{
				authzPolicy("shop", "allow-nothing", actAllow, nil),
				// A DENY without rules matches nothing: no filter.
				authzPolicy("shop", "deny-nothing", actDeny, nil),
			}}
		},
	},
	{
		name: "namespaces",
		config: func() model.Config {
			return model.Config{AuthorizationPolicies: []*model.AuthorizationPolicy{
				authzPolicy("shop", "same-team", actAllow, nil, &security.Rule{
					From: []*security.Rule_From{
						apFrom(&security.Source{Namespaces: []string{"shop", "team-*"}, NotNamespaces: []string{"*-sandbox"}}),
						apFrom(&security.Source{ServiceAccounts: []string{"ops/deployer", "auditor"}}),
						apFrom(&security.Source{TrustDomains: []string{"partner.example", "*.corp"}}),
					},
				}),
			}}
		},
	},
	{
		name: "ip-blocks",
		config: func() model.Config {
			return model.Config{AuthorizationPolicies: []*model.AuthorizationPolicy{
				authzPolicy("shop", "office", actAllow, nil, &security.Rule{
					From: []*security.Rule_From{apFrom(&security.Source{
						IpBlocks: []string{"10.1.0.0/16", "192.168.1.1", "2001:db8::/32"}, NotIpBlocks: []string{"10.1.9.9"},
						RemoteIpBlocks: []string{"203.0.113.0/24"},
					})},
				}),
				// An ALLOW rule with a value that is no IP is left out.
				authzPolicy("shop", "broken-allow", actAllow, nil, &security.Rule{
					From: []*security.Rule_From{apFrom(&security.Source{IpBlocks: []string{"not-an-ip"}})},
				}),
				// A DENY rule drops the value, and with it the condition.
				authzPolicy("shop", "broken-deny", actDeny, nil, &security.Rule{
					From: []*security.Rule_From{apFrom(&security.Source{IpBlocks: []string{"not-an-ip"}, Namespaces: []string{"untrusted"}})},
				}),
			}}
		},
	},
	{
		name: "methods-paths-hosts",
		config: func() model.Config {
			return model.Config{AuthorizationPolicies: []*model.AuthorizationPolicy{
				authzPolicy("shop", "api", actAllow, nil, &security.Rule{
					To: []*security.Rule_To{
						apTo(&security.Operation{
							Methods:  []string{"GET", "HEAD"},
							Paths:    []string{"/exact", "/api/*", "*/info", "*", "/v1/{*}/items/{**}"},
							NotPaths: []string{"/api/admin*"},
						}),
						apTo(&security.Operation{Hosts: []string{"web.shop.svc.cluster.local", "*.example.com"}, NotMethods: []string{"DELETE"}}),
					},
				}),
				// {**} in the middle is no valid template: the rule is left out.
				authzPolicy("shop", "bad-template", actAllow, nil, &security.Rule{
					To: []*security.Rule_To{apTo(&security.Operation{Paths: []string{"/a/{**}/b"}})},
				}),
			}}
		},
	},
	{
		name: "ports",
		config: func() model.Config {
			return model.Config{AuthorizationPolicies: []*model.AuthorizationPolicy{
				authzPolicy("shop", "ports", actAllow, nil,
					&security.Rule{To: []*security.Rule_To{apTo(&security.Operation{Ports: []string{"8080"}, Methods: []string{"GET"}})}},
					&security.Rule{To: []*security.Rule_To{apTo(&security.Operation{NotPorts: []string{"8080"}})}},
					&security.Rule{When: []*security.Condition{apWhen("destination.port", "9090", "5432")}},
				),
			}}
		},
		views: []securityView{
			{"http_filters_8080", targetHTTP, 8080},
			{"http_filters_9090", targetHTTP, 9090},
			{"http_filters_unknown_port", targetHTTP, 0},
			{"network_filters_5432", targetTCP, 5432},
		},
	},
	{
		name: "when-conditions",
		config: func() model.Config {
			return model.Config{AuthorizationPolicies: []*model.AuthorizationPolicy{
				authzPolicy("shop", "conditions", actAllow, nil, &security.Rule{
					When: []*security.Condition{
						apWhen("request.headers[x-user]", "alice", "bob*"),
						apWhen("request.headers[grpc-trace]", "*"),
						apWhen("source.ip", "10.1.0.0/16"),
						apWhen("remote.ip", "203.0.113.7"),
						apWhen("source.namespace", "shop"),
						apWhen("source.principal", "cluster.local/ns/shop/sa/client"),
						apWhen("request.auth.principal", "issuer.example.com/alice"),
						apWhen("request.auth.audiences", "web"),
						apWhen("request.auth.presenter", "spa"),
						apWhen("request.auth.claims[groups]", "admins"),
						apWhen("request.auth.claims[realm][role]", "owner"),
						apWhen("destination.ip", "10.1.0.1"),
						apWhen("connection.sni", "web.shop.svc.cluster.local"),
					},
				}),
				authzPolicy("shop", "deny-conditions", actDeny, nil, &security.Rule{
					When: []*security.Condition{
						apWhen("request.headers[grpc-trace]", "*"),
						apWhenNot("connection.sni", "*.shop.svc.cluster.local"),
						apWhen("request.auth.claims[groups]", "banned"),
					},
				}),
			}}
		},
	},
	{
		name: "not-fields",
		config: func() model.Config {
			return model.Config{AuthorizationPolicies: []*model.AuthorizationPolicy{
				authzPolicy("shop", "not-fields", actDeny, nil, &security.Rule{
					From: []*security.Rule_From{apFrom(&security.Source{
						NotPrincipals: []string{"cluster.local/ns/shop/sa/client"}, NotRequestPrincipals: []string{"*"},
						NotNamespaces: []string{"shop"}, NotIpBlocks: []string{"10.1.0.0/16"}, NotRemoteIpBlocks: []string{"203.0.113.0/24"},
						NotServiceAccounts: []string{"shop/client"}, NotTrustDomains: []string{"cluster.local"},
					})},
					To: []*security.Rule_To{apTo(&security.Operation{
						NotHosts: []string{"web*"}, NotMethods: []string{"GET"}, NotPaths: []string{"/healthz"}, NotPorts: []string{"9999"},
					})},
					When: []*security.Condition{apWhenNot("request.headers[x-internal]", "true"), apWhenNot("destination.ip", "10.1.0.1")},
				}),
			}}
		},
	},
	{
		name: "audit",
		config: func() model.Config {
			return model.Config{AuthorizationPolicies: []*model.AuthorizationPolicy{
				authzPolicy("shop", "audit-writes", actAudit, nil, &security.Rule{
					To: []*security.Rule_To{apTo(&security.Operation{Methods: []string{"POST", "PUT", "DELETE"}})},
				}),
			}}
		},
	},
	{
		name: "custom-http",
		config: func() model.Config {
			return model.Config{AuthorizationPolicies: []*model.AuthorizationPolicy{
				customPolicy("shop", "ext-admin", "opa-http", &security.Rule{
					To: []*security.Rule_To{apTo(&security.Operation{Paths: []string{"/admin*"}})},
				}),
				authzPolicy("shop", "allow-all", actAllow, nil, &security.Rule{}),
			}}
		},
	},
	{
		name: "custom-grpc",
		config: func() model.Config {
			return model.Config{AuthorizationPolicies: []*model.AuthorizationPolicy{
				customPolicy("shop", "ext-all", "opa-grpc", &security.Rule{
					From: []*security.Rule_From{apFrom(&security.Source{NotNamespaces: []string{"shop"}})},
				}),
			}}
		},
	},
	{
		name: "custom-unavailable",
		config: func() model.Config {
			return model.Config{AuthorizationPolicies: []*model.AuthorizationPolicy{
				customPolicy("shop", "ext-unknown", "not-configured", &security.Rule{
					To: []*security.Rule_To{apTo(&security.Operation{Paths: []string{"/admin*"}})},
				}),
				customPolicy("shop", "ext-ghost", "ghost", &security.Rule{
					To: []*security.Rule_To{apTo(&security.Operation{Methods: []string{"DELETE"}})},
				}),
			}}
		},
	},
	{
		name: "jwt-inline",
		config: func() model.Config {
			return model.Config{RequestAuthentications: []*model.RequestAuthentication{
				requestAuthn("shop", "web-jwt", map[string]string{"app": "web"}, &security.JWTRule{
					Issuer: "issuer.example.com", Audiences: []string{"web"}, Jwks: testJWKS,
					FromHeaders:           []*security.JWTHeader{{Name: "x-token", Prefix: "Bearer "}},
					FromParams:            []string{"access_token"},
					ForwardOriginalToken:  true,
					OutputPayloadToHeader: "x-jwt-payload",
					OutputClaimToHeaders:  []*security.ClaimToHeader{{Header: "x-jwt-sub", Claim: "sub"}},
					SpaceDelimitedClaims:  []string{"roles"},
				}),
			}}
		},
	},
	{
		name: "jwt-fetched",
		config: func() model.Config {
			return model.Config{
				RequestAuthentications: []*model.RequestAuthentication{
					requestAuthn(rootNS, "mesh-jwt", nil,
						&security.JWTRule{Issuer: "issuer.example.com", JwksUri: fetchedJWKSURI},
						// Not fetched (yet): its tokens are refused.
						&security.JWTRule{Issuer: "down.example.com", JwksUri: missingJWKSURI},
					),
					requestAuthn("shop", "partner", nil, &security.JWTRule{
						Issuer: "partner.example", Jwks: `{"keys":[]}`, Presence: security.JWTRule_REQUIRED,
					}),
				},
				JWKS: map[string]string{fetchedJWKSURI: fetchedJWKS},
			}
		},
	},
	{
		name: "request-principals",
		config: func() model.Config {
			return model.Config{
				RequestAuthentications: []*model.RequestAuthentication{
					requestAuthn("shop", "jwt", nil, &security.JWTRule{Issuer: "issuer.example.com", JwksUri: fetchedJWKSURI}),
				},
				AuthorizationPolicies: []*model.AuthorizationPolicy{
					authzPolicy("shop", "require-jwt", actDeny, nil, &security.Rule{
						From: []*security.Rule_From{apFrom(&security.Source{NotRequestPrincipals: []string{"*"}})},
					}),
					authzPolicy("shop", "users", actAllow, nil, &security.Rule{
						From: []*security.Rule_From{apFrom(&security.Source{RequestPrincipals: []string{
							"issuer.example.com/alice", "issuer.example.com/*", "*/bob", "https://login.example.com/tenant/*",
						}})},
					}),
				},
				JWKS: map[string]string{fetchedJWKSURI: fetchedJWKS},
			}
		},
	},
	{
		name: "tcp",
		config: func() model.Config {
			return model.Config{AuthorizationPolicies: []*model.AuthorizationPolicy{
				// HTTP attributes on a TCP port: the DENY rule matches every
				// connection from untrusted, the ALLOW rule with a path is
				// left out, the one with IP blocks stays.
				authzPolicy("shop", "deny-deletes", actDeny, nil, &security.Rule{
					From: []*security.Rule_From{apFrom(&security.Source{Namespaces: []string{"untrusted"}})},
					To:   []*security.Rule_To{apTo(&security.Operation{Methods: []string{"DELETE"}})},
				}),
				authzPolicy("shop", "allow-api", actAllow, nil,
					&security.Rule{To: []*security.Rule_To{apTo(&security.Operation{Paths: []string{"/api*"}})}},
					&security.Rule{From: []*security.Rule_From{apFrom(&security.Source{IpBlocks: []string{"10.1.0.0/16"}})}},
				),
				customPolicy("shop", "ext-http-on-tcp", "opa-http", &security.Rule{}),
				customPolicy("shop", "ext-grpc-on-tcp", "opa-grpc", &security.Rule{
					To: []*security.Rule_To{apTo(&security.Operation{Paths: []string{"/admin*"}})},
				}),
			}}
		},
	},
	{
		name: "grpc-server",
		pod:  "greeter-0",
		config: func() model.Config {
			return model.Config{
				AuthorizationPolicies: []*model.AuthorizationPolicy{
					authzPolicy("shop", "greeter", actAllow, map[string]string{"app": "greeter"},
						&security.Rule{
							From: []*security.Rule_From{apFrom(&security.Source{Principals: []string{"cluster.local/ns/shop/sa/client"}})},
							To:   []*security.Rule_To{apTo(&security.Operation{Paths: []string{"/helloworld.Greeter/*", "/grpc.health.v1.Health/{*}"}})},
						},
						// Needs a JWT: allows nothing on a gRPC server.
						&security.Rule{From: []*security.Rule_From{apFrom(&security.Source{RequestPrincipals: []string{"*"}})}},
					),
					authzPolicy("shop", "greeter-deny", actDeny, map[string]string{"app": "greeter"}, &security.Rule{
						From: []*security.Rule_From{apFrom(&security.Source{NotRequestPrincipals: []string{"*"}, Namespaces: []string{"untrusted"}})},
					}),
					customPolicy("shop", "greeter-ext", "opa-grpc", &security.Rule{
						To: []*security.Rule_To{apTo(&security.Operation{Methods: []string{"POST"}, Paths: []string{"/admin.*"}})},
					}),
					authzPolicy("shop", "greeter-audit", actAudit, nil, &security.Rule{}),
				},
				RequestAuthentications: []*model.RequestAuthentication{
					requestAuthn("shop", "jwt", nil, &security.JWTRule{Issuer: "issuer.example.com", Jwks: testJWKS}),
				},
			}
		},
		views: []securityView{
			{"grpc_server_filters_50051", targetGRPC, 50051},
			{"http_filters_50051", targetHTTP, 50051},
		},
	},
}
