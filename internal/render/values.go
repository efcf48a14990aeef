package render

import (
	"encoding/json"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/bootstrap"
	"github.com/meshplane/meshplane/internal/versions"
)

// DefaultNamespace is the control-plane namespace when spec.namespace is empty.
const DefaultNamespace = "meshplane-system"

// values is what the operator computes for the charts. Both charts get the same
// tree; the gateway chart also gets Gateway. The JSON names are the charts'
// value keys, documented in each chart's values.yaml.
type values struct {
	Revision              string           `json:"revision"`
	Version               string           `json:"version"`
	ControlPlaneNamespace string           `json:"controlPlaneNamespace"`
	Meshd                 meshdValues      `json:"meshd"`
	Proxy                 proxyValues      `json:"proxy"`
	Injector              injectorValues   `json:"injector"`
	CA                    v1alpha1.CASpec  `json:"ca"`
	MeshConfig            meshConfigValues `json:"meshConfig"`
	Gateway               *gatewayValues   `json:"gateway,omitempty"`
}

type meshdValues struct {
	Name            string                      `json:"name"`
	ClusterRoleName string                      `json:"clusterRoleName"`
	Image           string                      `json:"image"`
	Replicas        int32                       `json:"replicas"`
	LogLevel        v1alpha1.LogLevel           `json:"logLevel"`
	Resources       corev1.ResourceRequirements `json:"resources"`
}

type proxyValues struct {
	Image string `json:"image"`
}

type injectorValues struct {
	Enabled                   bool                   `json:"enabled"`
	WebhookConfigurationName  string                 `json:"webhookConfigurationName"`
	FailurePolicy             v1alpha1.FailurePolicy `json:"failurePolicy"`
	EnableNamespacesByDefault bool                   `json:"enableNamespacesByDefault"`
}

// meshConfigValues is spec.meshConfig as meshd reads it. It is its own type,
// not the API's, so that mesh.yaml spells out every setting (the API omits
// false and empty values).
type meshConfigValues struct {
	TrustDomain           string                         `json:"trustDomain"`
	OutboundTrafficPolicy v1alpha1.OutboundTrafficPolicy `json:"outboundTrafficPolicy"`
	AccessLogging         accessLoggingValues            `json:"accessLogging"`
	DiscoverySelectors    []metav1.LabelSelector         `json:"discoverySelectors"`
	// ExtensionProviders have Istio's shape in the API and in mesh.yaml.
	ExtensionProviders []v1alpha1.ExtensionProvider `json:"extensionProviders,omitempty"`
}

type accessLoggingValues struct {
	Enabled  bool                       `json:"enabled"`
	Encoding v1alpha1.AccessLogEncoding `json:"encoding"`
	Format   string                     `json:"format,omitempty"`
}

type gatewayValues struct {
	Name     string               `json:"name"`
	Kind     v1alpha1.GatewayKind `json:"kind"`
	Replicas int32                `json:"replicas"`
	Service  gatewayServiceValues `json:"service"`
}

type gatewayServiceValues struct {
	Type  corev1.ServiceType `json:"type"`
	Ports []gatewayPort      `json:"ports"`
}

type gatewayPort struct {
	Name       string `json:"name"`
	Port       int32  `json:"port"`
	TargetPort int32  `json:"targetPort"`
	NodePort   *int32 `json:"nodePort,omitempty"`
}

// controlPlaneValues computes the values of the control-plane chart from a
// defaulted spec.
func controlPlaneValues(revision string, spec *v1alpha1.MeshControlPlaneSpec, rel versions.Release) values {
	image := rel.MeshdImage
	if spec.ControlPlane.Image != "" {
		image = spec.ControlPlane.Image
	}
	return values{
		Revision:              revision,
		Version:               spec.Version,
		ControlPlaneNamespace: spec.Namespace,
		Meshd: meshdValues{
			Name:            MeshdName(revision),
			ClusterRoleName: ClusterRoleName(revision),
			Image:           image,
			Replicas:        *spec.ControlPlane.Replicas,
			LogLevel:        spec.ControlPlane.LogLevel,
			Resources:       *spec.ControlPlane.Resources,
		},
		Proxy: proxyValues{Image: rel.ProxyImage},
		Injector: injectorValues{
			Enabled:                   *spec.Injector.Enabled,
			WebhookConfigurationName:  WebhookConfigurationName(revision),
			FailurePolicy:             spec.Injector.FailurePolicy,
			EnableNamespacesByDefault: spec.Injector.EnableNamespacesByDefault,
		},
		CA: spec.CA,
		MeshConfig: meshConfigValues{
			TrustDomain:           spec.MeshConfig.TrustDomain,
			OutboundTrafficPolicy: spec.MeshConfig.OutboundTrafficPolicy,
			AccessLogging: accessLoggingValues{
				Enabled:  spec.MeshConfig.AccessLogging.Enabled,
				Encoding: spec.MeshConfig.AccessLogging.Encoding,
				Format:   spec.MeshConfig.AccessLogging.Format,
			},
			// Never null in mesh.yaml: an empty list means "all namespaces".
			DiscoverySelectors: append([]metav1.LabelSelector{}, spec.MeshConfig.DiscoverySelectors...),
			ExtensionProviders: spec.MeshConfig.ExtensionProviders,
		},
	}
}

// gatewayChartValues computes the values of the gateway chart for one defaulted gateway.
func gatewayChartValues(cp values, gw *v1alpha1.GatewaySpec) values {
	v := cp
	v.Gateway = &gatewayValues{
		Name:     gw.Name,
		Kind:     gw.Kind,
		Replicas: *gw.Replicas,
		Service: gatewayServiceValues{
			Type:  gw.Service.Type,
			Ports: gatewayPorts(gw.Service.Ports),
		},
	}
	return v
}

// gatewayPorts fills in each port's target port: Envoy runs as uid 1337 without
// NET_BIND_SERVICE, so it cannot listen below 1024 and shifts those ports by 8000.
func gatewayPorts(in []v1alpha1.GatewayPort) []gatewayPort {
	out := make([]gatewayPort, 0, len(in))
	for _, p := range in {
		target := p.Port
		switch {
		case p.TargetPort != nil:
			target = *p.TargetPort
		case p.Port < 1024:
			target = p.Port + 8000
		}
		out = append(out, gatewayPort{Name: p.Name, Port: p.Port, TargetPort: target, NodePort: p.NodePort})
	}
	return out
}

// toMap turns computed values into the untyped tree Helm works on.
func toMap(v values) (map[string]any, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("marshal chart values: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("unmarshal chart values: %w", err)
	}
	return m, nil
}

// withDefaults returns a copy of spec with every default filled in: the CRD
// schema's, which the API server applies, and the ones the API documents in
// prose (meshd resources, gateway Service type and ports). Objects that never
// went through the API server, in unit tests or offline rendering, then render
// exactly like applied ones.
func withDefaults(in *v1alpha1.MeshControlPlaneSpec) *v1alpha1.MeshControlPlaneSpec {
	spec := in.DeepCopy()
	setDefault(&spec.Version, v1alpha1.DefaultVersion)
	setDefault(&spec.Namespace, DefaultNamespace)
	setDefault(&spec.UpdateStrategy.Type, v1alpha1.UpdateStrategyInPlace)
	setDefaultPtr(&spec.UpdateStrategy.InactiveRevisionDeletionGracePeriodSeconds, 30)

	cp := &spec.ControlPlane
	setDefaultPtr(&cp.Replicas, 1)
	setDefault(&cp.LogLevel, "info")
	if cp.Resources == nil {
		cp.Resources = &corev1.ResourceRequirements{Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("100m"),
			corev1.ResourceMemory: resource.MustParse("128Mi"),
		}}
	}

	setDefault(&spec.CA.Type, v1alpha1.CATypeSelfSigned)
	if cm := spec.CA.CertManager; cm != nil {
		setDefault(&cm.IssuerRef.Kind, "Issuer")
		setDefault(&cm.IssuerRef.Group, "cert-manager.io")
	}

	setDefaultPtr(&spec.Injector.Enabled, true)
	setDefault(&spec.Injector.FailurePolicy, "Fail")

	for i := range spec.Gateways {
		gatewayDefaults(&spec.Gateways[i])
	}

	mc := &spec.MeshConfig
	setDefault(&mc.TrustDomain, "cluster.local")
	setDefault(&mc.OutboundTrafficPolicy, "ALLOW_ANY")
	setDefault(&mc.AccessLogging.Encoding, "TEXT")
	return spec
}

func gatewayDefaults(gw *v1alpha1.GatewaySpec) {
	setDefault(&gw.Kind, v1alpha1.GatewayKindIngress)
	setDefaultPtr(&gw.Replicas, 1)
	svc := &gw.Service
	if gw.Kind == v1alpha1.GatewayKindIngress {
		setDefault(&svc.Type, corev1.ServiceTypeLoadBalancer)
	} else {
		setDefault(&svc.Type, corev1.ServiceTypeClusterIP)
	}
	if len(svc.Ports) > 0 {
		return
	}
	svc.Ports = []v1alpha1.GatewayPort{{Name: "http2", Port: 80}, {Name: "https", Port: 443}}
	if gw.Kind == v1alpha1.GatewayKindIngress {
		// Load balancers health-check the gateway on the status port.
		svc.Ports = append(svc.Ports, v1alpha1.GatewayPort{Name: "status-port", Port: 15021})
	}
}

func setDefault[T ~string](field *T, def T) {
	if *field == "" {
		*field = def
	}
}

func setDefaultPtr[T any](field **T, def T) {
	if *field == nil {
		*field = ptr.To(def)
	}
}

// bootstrapInputs are the gateway chart values its Envoy bootstrap derives from.
type bootstrapInputs struct {
	Revision              string `json:"revision"`
	ControlPlaneNamespace string `json:"controlPlaneNamespace"`
	Meshd                 struct {
		Name string `json:"name"`
	} `json:"meshd"`
	Gateway struct {
		Name string `json:"name"`
		Kind string `json:"kind"`
	} `json:"gateway"`
}

// setGatewayBootstrap sets gateway.bootstrap in the merged gateway chart values
// vals. It reads the merged values, not the computed ones, so that spec.values
// reaches the bootstrap as it reaches the rest of the chart (a different
// meshd.name points the gateway at a different meshd). The bootstrap itself
// is never taken from spec.values: it is always built, and so validated, here.
func setGatewayBootstrap(vals map[string]any) error {
	data, err := json.Marshal(vals)
	if err != nil {
		return fmt.Errorf("gateway bootstrap: %w", err)
	}
	var in bootstrapInputs
	if err := json.Unmarshal(data, &in); err != nil {
		return fmt.Errorf("gateway bootstrap: values: %w", err)
	}
	switch {
	case in.Meshd.Name == "":
		return errors.New("gateway bootstrap: meshd.name is required")
	case in.ControlPlaneNamespace == "":
		return errors.New("gateway bootstrap: controlPlaneNamespace is required")
	}
	y, err := bootstrap.EnvoyYAML(bootstrap.Options{
		ProxyType: bootstrap.Router,
		// Node id: --service-node $(POD_NAME).$(POD_NAMESPACE) in the Deployment.
		Cluster: in.Gateway.Name,
		Metadata: map[string]string{
			"revision":     in.Revision,
			"gateway_kind": in.Gateway.Kind,
		},
		XDSHost: in.Meshd.Name + "." + in.ControlPlaneNamespace + ".svc",
		XDSPort: bootstrap.DefaultXDSPort,
	})
	if err != nil {
		return fmt.Errorf("gateway bootstrap: %w", err)
	}
	gw, ok := vals["gateway"].(map[string]any)
	if !ok {
		return errors.New("gateway bootstrap: gateway values must be an object")
	}
	gw["bootstrap"] = string(y)
	return nil
}
