package controllers

import (
	"context"
	"fmt"
	"sort"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshplane/meshplane/api/v1alpha1"
)

// setCondition is the one way conditions are set: every condition carries the
// generation it was computed for.
func setCondition(mcp *v1alpha1.MeshControlPlane, conditionType string, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(&mcp.Status.Conditions, metav1.Condition{
		Type:               conditionType,
		Status:             status,
		ObservedGeneration: mcp.Generation,
		Reason:             reason,
		Message:            message,
	})
}

// refuse records why the spec is not acted upon and stops the phases.
func (s *scope) refuse(reason, message string) {
	s.refusal = &metav1.Condition{Reason: reason, Message: message}
	s.stop = true
}

// computeStatus fills the status from what the reconcile did and what the
// cluster reports. Conditions are never more optimistic than the Deployments.
func (r *MeshControlPlaneReconciler) computeStatus(ctx context.Context, s *scope, reconcileErr error) error {
	mcp := s.mcp
	mcp.Status.ActiveRevision = mcp.Revision()

	switch {
	case s.refusal != nil:
		setCondition(mcp, v1alpha1.ConditionReconciled, metav1.ConditionFalse, s.refusal.Reason, s.refusal.Message)
	case reconcileErr != nil:
		setCondition(mcp, v1alpha1.ConditionReconciled, metav1.ConditionFalse, v1alpha1.ReasonReconcileFailed, reconcileErr.Error())
	default:
		setCondition(mcp, v1alpha1.ConditionReconciled, metav1.ConditionTrue, v1alpha1.ReasonReconcileSucceeded,
			fmt.Sprintf("Applied %d objects of version %s", len(s.desired), mcp.Spec.Version))
	}

	installed, err := r.installedComponents(ctx, s)
	if err != nil {
		return err
	}
	mcp.Status.Components = installed.statuses()
	installed.setControlPlaneCondition(mcp)
	installed.setGatewaysCondition(mcp)
	installed.setInjectorCondition(mcp)
	setCACondition(mcp, s.ca)
	setReadyCondition(mcp)
	mcp.Status.State = stateOf(mcp)
	if reconcileErr == nil {
		mcp.Status.ObservedGeneration = mcp.Generation
	}
	return nil
}

// component is one Deployment the installation expects and what the cluster says of it.
type component struct {
	name, namespace, label string
	deployment             *appsv1.Deployment // nil when missing
}

type components struct {
	controlPlane   *component
	gateways       []*component
	webhookWanted  bool
	webhookPresent bool
}

// installedComponents finds the Deployments and the injection webhook the
// installation should have: the rendered ones when this reconcile rendered, else
// the ones installed earlier.
func (r *MeshControlPlaneReconciler) installedComponents(ctx context.Context, s *scope) (*components, error) {
	expected := s.desired
	if expected == nil {
		var err error
		if expected, err = r.previouslyInstalled(ctx, s.mcp); err != nil {
			return nil, err
		}
	}
	out := &components{}
	for _, obj := range expected {
		switch obj.GetKind() {
		case "Deployment":
			c := &component{name: obj.GetName(), namespace: obj.GetNamespace(), label: obj.GetLabels()[v1alpha1.LabelComponent]}
			d := &appsv1.Deployment{}
			err := r.Get(ctx, client.ObjectKey{Namespace: c.namespace, Name: c.name}, d)
			switch {
			case err == nil:
				c.deployment = d
			case !apierrors.IsNotFound(err):
				return nil, fmt.Errorf("reading Deployment %s/%s: %w", c.namespace, c.name, err)
			}
			if c.label == v1alpha1.ComponentControlPlane {
				out.controlPlane = c
			} else {
				out.gateways = append(out.gateways, c)
			}
		case "MutatingWebhookConfiguration":
			out.webhookWanted = true
			err := r.Get(ctx, client.ObjectKey{Name: obj.GetName()}, &admissionregistrationv1.MutatingWebhookConfiguration{})
			if err != nil && !apierrors.IsNotFound(err) {
				return nil, fmt.Errorf("reading MutatingWebhookConfiguration %s: %w", obj.GetName(), err)
			}
			out.webhookPresent = err == nil
		}
	}
	sort.Slice(out.gateways, func(i, j int) bool { return out.gateways[i].name < out.gateways[j].name })
	return out, nil
}

// previouslyInstalled lists the Deployments and webhook configurations installed
// for the MeshControlPlane, as unstructured stand-ins for a rendering.
func (r *MeshControlPlaneReconciler) previouslyInstalled(ctx context.Context, mcp *v1alpha1.MeshControlPlane) ([]*unstructured.Unstructured, error) {
	installed, err := ListInstalled(ctx, r.Client, mcp.Name)
	if err != nil {
		return nil, err
	}
	var out []*unstructured.Unstructured
	for _, obj := range installed {
		if obj.GVK.Kind != "Deployment" && obj.GVK.Kind != "MutatingWebhookConfiguration" {
			continue
		}
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(obj.GVK)
		u.SetName(obj.GetName())
		u.SetNamespace(obj.GetNamespace())
		u.SetLabels(obj.GetLabels())
		out = append(out, u)
	}
	return out, nil
}

func (c *component) ready() bool {
	return c.deployment != nil && readinessOf(c.deployment).rolledOut()
}

// summary is "name: ready/desired replicas ready" or "name: missing".
func (c *component) summary() string {
	if c.deployment == nil {
		return c.name + ": Deployment missing"
	}
	rd := readinessOf(c.deployment)
	s := fmt.Sprintf("%s: %d/%d replicas ready", c.name, rd.ready, rd.desired)
	if !rd.observed {
		s += ", rollout not yet observed"
	} else if rd.updated < rd.desired || rd.total > rd.updated {
		s += fmt.Sprintf(", %d/%d updated", rd.updated, rd.desired)
	}
	return s
}

func (cs *components) statuses() []v1alpha1.ComponentStatus {
	var out []v1alpha1.ComponentStatus
	add := func(c *component, kind v1alpha1.ComponentKind) {
		st := v1alpha1.ComponentStatus{Name: c.name, Namespace: c.namespace, Kind: kind}
		if c.deployment != nil {
			rd := readinessOf(c.deployment)
			st.ReadyReplicas, st.DesiredReplicas = rd.ready, rd.desired
		}
		out = append(out, st)
	}
	if cs.controlPlane != nil {
		add(cs.controlPlane, v1alpha1.ComponentKindControlPlane)
	}
	for _, gw := range cs.gateways {
		kind := v1alpha1.ComponentKindIngressGateway
		if gw.label == v1alpha1.ComponentEgressGateway {
			kind = v1alpha1.ComponentKindEgressGateway
		}
		add(gw, kind)
	}
	return out
}

func (cs *components) setControlPlaneCondition(mcp *v1alpha1.MeshControlPlane) {
	switch {
	case cs.controlPlane == nil || cs.controlPlane.deployment == nil:
		setCondition(mcp, v1alpha1.ConditionControlPlaneReady, metav1.ConditionFalse, v1alpha1.ReasonDeploymentMissing,
			"The meshd Deployment is not installed")
	case !cs.controlPlane.ready():
		setCondition(mcp, v1alpha1.ConditionControlPlaneReady, metav1.ConditionFalse, v1alpha1.ReasonDeploymentNotAvailable,
			cs.controlPlane.summary())
	default:
		setCondition(mcp, v1alpha1.ConditionControlPlaneReady, metav1.ConditionTrue, v1alpha1.ReasonDeploymentAvailable,
			cs.controlPlane.summary())
	}
}

func (cs *components) setGatewaysCondition(mcp *v1alpha1.MeshControlPlane) {
	if len(cs.gateways) == 0 {
		if len(mcp.Spec.Gateways) == 0 {
			setCondition(mcp, v1alpha1.ConditionGatewaysReady, metav1.ConditionTrue, v1alpha1.ReasonNoGateways, "No gateways requested")
		} else {
			setCondition(mcp, v1alpha1.ConditionGatewaysReady, metav1.ConditionFalse, v1alpha1.ReasonDeploymentMissing,
				"The gateway Deployments are not installed")
		}
		return
	}
	var notReady, all []string
	for _, gw := range cs.gateways {
		all = append(all, gw.summary())
		if !gw.ready() {
			notReady = append(notReady, gw.summary())
		}
	}
	if len(notReady) > 0 {
		setCondition(mcp, v1alpha1.ConditionGatewaysReady, metav1.ConditionFalse, v1alpha1.ReasonDeploymentNotAvailable,
			strings.Join(notReady, "; "))
		return
	}
	setCondition(mcp, v1alpha1.ConditionGatewaysReady, metav1.ConditionTrue, v1alpha1.ReasonDeploymentAvailable, strings.Join(all, "; "))
}

// setInjectorCondition: the webhook is served by meshd, so injection works only
// once the webhook configuration exists and meshd is available.
func (cs *components) setInjectorCondition(mcp *v1alpha1.MeshControlPlane) {
	switch {
	case !mcp.Spec.Injector.InjectorEnabled():
		setCondition(mcp, v1alpha1.ConditionInjectorReady, metav1.ConditionTrue, v1alpha1.ReasonInjectorDisabled,
			"Sidecar injection is disabled (spec.injector.enabled is false)")
	case !cs.webhookWanted || !cs.webhookPresent:
		setCondition(mcp, v1alpha1.ConditionInjectorReady, metav1.ConditionFalse, v1alpha1.ReasonWebhookMissing,
			"The injection MutatingWebhookConfiguration is not installed")
	case cs.controlPlane == nil || !cs.controlPlane.ready():
		setCondition(mcp, v1alpha1.ConditionInjectorReady, metav1.ConditionFalse, v1alpha1.ReasonDeploymentNotAvailable,
			"The injection webhook is installed but meshd, which serves it, is not available")
	default:
		setCondition(mcp, v1alpha1.ConditionInjectorReady, metav1.ConditionTrue, v1alpha1.ReasonDeploymentAvailable,
			"The injection webhook is installed and meshd is available")
	}
}

// setCACondition reports what reconcileCA found. When it did not run (the spec
// was refused, an earlier phase failed), the last finding stands, with the
// generation it was made for; the first time, CAReady is Unknown.
func setCACondition(mcp *v1alpha1.MeshControlPlane, check *caCheck) {
	if check == nil {
		if meta.FindStatusCondition(mcp.Status.Conditions, v1alpha1.ConditionCAReady) == nil {
			setCondition(mcp, v1alpha1.ConditionCAReady, metav1.ConditionUnknown, v1alpha1.ReasonCANotChecked,
				"The CA has not been checked yet; see the Reconciled condition")
		}
		return
	}
	setCondition(mcp, v1alpha1.ConditionCAReady, check.status, check.reason, check.message)
}

func setReadyCondition(mcp *v1alpha1.MeshControlPlane) {
	if !meta.IsStatusConditionTrue(mcp.Status.Conditions, v1alpha1.ConditionReconciled) {
		setCondition(mcp, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonNotReconciled,
			"The last reconcile did not complete; see the Reconciled condition")
		return
	}
	var notReady []string
	for _, t := range []string{v1alpha1.ConditionCAReady, v1alpha1.ConditionControlPlaneReady,
		v1alpha1.ConditionInjectorReady, v1alpha1.ConditionGatewaysReady} {
		if !meta.IsStatusConditionTrue(mcp.Status.Conditions, t) {
			notReady = append(notReady, t)
		}
	}
	if len(notReady) > 0 {
		setCondition(mcp, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonComponentsNotReady,
			"Not ready: "+strings.Join(notReady, ", "))
		return
	}
	setCondition(mcp, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonAllComponentsReady, "All components are ready")
}

// stateOf summarises the conditions in one word.
func stateOf(mcp *v1alpha1.MeshControlPlane) v1alpha1.State {
	switch {
	case !mcp.DeletionTimestamp.IsZero():
		return v1alpha1.StateDeleting
	case meta.IsStatusConditionFalse(mcp.Status.Conditions, v1alpha1.ConditionReconciled):
		return v1alpha1.StateReconcileError
	case meta.IsStatusConditionTrue(mcp.Status.Conditions, v1alpha1.ConditionReady):
		return v1alpha1.StateHealthy
	case meta.FindStatusCondition(mcp.Status.Conditions, v1alpha1.ConditionReady) == nil:
		return v1alpha1.StatePending
	default:
		return v1alpha1.StateNotReady
	}
}

// deploymentReadiness is the part of a Deployment's status that says whether its
// rollout is complete, the same test `kubectl rollout status` applies.
type deploymentReadiness struct {
	observed                           bool
	desired, updated, ready, available int32
	total                              int32
	availableCondition                 corev1.ConditionStatus
}

func readinessOf(d *appsv1.Deployment) deploymentReadiness {
	desired := int32(1)
	if d.Spec.Replicas != nil {
		desired = *d.Spec.Replicas
	}
	rd := deploymentReadiness{
		observed:  d.Status.ObservedGeneration >= d.Generation,
		desired:   desired,
		updated:   d.Status.UpdatedReplicas,
		ready:     d.Status.ReadyReplicas,
		available: d.Status.AvailableReplicas,
		total:     d.Status.Replicas,
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable {
			rd.availableCondition = c.Status
		}
	}
	return rd
}

func (rd deploymentReadiness) rolledOut() bool {
	return rd.observed &&
		rd.updated >= rd.desired &&
		rd.total <= rd.updated && // no pods of an older ReplicaSet left
		rd.available >= rd.desired &&
		rd.availableCondition == corev1.ConditionTrue
}
