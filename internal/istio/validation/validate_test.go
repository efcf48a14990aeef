package validation

import (
	"slices"
	"strings"
	"testing"

	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshplane/meshplane/internal/istio/config"
)

// validationCase is one object and what validating it must report: every issue as "CODE path",
// in any order, and a piece of the first issue's message.
type validationCase struct {
	name        string
	yaml        string
	want        []string
	wantMessage string
}

// object renders an Istio object of kind in namespace bookinfo with spec (written unindented).
func object(kind, name, spec string) string {
	var indented strings.Builder
	for _, line := range strings.Split(strings.TrimRight(spec, "\n"), "\n") {
		indented.WriteString("  " + line + "\n")
	}
	return "apiVersion: networking.istio.io/v1\nkind: " + kind + "\nmetadata:\n  name: " + name +
		"\n  namespace: bookinfo\nspec:\n" + indented.String()
}

func virtualService(spec string) string  { return object("VirtualService", "reviews", spec) }
func destinationRule(spec string) string { return object("DestinationRule", "reviews", spec) }
func gatewayObject(spec string) string   { return object("Gateway", "edge", spec) }
func serviceEntry(spec string) string    { return object("ServiceEntry", "external", spec) }
func sidecarObject(spec string) string   { return object("Sidecar", "default", spec) }

func runValidationCases(t *testing.T, cases []validationCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			loaded := config.LoadBytes("case.yaml", []byte(tc.yaml), config.Options{})
			if len(loaded.Problems) > 0 || len(loaded.Objects) != 1 {
				t.Fatalf("fixture does not load cleanly: %+v", loaded.Problems)
			}
			issues := validateObject(loaded.Objects[0].Object)
			var got []string
			for _, issue := range issues {
				got = append(got, issue.code.ID+" "+issue.err.Field)
			}
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tc.want))
			if !slices.Equal(got, want) {
				t.Fatalf("issues:\n  got  %q\n  want %q\nmessages: %v", got, want, messages(issues))
			}
			if tc.wantMessage != "" && !strings.Contains(issues[0].message(), tc.wantMessage) {
				t.Errorf("message %q does not contain %q", issues[0].message(), tc.wantMessage)
			}
		})
	}
}

func messages(issues []issue) []string {
	var out []string
	for _, issue := range issues {
		out = append(out, issue.err.Field+": "+issue.message())
	}
	return out
}

func TestValidateVirtualService(t *testing.T) {
	runValidationCases(t, []validationCase{
		{
			name: "valid routing with every HTTP feature",
			yaml: virtualService(`hosts: [reviews, reviews.example.com]
http:
- name: jason
  match:
  - headers:
      end-user: {exact: jason}
    uri: {regex: "^/reviews/[0-9]+$"}
  - queryParams:
      canary: {prefix: "y"}
  route:
  - destination: {host: reviews, subset: v2, port: {number: 9080}}
    weight: 75
  - destination: {host: reviews, subset: v3}
    weight: 25
  timeout: 10s
  retries: {attempts: 3, perTryTimeout: 2s, retryOn: "5xx,connect-failure,503"}
  fault:
    delay: {percentage: {value: 10}, fixedDelay: 5s}
    abort: {percentage: {value: 0.5}, grpcStatus: UNAVAILABLE}
  mirror: {host: reviews, subset: v3}
  mirrorPercentage: {value: 20}
  corsPolicy:
    allowOrigins: [{exact: "https://example.com"}]
    maxAge: 24h
- route:
  - destination: {host: reviews, subset: v1}`),
		},
		{
			name: "delegate VirtualService without hosts",
			yaml: virtualService(`http:
- route:
  - destination: {host: reviews}`),
		},
		{
			name: "weights that do not add up to 100 are a warning",
			yaml: virtualService(`hosts: [reviews]
http:
- route:
  - destination: {host: reviews, subset: v1}
    weight: 50
  - destination: {host: reviews, subset: v2}
    weight: 30`),
			want:        []string{"MP0151 spec.http[0].route"},
			wantMessage: "add up to 80, not 100",
		},
		{
			name: "several destinations without weights",
			yaml: virtualService(`hosts: [reviews]
http:
- route:
  - destination: {host: reviews, subset: v1}
  - destination: {host: reviews, subset: v2}`),
			want:        []string{"MP0104 spec.http[0].route"},
			wantMessage: "add up to 0",
		},
		{
			name: "negative weight",
			yaml: virtualService(`hosts: [reviews]
http:
- route:
  - destination: {host: reviews, subset: v1}
    weight: -10
  - destination: {host: reviews, subset: v2}
    weight: 110`),
			want:        []string{"MP0104 spec.http[0].route[0].weight"},
			wantMessage: "weight -10 is negative",
		},
		{
			name: "one destination with a partial weight",
			yaml: virtualService(`hosts: [reviews]
http:
- route:
  - destination: {host: reviews, subset: v1}
    weight: 50`),
			want:        []string{"MP0151 spec.http[0].route[0].weight"},
			wantMessage: "weight 50 has no effect",
		},
		{
			name: "TCP weights are checked the same way",
			yaml: virtualService(`hosts: [mongo]
tcp:
- route:
  - destination: {host: mongo, subset: a}
    weight: 0
  - destination: {host: mongo, subset: b}
    weight: 0`),
			want: []string{"MP0104 spec.tcp[0].route"},
		},
		{
			name: "invalid URI regex",
			yaml: virtualService(`hosts: [reviews]
http:
- match:
  - uri: {regex: "/reviews/(["}
  route:
  - destination: {host: reviews}`),
			want:        []string{"MP0105 spec.http[0].match[0].uri.regex"},
			wantMessage: `invalid RE2 regex "/reviews/(["`,
		},
		{
			name: "invalid header regex, and a Perl-only construct RE2 refuses",
			yaml: virtualService(`hosts: [reviews]
http:
- match:
  - headers:
      end-user: {regex: "(?<=j)ason"}
  route:
  - destination: {host: reviews}`),
			want: []string{"MP0105 spec.http[0].match[0].headers[end-user].regex"},
		},
		{
			name: "zero timeout and a sub-millisecond perTryTimeout",
			yaml: virtualService(`hosts: [reviews]
http:
- route:
  - destination: {host: reviews}
  timeout: 0s
  retries: {attempts: 2, perTryTimeout: 1500us}`),
			want:        []string{"MP0106 spec.http[0].timeout", "MP0106 spec.http[0].retries.perTryTimeout"},
			wantMessage: "must be at least 1ms, not 0s",
		},
		{
			name: "fixedDelay below 1ms",
			yaml: virtualService(`hosts: [ratings]
http:
- fault:
    delay: {fixedDelay: 500us, percentage: {value: 100}}
  route:
  - destination: {host: ratings}`),
			want: []string{"MP0106 spec.http[0].fault.delay.fixedDelay"},
		},
		{
			name: "fault percentages outside 0-100",
			yaml: virtualService(`hosts: [ratings]
http:
- fault:
    abort: {httpStatus: 503, percentage: {value: 150}}
    delay: {fixedDelay: 1s, percent: -5}
  route:
  - destination: {host: ratings}`),
			want:        []string{"MP0110 spec.http[0].fault.abort.percentage.value", "MP0110 spec.http[0].fault.delay.percent"},
			wantMessage: "percentage 150 is not in 0-100",
		},
		{
			name: "abort without a status does nothing",
			yaml: virtualService(`hosts: [ratings]
http:
- fault:
    abort: {percentage: {value: 50}}
  route:
  - destination: {host: ratings}`),
			want:        []string{"MP0153 spec.http[0].fault.abort"},
			wantMessage: "neither httpStatus nor grpcStatus",
		},
		{
			name: "abort httpStatus out of range and an unknown gRPC status",
			yaml: virtualService(`hosts: [ratings]
http:
- match: [{uri: {prefix: /a}}]
  fault:
    abort: {httpStatus: 600}
  route:
  - destination: {host: ratings}
- fault:
    abort: {grpcStatus: BROKEN}
  route:
  - destination: {host: ratings}`),
			want:        []string{"MP0111 spec.http[0].fault.abort.httpStatus", "MP0101 spec.http[1].fault.abort.grpcStatus"},
			wantMessage: "abort httpStatus 600 is not in 200-599",
		},
		{
			name: "fault without abort or delay",
			yaml: virtualService(`hosts: [ratings]
http:
- fault: {}
  route:
  - destination: {host: ratings}`),
			want: []string{"MP0102 spec.http[0].fault"},
		},
		{
			name: "negative retry attempts and an unknown retry condition",
			yaml: virtualService(`hosts: [reviews]
http:
- route:
  - destination: {host: reviews}
  retries: {attempts: -1}
- match: [{uri: {prefix: /}}]
  route:
  - destination: {host: reviews}
  retries: {attempts: 2, retryOn: "5xx,flaky"}`),
			want:        []string{"MP0101 spec.http[0].retries.attempts", "MP0101 spec.http[1].retries.retryOn", "MP0152 spec.http[1]"},
			wantMessage: "attempts -1 is negative",
		},
		{
			name: "retry settings with retries disabled",
			yaml: virtualService(`hosts: [reviews]
http:
- route:
  - destination: {host: reviews}
  retries: {attempts: 0, perTryTimeout: 1s}`),
			want: []string{"MP0103 spec.http[0].retries.attempts"},
		},
		{
			name: "redirect together with route",
			yaml: virtualService(`hosts: [reviews]
http:
- redirect: {uri: /v2/reviews}
  route:
  - destination: {host: reviews}`),
			want:        []string{"MP0103 spec.http[0].redirect"},
			wantMessage: "redirect cannot be used together with route",
		},
		{
			name: "directResponse together with route",
			yaml: virtualService(`hosts: [reviews]
http:
- directResponse: {status: 503}
  route:
  - destination: {host: reviews}`),
			want:        []string{"MP0103 spec.http[0].directResponse"},
			wantMessage: "directResponse cannot be used together with route",
		},
		{
			name: "redirect and directResponse with bad status codes",
			yaml: virtualService(`hosts: [reviews]
http:
- match: [{uri: {exact: /old}}]
  redirect: {uri: /new, redirectCode: 200}
- directResponse: {status: 99}`),
			want: []string{"MP0111 spec.http[0].redirect.redirectCode", "MP0111 spec.http[1].directResponse.status"},
		},
		{
			name: "rule with nothing to do",
			yaml: virtualService(`hosts: [reviews]
http:
- timeout: 5s`),
			want:        []string{"MP0102 spec.http[0].route"},
			wantMessage: "needs route, redirect, directResponse or delegate",
		},
		{
			name: "no routes at all",
			yaml: virtualService(`hosts: [reviews]`),
			want: []string{"MP0102 spec.http"},
		},
		{
			name: "hosts missing while bound to a gateway",
			yaml: virtualService(`gateways: [edge]
http:
- route:
  - destination: {host: reviews}`),
			want: []string{"MP0102 spec.hosts"},
		},
		{
			name: "invalid host names",
			yaml: virtualService(`hosts: [Reviews_Service, "foo.*.example.com", "*"]
http:
- route:
  - destination: {host: reviews}`),
			want:        []string{"MP0107 spec.hosts[0]", "MP0107 spec.hosts[1]", "MP0107 spec.hosts[2]"},
			wantMessage: `host "Reviews_Service" is not a DNS name`,
		},
		{
			name: "wildcard and IP hosts on a gateway are fine",
			yaml: virtualService(`hosts: ["*.example.com", "192.0.2.10"]
gateways: [istio-system/edge]
http:
- route:
  - destination: {host: reviews.bookinfo.svc.cluster.local}`),
		},
		{
			name: "partial wildcard hosts are admitted with a warning",
			yaml: virtualService(`hosts: ["*reviews.example.com"]
gateways: [edge]
http:
- route:
  - destination: {host: reviews}`),
			want:        []string{"MP0154 spec.hosts[0]"},
			wantMessage: `use "*.reviews.example.com" if that is meant`,
		},
		{
			name: "host listed twice, once through a wildcard",
			yaml: virtualService(`hosts: ["*.example.com", api.example.com]
gateways: [edge]
http:
- route:
  - destination: {host: reviews}`),
			want: []string{"MP0108 spec.hosts[1]"},
		},
		{
			name: "destination without host, with a bad port and subset name",
			yaml: virtualService(`hosts: [reviews]
http:
- route:
  - destination: {subset: v_1, port: {number: 70000}}`),
			want: []string{"MP0102 spec.http[0].route[0].destination.host", "MP0101 spec.http[0].route[0].destination.subset",
				"MP0109 spec.http[0].route[0].destination.port.number"},
		},
		{
			name: "the same match twice",
			yaml: virtualService(`hosts: [reviews]
http:
- match:
  - headers: {end-user: {exact: jason}}
  route:
  - destination: {host: reviews, subset: v2}
- name: also-jason
  match:
  - headers: {end-user: {exact: jason}}
  route:
  - destination: {host: reviews, subset: v3}
- route:
  - destination: {host: reviews, subset: v1}`),
			want:        []string{"MP0152 spec.http[1].match[0]"},
			wantMessage: "spec.http[0].match[0] is the same match and comes first",
		},
		{
			name: "a rule after the catch-all rule",
			yaml: virtualService(`hosts: [reviews]
http:
- route:
  - destination: {host: reviews, subset: v1}
- match:
  - headers: {end-user: {exact: jason}}
  route:
  - destination: {host: reviews, subset: v2}`),
			want:        []string{"MP0152 spec.http[1]"},
			wantMessage: "spec.http[0] before it has no match conditions",
		},
		{
			name: "mirror percentage over 100",
			yaml: virtualService(`hosts: [reviews]
http:
- route:
  - destination: {host: reviews}
  mirror: {host: reviews-shadow}
  mirrorPercentage: {value: 120}`),
			want: []string{"MP0110 spec.http[0].mirrorPercentage.value"},
		},
		{
			name: "malformed gateway reference",
			yaml: virtualService(`hosts: [reviews.example.com]
gateways: [istio-system/Edge_Gateway]
http:
- route:
  - destination: {host: reviews}`),
			want: []string{"MP0101 spec.gateways[0]"},
		},
		{
			name: "TCP rule without destinations",
			yaml: virtualService(`hosts: [mongo]
tcp:
- match: [{port: 27017}]`),
			want: []string{"MP0102 spec.tcp[0].route"},
		},
		{
			name: "TLS SNI host outside the VirtualService hosts",
			yaml: virtualService(`hosts: ["*.example.com"]
gateways: [edge]
tls:
- match:
  - sniHosts: [shop.example.org]
  route:
  - destination: {host: shop}`),
			want: []string{"MP0107 spec.tls[0].match[0].sniHosts[0]"},
		},
	})
}

func TestValidateDestinationRule(t *testing.T) {
	runValidationCases(t, []validationCase{
		{
			name: "valid subsets and traffic policies",
			yaml: destinationRule(`host: reviews
trafficPolicy:
  loadBalancer:
    consistentHash: {httpCookie: {name: user, ttl: 0s}}
  connectionPool:
    tcp: {maxConnections: 100, connectTimeout: 30ms}
    http: {http1MaxPendingRequests: 10, maxRetries: 3}
  outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 50}
  portLevelSettings:
  - port: {number: 9080}
    loadBalancer: {simple: LEAST_REQUEST}
subsets:
- name: v1
  labels: {version: v1}
- name: v2
  labels: {version: v2, app.kubernetes.io/part-of: bookinfo}
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}`),
		},
		{
			name: "duplicate subset names",
			yaml: destinationRule(`host: reviews
subsets:
- name: v1
  labels: {version: v1}
- name: v1
  labels: {version: v2}`),
			want:        []string{"MP0108 spec.subsets[1].name"},
			wantMessage: `subset "v1" is already defined by subsets[0]`,
		},
		{
			name: "subset without a name, and an invalid name",
			yaml: destinationRule(`host: reviews
subsets:
- labels: {version: v1}
- name: Version_2
  labels: {version: v2}`),
			want:        []string{"MP0102 spec.subsets[0].name", "MP0101 spec.subsets[1].name"},
			wantMessage: "every subset needs a name",
		},
		{
			name: "missing host",
			yaml: destinationRule(`subsets:
- name: v1`),
			want: []string{"MP0102 spec.host"},
		},
		{
			name: "invalid host",
			yaml: destinationRule(`host: reviews..bookinfo`),
			want: []string{"MP0107 spec.host"},
		},
		{
			name: "empty trafficPolicy",
			yaml: destinationRule(`host: reviews
trafficPolicy: {}`),
			want: []string{"MP0102 spec.trafficPolicy"},
		},
		{
			name: "outlier detection out of range",
			yaml: destinationRule(`host: reviews
trafficPolicy:
  outlierDetection: {interval: 0s, baseEjectionTime: 30s, maxEjectionPercent: 150}`),
			want: []string{"MP0106 spec.trafficPolicy.outlierDetection.interval",
				"MP0110 spec.trafficPolicy.outlierDetection.maxEjectionPercent"},
		},
		{
			name: "negative connection pool limits",
			yaml: destinationRule(`host: reviews
trafficPolicy:
  connectionPool:
    tcp: {maxConnections: -1}
    http: {http2MaxRequests: -5}`),
			want: []string{"MP0101 spec.trafficPolicy.connectionPool.tcp.maxConnections",
				"MP0101 spec.trafficPolicy.connectionPool.http.http2MaxRequests"},
		},
		{
			name: "cookie hash without a cookie name, maglev table not prime",
			yaml: destinationRule(`host: reviews
trafficPolicy:
  loadBalancer:
    consistentHash:
      httpCookie: {ttl: 10s}
      maglev: {tableSize: 100}`),
			want: []string{"MP0102 spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name",
				"MP0101 spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize"},
		},
		{
			name: "invalid label key",
			yaml: destinationRule(`host: reviews
subsets:
- name: v1
  labels: {"-version": v1}`),
			want: []string{"MP0101 spec.subsets[0].labels[-version]"},
		},
		{
			name: "port-level settings on port 0 with nothing in them",
			yaml: destinationRule(`host: reviews
trafficPolicy:
  portLevelSettings:
  - port: {number: 0}`),
			want: []string{"MP0109 spec.trafficPolicy.portLevelSettings[0].port.number", "MP0102 spec.trafficPolicy.portLevelSettings[0]"},
		},
		{
			name: "MUTUAL TLS without client certificate",
			yaml: destinationRule(`host: reviews
trafficPolicy:
  tls: {mode: MUTUAL}`),
			want: []string{"MP0102 spec.trafficPolicy.tls.clientCertificate", "MP0102 spec.trafficPolicy.tls.privateKey"},
		},
	})
}

func TestValidateGateway(t *testing.T) {
	runValidationCases(t, []validationCase{
		{
			name: "valid HTTP, HTTPS and TLS passthrough servers",
			yaml: gatewayObject(`selector: {istio: ingressgateway}
servers:
- port: {number: 80, name: http, protocol: HTTP}
  hosts: ["bookinfo/shop.example.com"]
  tls: {httpsRedirect: true}
- port: {number: 443, name: https, protocol: HTTPS}
  hosts: ["*.example.com"]
  tls: {mode: SIMPLE, credentialName: shop-cert}
- port: {number: 8443, name: tls, protocol: TLS}
  hosts: ["*"]
  tls: {mode: PASSTHROUGH}
- port: {number: 9443, name: mtls, protocol: HTTPS}
  hosts: ["./api.example.com"]
  tls: {mode: MUTUAL, serverCertificate: /etc/certs/cert.pem, privateKey: /etc/certs/key.pem, caCertificates: /etc/certs/ca.pem}`),
		},
		{
			name: "no servers",
			yaml: gatewayObject(`selector: {istio: ingressgateway}`),
			want: []string{"MP0102 spec.servers"},
		},
		{
			name: "server without port or hosts",
			yaml: gatewayObject(`servers:
- bind: 0.0.0.0`),
			want:        []string{"MP0102 spec.servers[0].hosts", "MP0102 spec.servers[0].port"},
			wantMessage: "a server needs at least one host",
		},
		{
			name: "HTTPS server without TLS settings",
			yaml: gatewayObject(`servers:
- port: {number: 443, name: https, protocol: HTTPS}
  hosts: [shop.example.com]`),
			want: []string{"MP0102 spec.servers[0].tls"},
		},
		{
			name: "SIMPLE TLS without credentialName or certificate",
			yaml: gatewayObject(`servers:
- port: {number: 443, name: https, protocol: HTTPS}
  hosts: [shop.example.com]
  tls: {mode: SIMPLE}`),
			want:        []string{"MP0102 spec.servers[0].tls.credentialName"},
			wantMessage: "SIMPLE TLS needs credentialName",
		},
		{
			name: "MUTUAL TLS with a certificate file but no CA",
			yaml: gatewayObject(`servers:
- port: {number: 443, name: https, protocol: HTTPS}
  hosts: [shop.example.com]
  tls: {mode: MUTUAL, serverCertificate: /c.pem, privateKey: /k.pem}`),
			want: []string{"MP0102 spec.servers[0].tls.caCertificates"},
		},
		{
			name: "ports out of range",
			yaml: gatewayObject(`servers:
- port: {number: 0, name: http, protocol: HTTP}
  hosts: ["*"]
- port: {number: 65536, name: http2, protocol: HTTP2}
  hosts: ["*"]`),
			want:        []string{"MP0109 spec.servers[0].port.number", "MP0109 spec.servers[1].port.number"},
			wantMessage: "port 0 is not in 1-65535",
		},
		{
			name: "short host name, bad namespace, partial wildcard",
			yaml: gatewayObject(`servers:
- port: {number: 80, name: http, protocol: HTTP}
  hosts: [httpbin, "prod_ns/shop.example.com", "*shop.example.com"]`),
			want: []string{"MP0107 spec.servers[0].hosts[0]", "MP0107 spec.servers[0].hosts[1]", "MP0107 spec.servers[0].hosts[2]"},
		},
		{
			name: "duplicate port names",
			yaml: gatewayObject(`servers:
- port: {number: 80, name: http, protocol: HTTP}
  hosts: [a.example.com]
- port: {number: 8080, name: http, protocol: HTTP}
  hosts: [b.example.com]`),
			want: []string{"MP0108 spec.servers[1].port.name"},
		},
		{
			name: "TLS termination on a plain HTTP port",
			yaml: gatewayObject(`servers:
- port: {number: 80, name: http, protocol: HTTP}
  hosts: [a.example.com]
  tls: {mode: SIMPLE, credentialName: cert}`),
			want: []string{"MP0103 spec.servers[0].tls"},
		},
		{
			name: "unknown protocol",
			yaml: gatewayObject(`servers:
- port: {number: 80, name: http, protocol: HTTP3}
  hosts: [a.example.com]`),
			want: []string{"MP0101 spec.servers[0].port.protocol"},
		},
		{
			name: "ISTIO_MUTUAL with its own certificate",
			yaml: gatewayObject(`servers:
- port: {number: 15443, name: tls, protocol: TLS}
  hosts: ["*.local"]
  tls: {mode: ISTIO_MUTUAL, credentialName: cert}`),
			want: []string{"MP0103 spec.servers[0].tls.credentialName"},
		},
		{
			name: "Gateway name with a dot",
			yaml: object("Gateway", "edge.v2", `servers:
- port: {number: 80, name: http, protocol: HTTP}
  hosts: ["*"]`),
			want: []string{"MP0101 metadata.name"},
		},
	})
}

func TestValidateServiceEntry(t *testing.T) {
	runValidationCases(t, []validationCase{
		{
			name: "valid external API resolved by DNS",
			yaml: serviceEntry(`hosts: [api.example.com]
location: MESH_EXTERNAL
resolution: DNS
ports:
- {number: 443, name: https, protocol: TLS}`),
		},
		{
			name: "valid STATIC entry with endpoints",
			yaml: serviceEntry(`hosts: [db.internal.example]
addresses: [10.1.0.0/24]
resolution: STATIC
ports:
- {number: 5432, name: tcp-postgres, protocol: TCP}
endpoints:
- {address: 10.1.0.5, ports: {tcp-postgres: 5433}}`),
		},
		{
			name: "no ports",
			yaml: serviceEntry(`hosts: [api.example.com]
resolution: DNS`),
			want:        []string{"MP0153 spec.ports"},
			wantMessage: "without ports",
		},
		{
			name: "STATIC without endpoints",
			yaml: serviceEntry(`hosts: [db.internal.example]
addresses: [10.1.0.5]
resolution: STATIC
ports:
- {number: 5432, name: tcp-postgres, protocol: TCP}`),
			want: []string{"MP0153 spec.endpoints"},
		},
		{
			name: "no hosts",
			yaml: serviceEntry(`ports:
- {number: 443, name: https, protocol: TLS}`),
			want: []string{"MP0102 spec.hosts"},
		},
		{
			name: "invalid address, port and endpoint address",
			yaml: serviceEntry(`hosts: [db.internal.example]
addresses: [300.1.1.1]
resolution: STATIC
ports:
- {number: 0, name: tcp, protocol: TCP}
endpoints:
- {address: db1.internal.example}`),
			want: []string{"MP0101 spec.addresses[0]", "MP0109 spec.ports[0].number", "MP0101 spec.endpoints[0].address"},
		},
		{
			name: "endpoints with resolution NONE",
			yaml: serviceEntry(`hosts: [api.example.com]
resolution: NONE
ports:
- {number: 443, name: https, protocol: TLS}
endpoints:
- {address: 192.0.2.1}`),
			want: []string{"MP0103 spec.endpoints"},
		},
		{
			name: "port declared twice, endpoint port not declared",
			yaml: serviceEntry(`hosts: [api.example.com]
resolution: DNS
ports:
- {number: 443, name: https, protocol: TLS}
- {number: 443, name: https-alt, protocol: TLS}
endpoints:
- {address: api.example.com, ports: {grpc: 8443}}`),
			want: []string{"MP0108 spec.ports[1].number", "MP0101 spec.endpoints[0].ports[grpc]"},
		},
		{
			name: "wildcard host resolved by DNS without endpoints, CIDR with DNS",
			yaml: serviceEntry(`hosts: ["*.example.com"]
addresses: [192.0.2.0/24]
resolution: DNS
ports:
- {number: 443, name: https, protocol: TLS}`),
			want: []string{"MP0103 spec.resolution", "MP0107 spec.hosts[0]"},
		},
	})
}

func TestValidateSidecar(t *testing.T) {
	runValidationCases(t, []validationCase{
		{
			name: "valid egress and ingress",
			yaml: sidecarObject(`ingress:
- port: {number: 9080, name: http, protocol: HTTP}
  defaultEndpoint: 127.0.0.1:8080
egress:
- port: {number: 3306, name: mysql, protocol: MYSQL}
  hosts: ["*/mysql.db.svc.cluster.local"]
- hosts: ["./*", "istio-system/*", "~/*.internal.example"]
outboundTrafficPolicy: {mode: REGISTRY_ONLY}`),
		},
		{
			name: "egress hosts not in namespace/host form",
			yaml: sidecarObject(`egress:
- hosts: [reviews, "bookinfo/reviews", "Bad_NS/*"]`),
			want:        []string{"MP0107 spec.egress[0].hosts[0]", "MP0107 spec.egress[0].hosts[1]", "MP0107 spec.egress[0].hosts[2]"},
			wantMessage: `egress host "reviews" must be in namespace/host form`,
		},
		{
			name: "empty Sidecar",
			yaml: sidecarObject(`workloadSelector: {labels: {app: reviews}}`),
			want: []string{"MP0102 spec"},
		},
		{
			name: "egress listener without hosts, catch-all listener not last",
			yaml: sidecarObject(`egress:
- hosts: ["./*"]
- port: {number: 8080, name: http, protocol: HTTP}`),
			want: []string{"MP0101 spec.egress[0]", "MP0102 spec.egress[1].hosts"},
		},
		{
			name: "ports out of range and a bad defaultEndpoint",
			yaml: sidecarObject(`ingress:
- port: {number: 0, name: http, protocol: HTTP}
  defaultEndpoint: 10.0.0.1:8080
egress:
- port: {number: 70000, protocol: HTTP}
  hosts: ["./*"]`),
			want: []string{"MP0109 spec.ingress[0].port.number", "MP0101 spec.ingress[0].defaultEndpoint", "MP0109 spec.egress[0].port.number"},
		},
	})
}

func TestValidateSeparatesErrorsFromWarnings(t *testing.T) {
	vs := &networkingv1.VirtualService{
		ObjectMeta: metav1.ObjectMeta{Name: "reviews", Namespace: "bookinfo"},
		Spec: networkingv1alpha3.VirtualService{
			Hosts: []string{"reviews"},
			Http: []*networkingv1alpha3.HTTPRoute{{
				Route: []*networkingv1alpha3.HTTPRouteDestination{
					{Destination: &networkingv1alpha3.Destination{Host: "reviews", Subset: "v1"}, Weight: 60},
					{Destination: &networkingv1alpha3.Destination{Host: "reviews", Subset: "v2"}, Weight: 60},
				},
				Redirect: &networkingv1alpha3.HTTPRedirect{Uri: "/elsewhere"},
			}},
		},
	}
	errs, warnings := ValidateWithWarnings(vs)
	if len(errs) != 1 || errs[0].Field != "spec.http[0].redirect" {
		t.Errorf("errors = %v, want the redirect conflict", errs)
	}
	if len(warnings) != 1 || warnings[0].Field != "spec.http[0].route" {
		t.Errorf("warnings = %v, want the weights", warnings)
	}
	if got := Validate(vs); len(got) != 1 || got[0].Field != "spec.http[0].redirect" {
		t.Errorf("Validate = %v, want only the error", got)
	}
	if got := Validate(&corev1.Service{}); got != nil {
		t.Errorf("Validate(Service) = %v, want nothing", got)
	}
}

func TestHostNameProblem(t *testing.T) {
	for host, valid := range map[string]bool{
		"reviews":                            true,
		"reviews.bookinfo.svc.cluster.local": true,
		"*.example.com":                      true,
		"*":                                  true,
		"example.com.":                       true,
		"":                                   false,
		"Reviews":                            true, // Istio, like DNS, ignores case
		"re_views":                           false,
		"*foo.example.com":                   true, // a partial wildcard, which callers judge
		"*-foo.example.com":                  true,
		"*.*.example.com":                    false,
		"foo.*.com":                          false,
		"10.0.0.1":                           false,
		"-reviews":                           false,
		strings.Repeat("a", 64) + ".com":     false,
	} {
		if got := hostNameProblem(host) == ""; got != valid {
			t.Errorf("hostNameProblem(%q) = %q, want valid=%v", host, hostNameProblem(host), valid)
		}
	}
}
