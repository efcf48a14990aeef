package render

import (
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/bootstrap"
)

// gatewayBootstrap returns the bootstrap in gateway gw's ConfigMap, parsed the
// way Envoy parses it (proto3 JSON, unknown fields rejected) and validated.
func gatewayBootstrap(t *testing.T, mcp *v1alpha1.MeshControlPlane, gw string) *bootstrapv3.Bootstrap {
	t.Helper()
	cm := &corev1.ConfigMap{}
	fromUnstructured(t, find(t, mustRender(t, newTestRenderer(t), mcp), "ConfigMap", gw+"-bootstrap"), cm)
	js, err := yaml.YAMLToJSON([]byte(cm.Data["bootstrap.yaml"]))
	if err != nil {
		t.Fatalf("bootstrap.yaml is not YAML: %v", err)
	}
	b := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(js, b); err != nil {
		t.Fatalf("bootstrap.yaml is not an Envoy bootstrap: %v", err)
	}
	if err := b.ValidateAll(); err != nil {
		t.Fatalf("bootstrap.yaml is invalid: %v", err)
	}
	return b
}

func xdsAddress(b *bootstrapv3.Bootstrap) string {
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == bootstrap.XDSClusterName {
			return c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetAddress()
		}
	}
	return ""
}

func TestGatewayBootstrapIsValidEnvoyConfig(t *testing.T) {
	mcp := readMCP(t, "testdata/two-gateways.input.yaml")
	for _, gw := range mcp.Spec.Gateways {
		b := gatewayBootstrap(t, mcp, gw.Name)
		md := b.GetNode().GetMetadata().GetFields()
		kind := gw.Kind
		if kind == "" {
			kind = v1alpha1.GatewayKindIngress
		}
		if b.GetNode().GetCluster() != gw.Name || md["gateway_kind"].GetStringValue() != string(kind) ||
			md[bootstrap.MetadataProxyType].GetStringValue() != string(bootstrap.Router) {
			t.Errorf("gateway %s: node = %v", gw.Name, b.GetNode())
		}
		// The Deployment passes the pod's name with --service-node.
		if b.GetNode().GetId() != "" {
			t.Errorf("gateway %s: node id %q in a ConfigMap shared by all replicas", gw.Name, b.GetNode().GetId())
		}
	}
}

// spec.values reaches the bootstrap as it reaches the rest of the chart, but
// cannot replace the bootstrap itself.
func TestGatewayBootstrapFollowsValues(t *testing.T) {
	mcp := &v1alpha1.MeshControlPlane{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	mcp.Spec.Gateways = []v1alpha1.GatewaySpec{{Name: "gw"}}
	mcp.Spec.Values = &apiextensionsv1.JSON{Raw: []byte(`{"meshd": {"name": "meshd-other"}, "gateway": {"bootstrap": "node: {}"}}`)}
	b := gatewayBootstrap(t, mcp, "gw")
	if got, want := xdsAddress(b), "meshd-other.meshplane-system.svc"; got != want {
		t.Errorf("xDS address = %q, want %q", got, want)
	}
}
