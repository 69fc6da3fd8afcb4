{{/*
The monitors of a Prometheus Operator, one per scraped component (agentforge.monitoring.targets): (dict "root" $
"kind" "PodMonitor"|"ServiceMonitor" "settings" .Values.monitoring.<podMonitor|serviceMonitor> "endpoints"
"podMetricsEndpoints"|"endpoints"). Each selects its component's pods (or Service) on the port named `http`, or
`metrics` for the data stores' exporters; jobLabel names the job after the component, as the bundled Prometheus does.
Nothing unless the settings' `enabled`.
*/}}
{{- define "agentforge.monitoring.monitors" -}}
{{- $root := .root -}}
{{- $settings := .settings -}}
{{- if $settings.enabled }}
{{- range $target := include "agentforge.monitoring.targets" $root | fromYamlArray }}
{{- $component := $target.component }}
---
apiVersion: monitoring.coreos.com/v1
kind: {{ $.kind }}
metadata:
  name: {{ include "agentforge.componentName" (list $root $component) }}
  namespace: {{ include "agentforge.namespace" $root }}
  labels:
    {{- include "agentforge.labels" (list $root $component) | nindent 4 }}
    {{- with $settings.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with include "agentforge.metadataAnnotations" (list $root (dict)) }}
  {{- . | nindent 2 }}
  {{- end }}
spec:
  jobLabel: app.kubernetes.io/component
  namespaceSelector:
    matchNames:
      - {{ include "agentforge.namespace" $root }}
  selector:
    matchLabels:
      {{- include "agentforge.selectorLabels" (list $root $component) | nindent 6 }}
  {{ $.endpoints }}:
    - port: {{ $target.port }}
      path: /metrics
      scheme: http
      interval: {{ $settings.interval }}
      {{- with $settings.scrapeTimeout }}
      scrapeTimeout: {{ . }}
      {{- end }}
{{- end }}
{{- end }}
{{- end -}}
