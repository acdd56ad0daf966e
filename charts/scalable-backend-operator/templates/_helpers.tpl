{{/* Chart name, shortened to the 63 characters a label allows. */}}
{{- define "sbo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<chart>, or the release name if it already contains the chart name. */}}
{{- define "sbo.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "sbo.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sbo.labels" -}}
helm.sh/chart: {{ include "sbo.chart" . }}
{{ include "sbo.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: scalable-backend-operator
{{- end }}

{{- define "sbo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sbo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The selector labels as key=value pairs, comma-separated (SBO_OPERATOR_POD_LABELS). */}}
{{- define "sbo.selectorLabelPairs" -}}
{{- include "sbo.selectorLabels" . | replace ": " "=" | replace "\n" "," }}
{{- end }}

{{- define "sbo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sbo.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sbo.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* "true" when Kopf peering is on: asked for, or needed by more than one replica. */}}
{{- define "sbo.peering" -}}
{{- if or .Values.peering.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{/*
How the operator is scoped:
  cluster    no namespaces: a ClusterRole;
  namespaces exact names: a Role in each, nothing cluster-wide;
  patterns   a glob among them: a ClusterRole, and list/watch on namespaces.
*/}}
{{- define "sbo.watchMode" -}}
{{- if not .Values.watchNamespaces }}cluster
{{- else }}
{{- $glob := false }}
{{- range .Values.watchNamespaces }}{{ if regexMatch "[*?\\[\\]!]" . }}{{ $glob = true }}{{ end }}{{ end }}
{{- if $glob }}patterns{{ else }}namespaces{{ end }}
{{- end }}
{{- end }}

{{/* The generated rules (operator/rbac.py renders files/rbac-rules.yaml). */}}
{{- define "sbo.rbacRules" -}}
{{- .Files.Get "files/rbac-rules.yaml" | fromYaml | toJson }}
{{- end }}
