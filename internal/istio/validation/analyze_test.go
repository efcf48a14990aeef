package validation

import (
	"slices"
	"strings"
	"testing"

	"github.com/meshplane/meshplane/internal/istio/config"
)

// platform is what the analysis cases route to: the reviews Service with two versions
// deployed and a DestinationRule for them, ratings without workloads or DestinationRule, a
// Gateway, and an external API.
const platform = `apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: bookinfo}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v1, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews, version: v1}}
  template:
    metadata: {labels: {app: reviews, version: v1}}
    spec: {containers: [{name: reviews, image: reviews:v1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-v2-7d9f, namespace: bookinfo, labels: {app: reviews, version: v2}}
spec: {containers: [{name: reviews, image: reviews:v2}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: bookinfo}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway, namespace: bookinfo}
spec:
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [bookinfo.example.com]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: example-apis, namespace: egress}
spec:
  hosts: ["*.example.com"]
  resolution: NONE
  ports: [{number: 443, name: tls, protocol: TLS}]
`

func TestAnalyze(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		// want lists every finding as "CODE Kind namespace/name field".
		want        []string
		wantMessage string
	}{
		{
			name: "references that all resolve",
			yaml: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews, bookinfo.example.com]
  gateways: [bookinfo-gateway, bookinfo/bookinfo-gateway, mesh]
  http:
  - match: [{headers: {end-user: {exact: jason}}, gateways: [mesh]}]
    route:
    - destination: {host: reviews, subset: v2}
    mirror: {host: reviews.bookinfo, subset: v1}
  - route:
    - destination: {host: reviews.bookinfo.svc.cluster.local, subset: v1}
      weight: 90
    - destination: {host: api.example.com}
      weight: 10
`,
		},
		{
			name: "subset no DestinationRule defines",
			yaml: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v4}
`,
			want: []string{"MP1001 VirtualService bookinfo/reviews spec.http[0].route[0].destination.subset"},
			wantMessage: `subset "v4" is not defined by any DestinationRule for host reviews.bookinfo.svc.cluster.local ` +
				`(defined: v1, v2)`,
		},
		{
			name: "subset of a host without any DestinationRule",
			yaml: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: bookinfo}
spec:
  hosts: [ratings]
  http:
  - route:
    - destination: {host: ratings, subset: v1}
`,
			want:        []string{"MP1001 VirtualService bookinfo/ratings spec.http[0].route[0].destination.subset"},
			wantMessage: "(there is none)",
		},
		{
			name: "destination hosts that match nothing",
			yaml: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviewz}
    mirror: {host: shadow.bookinfo.svc.cluster.local}
  tcp:
  - route:
    - destination: {host: api.example.org}
`,
			want: []string{
				"MP1002 VirtualService bookinfo/reviews spec.http[0].route[0].destination.host",
				"MP1002 VirtualService bookinfo/reviews spec.http[0].mirror.host",
				"MP1002 VirtualService bookinfo/reviews spec.tcp[0].route[0].destination.host",
			},
			wantMessage: `host "reviewz" matches no Service (looked for reviewz.bookinfo.svc.cluster.local) and no ServiceEntry host`,
		},
		{
			name: "short names resolve in the VirtualService's namespace",
			yaml: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: frontend}
spec:
  hosts: [reviews.bookinfo.svc.cluster.local]
  http:
  - route:
    - destination: {host: reviews}
`,
			want:        []string{"MP1002 VirtualService frontend/reviews spec.http[0].route[0].destination.host"},
			wantMessage: "looked for reviews.frontend.svc.cluster.local",
		},
		{
			name: "gateways that do not exist",
			yaml: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: frontend}
spec:
  hosts: [bookinfo.example.com]
  gateways: [bookinfo-gateway, istio-system/missing, bookinfo/bookinfo-gateway, mesh]
  http:
  - match: [{gateways: [edge]}]
    route:
    - destination: {host: reviews.bookinfo.svc.cluster.local}
`,
			want: []string{
				"MP1003 VirtualService frontend/shop spec.gateways[0]",
				"MP1003 VirtualService frontend/shop spec.gateways[1]",
				"MP1003 VirtualService frontend/shop spec.http[0].match[0].gateways[0]",
			},
			wantMessage: "Gateway frontend/bookinfo-gateway is not defined in the input",
		},
		{
			name: "two VirtualServices for the same host in the mesh",
			yaml: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-canary, namespace: bookinfo}
spec:
  hosts: [reviews.bookinfo.svc.cluster.local]
  http:
  - route:
    - destination: {host: reviews, subset: v2}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-edge, namespace: bookinfo}
spec:
  hosts: [reviews]
  gateways: [bookinfo-gateway]
  http:
  - route:
    - destination: {host: reviews, subset: v2}
`,
			want: []string{
				"MP1004 VirtualService bookinfo/reviews spec.hosts[0]",
				"MP1004 VirtualService bookinfo/reviews-canary spec.hosts[0]",
			},
			wantMessage: "host reviews.bookinfo.svc.cluster.local is also routed for the mesh by VirtualService bookinfo/reviews-canary (case.yaml:",
		},
		{
			name: "subset that selects none of the known workloads",
			yaml: `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews-next, namespace: bookinfo}
spec:
  host: reviews.bookinfo.svc.cluster.local
  subsets:
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
  - {name: all}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: bookinfo}
spec:
  host: ratings
  subsets:
  - {name: v9, labels: {version: v9}}
`,
			want:        []string{"MP1005 DestinationRule bookinfo/reviews-next spec.subsets[1].labels"},
			wantMessage: `subset "v3" selects version=v3, which none of the 2 pods and Deployments of Service bookinfo/reviews in the input has`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loaded := config.LoadBytes("case.yaml", []byte(platform+"---\n"+tt.yaml), config.Options{})
			if len(loaded.Problems) > 0 {
				t.Fatalf("fixture does not load cleanly: %+v", loaded.Problems)
			}
			findings := Analyze(loaded.Objects)
			var got []string
			for _, f := range findings {
				got = append(got, f.Code.ID+" "+f.Object()+" "+f.Field)
			}
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tt.want))
			if !slices.Equal(got, want) {
				t.Fatalf("findings:\n  got  %q\n  want %q\n%s", got, want, formatFindings(findings))
			}
			if tt.wantMessage != "" && !strings.Contains(findings[0].Message, tt.wantMessage) {
				t.Errorf("message %q does not contain %q", findings[0].Message, tt.wantMessage)
			}
		})
	}
}

func TestCheckCombinesLoadingValidationAndAnalysis(t *testing.T) {
	input := `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v3}
      weight: 50
    - destination: {host: reviews, subset: v1}
      weigth: 50
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: bookinfo}
spec: {}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
`
	loaded := config.LoadBytes("in.yaml", []byte(platform+"---\n"+input), config.Options{})
	findings := Check(loaded)
	var got []string
	for _, f := range findings {
		got = append(got, f.Source.String()+" "+f.Severity().String()+" "+f.Code.ID+" "+f.Object()+" "+f.Field)
	}
	// Sorted by line; lines point at the offending field. The second DestinationRule reviews is
	// reported once, as the duplicate.
	want := []string{
		"in.yaml:60 Warning MP0151 VirtualService bookinfo/reviews spec.http[0].route", // the misspelt weight counts as 0
		"in.yaml:61 Error MP1001 VirtualService bookinfo/reviews spec.http[0].route[0].destination.subset",
		"in.yaml:64 Error MP0002 VirtualService bookinfo/reviews spec.http[0].route[1].weigth",
		"in.yaml:66 Warning MP0003 Telemetry bookinfo/mesh-default ",
		"in.yaml:71 Warning MP0004 DestinationRule bookinfo/reviews ",
	}
	if !slices.Equal(got, want) {
		t.Errorf("findings:\n  got  %q\n  want %q\n%s", got, want, formatFindings(findings))
	}
	if !HasErrors(findings) {
		t.Error("HasErrors = false")
	}
	if HasErrors(findings[:1]) {
		t.Error("HasErrors(warnings only) = true")
	}
}
