package istiocrd

import (
	"google.golang.org/protobuf/proto"
	networkingv1 "istio.io/api/networking/v1"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	securityv1 "istio.io/api/security/v1"
	telemetryv1 "istio.io/api/telemetry/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
)

// kind is one Istio config kind and how Istio 1.32 serves it: versions, names
// and printer columns follow Istio's own CRDs so that kubectl behaves the same.
type kind struct {
	group, kind, plural string
	shortNames          []string
	// versions are served, highest priority first; all share one schema, so
	// no conversion is needed between them.
	versions []string
	// storage is the stored version: Istio's choice, so that a cluster can move
	// between Meshplane and Istio without a storage migration.
	storage     string
	spec        proto.Message
	description string
	columns     []apiextensionsv1.CustomResourceColumnDefinition
}

const (
	groupNetworking = "networking.istio.io"
	groupSecurity   = "security.istio.io"
	groupTelemetry  = "telemetry.istio.io"
)

var (
	networkingVersions = []string{"v1", "v1beta1", "v1alpha3"}
	securityVersions   = []string{"v1", "v1beta1"}
)

// kinds are the Istio config kinds Meshplane accepts. The networking, security
// and telemetry v1 packages alias the older versions' messages, so one
// descriptor describes every served version.
var kinds = []kind{
	{
		group: groupNetworking, kind: "VirtualService", plural: "virtualservices", shortNames: []string{"vs"},
		versions: networkingVersions, storage: "v1", spec: &networkingv1.VirtualService{},
		description: "Routing rules for traffic to a set of hosts: matches, weighted destinations, retries, faults, redirects.",
		columns: []apiextensionsv1.CustomResourceColumnDefinition{
			column("Gateways", ".spec.gateways", "The gateways and sidecars that apply these routes"),
			column("Hosts", ".spec.hosts", "The destination hosts the routes apply to"),
			ageColumn,
		},
	},
	{
		group: groupNetworking, kind: "DestinationRule", plural: "destinationrules", shortNames: []string{"dr"},
		versions: networkingVersions, storage: "v1", spec: &networkingv1.DestinationRule{},
		description: "Policies for traffic to a service after routing: load balancing, connection pools, outlier detection, TLS, subsets.",
		columns: []apiextensionsv1.CustomResourceColumnDefinition{
			column("Host", ".spec.host", "The service the rule applies to"),
			ageColumn,
		},
	},
	{
		group: groupNetworking, kind: "Gateway", plural: "gateways", shortNames: []string{"gw"},
		versions: networkingVersions, storage: "v1", spec: &networkingv1.Gateway{},
		description: "Ports, protocols, hosts and TLS settings a gateway proxy listens with.",
	},
	{
		group: groupNetworking, kind: "ServiceEntry", plural: "serviceentries", shortNames: []string{"se"},
		versions: networkingVersions, storage: "v1", spec: &networkingv1.ServiceEntry{},
		description: "A service added to the mesh's registry, typically one outside the cluster.",
		columns: []apiextensionsv1.CustomResourceColumnDefinition{
			column("Hosts", ".spec.hosts", "The hosts of the service"),
			column("Location", ".spec.location", "Whether the service is outside the mesh or part of it"),
			column("Resolution", ".spec.resolution", "How the service's endpoints are found"),
			ageColumn,
		},
	},
	{
		group: groupNetworking, kind: "Sidecar", plural: "sidecars",
		versions: networkingVersions, storage: "v1", spec: &networkingv1.Sidecar{},
		description: "The inbound and outbound traffic a sidecar proxy accepts and the services it can reach.",
	},
	{
		group: groupNetworking, kind: "WorkloadEntry", plural: "workloadentries", shortNames: []string{"we"},
		versions: networkingVersions, storage: "v1", spec: &networkingv1.WorkloadEntry{},
		description: "A workload outside Kubernetes (a VM, a bare-metal host) as a mesh endpoint.",
		columns: []apiextensionsv1.CustomResourceColumnDefinition{
			ageColumn,
			column("Address", ".spec.address", "The workload's address"),
		},
	},
	{
		group: groupNetworking, kind: "WorkloadGroup", plural: "workloadgroups", shortNames: []string{"wg"},
		versions: networkingVersions, storage: "v1", spec: &networkingv1.WorkloadGroup{},
		description: "A template for WorkloadEntries of workloads outside Kubernetes, with their health probe.",
		columns:     []apiextensionsv1.CustomResourceColumnDefinition{ageColumn},
	},
	{
		// Istio serves EnvoyFilter in v1alpha3 only.
		group: groupNetworking, kind: "EnvoyFilter", plural: "envoyfilters",
		versions: []string{"v1alpha3"}, storage: "v1alpha3", spec: &networkingv1alpha3.EnvoyFilter{},
		description: "Patches to the Envoy configuration generated for selected workloads.",
	},
	{
		group: groupSecurity, kind: "AuthorizationPolicy", plural: "authorizationpolicies", shortNames: []string{"ap"},
		versions: securityVersions, storage: "v1", spec: &securityv1.AuthorizationPolicy{},
		description: "Access control for workloads: which sources may perform which operations, under which conditions.",
		columns: []apiextensionsv1.CustomResourceColumnDefinition{
			column("Action", ".spec.action", "The action taken when a rule matches"),
			ageColumn,
		},
	},
	{
		group: groupSecurity, kind: "PeerAuthentication", plural: "peerauthentications", shortNames: []string{"pa"},
		versions: securityVersions, storage: "v1", spec: &securityv1.PeerAuthentication{},
		description: "The mutual TLS mode workloads accept traffic with.",
		columns: []apiextensionsv1.CustomResourceColumnDefinition{
			column("Mode", ".spec.mtls.mode", "The mutual TLS mode"),
			ageColumn,
		},
	},
	{
		group: groupSecurity, kind: "RequestAuthentication", plural: "requestauthentications", shortNames: []string{"ra"},
		versions: securityVersions, storage: "v1", spec: &securityv1.RequestAuthentication{},
		description: "The JSON Web Tokens workloads accept on requests.",
	},
	{
		// Istio 1.32 still stores Telemetry as v1alpha1.
		group: groupTelemetry, kind: "Telemetry", plural: "telemetries", shortNames: []string{"telemetry"},
		versions: []string{"v1", "v1alpha1"}, storage: "v1alpha1", spec: &telemetryv1.Telemetry{},
		description: "Metrics, access logging and tracing settings for workloads.",
		columns:     []apiextensionsv1.CustomResourceColumnDefinition{ageColumn},
	},
}

var ageColumn = apiextensionsv1.CustomResourceColumnDefinition{
	Name: "Age", Type: "date", JSONPath: ".metadata.creationTimestamp",
	Description: "When the object was created",
}

func column(name, jsonPath, description string) apiextensionsv1.CustomResourceColumnDefinition {
	return apiextensionsv1.CustomResourceColumnDefinition{Name: name, Type: "string", JSONPath: jsonPath, Description: description}
}
