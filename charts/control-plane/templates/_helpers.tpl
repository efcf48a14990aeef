{{/*
Labels every object of this chart carries. The operator finds what it installed
through operator.meshplane.io/mesh-control-plane, which comes from Release.Name
(the MeshControlPlane's name) rather than from values, so spec.values cannot
orphan an object.
*/}}
{{- define "cp.labels" -}}
app.kubernetes.io/managed-by: meshplane-operator
app.kubernetes.io/part-of: meshplane
app.kubernetes.io/version: {{ required "version is required" .Values.version | quote }}
operator.meshplane.io/mesh-control-plane: {{ .Release.Name | quote }}
operator.meshplane.io/component: control-plane
istio.io/rev: {{ include "cp.revision" . }}
{{- end }}

{{/* The revision, quoted: revisions such as "1-2" must stay strings. */}}
{{- define "cp.revision" -}}
{{ required "revision is required" .Values.revision | quote }}
{{- end }}

{{/* The meshd name shared by the Deployment, Service, ServiceAccount and Role. */}}
{{- define "cp.name" -}}
{{ required "meshd.name is required" .Values.meshd.name }}
{{- end }}

{{/*
Pod selector of meshd. Several revisions may share a namespace, so the revision
is part of it. Deployment selectors are immutable: never add a label here that
can change over the life of a revision.
*/}}
{{- define "cp.selectorLabels" -}}
app: meshd
istio.io/rev: {{ include "cp.revision" . }}
{{- end }}

{{/* Name of the ConfigMap holding mesh.yaml. */}}
{{- define "cp.meshConfigName" -}}
{{ include "cp.name" . }}-mesh-config
{{- end }}

{{/* Where the mesh-config ConfigMap is mounted; mesh.yaml in it is meshd's default --mesh-config. */}}
{{- define "cp.meshConfigDir" -}}
/etc/meshplane
{{- end }}

{{/* What every injection webhook shares: where it is served and what it sees. */}}
{{- define "cp.injectorWebhook" -}}
clientConfig:
  # No caBundle on purpose: meshd serves the webhook with its own certificate
  # and will patch that CA bundle into this configuration at run time (a later
  # issue). Because the operator never sets the field, its server-side apply
  # will not fight meshd over it.
  service:
    name: {{ include "cp.name" . }}
    namespace: {{ .Release.Namespace }}
    path: /inject
    port: 443
failurePolicy: {{ .Values.injector.failurePolicy }}
sideEffects: None
admissionReviewVersions: [v1]
timeoutSeconds: 10
rules:
  - operations: [CREATE]
    apiGroups: [""]
    apiVersions: [v1]
    resources: [pods]
{{- end }}

{{/* Expressions matching a namespace that has neither injection label. */}}
{{- define "cp.unlabelledNamespaceExpressions" -}}
- key: istio-injection
  operator: DoesNotExist
- key: istio.io/rev
  operator: DoesNotExist
{{- end }}

{{/* A namespace selector matching namespaces that have neither injection label. */}}
{{- define "cp.unlabelledNamespace" -}}
matchExpressions:
  {{- include "cp.unlabelledNamespaceExpressions" . | nindent 2 }}
{{- end }}

{{/*
Name of meshd's ValidatingWebhookConfiguration. Cluster-scoped, so one per
revision; meshd is told the name (--webhook-config-name) and may patch only
that one (ClusterRole resourceNames).
*/}}
{{- define "cp.validatorName" -}}
meshplane-validator-{{ required "revision is required" .Values.revision }}
{{- end }}
