{{/* Chart name, overridable. */}}
{{- define "bkops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, unless the release name already holds the chart name. */}}
{{- define "bkops.fullname" -}}
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

{{- define "bkops.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "bkops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bkops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "bkops.labels" -}}
helm.sh/chart: {{ include "bkops.chart" . }}
{{ include "bkops.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: bkops
{{- end }}

{{- define "bkops.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "bkops.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Namespace of the leader-election Lease. */}}
{{- define "bkops.leaseNamespace" -}}
{{- default .Release.Namespace .Values.leaderElection.namespace }}
{{- end }}

{{/*
Namespaces that get the operator's Role: the watched ones. With none, a single empty entry stands
for "cluster-wide" so templates can range over one list either way.
*/}}
{{- define "bkops.rbacScopes" -}}
{{- if .Values.watchNamespaces }}
{{- toJson (uniq .Values.watchNamespaces) }}
{{- else }}
{{- toJson (list "") }}
{{- end }}
{{- end }}

{{/* Namespaces that get the default BkConnection. */}}
{{- define "bkops.connectionNamespaces" -}}
{{- if .Values.defaultConnection.namespaces }}
{{- toJson (uniq .Values.defaultConnection.namespaces) }}
{{- else if .Values.watchNamespaces }}
{{- toJson (uniq .Values.watchNamespaces) }}
{{- else }}
{{- toJson (list .Release.Namespace) }}
{{- end }}
{{- end }}
