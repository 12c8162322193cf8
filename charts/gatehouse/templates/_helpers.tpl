{{/*
Helpers. Every template here works from the chart's own root context and
from the context another chart passes as `.Subcharts.gatehouse` (Values,
Chart, Release, Files, Capabilities; no .Template), so the sidecar
templates in _sidecar.tpl can be included by a parent chart.
*/}}

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

{{- define "gatehouse.memcachedName" -}}
{{- printf "%s-memcached" (include "gatehouse.fullname" . | trunc 42 | trimSuffix "-") -}}
{{- end -}}

{{- define "gatehouse.memcachedSelectorLabels" -}}
app.kubernetes.io/name: {{ include "gatehouse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: memcached
{{- end -}}

{{- define "gatehouse.secretName" -}}
{{- default (include "gatehouse.fullname" .) .Values.existingSecret -}}
{{- end -}}

{{/* The pods that run Gatehouse: "true" when there may be more than one. */}}
{{- define "gatehouse.multiReplica" -}}
{{- if or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled -}}
true
{{- end -}}
{{- end -}}

{{/* Whether this chart owns the pod (false: sidecar.external). */}}
{{- define "gatehouse.ownsPod" -}}
{{- if not (and .Values.sidecar.enabled .Values.sidecar.external) -}}
true
{{- end -}}
{{- end -}}

{{/* Whether the chart deploys memcached. */}}
{{- define "gatehouse.memcachedDeployed" -}}
{{- $m := .Values.memcached -}}
{{- if and (not $m.external.servers) (or (eq (toString $m.enabled) "true") (and (eq (toString $m.enabled) "auto") (include "gatehouse.multiReplica" .))) -}}
true
{{- end -}}
{{- end -}}

{{/* The SRV name of the deployed memcached: the headless Service's port "memcache". */}}
{{- define "gatehouse.memcachedSRV" -}}
{{- printf "dnssrv+_memcache._tcp.%s.%s.svc.%s" (include "gatehouse.memcachedName" .) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{/* The memcached servers sessions go to, as a JSON list; [] for memory. */}}
{{- define "gatehouse.memcacheServers" -}}
{{- if .Values.memcached.external.servers -}}
{{- toJson .Values.memcached.external.servers -}}
{{- else if include "gatehouse.memcachedDeployed" . -}}
{{- list (include "gatehouse.memcachedSRV" .) | toJson -}}
{{- else -}}
[]
{{- end -}}
{{- end -}}

{{/* Whether the assertion is signed with a key from the Secret. */}}
{{- define "gatehouse.hasSigningKey" -}}
{{- if or .Values.secrets.signingKey (and .Values.existingSecret .Values.existingSecretHasSigningKey) -}}
true
{{- end -}}
{{- end -}}

{{/* Secret-looking keys Gatehouse's config must not hold (they would land in the ConfigMap). */}}
{{- define "gatehouse.secretKeyPattern" -}}
(?i)^(.*[_-])?(secret|password|client_assertion|private_key|signing_key)$
{{- end -}}

{{/* Fails on a secret-looking key anywhere under .value (path in .path). */}}
{{- define "gatehouse.assertNoSecrets" -}}
{{- $pattern := include "gatehouse.secretKeyPattern" . -}}
{{- if kindIs "map" .value -}}
{{- range $k, $v := .value -}}
{{- $p := printf "%s.%s" $.path $k -}}
{{- if regexMatch $pattern $k -}}
{{- fail (printf "%s: secrets never go into the ConfigMap; use `secrets` or `existingSecret` (mounted as files) instead" $p) -}}
{{- end -}}
{{- include "gatehouse.assertNoSecrets" (dict "path" $p "value" $v) -}}
{{- end -}}
{{- else if kindIs "slice" .value -}}
{{- range $i, $v := .value -}}
{{- include "gatehouse.assertNoSecrets" (dict "path" (printf "%s[%d]" $.path $i) "value" $v) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Checks that stop a render that would deploy something broken. Included by
every object Gatehouse needs (ConfigMap, Deployment, sidecar container).
*/}}
{{- define "gatehouse.validate" -}}
{{- include "gatehouse.assertNoSecrets" (dict "path" "config" "value" .Values.config) -}}
{{- $headers := default (dict) .Values.config.headers -}}
{{- $assertion := default (dict) $headers.assertion -}}
{{- $assertionOn := ne (toString $assertion.enabled) "false" -}}
{{- if and (include "gatehouse.multiReplica" .) $assertionOn (not (include "gatehouse.hasSigningKey" .)) (not $assertion.signing_key_files) -}}
{{- fail "more than one Gatehouse replica (replicaCount > 1 or autoscaling.enabled) needs a shared assertion signing key: set secrets.signingKey (a PEM EC P-256 or RSA private key), or existingSecret with a signing-key.pem key and existingSecretHasSigningKey: true; otherwise each replica signs with its own generated key and upstreams reject the others' assertions" -}}
{{- end -}}
{{- $session := default (dict) .Values.config.session -}}
{{- $store := default (dict) $session.store -}}
{{- if and (include "gatehouse.multiReplica" .) (eq (include "gatehouse.memcacheServers" .) "[]") (ne (toString $store.type) "memcache") -}}
{{- fail "more than one Gatehouse replica needs a shared session store: keep memcached.enabled auto or true, or set memcached.external.servers" -}}
{{- end -}}
{{- if and .Values.sidecar.enabled (not .Values.sidecar.external) (not .Values.sidecar.app.image) -}}
{{- fail "sidecar.app.image is required in sidecar mode (or sidecar.external: true when another chart owns the pod)" -}}
{{- end -}}
{{- end -}}

{{/* config.yaml: the user's config over the chart's defaults. */}}
{{- define "gatehouse.config" -}}
{{- $defaults := dict "server" (dict "listen" ":4180" "metrics_listen" ":9180") "logging" (dict "format" "json") -}}
{{- $servers := include "gatehouse.memcacheServers" . | fromJsonArray -}}
{{- if $servers -}}
{{- $memcache := dict "servers" $servers "replicas" (int .Values.memcached.copiesPerRecord) "resolve_interval" "10s" -}}
{{- $_ := set $defaults "session" (dict "store" (dict "type" "memcache" "memcache" $memcache)) -}}
{{- end -}}
{{- if .Values.sidecar.enabled -}}
{{- $_ := set $defaults "upstream" (dict "url" (printf "http://127.0.0.1:%d" (int .Values.sidecar.app.port))) -}}
{{- end -}}
{{- $cfg := mergeOverwrite (deepCopy $defaults) (deepCopy .Values.config) -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* The Secret's data (base64), also hashed into the pods' checksum/secret. */}}
{{- define "gatehouse.secretData" -}}
session-secret: {{ .Values.secrets.sessionSecret | b64enc | quote }}
{{- with .Values.secrets.github.clientSecret }}
github-client-secret: {{ . | b64enc | quote }}
{{- end }}
{{- with .Values.secrets.gitlab.clientSecret }}
gitlab-client-secret: {{ . | b64enc | quote }}
{{- end }}
{{- range $name, $secret := .Values.secrets.oidc }}
{{- if $secret }}
oidc-{{ $name }}-client-secret: {{ $secret | b64enc | quote }}
{{- end }}
{{- end }}
{{- with .Values.secrets.signingKey }}
signing-key.pem: {{ . | b64enc | quote }}
{{- end }}
{{- end -}}

{{/* Soft anti-affinity: spread pods with these labels over nodes. */}}
{{- define "gatehouse.softAntiAffinity" -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- . | nindent 12 }}
{{- end -}}
