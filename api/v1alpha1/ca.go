package v1alpha1

// The CA Secrets meshd signs with, in the control-plane namespace, hold Istio's
// plug-in CA layout (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem).
const (
	// SelfSignedCASecretName is the Secret of the SelfSigned CA. The operator
	// creates it once, when it is missing, and never overwrites or deletes it:
	// every workload certificate chains to the root it holds.
	SelfSignedCASecretName = "meshplane-ca"

	// DefaultTrustDomain is the trust domain when spec.meshConfig.trustDomain is empty.
	DefaultTrustDomain = "cluster.local"

	// DefaultIssuerGroup and DefaultIssuerKind complete an issuerRef that leaves them empty.
	DefaultIssuerGroup = "cert-manager.io"
	DefaultIssuerKind  = "Issuer"
)

// SecretName is the Secret holding the CA of this type in the control-plane
// namespace; empty for CertManager, which keeps no CA in the cluster.
func (s *CASpec) SecretName() string {
	switch s.Type {
	case CATypeProvided:
		if s.Provided == nil {
			return ""
		}
		return s.Provided.SecretName
	case CATypeCertManager:
		return ""
	default: // SelfSigned, also when not defaulted yet
		return SelfSignedCASecretName
	}
}
