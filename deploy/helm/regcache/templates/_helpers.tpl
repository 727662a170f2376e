{{/* The chart's name, or nameOverride. */}}
{{- define "regcache.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's object name: fullnameOverride, or release-chart (the release alone when it holds the chart's name). */}}
{{- define "regcache.fullname" -}}
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

{{- define "regcache.selectorLabels" -}}
app.kubernetes.io/name: {{ include "regcache.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "regcache.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "regcache.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The Secret holding the upstream password, or "" for an anonymous upstream. */}}
{{- define "regcache.upstreamSecret" -}}
{{- if .Values.upstream.existingSecret }}{{ .Values.upstream.existingSecret }}
{{- else if .Values.upstream.password }}{{ include "regcache.fullname" . }}-upstream
{{- end }}
{{- end }}

{{- define "regcache.upstreamSecretKey" -}}
{{- if .Values.upstream.existingSecret }}{{ .Values.upstream.existingSecretKey }}{{ else }}password{{ end }}
{{- end }}

{{/* The Secret holding the admin token, or "". */}}
{{- define "regcache.adminSecret" -}}
{{- if .Values.adminToken.existingSecret }}{{ .Values.adminToken.existingSecret }}
{{- else if .Values.adminToken.value }}{{ include "regcache.fullname" . }}-admin
{{- end }}
{{- end }}

{{- define "regcache.adminSecretKey" -}}
{{- if .Values.adminToken.existingSecret }}{{ .Values.adminToken.existingSecretKey }}{{ else }}token{{ end }}
{{- end }}

{{/* The Secret holding the htpasswd file, or "". */}}
{{- define "regcache.htpasswdSecret" -}}
{{- if .Values.config.access.htpasswdExistingSecret }}{{ .Values.config.access.htpasswdExistingSecret }}
{{- else if .Values.config.access.htpasswd }}{{ include "regcache.fullname" . }}-htpasswd
{{- end }}
{{- end }}

{{- define "regcache.htpasswdSecretKey" -}}
{{- if .Values.config.access.htpasswdExistingSecret }}{{ .Values.config.access.htpasswdExistingSecretKey }}{{ else }}htpasswd{{ end }}
{{- end }}
