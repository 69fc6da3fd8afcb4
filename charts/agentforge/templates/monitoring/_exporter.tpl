{{/*
The metrics exporter sidecar of a bundled data store: (dict "root" $ "component" "postgresql"|"redis" "values"
.Values.<component> "env" ENV-YAML). Its image's entrypoint runs it; it listens on port `metrics`
(agentforge.port "<component>-metrics") and reaches the server over the pod's loopback. Credentials come in ENV
(secretKeyRefs), never on its command line.
*/}}
{{- define "agentforge.exporterContainer" -}}
{{- $values := .values -}}
{{- $port := include "agentforge.port" (printf "%s-metrics" .component) -}}
- name: metrics
  image: {{ include "agentforge.image" (list .root $values.metrics.image) }}
  imagePullPolicy: {{ $values.metrics.image.pullPolicy }}
  args:
    - --web.listen-address=:{{ $port }}
  env:
    {{- .env | nindent 4 }}
  ports:
    - name: metrics
      containerPort: {{ $port }}
      protocol: TCP
  # The landing page, which queries nothing: a server that is down shows in the exporter's own series (pg_up,
  # redis_up), not as a restarted or unready exporter.
  readinessProbe:
    httpGet:
      path: /
      port: metrics
    periodSeconds: 30
    timeoutSeconds: 5
  livenessProbe:
    tcpSocket:
      port: metrics
    periodSeconds: 30
    timeoutSeconds: 5
  {{- include "agentforge.containerSettings" (dict "containerSecurityContext" $values.containerSecurityContext "resources" $values.metrics.resources) | nindent 2 }}
{{- end -}}


{{/* What a Prometheus scrapes, as a YAML list of {component, port}: the app's HTTP ports, and the exporters that run. */}}
{{- define "agentforge.monitoring.targets" -}}
{{- $targets := list (dict "component" "backend" "port" "http") (dict "component" "data-collector" "port" "http") -}}
{{- range $component := list "postgresql" "redis" -}}
{{- $values := index $.Values $component -}}
{{- if and $values.enabled $values.metrics.enabled -}}
{{- $targets = append $targets (dict "component" $component "port" "metrics") -}}
{{- end -}}
{{- end -}}
{{- toYaml $targets -}}
{{- end -}}
