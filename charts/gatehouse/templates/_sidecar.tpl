{{/*
Gatehouse in a pod: the container, its volumes, the pod annotations and
the Service ports. This chart's Deployment uses them, and so can a chart
that owns a workload Gatehouse should guard (values sidecar.enabled and
sidecar.external true; see README.md), with gatehouse as a dependency:

  spec:
    template:
      metadata:
        annotations:
          {{- include "gatehouse.sidecar.podAnnotations" .Subcharts.gatehouse | nindent 10 }}
      spec:
        containers:
          - name: app            # the app keeps its own securityContext
            ...
          {{- include "gatehouse.sidecar.container" .Subcharts.gatehouse | nindent 10 }}
        volumes:
          {{- include "gatehouse.sidecar.volumes" .Subcharts.gatehouse | nindent 10 }}

and in its Service:

  ports:
    {{- include "gatehouse.sidecar.servicePort" .Subcharts.gatehouse | nindent 4 }}

Gatehouse proxies to the app on 127.0.0.1:<sidecar.app.port>. The names
used in the pod (container gatehouse, ports gatehouse and gh-metrics,
volumes gatehouse-*) leave the app's own names free.
*/}}

{{/* Gatehouse's proxy and metrics ports in the pod, from server.listen and server.metrics_listen. */}}
{{- define "gatehouse.httpPort" -}}
{{- $server := (include "gatehouse.config" . | fromYaml).server -}}
{{- default "4180" (regexFind "[0-9]+$" (toString $server.listen)) -}}
{{- end -}}

{{- define "gatehouse.metricsPort" -}}
{{- $server := (include "gatehouse.config" . | fromYaml).server -}}
{{- default "9180" (regexFind "[0-9]+$" (toString $server.metrics_listen)) -}}
{{- end -}}

{{/* The Gatehouse container, as an item of a pod's containers list. */}}
{{- define "gatehouse.sidecar.container" -}}
{{- include "gatehouse.validate" . -}}
{{- $secretDir := "/etc/gatehouse/secrets" -}}
{{- $auth := default (dict) .Values.config.auth -}}
- name: gatehouse
  image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args: ["serve", "--config", "/etc/gatehouse/config/config.yaml"]
  ports:
    - name: gatehouse
      containerPort: {{ include "gatehouse.httpPort" . }}
      protocol: TCP
    - name: gh-metrics
      containerPort: {{ include "gatehouse.metricsPort" . }}
      protocol: TCP
  env:
    - name: GATEHOUSE_SESSION_SECRET_FILE
      value: {{ $secretDir }}/session-secret
    {{- if (default (dict) $auth.github).enabled }}
    - name: GATEHOUSE_AUTH_GITHUB_CLIENT_SECRET_FILE
      value: {{ $secretDir }}/github-client-secret
    {{- end }}
    {{- if (default (dict) $auth.gitlab).enabled }}
    - name: GATEHOUSE_AUTH_GITLAB_CLIENT_SECRET_FILE
      value: {{ $secretDir }}/gitlab-client-secret
    {{- end }}
    {{- range $name, $_ := .Values.secrets.oidc }}
    - name: GATEHOUSE_AUTH_OIDC_{{ upper $name }}_CLIENT_SECRET_FILE
      value: {{ $secretDir }}/oidc-{{ $name }}-client-secret
    {{- end }}
    {{- if include "gatehouse.hasSigningKey" . }}
    - name: GATEHOUSE_HEADERS_ASSERTION_SIGNING_KEY_FILES
      value: {{ $secretDir }}/signing-key.pem
    {{- end }}
    {{- with .Values.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  livenessProbe:
    httpGet:
      path: /ping
      port: gatehouse
    periodSeconds: 10
    failureThreshold: 3
  readinessProbe:
    httpGet:
      path: /ready
      port: gatehouse
    periodSeconds: 5
    failureThreshold: 2
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  {{- with .Values.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    # A directory mount (not subPath), so ConfigMap and Secret updates
    # reach the files and Gatehouse reloads them without a restart.
    - name: gatehouse-config
      mountPath: /etc/gatehouse/config
      readOnly: true
    - name: gatehouse-secrets
      mountPath: {{ $secretDir }}
      readOnly: true
    - name: gatehouse-tmp
      mountPath: /tmp
    {{- with .Values.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{/* Gatehouse's volumes, as items of a pod's volumes list. */}}
{{- define "gatehouse.sidecar.volumes" -}}
- name: gatehouse-config
  configMap:
    name: {{ include "gatehouse.fullname" . }}
- name: gatehouse-secrets
  secret:
    secretName: {{ include "gatehouse.secretName" . }}
    {{- /* Group-readable through this chart's fsGroup; in another chart's pod the owner is root, so readable to Gatehouse's user only as other (no other container mounts this volume). */}}
    defaultMode: {{ if and (include "gatehouse.ownsPod" .) .Values.podSecurityContext.fsGroup }}0440{{ else }}0444{{ end }}
- name: gatehouse-tmp
  emptyDir: {}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Pod annotations that roll the pods when Gatehouse's configuration or secrets change. */}}
{{- define "gatehouse.sidecar.podAnnotations" -}}
checksum/gatehouse-config: {{ include "gatehouse.config" . | sha256sum }}
checksum/gatehouse-secret: {{ include "gatehouse.secretData" . | sha256sum }}
{{- end -}}

{{/* The Service port that reaches Gatehouse (the only one a guarded app's Service should have). */}}
{{- define "gatehouse.sidecar.servicePort" -}}
- name: http
  port: {{ .Values.service.port }}
  targetPort: gatehouse
  protocol: TCP
{{- end -}}

{{/* The Service port for Prometheus (/metrics on Gatehouse's metrics listener). */}}
{{- define "gatehouse.sidecar.metricsServicePort" -}}
- name: metrics
  port: {{ .Values.service.metricsPort }}
  targetPort: gh-metrics
  protocol: TCP
{{- end -}}
