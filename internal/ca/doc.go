// Package ca is the mesh certificate authority: it validates CA bundles, signs
// workload certificates whose only identity is a SPIFFE ID, and issues meshd's
// own serving certificate.
//
// # CA types (MeshControlPlane spec.ca.type)
//
//   - SelfSigned: the operator calls GenerateRoot once, when the CA Secret does
//     not exist, and stores Bundle.SecretData() in it; it never regenerates
//     it. meshd loads it like a Provided one.
//   - Provided: the user's Secret in Istio's plug-in CA layout (ca-cert.pem,
//     ca-key.pem, root-cert.pem, cert-chain.pem). meshd (and the operator, for
//     a condition) reads it with BundleFromSecretData and validates it with
//     NewAuthority or Holder.Update; a refusal is a *BundleError whose Reason
//     fits a condition's reason. No error, log line or printed value holds the
//     key.
//   - CertManager: CertManagerSigner sends each CSR to cert-manager as a
//     CertificateRequest for the configured issuer. There is no local CA
//     key: meshd's own serving certificate is requested from the issuer too
//     (IssueServing, DNS names only), and the roots meshd publishes are the
//     ones the issuer reports with it (status.ca).
//
// meshd keeps the Provided/SelfSigned CA in a Holder and calls Update whenever
// the Secret changes: a valid bundle replaces the signer atomically, an
// invalid one is refused and the last good one keeps signing. This is how an
// intermediate CA is rotated: write the new ca-cert.pem/ca-key.pem/
// cert-chain.pem under the same root; new certificates chain through the new
// intermediate, and certificates issued before still verify against the root.
//
// # Root rotation (planned, not implemented)
//
// A root cannot simply be replaced: a peer verifies with the roots it holds,
// so a workload that trusts only the old root refuses certificates from the
// new one, and the other way round. The plan, in phases the operator drives
// from the CA Secret, each starting only when the previous one has reached
// every workload:
//
//  1. Trust both. Generate the new root R2; write root-cert.pem = R1 + R2,
//     signing unchanged. NewAuthority already accepts several roots and
//     Authority.RootsPEM returns them all; meshd publishes them to every
//     namespace's meshplane-ca-root-cert ConfigMap (internal/rootcert) when
//     the Secret changes; the operator must then wait until every agent has
//     picked them up (not built: nothing reports that yet).
//  2. Sign with R2: ca-cert.pem/ca-key.pem become R2 or an intermediate under
//     it, cert-chain.pem leads to R2, root-cert.pem still holds both. Holder.
//     Update swaps the signer; workloads renew onto R2 at their own pace while
//     R1 certificates stay trusted.
//  3. Wait at least the certificate service's maximum TTL, so that no R1 leaf
//     is still valid (the operator records when phase 2 started).
//  4. Drop R1 from root-cert.pem, and publish again.
//
// For SelfSigned this also needs the operator to keep R1 and R2 in the Secret
// through the phases; for Provided the user performs the phases and the
// operator reports which one it sees. Cross-signing R2 by R1 would shorten
// phase 1 for peers that follow chains, but Envoy verifies against the trust
// bundle it was given, so the bundle phase is needed anyway.
package ca
