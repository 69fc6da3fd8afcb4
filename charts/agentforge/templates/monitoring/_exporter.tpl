{{/*
The metrics exporter sidecar of a bundled data store: (dict "root" $ "component" "postgresql"|"redis" "values"
.Values.<component> "env" ENV-YAML). Its image's entrypoint runs it; it listens on port `metrics`
(agentforge.port "<component>-metrics", the registry's exporter port) and reaches the server over the pod's loopback. Credentials come in ENV
(secretKeyRefs), never on its command line.
*/}}
{{- define "agentforge.exporterContainer" -}}
{{- $values := .values -}}
{{- $port := include "agentforge.port" (list .root (printf "%s-metrics" .component)) -}}
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


{{/*
What a Prometheus scrapes, as a YAML list of {component, port}: the components that serve their own metrics (the
registry's `scraped`, on their port), then the data stores' exporters that run (`exporter`, on the port `metrics`).
*/}}
{{- define "agentforge.monitoring.targets" -}}
{{- $targets := list -}}
{{- range include "agentforge.componentsWith" (list $ "scraped") | fromJsonArray -}}
{{- $targets = append $targets (dict "component" .name "port" .port.name) -}}
{{- end -}}
{{- range include "agentforge.componentsWith" (list $ "exporter") | fromJsonArray -}}
{{- if and (include "agentforge.componentEnabled" (list $ .)) (index $.Values .key).metrics.enabled -}}
{{- $targets = append $targets (dict "component" .name "port" "metrics") -}}
{{- end -}}
{{- end -}}
{{- toYaml $targets -}}
{{- end -}}
