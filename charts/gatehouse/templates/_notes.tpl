{{/* The release notes (NOTES.txt), a named template so the chart tests can render them. */}}
{{- define "gatehouse.notes" -}}
{{- $fullname := include "gatehouse.fullname" . -}}
{{- if include "gatehouse.ownsPod" . }}
Gatehouse is deployed as {{ $fullname }}.
{{- else }}
Gatehouse's configuration and secrets are in {{ $fullname }}; the workload that includes
the gatehouse.sidecar.* templates runs it.
{{- end }}
{{- if .Values.sidecar.enabled }}
Sidecar mode: Gatehouse proxies to the app on 127.0.0.1:{{ .Values.sidecar.app.port }}.
{{- if include "gatehouse.ownsPod" . }} The Service {{ $fullname }} exposes only Gatehouse.
{{- else }} Give the workload's Service the gatehouse.sidecar.servicePort port instead of the app's.
{{- end }}
{{- if .Values.networkPolicy.enabled }}
The NetworkPolicy {{ $fullname }} admits traffic to the pods only on Gatehouse's ports, so the app
is reachable only through Gatehouse (where the cluster's network plugin enforces NetworkPolicy).
{{- else }}
WARNING: other pods can still reach the app's port {{ .Values.sidecar.app.port }} directly on the pod IP,
without Gatehouse. Set networkPolicy.enabled=true to admit traffic only on Gatehouse's port.
{{- end }}
{{- end }}
{{- $servers := include "gatehouse.memcacheServers" . | fromJsonArray }}
{{- if $servers }}
Sessions are shared in memcached: {{ join ", " $servers }}
{{- end }}

Register {{ default "<server.public_url>" (default (dict) .Values.config.server).public_url }}/oauth2/callback/<provider> with your identity provider.
{{- if include "gatehouse.ownsPod" . }}
Check the configuration with: kubectl exec deploy/{{ $fullname }} -c gatehouse -- gatehouse check --config /etc/gatehouse/config/config.yaml
{{- end }}
{{- end -}}
