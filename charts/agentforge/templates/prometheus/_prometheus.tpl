{{/*
prometheus.yml of the bundled Prometheus. It discovers pods (kubernetes_sd_configs, role pod) rather than
scraping a Service, which would reach one pod per scrape and hide the others. Relabeling keeps the backend
and data-collector pods of this release, on their container port named `http`, and the data stores' exporters, on
`metrics`, and names each target's
job after its component, as the PodMonitors do (jobLabel), so one dashboard fits both.
*/}}
{{- define "agentforge.prometheus.config" -}}
{{- $values := .Values.prometheus -}}
global:
  scrape_interval: {{ $values.scrapeInterval }}
  evaluation_interval: {{ $values.scrapeInterval }}
{{- if include "agentforge.alerts.enabled" . }}
# The alerting rules (templates/monitoring/_alerts.tpl): alerts.yml of the same ConfigMap, beside this file.
rule_files:
  - alerts.yml
{{- end }}
{{- with include "agentforge.prometheus.alertmanagers" . | fromJsonArray }}
alerting:
  alertmanagers:
    {{- range . }}
    - scheme: {{ .scheme }}
      {{- with .pathPrefix }}
      path_prefix: {{ . | quote }}
      {{- end }}
      static_configs:
        - targets: [{{ .address | quote }}]
    {{- end }}
{{- end }}
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["localhost:{{ include "agentforge.port" (list $ "prometheus") }}"]
  - job_name: agentforge
    scheme: http
    metrics_path: /metrics
    kubernetes_sd_configs:
      - role: pod
        namespaces:
          names: [{{ include "agentforge.namespace" . | quote }}]
    relabel_configs:
      - action: keep
        source_labels: [__meta_kubernetes_pod_label_app_kubernetes_io_name]
        regex: {{ include "agentforge.name" . | quote }}
      - action: keep
        source_labels: [__meta_kubernetes_pod_label_app_kubernetes_io_instance]
        regex: {{ .Release.Name | quote }}
      # The app's HTTP port, and the data stores' exporters (postgresql.metrics, redis.metrics), by component.
      - action: keep
        source_labels: [__meta_kubernetes_pod_label_app_kubernetes_io_component, __meta_kubernetes_pod_container_port_name]
        regex: "(backend|data-collector);http|(postgresql|redis);metrics"
      # Pods that have finished or not yet started have nothing to serve.
      - action: drop
        source_labels: [__meta_kubernetes_pod_phase]
        regex: "Pending|Succeeded|Failed"
      - action: replace
        source_labels: [__meta_kubernetes_pod_label_app_kubernetes_io_component]
        target_label: job
      - action: replace
        source_labels: [__meta_kubernetes_namespace]
        target_label: namespace
      - action: replace
        source_labels: [__meta_kubernetes_pod_name]
        target_label: pod
      - action: replace
        source_labels: [__meta_kubernetes_pod_container_name]
        target_label: container
{{- end -}}


{{/*
The Alertmanagers of prometheus.alertmanagers, parsed, as a JSON list of {value, scheme, address (host:port, the
scheme's port when the URL names none), port, pathPrefix}. The schema admits only http(s)://host[:port][/path].
*/}}
{{- define "agentforge.prometheus.alertmanagers" -}}
{{- $out := list -}}
{{- range $i, $url := .Values.prometheus.alertmanagers -}}
{{- $parsed := urlParse $url -}}
{{- $port := regexFind ":[0-9]+$" $parsed.host | trimPrefix ":" -}}
{{- $host := trimSuffix (print ":" $port) $parsed.host -}}
{{- $port = $port | default (ternary "443" "80" (eq $parsed.scheme "https")) -}}
{{- $out = append $out (dict "value" (printf "prometheus.alertmanagers[%d] (%s)" $i $url) "scheme" $parsed.scheme "address" (printf "%s:%s" $host $port) "port" (int64 $port) "pathPrefix" (trimSuffix "/" $parsed.path)) -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* Constraints of prometheus.alertmanagers, as a JSON list of messages (reported by templates/_validate.tpl). */}}
{{- define "agentforge.prometheus.alertmanagerErrors" -}}
{{- $errors := list -}}
{{- if and .Values.prometheus.alertmanagers (not .Values.monitoring.enabled) -}}
{{- $errors = append $errors "prometheus.alertmanagers is set while monitoring.enabled is false: there is no bundled Prometheus to send alerts from. Leave it empty (route the PrometheusRule's alerts in your own Prometheus), or set monitoring.enabled=true" -}}
{{- end -}}
{{- range include "agentforge.prometheus.alertmanagers" . | fromJsonArray -}}
{{- if or (lt (int64 .port) 1) (gt (int64 .port) 65535) -}}
{{- $errors = append $errors (printf "%s: port %d is out of range (1 to 65535)" .value (int64 .port)) -}}
{{- end -}}
{{- end -}}
{{- toJson $errors -}}
{{- end -}}
