{{/* The release's full name: the release name, with the chart's name unless it holds it. */}}
{{- define "tppguard-agent.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The labels every object carries. */}}
{{- define "tppguard-agent.labels" -}}
{{ include "tppguard-agent.selectorLabels" . }}
app.kubernetes.io/part-of: tppguard
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The labels the DaemonSet selects its pods by. */}}
{{- define "tppguard-agent.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The service account's name. */}}
{{- define "tppguard-agent.serviceAccountName" -}}
{{- default (include "tppguard-agent.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}
