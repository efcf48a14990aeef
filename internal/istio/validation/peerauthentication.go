package validation

import (
	"maps"
	"slices"
	"strconv"

	securityv1beta1 "istio.io/api/security/v1beta1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func (v *validator) peerAuthentication(spec *securityv1beta1.PeerAuthentication) {
	specPath := field.NewPath("spec")
	v.workloadSelector(specPath.Child("selector"), spec.Selector)
	if len(spec.PortLevelMtls) == 0 {
		return
	}
	mtlsPath := specPath.Child("portLevelMtls")
	// Ports are the workload's, so they only mean something for chosen workloads.
	if len(spec.GetSelector().GetMatchLabels()) == 0 {
		v.forbidden(mtlsPath, "port-level mTLS needs a selector with matchLabels; a namespace-wide or mesh-wide PeerAuthentication cannot set it")
	}
	for _, port := range slices.Sorted(maps.Keys(spec.PortLevelMtls)) {
		path := mtlsPath.Key(strconv.FormatUint(uint64(port), 10))
		if port < 1 || port > 65535 {
			v.invalid(CodeInvalidPort, path, port, "port %d is not in 1-65535", port)
			continue
		}
		if spec.PortLevelMtls[port].GetMode() == securityv1beta1.PeerAuthentication_MutualTLS_UNSET {
			v.warn(CodeIneffectiveConfig, path.Child("mode"), "UNSET",
				"port %d has mode UNSET, which inherits the workload's mode, so the entry changes nothing; set DISABLE, PERMISSIVE or STRICT", port)
		}
	}
}
