{{/*
prometheus.yml of the bundled Prometheus. It discovers pods (kubernetes_sd_configs, role pod) rather than
scraping a Service, which would reach one pod per scrape and hide the others. Relabeling keeps the backend
and data-collector pods of this release, on their container port named `http`, and names each target's
job after its component, as the PodMonitors do (jobLabel), so one dashboard fits both.
*/}}
{{- define "agentforge.prometheus.config" -}}
{{- $values := .Values.prometheus -}}
global:
  scrape_interval: {{ $values.scrapeInterval }}
  evaluation_interval: {{ $values.scrapeInterval }}
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["localhost:{{ include "agentforge.port" "prometheus" }}"]
  - job_name: agentforge
    scheme: http
    metrics_path: /metrics
    kubernetes_sd_configs:
      - role: pod
        namespaces:
          names: [{{ .Release.Namespace | quote }}]
    relabel_configs:
      - action: keep
        source_labels: [__meta_kubernetes_pod_label_app_kubernetes_io_name]
        regex: {{ include "agentforge.name" . | quote }}
      - action: keep
        source_labels: [__meta_kubernetes_pod_label_app_kubernetes_io_instance]
        regex: {{ .Release.Name | quote }}
      - action: keep
        source_labels: [__meta_kubernetes_pod_label_app_kubernetes_io_component]
        regex: "backend|data-collector"
      - action: keep
        source_labels: [__meta_kubernetes_pod_container_port_name]
        regex: http
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
