{{- define "gatehouse.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "gatehouse.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "gatehouse.labels" -}}
app.kubernetes.io/name: {{ include "gatehouse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "gatehouse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gatehouse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: proxy
{{- end -}}

{{- define "gatehouse.secretName" -}}
{{- default (include "gatehouse.fullname" .) .Values.existingSecret -}}
{{- end -}}

{{/* Whether the chart deploys memcached. */}}
{{- define "gatehouse.memcachedDeployed" -}}
{{- $m := .Values.memcached -}}
{{- if and (not $m.external.servers) (or (eq (toString $m.enabled) "true") (and (eq (toString $m.enabled) "auto") (or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled))) -}}
true
{{- end -}}
{{- end -}}

{{/* The memcached servers sessions go to, comma-separated; empty for memory. */}}
{{- define "gatehouse.memcacheServers" -}}
{{- if .Values.memcached.external.servers -}}
{{- join "," .Values.memcached.external.servers -}}
{{- else if include "gatehouse.memcachedDeployed" . -}}
{{- printf "%s-memcached:11211" (include "gatehouse.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* config.yaml: the user's config over the chart's defaults. */}}
{{- define "gatehouse.config" -}}
{{- $defaults := dict "server" (dict "listen" ":4180" "metrics_listen" ":9180") "logging" (dict "format" "json") -}}
{{- $cfg := mergeOverwrite (deepCopy $defaults) (deepCopy .Values.config) -}}
{{- toYaml $cfg -}}
{{- end -}}
