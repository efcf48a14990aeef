package v1alpha1

// Labels and annotations the operator puts on what it installs. They are part of
// the API: the operator finds, prunes and uninstalls its objects by them.
const (
	// LabelManagedBy / ManagedByOperator mark every object the operator installs.
	LabelManagedBy    = "app.kubernetes.io/managed-by"
	ManagedByOperator = "meshplane-operator"

	// LabelMeshControlPlane names the MeshControlPlane an installed object belongs to.
	LabelMeshControlPlane = "operator.meshplane.io/mesh-control-plane"

	// LabelComponent says which component an installed object is part of.
	LabelComponent = "operator.meshplane.io/component"

	// Values of LabelComponent.
	ComponentControlPlane   = "control-plane"
	ComponentIngressGateway = "ingress-gateway"
	ComponentEgressGateway  = "egress-gateway"

	// AnnotationCreatedBy is set on a namespace the operator created, naming the
	// MeshControlPlane; only such a namespace is deleted on uninstall.
	AnnotationCreatedBy = "operator.meshplane.io/created-by"

	// LabelRevision is Istio's revision label, on every installed object and used
	// by workloads to pick a control plane.
	LabelRevision = "istio.io/rev"
)
