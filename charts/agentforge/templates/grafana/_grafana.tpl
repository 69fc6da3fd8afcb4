{{/* Whether the bundled Grafana is rendered: monitoring.enabled and grafana.enabled. */}}
{{- define "agentforge.grafana.enabled" -}}
{{- if and .Values.monitoring.enabled .Values.grafana.enabled }}true{{ end -}}
{{- end -}}

{{/* Grafana's admin Secret: grafana.admin.existingSecret, else the chart's <fullname>-grafana. */}}
{{- define "agentforge.grafana.secretName" -}}
{{- default (include "agentforge.componentName" (list . "grafana")) .Values.grafana.admin.existingSecret -}}
{{- end -}}

{{/*
The AgentForge dashboard, files/dashboards/agentforge.json, with every datasource reference pointing at the
uid given: (list $ UID). The file names the provisioned datasource by its default uid, `agentforge-prometheus`
(a dashboard that Grafana's file provisioning loads as it is: it does not substitute `${DS_PROMETHEUS}`
inputs); that JSON string is swapped for the uid given, so the dashboard follows grafana.datasourceUid.
*/}}
{{- define "agentforge.grafana.dashboard" -}}
{{- $root := index . 0 -}}
{{- $json := $root.Files.Get "files/dashboards/agentforge.json" -}}
{{- $json | replace (quote "agentforge-prometheus") (toJson (index . 1)) -}}
{{- end -}}

{{/* Provisioning files of the bundled Grafana: its Prometheus datasource and the file dashboard provider. */}}
{{- define "agentforge.grafana.provisioning" -}}
datasources.yaml: |
  apiVersion: 1
  datasources:
    - name: Prometheus
      type: prometheus
      # A fixed uid: the dashboard references its datasource by this uid.
      uid: {{ .Values.grafana.datasourceUid | quote }}
      access: proxy
      url: http://{{ include "agentforge.host" (list . "prometheus") }}:{{ include "agentforge.port" (list $ "prometheus") }}
      isDefault: true
      editable: false
      jsonData:
        # $__rate_interval needs the scrape interval to pick windows that hold enough samples.
        timeInterval: {{ .Values.prometheus.scrapeInterval | quote }}
        httpMethod: POST
dashboards.yaml: |
  apiVersion: 1
  providers:
    - name: agentforge
      orgId: 1
      folder: {{ .Values.grafana.dashboardFolder | quote }}
      type: file
      # The dashboard lives in the chart: edits in the UI would be lost on the next restart.
      disableDeletion: true
      allowUiUpdates: false
      updateIntervalSeconds: 60
      options:
        path: /etc/grafana/dashboards/agentforge
        foldersFromFilesStructure: false
{{- end -}}
