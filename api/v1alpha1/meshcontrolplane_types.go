package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MeshControlPlaneFinalizer holds a MeshControlPlane until everything it
// installed has been removed.
const MeshControlPlaneFinalizer = "operator.meshplane.io/uninstall"

// MeshControlPlaneSpec is the whole mesh a platform team asks for.
//
// Every field is typed and validated at apply time, except values, which is the
// documented escape hatch into the charts.
type MeshControlPlaneSpec struct {
	// Version of the control plane to install; one of the versions this operator ships.
	// +kubebuilder:validation:Enum=v0.1.0
	// +kubebuilder:default="v0.1.0"
	// +optional
	Version string `json:"version,omitempty"`

	// Namespace the control plane (meshd) is installed into. Created when missing,
	// and deleted on uninstall only if the operator created it. Immutable: moving a
	// control plane means a new MeshControlPlane.
	// +kubebuilder:default=meshplane-system
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="namespace must be a DNS label: lower-case letters, digits and '-', starting and ending with a letter or digit"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="namespace is immutable; create a new MeshControlPlane to move the control plane"
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// UpdateStrategy says how a version change reaches the running control plane.
	// +kubebuilder:default={}
	// +optional
	UpdateStrategy UpdateStrategy `json:"updateStrategy,omitempty"`

	// ControlPlane configures the meshd Deployment.
	// +kubebuilder:default={}
	// +optional
	ControlPlane ControlPlaneSpec `json:"controlPlane,omitempty"`

	// CA selects where workload certificates come from.
	// +kubebuilder:default={}
	// +optional
	CA CASpec `json:"ca,omitempty"`

	// Injector configures the sidecar injection webhook served by meshd.
	// +kubebuilder:default={}
	// +optional
	Injector InjectorSpec `json:"injector,omitempty"`

	// Gateways are the ingress and egress gateways installed with the control plane.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	// +optional
	Gateways []GatewaySpec `json:"gateways,omitempty"`

	// MeshConfig is the mesh-wide configuration meshd reads.
	// +kubebuilder:default={}
	// +optional
	MeshConfig MeshConfigSpec `json:"meshConfig,omitempty"`

	// Values are free-form chart values merged over the ones the operator computes
	// from the fields above, last. Unsupported territory: the charts' values are
	// not a stable API and may change between versions without notice.
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	// +optional
	Values *apiextensionsv1.JSON `json:"values,omitempty"`
}

// UpdateStrategyType names how upgrades are rolled out.
// +kubebuilder:validation:Enum=InPlace;RevisionBased
type UpdateStrategyType string

const (
	// UpdateStrategyInPlace upgrades the running control plane where it stands.
	UpdateStrategyInPlace UpdateStrategyType = "InPlace"
	// UpdateStrategyRevisionBased runs the new version beside the old one as a new
	// revision. Accepted by the schema, refused by this operator version with a
	// condition until revisions are implemented.
	UpdateStrategyRevisionBased UpdateStrategyType = "RevisionBased"
)

// UpdateStrategy says how a version change reaches the running control plane.
type UpdateStrategy struct {
	// Type is InPlace (the default) or RevisionBased.
	// +kubebuilder:default=InPlace
	// +optional
	Type UpdateStrategyType `json:"type,omitempty"`

	// InactiveRevisionDeletionGracePeriodSeconds is how long a revision that is no
	// longer in use is kept before it is deleted (RevisionBased only).
	// +kubebuilder:default=30
	// +kubebuilder:validation:Minimum=0
	// +optional
	InactiveRevisionDeletionGracePeriodSeconds *int64 `json:"inactiveRevisionDeletionGracePeriodSeconds,omitempty"`
}

// LogLevel of a mesh component.
// +kubebuilder:validation:Enum=debug;info;warn;error
type LogLevel string

// ControlPlaneSpec configures the meshd Deployment.
type ControlPlaneSpec struct {
	// Replicas of meshd.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`

	// Resources of the meshd container. Defaults to requests of 100m CPU and 128Mi memory.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`

	// LogLevel of meshd.
	// +kubebuilder:default=info
	// +optional
	LogLevel LogLevel `json:"logLevel,omitempty"`

	// Image overrides the meshd image of the selected version, e.g. for a mirror registry.
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="self.matches('^[^\\\\s]+$')",message="image must be a container image reference without whitespace"
	// +optional
	Image string `json:"image,omitempty"`
}

// CAType selects the mesh certificate authority.
// +kubebuilder:validation:Enum=SelfSigned;Provided;CertManager
type CAType string

const (
	// CATypeSelfSigned: the operator creates a root once and meshd signs with it.
	CATypeSelfSigned CAType = "SelfSigned"
	// CATypeProvided: the user's CA in a Secret (Istio's plug-in CA layout).
	CATypeProvided CAType = "Provided"
	// CATypeCertManager: certificates are issued through cert-manager.
	CATypeCertManager CAType = "CertManager"
)

// CASpec selects where workload certificates come from. Each type takes exactly
// the settings it needs.
// +kubebuilder:validation:XValidation:rule="!has(self.type) || self.type != 'Provided' || has(self.provided)",message="ca.provided is required when ca.type is Provided"
// +kubebuilder:validation:XValidation:rule="(has(self.type) && self.type == 'Provided') || !has(self.provided)",message="ca.provided may only be set when ca.type is Provided"
// +kubebuilder:validation:XValidation:rule="!has(self.type) || self.type != 'CertManager' || has(self.certManager)",message="ca.certManager is required when ca.type is CertManager"
// +kubebuilder:validation:XValidation:rule="(has(self.type) && self.type == 'CertManager') || !has(self.certManager)",message="ca.certManager may only be set when ca.type is CertManager"
type CASpec struct {
	// Type of CA.
	// +kubebuilder:default=SelfSigned
	// +optional
	Type CAType `json:"type,omitempty"`

	// Provided names the Secret holding the user's CA (type Provided).
	// +optional
	Provided *ProvidedCA `json:"provided,omitempty"`

	// CertManager names the cert-manager issuer to sign with (type CertManager).
	// +optional
	CertManager *CertManagerCA `json:"certManager,omitempty"`
}

// ProvidedCA names the Secret, in the control-plane namespace, that holds
// ca-cert.pem, ca-key.pem, root-cert.pem and cert-chain.pem.
type ProvidedCA struct {
	// SecretName of the CA Secret in the control-plane namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')",message="secretName must be a valid Secret name: lower-case letters, digits, '-' and '.'"
	SecretName string `json:"secretName"`
}

// CertManagerCA says which cert-manager issuer signs workload certificates.
type CertManagerCA struct {
	// IssuerRef is the issuer CertificateRequests are sent to.
	IssuerRef IssuerReference `json:"issuerRef"`
}

// IssuerReference names a cert-manager Issuer (in the control-plane namespace) or
// ClusterIssuer. It maps field for field onto cert-manager's
// meta/v1.IssuerReference, with the validation that type lacks.
type IssuerReference struct {
	// Name of the issuer.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// Kind of the issuer.
	// +kubebuilder:validation:Enum=Issuer;ClusterIssuer
	// +kubebuilder:default=Issuer
	// +optional
	Kind string `json:"kind,omitempty"`

	// Group of the issuer; cert-manager.io for cert-manager's own issuers, another
	// group for external issuers.
	// +kubebuilder:default=cert-manager.io
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Group string `json:"group,omitempty"`
}

// FailurePolicy of the injection webhook.
// +kubebuilder:validation:Enum=Fail;Ignore
type FailurePolicy string

// InjectorSpec configures sidecar injection.
//
// Injection is opt-in with Istio's labels: a namespace labelled
// istio-injection=enabled or istio.io/rev=<revision>, or a pod labelled
// sidecar.istio.io/inject=true or istio.io/rev=<revision>. Nothing else is sent
// to the webhook, so a control plane that is down never blocks other pods.
type InjectorSpec struct {
	// Enabled installs the injection webhook.
	// +kubebuilder:default=true
	// +optional
	Enabled *bool `json:"enabled,omitempty"`

	// FailurePolicy of the webhook for opted-in namespaces and pods: Fail keeps
	// uninjected pods out of the mesh, Ignore lets them start without a sidecar.
	// +kubebuilder:default=Fail
	// +optional
	FailurePolicy FailurePolicy `json:"failurePolicy,omitempty"`

	// EnableNamespacesByDefault injects every namespace that does not say
	// istio-injection=disabled, except kube-system, kube-public, kube-node-lease
	// and the control-plane namespace. Off by default.
	// +optional
	EnableNamespacesByDefault bool `json:"enableNamespacesByDefault,omitempty"`
}

// GatewayKind says which way a gateway's traffic flows.
// +kubebuilder:validation:Enum=ingress;egress
type GatewayKind string

const (
	GatewayKindIngress GatewayKind = "ingress"
	GatewayKindEgress  GatewayKind = "egress"
)

// GatewaySpec is one Envoy gateway Deployment and its Service. The nodePort rule
// lives here because an empty service.type depends on the gateway's kind.
// +kubebuilder:validation:XValidation:rule="!has(self.service) || !has(self.service.ports) || self.service.ports.all(p, !has(p.nodePort)) || (has(self.service.type) ? self.service.type != 'ClusterIP' : !(has(self.kind) && self.kind == 'egress'))",message="nodePort may only be set when the gateway's Service is NodePort or LoadBalancer (egress gateways default to ClusterIP)"
// +kubebuilder:validation:XValidation:rule="!self.name.startsWith('meshd')",message="gateway name must not start with 'meshd': that name belongs to the control plane"
type GatewaySpec struct {
	// Name of the gateway's Deployment and Service; unique among the gateways.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="gateway name must be a DNS label: lower-case letters, digits and '-', starting and ending with a letter or digit"
	Name string `json:"name"`

	// Namespace of the gateway; the control-plane namespace when empty. It must
	// exist (the operator does not create application namespaces).
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="gateway namespace must be a DNS label: lower-case letters, digits and '-', starting and ending with a letter or digit"
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// Kind is ingress or egress.
	// +kubebuilder:default=ingress
	// +optional
	Kind GatewayKind `json:"kind,omitempty"`

	// Replicas of the gateway.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`

	// Service exposing the gateway.
	// +kubebuilder:default={}
	// +optional
	Service GatewayServiceSpec `json:"service,omitempty"`
}

// GatewayServiceSpec is the Service in front of a gateway. When ports is empty,
// ingress gateways expose 80 (http2), 443 (https) and 15021 (status-port), and
// egress gateways 80 (http2) and 443 (https).
type GatewayServiceSpec struct {
	// Type of the Service; LoadBalancer for ingress and ClusterIP for egress when empty.
	// +kubebuilder:validation:Enum=ClusterIP;NodePort;LoadBalancer
	// +optional
	Type corev1.ServiceType `json:"type,omitempty"`

	// Ports of the Service.
	// +listType=map
	// +listMapKey=port
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:XValidation:rule="self.all(p, self.exists_one(q, q.name == p.name))",message="service port names must be unique"
	// +optional
	Ports []GatewayPort `json:"ports,omitempty"`
}

// GatewayPort is one port of a gateway's Service.
type GatewayPort struct {
	// Name of the port; its prefix (http-, http2-, https-, grpc-, tcp-, tls-) tells the protocol.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="port name must be a DNS label of at most 15 characters: lower-case letters, digits and '-'"
	Name string `json:"name"`

	// Port the Service listens on.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`

	// TargetPort Envoy listens on; port+8000 for ports below 1024 (the gateway does
	// not run as root), else port.
	// +kubebuilder:validation:Minimum=1024
	// +kubebuilder:validation:Maximum=65535
	// +optional
	TargetPort *int32 `json:"targetPort,omitempty"`

	// NodePort for NodePort and LoadBalancer Services; allocated when empty.
	// +kubebuilder:validation:Minimum=30000
	// +kubebuilder:validation:Maximum=32767
	// +optional
	NodePort *int32 `json:"nodePort,omitempty"`
}

// OutboundTrafficPolicy says what happens to traffic for hosts the mesh does not know.
// +kubebuilder:validation:Enum=ALLOW_ANY;REGISTRY_ONLY
type OutboundTrafficPolicy string

// AccessLogEncoding of Envoy access logs.
// +kubebuilder:validation:Enum=TEXT;JSON
type AccessLogEncoding string

// MeshConfigSpec is the mesh-wide configuration meshd reads from the mesh-config ConfigMap.
type MeshConfigSpec struct {
	// TrustDomain of the mesh's SPIFFE identities: spiffe://<trustDomain>/ns/<ns>/sa/<sa>.
	// +kubebuilder:default=cluster.local
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9._]*[a-z0-9])?$')",message="trustDomain must be a SPIFFE trust domain: lower-case letters, digits, '.', '-' and '_'"
	// +optional
	TrustDomain string `json:"trustDomain,omitempty"`

	// OutboundTrafficPolicy for hosts outside the service registry.
	// +kubebuilder:default=ALLOW_ANY
	// +optional
	OutboundTrafficPolicy OutboundTrafficPolicy `json:"outboundTrafficPolicy,omitempty"`

	// AccessLogging of the proxies.
	// +kubebuilder:default={}
	// +optional
	AccessLogging AccessLoggingSpec `json:"accessLogging,omitempty"`

	// DiscoverySelectors restrict which namespaces meshd watches; a namespace is
	// watched when any selector matches it. All namespaces when empty.
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	// +optional
	DiscoverySelectors []metav1.LabelSelector `json:"discoverySelectors,omitempty"`

	// ExtensionProviders are the external authorizers that CUSTOM
	// AuthorizationPolicies name (spec.provider.name), in the shape of Istio's
	// meshConfig.extensionProviders (envoyExtAuthzHttp and envoyExtAuthzGrpc).
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	// +optional
	ExtensionProviders []ExtensionProvider `json:"extensionProviders,omitempty"`
}

// ExtensionProvider is one external authorizer, called with Envoy's ext_authz
// protocol over HTTP or gRPC.
// +kubebuilder:validation:XValidation:rule="has(self.envoyExtAuthzHttp) != has(self.envoyExtAuthzGrpc)",message="exactly one of envoyExtAuthzHttp and envoyExtAuthzGrpc must be set"
type ExtensionProvider struct {
	// Name AuthorizationPolicies refer to the provider by.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="extension provider name must be a DNS label: lower-case letters, digits and '-', starting and ending with a letter or digit"
	Name string `json:"name"`

	// EnvoyExtAuthzHTTP checks requests with the HTTP protocol.
	// +optional
	EnvoyExtAuthzHTTP *EnvoyExtAuthzHTTPProvider `json:"envoyExtAuthzHttp,omitempty"`

	// EnvoyExtAuthzGRPC checks requests (and TCP connections) with the gRPC
	// protocol (envoy.service.auth.v3.Authorization).
	// +optional
	EnvoyExtAuthzGRPC *EnvoyExtAuthzGRPCProvider `json:"envoyExtAuthzGrpc,omitempty"`
}

// EnvoyExtAuthzHTTPProvider is an authorizer speaking Envoy's HTTP ext_authz
// protocol.
type EnvoyExtAuthzHTTPProvider struct {
	ExtAuthzService `json:",inline"`

	// PathPrefix is prepended to the request path in the check request.
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="self.startsWith('/')",message="pathPrefix must start with /"
	// +optional
	PathPrefix string `json:"pathPrefix,omitempty"`

	// IncludeRequestHeadersInCheck are the client's headers sent to the
	// authorizer (besides Host, Method, Path, Content-Length and
	// Authorization); "x-*" and "*-x" match by prefix and suffix.
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=256
	// +optional
	IncludeRequestHeadersInCheck []string `json:"includeRequestHeadersInCheck,omitempty"`

	// IncludeAdditionalHeadersInCheck are headers added to the check request.
	// +kubebuilder:validation:MaxProperties=64
	// +optional
	IncludeAdditionalHeadersInCheck map[string]string `json:"includeAdditionalHeadersInCheck,omitempty"`

	// HeadersToUpstreamOnAllow are the authorizer's headers added to an
	// allowed request.
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=256
	// +optional
	HeadersToUpstreamOnAllow []string `json:"headersToUpstreamOnAllow,omitempty"`

	// HeadersToDownstreamOnAllow are the authorizer's headers added to the
	// response of an allowed request.
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=256
	// +optional
	HeadersToDownstreamOnAllow []string `json:"headersToDownstreamOnAllow,omitempty"`

	// HeadersToDownstreamOnDeny are the authorizer's headers sent to the
	// client with a denial.
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=256
	// +optional
	HeadersToDownstreamOnDeny []string `json:"headersToDownstreamOnDeny,omitempty"`
}

// EnvoyExtAuthzGRPCProvider is an authorizer speaking Envoy's gRPC ext_authz
// protocol.
type EnvoyExtAuthzGRPCProvider struct {
	ExtAuthzService `json:",inline"`
}

// ExtAuthzService is where an authorizer is and how it is called.
type ExtAuthzService struct {
	// Service is the authorizer's Service: "<namespace>/<host>" (a short host
	// is a Service of that namespace) or a fully qualified host.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=320
	// +kubebuilder:validation:XValidation:rule="self.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?/[^/*]+|[^/*]+[.][^/*]+)$')",message="service must be <namespace>/<host> or a fully qualified host"
	Service string `json:"service"`

	// Port of the Service the authorizer listens on.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`

	// Timeout of a check: Envoy's default (200ms) for gRPC, 600s for HTTP
	// when unset.
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+$') && duration(self) > duration('0s')",message="timeout must be a positive duration such as 500ms or 2s"
	// +optional
	Timeout string `json:"timeout,omitempty"`

	// FailOpen lets requests through when the authorizer cannot be reached.
	// +optional
	FailOpen bool `json:"failOpen,omitempty"`

	// StatusOnError is the HTTP status returned when a check fails and
	// failOpen is false (Envoy's default: 403).
	// +kubebuilder:validation:MaxLength=3
	// +kubebuilder:validation:XValidation:rule="self in ['100','200','201','202','203','204','205','206','207','208','226','300','301','302','303','304','305','307','308','400','401','402','403','404','405','406','407','408','409','410','411','412','413','414','415','416','417','421','422','423','424','426','428','429','431','500','501','502','503','504','505','506','507','508','510','511']",message="statusOnError must be an HTTP status code Envoy knows, such as 403 or 503"
	// +optional
	StatusOnError string `json:"statusOnError,omitempty"`

	// IncludeRequestBodyInCheck sends the request body (up to a size) in the
	// check.
	// +optional
	IncludeRequestBodyInCheck *BodyInCheck `json:"includeRequestBodyInCheck,omitempty"`
}

// BodyInCheck says how much of the request body a check carries.
type BodyInCheck struct {
	// MaxRequestBytes buffered for the check.
	// +kubebuilder:validation:Minimum=1
	MaxRequestBytes int32 `json:"maxRequestBytes"`

	// AllowPartialMessage sends the first maxRequestBytes of a larger body
	// instead of refusing the request with 413.
	// +optional
	AllowPartialMessage bool `json:"allowPartialMessage,omitempty"`

	// PackAsBytes sends the body as raw bytes (gRPC) instead of UTF-8 text.
	// +optional
	PackAsBytes bool `json:"packAsBytes,omitempty"`
}

// AccessLoggingSpec configures the proxies' access logs.
// +kubebuilder:validation:XValidation:rule="!has(self.format) || (has(self.enabled) && self.enabled)",message="accessLogging.format has no effect unless accessLogging.enabled is true"
type AccessLoggingSpec struct {
	// Enabled writes an access log line per request to the proxy's standard output.
	// +optional
	Enabled bool `json:"enabled,omitempty"`

	// Encoding of each line.
	// +kubebuilder:default=TEXT
	// +optional
	Encoding AccessLogEncoding `json:"encoding,omitempty"`

	// Format is an Envoy access-log format string replacing the default one.
	// +kubebuilder:validation:MaxLength=4096
	// +optional
	Format string `json:"format,omitempty"`
}

// ComponentKind says what a status component is.
// +kubebuilder:validation:Enum=ControlPlane;IngressGateway;EgressGateway
type ComponentKind string

const (
	ComponentKindControlPlane   ComponentKind = "ControlPlane"
	ComponentKindIngressGateway ComponentKind = "IngressGateway"
	ComponentKindEgressGateway  ComponentKind = "EgressGateway"
)

// ComponentStatus reports one installed Deployment.
type ComponentStatus struct {
	// Name of the Deployment.
	Name string `json:"name"`
	// Namespace of the Deployment.
	Namespace string `json:"namespace"`
	// Kind of component.
	Kind ComponentKind `json:"kind"`
	// ReadyReplicas is how many pods are ready.
	ReadyReplicas int32 `json:"readyReplicas"`
	// DesiredReplicas is how many pods the spec asks for.
	DesiredReplicas int32 `json:"desiredReplicas"`
}

// MeshControlPlaneStatus is what the operator observed on its last reconcile.
type MeshControlPlaneStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Reconciled, Ready, CAReady, ControlPlaneReady, InjectorReady, GatewaysReady.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// State summarises the conditions in one word.
	// +optional
	State State `json:"state,omitempty"`

	// ActiveRevision is the control-plane revision serving the mesh; workloads
	// select it with istio.io/rev. With InPlace updates it is named like the
	// MeshControlPlane.
	// +optional
	ActiveRevision string `json:"activeRevision,omitempty"`

	// Components are the installed Deployments and their readiness.
	// +listType=map
	// +listMapKey=name
	// +optional
	Components []ComponentStatus `json:"components,omitempty"`
}

// MeshControlPlane installs and runs a whole service mesh: meshd (discovery, xDS,
// CA, injector), and ingress and egress gateways.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=mcp,categories=meshplane
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.spec.version`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.status.state`,priority=1
// +kubebuilder:printcolumn:name="Revision",type=string,JSONPath=`.status.activeRevision`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 40",message="metadata.name becomes the revision name in object names and labels, so it must be a DNS label of at most 40 characters"
type MeshControlPlane struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +kubebuilder:default={}
	// +optional
	Spec   MeshControlPlaneSpec   `json:"spec,omitempty"`
	Status MeshControlPlaneStatus `json:"status,omitempty"`
}

// MeshControlPlaneList is a list of MeshControlPlanes.
//
// +kubebuilder:object:root=true
type MeshControlPlaneList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MeshControlPlane `json:"items"`
}

func init() {
	SchemeBuilder.Register(&MeshControlPlane{}, &MeshControlPlaneList{})
}

// Revision is the control-plane revision this MeshControlPlane installs. With
// InPlace updates (the only kind so far) it is the MeshControlPlane's name, so
// that a MeshControlPlane named "default" serves istio-injection=enabled.
func (m *MeshControlPlane) Revision() string {
	return m.Name
}

// InjectorEnabled reports whether the injection webhook is installed (the
// default when unset).
func (s *InjectorSpec) InjectorEnabled() bool {
	return s.Enabled == nil || *s.Enabled
}
