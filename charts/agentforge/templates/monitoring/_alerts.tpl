{{/*
Alerting rules of AgentForge, defined once (agentforge.alerts.groups) and rendered twice: as `alerts.yml` in the
bundled Prometheus' ConfigMap (templates/prometheus/configmap.yaml, named by `rule_files` in its prometheus.yml) and
as the PrometheusRule of templates/monitoring/prometheusrule.yaml. They read only what the application exports
(backend/shared/metrics.py: http_requests_total, http_request_duration_seconds, llm_cost_dollars_total,
pipeline_executions_total) and `up`. The data collector exports no metric of its own: it is watched by `up` only. The data stores' rules read
their exporters' series (postgresql.metrics, redis.metrics) and are rendered only for the exporters that run.

Every selector names the jobs the chart's scrape configurations set (the bundled Prometheus' relabeling and the
PodMonitors' and ServiceMonitors' jobLabel: the component), the release's namespace and its pods' names, so a
Prometheus that scrapes other releases and namespaces too keeps them apart.
*/}}

{{/* Whether any alerting rule is rendered: "true" or empty. */}}
{{- define "agentforge.alerts.enabled" -}}
{{- if include "agentforge.alerts.groups" . }}true{{ end -}}
{{- end -}}

{{/*
PromQL label matchers of the scraped targets of components of this release: (list $ "component" ...), e.g.
job="backend", namespace="agentforge", pod=~"(agentforge-backend)-.+". A Deployment's pods are named
<deployment>-<hash>-<suffix>, and the chart's names stay short enough that the whole prefix is kept.
*/}}
{{- define "agentforge.alerts.selector" -}}
{{- $root := first . -}}
{{- $components := rest . -}}
{{- $pods := list -}}
{{- range $components -}}
{{- $pods = append $pods (include "agentforge.componentName" (list $root .)) -}}
{{- end -}}
{{- if eq (len $components) 1 -}}
job="{{ first $components }}"
{{- else -}}
job=~"{{ join "|" $components }}"
{{- end -}}
, namespace="{{ include "agentforge.namespace" $root }}", pod=~"({{ join "|" $pods }})-.+"
{{- end -}}

{{/* Labels of one alert: monitoring.alerts.labels, and the alert's severity. (list $ SEVERITY) */}}
{{- define "agentforge.alerts.labels" -}}
{{- toYaml (merge (dict "severity" (index . 1)) ((index . 0).Values.monitoring.alerts.labels | default dict)) -}}
{{- end -}}

{{/*
The rule groups, as a YAML list (empty while monitoring.alerts.enabled is false, or every alert is off). Each alert's
rules come from agentforge.alerts.rules.<alert> below; Prometheus' own template text in annotations ($value, $labels)
is written as Helm string literals, which Helm prints as they are.
*/}}
{{- define "agentforge.alerts.groups" -}}
{{- $a := .Values.monitoring.alerts -}}
{{- if $a.enabled -}}
{{- $groups := list -}}
{{- range $group := list (list "agentforge.targets" "targetDown") (list "agentforge.backend" "backendErrors" "backendLatency" "pipelineFailures") (list "agentforge.llm" "llmSpend") (list "agentforge.datastores" "dataStoreDown" "dataStoreConnections") -}}
{{- $rules := list -}}
{{- range $alert := rest $group -}}
{{- if (index $a $alert).enabled -}}
{{- /* Empty when what the alert reads is not scraped (the data stores' exporters off). */ -}}
{{- with include (print "agentforge.alerts.rules." $alert) (list $ (index $a $alert)) -}}
{{- $rules = append $rules . -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $rules -}}
{{- $groups = append $groups (printf "- name: %s\n  rules:%s" (first $group) (join "\n" $rules | nindent 4)) -}}
{{- end -}}
{{- end -}}
{{- join "\n" $groups -}}
{{- end -}}
{{- end -}}

{{/* Every backend and data-collector pod answers its scrapes, and each component has at least one target. */}}
{{- define "agentforge.alerts.rules.targetDown" -}}
{{- $root := index . 0 -}}
{{- $r := index . 1 -}}
- alert: AgentForgeTargetDown
  expr: |-
    up{ {{- include "agentforge.alerts.selector" (list $root "backend" "data-collector") }}} == 0
  for: {{ index $r "for" }}
  labels:
    {{- include "agentforge.alerts.labels" (list $root $r.severity) | nindent 4 }}
  annotations:
    summary: An AgentForge metrics target is down
    description: >-
      Prometheus has failed to scrape {{ "{{ $labels.job }}" }} pod {{ "{{ $labels.pod }}" }} in namespace
      {{ "{{ $labels.namespace }}" }} for {{ index $r "for" }}: the pod does not answer on its metrics port.
- alert: AgentForgeTargetMissing
  expr: |-
    absent(up{ {{- include "agentforge.alerts.selector" (list $root "backend") }}})
      or absent(up{ {{- include "agentforge.alerts.selector" (list $root "data-collector") }}})
  for: {{ index $r "for" }}
  labels:
    {{- include "agentforge.alerts.labels" (list $root $r.severity) | nindent 4 }}
  annotations:
    summary: Prometheus has no AgentForge target of a component
    description: >-
      Prometheus has had no {{ "{{ $labels.job }}" }} target in namespace {{ "{{ $labels.namespace }}" }} for
      {{ index $r "for" }}: no pod of it runs, or the scrape configuration does not select it (the rules expect the
      job label that the chart's scrape configuration, PodMonitors and ServiceMonitors set).
{{- end -}}

{{/* Share of the backend's responses with a 5xx status (what the app's metrics middleware counts). */}}
{{- define "agentforge.alerts.rules.backendErrors" -}}
{{- $root := index . 0 -}}
{{- $r := index . 1 -}}
{{- $backend := include "agentforge.alerts.selector" (list $root "backend") -}}
- alert: AgentForgeBackendHighErrorRate
  expr: |-
    sum by (namespace, job) (rate(http_requests_total{ {{- $backend }}, status=~"5.."}[{{ $r.window }}]))
      / sum by (namespace, job) (rate(http_requests_total{ {{- $backend }}}[{{ $r.window }}]))
      > {{ $r.ratio }}
  for: {{ index $r "for" }}
  labels:
    {{- include "agentforge.alerts.labels" (list $root $r.severity) | nindent 4 }}
  annotations:
    summary: The AgentForge backend answers too many requests with a 5xx status
    description: >-
      {{ "{{ $value | humanizePercentage }}" }} of the backend's responses in namespace {{ "{{ $labels.namespace }}" }}
      had a 5xx status over the last {{ $r.window }} (threshold {{ printf "%.4g" (mulf $r.ratio 100) }}%).
{{- end -}}

{{/*
95th percentile of the backend's response time, from its histogram (buckets 0.01 to 10 s), without the endpoints
that run whole pipelines inside the request.
*/}}
{{- define "agentforge.alerts.rules.backendLatency" -}}
{{- $root := index . 0 -}}
{{- $r := index . 1 -}}
{{- $selector := include "agentforge.alerts.selector" (list $root "backend") -}}
{{- with $r.excludedEndpoints -}}
{{- $patterns := list -}}
{{- range . -}}
{{- $patterns = append $patterns (regexQuoteMeta . | replace "\\" "\\\\") -}}
{{- end -}}
{{- /* A Prometheus Operator sets the target label endpoint (the port's name) and so renames the app's label to
exported_endpoint; a matcher on a label a series lacks sees "", which passes: both hold in either mode. */ -}}
{{- $selector = printf "%s, endpoint!~\"%s\", exported_endpoint!~\"%s\"" $selector (join "|" $patterns) (join "|" $patterns) -}}
{{- end -}}
- alert: AgentForgeBackendHighLatency
  expr: |-
    histogram_quantile(0.95,
      sum by (namespace, job, le) (rate(http_request_duration_seconds_bucket{ {{- $selector }}}[{{ $r.window }}]))
    ) > {{ $r.seconds }}
  for: {{ index $r "for" }}
  labels:
    {{- include "agentforge.alerts.labels" (list $root $r.severity) | nindent 4 }}
  annotations:
    summary: The AgentForge backend answers slowly
    description: >-
      The backend's 95th percentile response time in namespace {{ "{{ $labels.namespace }}" }} was
      {{ "{{ $value | humanizeDuration }}" }} over the last {{ $r.window }} (threshold {{ $r.seconds }}s
      {{- with $r.excludedEndpoints }}; {{ join ", " . }} not counted{{ end }}).
{{- end -}}

{{/* Share of pipeline executions that failed or timed out (the others complete, or partly). */}}
{{- define "agentforge.alerts.rules.pipelineFailures" -}}
{{- $root := index . 0 -}}
{{- $r := index . 1 -}}
{{- $backend := include "agentforge.alerts.selector" (list $root "backend") -}}
- alert: AgentForgePipelineFailures
  expr: |-
    sum by (namespace, job) (rate(pipeline_executions_total{ {{- $backend }}, status=~"failed|timeout"}[{{ $r.window }}]))
      / sum by (namespace, job) (rate(pipeline_executions_total{ {{- $backend }}}[{{ $r.window }}]))
      > {{ $r.ratio }}
  for: {{ index $r "for" }}
  labels:
    {{- include "agentforge.alerts.labels" (list $root $r.severity) | nindent 4 }}
  annotations:
    summary: Many AgentForge pipeline executions fail
    description: >-
      {{ "{{ $value | humanizePercentage }}" }} of the pipeline executions in namespace {{ "{{ $labels.namespace }}" }}
      failed or timed out over the last {{ $r.window }} (threshold {{ printf "%.4g" (mulf $r.ratio 100) }}%).
{{- end -}}

{{/*
The release's LLM spend per day at the rate of the window, against a daily limit. A pod scraped twice (a PodMonitor
and a ServiceMonitor both on) yields two series of the same pod, provider and model: max by pod counts it once.
*/}}
{{- define "agentforge.alerts.rules.llmSpend" -}}
{{- $root := index . 0 -}}
{{- $r := index . 1 -}}
- alert: AgentForgeLLMSpendHigh
  expr: |-
    sum by (namespace, job) (
      max by (namespace, job, pod, provider, model) (rate(llm_cost_dollars_total{ {{- include "agentforge.alerts.selector" (list $root "backend") }}}[{{ $r.window }}]))
    ) * 86400 > {{ $r.dailyLimitDollars }}
  for: {{ index $r "for" }}
  labels:
    {{- include "agentforge.alerts.labels" (list $root $r.severity) | nindent 4 }}
  annotations:
    summary: AgentForge's LLM spend is above its daily limit
    description: >-
      At the rate of the last {{ $r.window }}, the LLM calls of the backend in namespace
      {{ "{{ $labels.namespace }}" }} cost {{ "{{ printf \"%.2f\" $value }}" }} USD a day (limit {{ $r.dailyLimitDollars }} USD).
{{- end -}}

{{/* The rules file of the bundled Prometheus (empty without rules). */}}
{{- define "agentforge.alerts.rulesFile" -}}
{{- with include "agentforge.alerts.groups" . -}}
groups:
  {{- . | nindent 2 }}
{{- end -}}
{{- end -}}

{{/*
Constraints of the alerting values the schema cannot express, as a JSON list of messages (templates/_validate.tpl
reports them with the others).
*/}}
{{- define "agentforge.alerts.errors" -}}
{{- $v := .Values -}}
{{- $a := $v.monitoring.alerts -}}
{{- $errors := list -}}
{{- /* rate() over a window needs two samples in it: a window under two scrape intervals never fires. */ -}}
{{- $intervals := dict -}}
{{- if $v.monitoring.enabled -}}{{- $_ := set $intervals "prometheus.scrapeInterval" $v.prometheus.scrapeInterval -}}{{- end -}}
{{- range $kind := list "podMonitor" "serviceMonitor" -}}
{{- $m := index $v.monitoring $kind -}}
{{- if $m.enabled -}}{{- $_ := set $intervals (printf "monitoring.%s.interval" $kind) $m.interval -}}{{- end -}}
{{- end -}}
{{- if $a.enabled -}}
{{- range $alert := list "backendErrors" "backendLatency" "pipelineFailures" "llmSpend" -}}
{{- $rule := index $a $alert -}}
{{- if $rule.enabled -}}
{{- range $key, $interval := $intervals -}}
{{- if lt (int64 (include "agentforge.durationMs" $rule.window)) (mul 2 (int64 (include "agentforge.durationMs" $interval))) -}}
{{- $errors = append $errors (printf "monitoring.alerts.%s.window (%s) must be at least twice %s (%s): rate() needs two samples in its window, so the alert would never fire" $alert $rule.window $key $interval) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and $v.monitoring.prometheusRule.enabled (not (include "agentforge.alerts.enabled" .)) -}}
{{- $errors = append $errors "monitoring.prometheusRule.enabled is true while no alert is on (monitoring.alerts.enabled is false, or every monitoring.alerts.<alert>.enabled is): the PrometheusRule would hold no rule. Turn an alert on, or set monitoring.prometheusRule.enabled=false" -}}
{{- end -}}
{{- $errors = concat $errors (include "agentforge.prometheus.alertmanagerErrors" . | fromJsonArray) -}}
{{- toJson $errors -}}
{{- end -}}

{{/* The data stores whose exporters run (agentforge.monitoring.targets on port `metrics`): (list $), a YAML list of
{component, up, connections, limit}, the series each alert reads. */}}
{{- define "agentforge.alerts.dataStores" -}}
{{- $series := dict
  "postgresql" (dict "up" "pg_up" "connections" "pg_stat_activity_count" "limit" "pg_settings_max_connections")
  "redis" (dict "up" "redis_up" "connections" "redis_connected_clients" "limit" "redis_config_maxclients") -}}
{{- $stores := list -}}
{{- range include "agentforge.monitoring.targets" (index . 0) | fromYamlArray -}}
{{- if eq .port "metrics" -}}
{{- $stores = append $stores (merge (dict "component" .component) (get $series .component)) -}}
{{- end -}}
{{- end -}}
{{- toYaml $stores -}}
{{- end -}}

{{/* A bundled data store's exporter cannot reach its server (or its pod is not scraped at all). */}}
{{- define "agentforge.alerts.rules.dataStoreDown" -}}
{{- $root := index . 0 -}}
{{- $r := index . 1 -}}
{{- $exprs := list -}}
{{- range include "agentforge.alerts.dataStores" (list $root) | fromYamlArray -}}
{{- $sel := include "agentforge.alerts.selector" (list $root .component) -}}
{{- $exprs = append $exprs (printf "%s{%s} == 0 or absent(%s{%s})" .up $sel .up $sel) -}}
{{- end -}}
{{- with $exprs -}}
- alert: AgentForgeDataStoreDown
  expr: |-
    {{- range $i, $e := . }}
    {{ if $i }}or {{ end }}{{ $e }}
    {{- end }}
  for: {{ index $r "for" }}
  labels:
    {{- include "agentforge.alerts.labels" (list $root $r.severity) | nindent 4 }}
  annotations:
    summary: A bundled AgentForge data store is down
    description: >-
      The {{ "{{ $labels.job }}" }} exporter in namespace {{ "{{ $labels.namespace }}" }} has not reached its server (or
      has not been scraped) for {{ index $r "for" }}: the backend cannot serve without PostgreSQL, and runs with its
      Redis-backed guards off without Redis.
{{- end }}
{{- end -}}

{{/* A bundled data store's connections near its limit (PostgreSQL's max_connections, Redis' maxclients). */}}
{{- define "agentforge.alerts.rules.dataStoreConnections" -}}
{{- $root := index . 0 -}}
{{- $r := index . 1 -}}
{{- $exprs := list -}}
{{- range include "agentforge.alerts.dataStores" (list $root) | fromYamlArray -}}
{{- $sel := include "agentforge.alerts.selector" (list $root .component) -}}
{{- $exprs = append $exprs (printf "sum by (namespace, job, pod) (%s{%s}) / max by (namespace, job, pod) (%s{%s}) > %v" .connections $sel .limit $sel $r.ratio) -}}
{{- end -}}
{{- with $exprs -}}
- alert: AgentForgeDataStoreConnectionsNearLimit
  expr: |-
    {{- range $i, $e := . }}
    {{ if $i }}or {{ end }}{{ $e }}
    {{- end }}
  for: {{ index $r "for" }}
  labels:
    {{- include "agentforge.alerts.labels" (list $root $r.severity) | nindent 4 }}
  annotations:
    summary: A bundled AgentForge data store is near its connection limit
    description: >-
      {{ "{{ $labels.job }}" }} in namespace {{ "{{ $labels.namespace }}" }} holds {{ "{{ $value | humanizePercentage }}" }}
      of its connection limit (threshold {{ printf "%.4g" (mulf $r.ratio 100) }}%): new connections will soon be
      refused. For PostgreSQL, raise postgresql.config.max_connections or lower the backend's pool or pod count.
{{- end }}
{{- end -}}
