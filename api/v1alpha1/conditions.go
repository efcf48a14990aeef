package v1alpha1

// Condition types on MeshControlPlane.status.conditions.
const (
	// ConditionReconciled is True when the last reconcile applied the whole desired
	// state without error.
	ConditionReconciled = "Reconciled"
	// ConditionReady is True when Reconciled, CAReady and every component condition are True.
	ConditionReady = "Ready"
	// ConditionControlPlaneReady is True when the meshd Deployment has rolled out and is available.
	ConditionControlPlaneReady = "ControlPlaneReady"
	// ConditionInjectorReady is True when the injection webhook is installed and the
	// meshd that serves it is available (or the injector is disabled).
	ConditionInjectorReady = "InjectorReady"
	// ConditionGatewaysReady is True when every gateway Deployment has rolled out and is available.
	ConditionGatewaysReady = "GatewaysReady"
	// ConditionCAReady is True when the CA that spec.ca selects can be used: its
	// Secret holds a valid bundle (SelfSigned, Provided) or its cert-manager
	// issuer exists (CertManager).
	ConditionCAReady = "CAReady"
)

// Condition reasons.
const (
	ReasonReconcileSucceeded         = "ReconcileSucceeded"
	ReasonReconcileFailed            = "ReconcileFailed"
	ReasonUpdateStrategyNotSupported = "UpdateStrategyNotSupported"
	ReasonNamespaceConflict          = "NamespaceConflict"
	ReasonRenderFailed               = "RenderFailed"
	ReasonApplyFailed                = "ApplyFailed"
	ReasonDeploymentAvailable        = "DeploymentAvailable"
	ReasonDeploymentNotAvailable     = "DeploymentNotAvailable"
	ReasonDeploymentMissing          = "DeploymentMissing"
	ReasonInjectorDisabled           = "InjectorDisabled"
	ReasonWebhookMissing             = "WebhookMissing"
	ReasonNoGateways                 = "NoGateways"
	ReasonAllComponentsReady         = "AllComponentsReady"
	ReasonComponentsNotReady         = "ComponentsNotReady"
	ReasonNotReconciled              = "NotReconciled"
	ReasonWaitingForFirstReconcile   = "WaitingForFirstReconcile"
	ReasonDeleting                   = "Deleting"

	// CAReady reasons.
	ReasonCAValid   = "CAValid"   // the CA Secret holds a valid bundle
	ReasonCAInvalid = "CAInvalid" // the message names the Secret key at fault and why
	// ReasonCASecretMissing: the Provided CA's Secret does not exist.
	ReasonCASecretMissing = "CASecretMissing"
	// ReasonCANotChecked: the reconcile stopped before the CA was looked at.
	ReasonCANotChecked = "CANotChecked"
	// ReasonCertManagerNotInstalled: the API server does not serve the issuer's kind.
	ReasonCertManagerNotInstalled = "CertManagerNotInstalled"
	ReasonIssuerNotFound          = "IssuerNotFound"
	ReasonIssuerFound             = "IssuerFound"
	// ReasonIssuerNotChecked: the operator may not read the issuer (an external
	// issuer's group it has no RBAC for).
	ReasonIssuerNotChecked = "IssuerNotChecked"
)

// State is a one-word summary of the conditions, for people and printcolumns; it
// is always derived from them and never drives behaviour.
// +kubebuilder:validation:Enum=Pending;Healthy;NotReady;ReconcileError;Deleting
type State string

const (
	// StatePending: not reconciled yet.
	StatePending        State = "Pending"
	StateHealthy        State = "Healthy"
	StateNotReady       State = "NotReady"
	StateReconcileError State = "ReconcileError"
	StateDeleting       State = "Deleting"
)
