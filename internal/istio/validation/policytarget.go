package validation

import (
	"fmt"
	"strings"

	typev1beta1 "istio.io/api/type/v1beta1"
	k8svalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// What the security kinds (PeerAuthentication, AuthorizationPolicy, RequestAuthentication) share:
// the workload selector, and the targetRefs that replace it for gateways and waypoints.

// policyTargets checks how a policy picks its workloads: a selector, a targetRef or targetRefs,
// at most one of them (Istio's CRD refuses more).
func (v *validator) policyTargets(specPath *field.Path, selector *typev1beta1.WorkloadSelector,
	targetRef *typev1beta1.PolicyTargetReference, targetRefs []*typev1beta1.PolicyTargetReference,
) {
	var set []string
	if selector != nil {
		set = append(set, "selector")
	}
	if targetRef != nil {
		set = append(set, "targetRef")
	}
	if len(targetRefs) > 0 {
		set = append(set, "targetRefs")
	}
	if len(set) > 1 {
		for _, extra := range set[1:] {
			v.forbidden(specPath.Child(extra), "only one of selector, targetRef and targetRefs may be set, and %s is set too", set[0])
		}
	}
	v.workloadSelector(specPath.Child("selector"), selector)
	v.targetReference(specPath.Child("targetRef"), targetRef)
	for i, ref := range targetRefs {
		v.targetReference(specPath.Child("targetRefs").Index(i), ref)
	}
}

// workloadSelector checks a policy's selector. Wildcards and empty keys are refused by Istio; a
// label no pod can carry is accepted there, and selects nothing.
func (v *validator) workloadSelector(path *field.Path, selector *typev1beta1.WorkloadSelector) {
	if selector == nil {
		return
	}
	if len(selector.MatchLabels) == 0 {
		v.warn(CodeIneffectiveConfig, path, "",
			"a selector without matchLabels selects every workload of the namespace, as no selector does; add labels or remove it")
		return
	}
	labelsPath := path.Child("matchLabels")
	for _, key := range sortedKeys(selector.MatchLabels) {
		value := selector.MatchLabels[key]
		switch {
		case key == "":
			v.invalid(CodeInvalidField, labelsPath, key, "label keys must not be empty")
		case strings.Contains(key, "*") || strings.Contains(value, "*"):
			v.invalid(CodeInvalidField, labelsPath.Key(key), key+"="+value,
				"wildcards are not supported in selectors, and %s=%s has one", key, value)
		case len(value) > k8svalidation.LabelValueMaxLength:
			v.invalid(CodeInvalidField, labelsPath.Key(key), value,
				"label value is %d characters long, at most %d are allowed", len(value), k8svalidation.LabelValueMaxLength)
		default:
			problems := append(k8svalidation.IsQualifiedName(key), k8svalidation.IsValidLabelValue(value)...)
			if len(problems) > 0 {
				v.warn(CodeIneffectiveConfig, labelsPath.Key(key), key+"="+value,
					"no pod can carry the label %s=%s (%s), so the selector matches no workload", key, value, problems[0])
			}
		}
	}
}

// policyTargetKinds are the resources a policy's targetRefs may name, as group/kind ("" is
// the core group, also written "core").
var policyTargetKinds = []string{
	"/Service",
	"networking.istio.io/ServiceEntry",
	"gateway.networking.k8s.io/Gateway",
	"gateway.networking.k8s.io/GatewayClass",
}

func (v *validator) targetReference(path *field.Path, ref *typev1beta1.PolicyTargetReference) {
	if ref == nil {
		return
	}
	if ref.Kind == "" {
		v.required(path.Child("kind"), "a target reference needs a kind")
	} else {
		group := ref.Group
		if group == "core" {
			group = ""
		}
		allowed := false
		for _, kind := range policyTargetKinds {
			allowed = allowed || kind == group+"/"+ref.Kind
		}
		if !allowed {
			v.invalid(CodeInvalidField, path.Child("kind"), ref.Kind,
				"a policy can target a Service (group \"\"), a ServiceEntry (group networking.istio.io), a Gateway or a "+
					"GatewayClass (group gateway.networking.k8s.io), not %s", describeGroupKind(ref.Group, ref.Kind))
		}
	}
	if ref.Name == "" {
		v.required(path.Child("name"), "a target reference needs the name of the resource")
	}
	if ref.Namespace != "" {
		v.invalid(CodeInvalidField, path.Child("namespace"), ref.Namespace,
			"a policy can only target resources of its own namespace; leave namespace empty")
	}
}

func describeGroupKind(group, kind string) string {
	if group == "" {
		return fmt.Sprintf("%s of the core group", kind)
	}
	return fmt.Sprintf("%s of group %s", kind, group)
}
