{{/*
Fragments of a pod template shared by the components: pod metadata and pod-level settings, and the settings of
a main container (security context, resources, probes, lifecycle, Python environment), and a Deployment's strategy.
*/}}

{{/* Pod template metadata of a component: (dict "root" $ "component" "component" "values" .Values.<component>
"annotations" EXTRA-ANNOTATIONS-DICT). */}}
{{- define "agentforge.podMetadata" -}}
{{- $root := .root -}}
{{- $values := .values -}}
{{- /* The chart's own annotations (checksums) win over podAnnotations of the same key: pods must roll. */ -}}
{{- $annotations := merge (dict) .annotations ($values.podAnnotations | default dict) -}}
labels:
  {{- include "agentforge.labels" (list $root .component) | nindent 2 }}
  {{- with $values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
Pod-level settings shared by every component: (dict "root" $ "component" "component" "values" .Values.<component> "images"
IMAGES), IMAGES the image values
of every container the pod runs. Renders the token mount, imagePullSecrets, DNS, runtime, securityContext and
scheduling fields at the pod spec's indentation.
*/}}
{{- define "agentforge.podSettings" -}}
{{- $root := .root -}}
{{- $values := .values -}}
automountServiceAccountToken: {{ $values.automountServiceAccountToken }}
{{- /* Service environment variables would leak every Service of the namespace into each container. */}}
enableServiceLinks: false
{{- include "agentforge.imagePullSecrets" (list $root .images) }}
{{- with $values.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- with $values.runtimeClassName }}
runtimeClassName: {{ . | quote }}
{{- end }}
{{- with $values.schedulerName }}
schedulerName: {{ . | quote }}
{{- end }}
{{- with $values.dnsPolicy }}
dnsPolicy: {{ . }}
{{- end }}
{{- with $values.dnsConfig }}
dnsConfig:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.hostAliases }}
hostAliases:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.topologySpreadConstraints }}
topologySpreadConstraints:
{{- range . }}
  - {{ toYaml (merge (deepCopy .) (dict "labelSelector" (dict "matchLabels" (include "agentforge.selectorLabels" (list $root $.component) | fromYaml)))) | nindent 4 | trim }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Container security context and resources: (.Values.<component>). */}}
{{- define "agentforge.containerSettings" -}}
{{- with .containerSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .resources }}
resources:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Environment every Python container (backend, collector, migrations) needs: (.Values.<component>.server). */}}
{{- define "agentforge.pythonEnv" -}}
- name: PYTHONPATH
  value: {{ .pythonPath | quote }}
# The root filesystem is read-only: no bytecode cache.
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
{{- end -}}

{{/*
Probes of a component's main container: (list .Values.<component> (dict "startupProbe" HANDLER "readinessProbe"
HANDLER "livenessProbe" HANDLER)). HANDLER is the chart's check (httpGet, exec, ...), a fact of the image; the
settings (periodSeconds, timeoutSeconds, ...) are the values' <probe> keys, whose defaults in values.yaml are the
chart's, so what a user sets is merged over them. A handler in the values replaces the chart's (a probe has one).
*/}}
{{- define "agentforge.probes" -}}
{{- $values := index . 0 -}}
{{- $probes := dict -}}
{{- range $name, $handler := index . 1 -}}
{{- $probe := deepCopy (get $values $name | default dict) -}}
{{- $own := false -}}
{{- range $field := list "httpGet" "exec" "tcpSocket" "grpc" -}}
{{- if hasKey $probe $field -}}
{{- $own = true -}}
{{- end -}}
{{- end -}}
{{- if not $own -}}
{{- $probe = merge $probe $handler -}}
{{- end -}}
{{- $_ := set $probes $name $probe -}}
{{- end -}}
{{- toYaml $probes -}}
{{- end -}}

{{/*
The `lifecycle` of a component's main container: (list .Values.<component> DEFAULT), DEFAULT a Lifecycle dict or
"preStopSleep": the default of an HTTP server, a preStop sleep of its preStopSleepSeconds (none at 0), so that
endpoints and proxies drop the pod before its server gets SIGTERM and stops accepting (the kubelet's own sleep
action: the image needs no `sleep` binary). The component's `lifecycleHooks`, when set, replace the default; an
empty result renders nothing.
*/}}
{{- define "agentforge.lifecycle" -}}
{{- $values := index . 0 -}}
{{- $default := index . 1 -}}
{{- if eq (toString $default) "preStopSleep" -}}
{{- $default = dict -}}
{{- with int $values.preStopSleepSeconds -}}
{{- $default = dict "preStop" (dict "sleep" (dict "seconds" .)) -}}
{{- end -}}
{{- end -}}
{{- with $values.lifecycleHooks | default $default -}}
lifecycle:
  {{- toYaml . | nindent 2 }}
{{- end -}}
{{- end -}}

{{/* The seconds a component's preStop sleeps ($values): its lifecycleHooks' sleep when set, else preStopSleepSeconds. */}}
{{- define "agentforge.preStopSleepSeconds" -}}
{{- $hooks := .lifecycleHooks | default dict -}}
{{- if $hooks -}}
{{- ((($hooks.preStop | default dict).sleep | default dict).seconds | default 0) | int -}}
{{- else -}}
{{- .preStopSleepSeconds | int -}}
{{- end -}}
{{- end -}}

{{/* Update strategy of a Deployment: (.Values.<component>.strategy); rollingUpdate only with type RollingUpdate. */}}
{{- define "agentforge.strategy" -}}
strategy:
  type: {{ .type }}
  {{- if and (eq .type "RollingUpdate") .rollingUpdate }}
  rollingUpdate:
    {{- toYaml .rollingUpdate | nindent 4 }}
  {{- end }}
{{- end -}}
