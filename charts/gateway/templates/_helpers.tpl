{{/*
Labels every object of this chart carries. The operator finds what it installed
through operator.meshplane.io/mesh-control-plane, which comes from Release.Name
(the MeshControlPlane's name) rather than from values, so spec.values cannot
orphan an object.
*/}}
{{- define "gw.labels" -}}
app.kubernetes.io/managed-by: meshplane-operator
app.kubernetes.io/part-of: meshplane
app.kubernetes.io/version: {{ required "version is required" .Values.version | quote }}
operator.meshplane.io/mesh-control-plane: {{ .Release.Name | quote }}
operator.meshplane.io/component: {{ include "gw.kind" . }}-gateway
istio.io/rev: {{ required "revision is required" .Values.revision | quote }}
{{- end }}

{{/* The gateway's name. */}}
{{- define "gw.name" -}}
{{ required "gateway.name is required" .Values.gateway.name }}
{{- end }}

{{/* ingress or egress, refusing anything else. */}}
{{- define "gw.kind" -}}
{{- if not (has .Values.gateway.kind (list "ingress" "egress")) -}}
{{- fail (printf "gateway.kind must be ingress or egress, not %q" .Values.gateway.kind) -}}
{{- end -}}
{{ .Values.gateway.kind }}
{{- end }}

{{/*
Pod selector. The istio label is the name without a leading "istio-", so Istio
Gateway resources written for Istio's own gateways (selector: {istio:
ingressgateway}) select a gateway named istio-ingressgateway unchanged. Both
labels derive from the name only: Deployment selectors are immutable.
*/}}
{{- define "gw.selectorLabels" -}}
app: {{ include "gw.name" . }}
istio: {{ include "gw.name" . | trimPrefix "istio-" }}
{{- end }}

{{/* Port of the status listener the bootstrap defines, for health checks. */}}
{{- define "gw.statusPort" -}}
15021
{{- end }}
