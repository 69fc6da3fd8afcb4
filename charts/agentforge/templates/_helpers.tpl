{{/*
Helpers: one per fact. Component helpers take (list $ "component") where "component" is the
kebab-case component name used in object names and labels (backend, data-collector, ...).
*/}}

{{- define "agentforge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix of every object name: the release name, plus the chart name unless the release already holds it. */}}
{{- define "agentforge.fullname" -}}
{{- if not (hasKey .Values "_validated") -}}
{{- $_ := set .Values "_validated" true -}}
{{- include "agentforge.validateValues" . -}}
{{- end -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "agentforge.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Name of a component's objects: <prefix>-<component>, at most 52 characters, the tightest rule of any kind the chart
renders (a StatefulSet's pods carry the label controller-revision-hash=<name>-<10 characters>, at most 63). The
prefix is the fullname when it has at most 33 characters (33 + 1 + 18, the longest component, "grafana-dashboards",
is 52); a longer one is cut to 24 characters followed by 8 of its hash, so that two long fullnames sharing a
prefix still differ. Every object of a release shares the prefix.
*/}}
{{- define "agentforge.componentName" -}}
{{- $fullname := include "agentforge.fullname" (index . 0) -}}
{{- if gt (len $fullname) 33 -}}
{{- $fullname = printf "%s-%s" ($fullname | trunc 24 | trimSuffix "-") ($fullname | sha256sum | trunc 8) -}}
{{- end -}}
{{- printf "%s-%s" $fullname (index . 1) -}}
{{- end -}}

{{/* Labels that select a component's pods. */}}
{{- define "agentforge.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "agentforge.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Labels of every object of a component. */}}
{{- define "agentforge.labels" -}}
{{- $root := index . 0 -}}
{{ include "agentforge.selectorLabels" . }}
app.kubernetes.io/part-of: agentforge
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" $root.Chart.Name $root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- with $root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Annotations: (list PRESET USER), the chart's, then the user's set over them key by key (an empty value of the user's
wins too), as YAML.
*/}}
{{- define "agentforge.annotations" -}}
{{- $out := deepCopy (index . 0 | default dict) -}}
{{- range $key, $value := index . 1 | default dict -}}
{{- $_ := set $out $key $value -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* The annotations block of an object's metadata: commonAnnotations, then the object's own, which win key by key:
(list $ DICT). Nothing when both are empty. */}}
{{- define "agentforge.metadataAnnotations" -}}
{{- with include "agentforge.annotations" (list (index . 0).Values.commonAnnotations (index . 1)) | fromYaml }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Namespace of every namespaced object: namespaceOverride, else the release's. */}}
{{- define "agentforge.namespace" -}}
{{- .Values.namespaceOverride | default .Release.Namespace -}}
{{- end -}}

{{/* Container port of each component: a fact of its image. */}}
{{- define "agentforge.port" -}}
{{- $ports := dict "frontend" 3000 "backend" 8000 "data-collector" 8001 "postgresql" 5432 "redis" 6379 "prometheus" 9090 "grafana" 3000 "postgresql-metrics" 9187 "redis-metrics" 9121 -}}
{{- required (printf "no port is known for component %q" .) (get $ports .) -}}
{{- end -}}

{{/* Fully qualified in-cluster hostname of a component's Service. */}}
{{- define "agentforge.host" -}}
{{- $root := index . 0 -}}
{{- printf "%s.%s.svc.%s" (include "agentforge.componentName" .) (include "agentforge.namespace" $root) $root.Values.global.clusterDomain -}}
{{- end -}}

{{/* The public origins the frontend image was built with (frontend.publicUrls): the API's defaults to the first CORS
origin (the edge serves the frontend and the API on one origin), the WebSocket's to the API's with ws(s)://. */}}
{{- define "agentforge.frontendPublicUrls" -}}
{{- $api := .Values.frontend.publicUrls.api | default (first .Values.config.corsOrigins) | default "" -}}
{{- $ws := .Values.frontend.publicUrls.ws | default (regexReplaceAll "^http" $api "ws") -}}
{{- dict "api" $api "ws" $ws | toYaml -}}
{{- end -}}

{{/* Image reference: (list $ .Values.<component>.image). The tag defaults to the chart's appVersion; a digest wins. */}}
{{- define "agentforge.image" -}}
{{- $root := index . 0 -}}
{{- $image := index . 1 -}}
{{- $registry := default $root.Values.global.imageRegistry $image.registry -}}
{{- $ref := ternary (printf "%s/%s" $registry $image.repository) $image.repository (ne $registry "") -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $ref $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $ref (default $root.Chart.AppVersion $image.tag | toString) -}}
{{- end -}}
{{- end -}}

{{/* Name of the ServiceAccount of a component: (list $ "component" .Values.<component>.serviceAccount). */}}
{{- define "agentforge.serviceAccountName" -}}
{{- $sa := index . 2 -}}
{{- if $sa.create -}}
{{- default (include "agentforge.componentName" (list (index . 0) (index . 1))) $sa.name -}}
{{- else -}}
{{- default "default" $sa.name -}}
{{- end -}}
{{- end -}}

{{/*
ServiceAccount of a component: (list $ "component" .Values.<component>.serviceAccount). Tokens are never
automounted through the account; the one pod that calls the API (Prometheus) asks for its token itself.
*/}}
{{- define "agentforge.serviceAccount" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
{{- $sa := index . 2 -}}
{{- if $sa.create -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "agentforge.serviceAccountName" . }}
  namespace: {{ include "agentforge.namespace" $root }}
  labels:
    {{- include "agentforge.labels" (list $root $component) | nindent 4 }}
  {{- with include "agentforge.metadataAnnotations" (list $root $sa.annotations) }}
  {{- . | nindent 2 }}
  {{- end }}
automountServiceAccountToken: false
{{- end }}
{{- end -}}

{{/*
Service of a component: (list $ "component" PORT-NAME HEADLESS .Values.<component>.service [METRICS]), with METRICS
true also the port `metrics` (agentforge.port "<component>-metrics") of its exporter. The port is the
component's own (agentforge.port); headless Services govern the StatefulSets, whose names resolve to their pods, and
stay ClusterIP. The type's own fields (nodePort, loadBalancer*, externalTrafficPolicy) are rendered only for the type
that reads them; agentforge.validateValues refuses them with any other.
*/}}
{{- define "agentforge.service" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
{{- $portName := index . 2 -}}
{{- $service := index . 4 | default dict -}}
{{- $type := $service.type | default "ClusterIP" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "agentforge.componentName" (list $root $component) }}
  namespace: {{ include "agentforge.namespace" $root }}
  labels:
    {{- include "agentforge.labels" (list $root $component) | nindent 4 }}
  {{- with include "agentforge.metadataAnnotations" (list $root $service.annotations) }}
  {{- . | nindent 2 }}
  {{- end }}
spec:
  type: {{ $type }}
  {{- if index . 3 }}
  clusterIP: None
  {{- end }}
  {{- if eq $type "LoadBalancer" }}
  {{- with $service.loadBalancerIP }}
  loadBalancerIP: {{ . | quote }}
  {{- end }}
  {{- with $service.loadBalancerSourceRanges }}
  loadBalancerSourceRanges:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- end }}
  {{- if and (ne $type "ClusterIP") $service.externalTrafficPolicy }}
  externalTrafficPolicy: {{ $service.externalTrafficPolicy }}
  {{- end }}
  {{- with $service.sessionAffinity }}
  sessionAffinity: {{ . }}
  {{- end }}
  {{- if eq $service.sessionAffinity "ClientIP" }}
  {{- with $service.sessionAffinityConfig }}
  sessionAffinityConfig:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- end }}
  selector:
    {{- include "agentforge.selectorLabels" (list $root $component) | nindent 4 }}
  ports:
    - name: {{ $portName }}
      port: {{ include "agentforge.port" $component }}
      targetPort: {{ $portName }}
      protocol: TCP
      {{- if and (ne $type "ClusterIP") $service.nodePort }}
      nodePort: {{ $service.nodePort }}
      {{- end }}
    {{- if and (gt (len .) 5) (index . 5) }}
    - name: metrics
      port: {{ include "agentforge.port" (printf "%s-metrics" $component) }}
      targetPort: metrics
      protocol: TCP
    {{- end }}
{{- end -}}

{{/* Spec of a data claim: (list $ .Values.<component>.persistence). Its storageClass, else global.storageClass. */}}
{{- define "agentforge.claimSpec" -}}
{{- $persistence := index . 1 -}}
{{- $class := $persistence.storageClass | default (index . 0).Values.global.storageClass -}}
accessModes:
  {{- toYaml $persistence.accessModes | nindent 2 }}
{{- /* Empty: leave the field out so the cluster's default class applies; "-": no class at all. */}}
{{- if eq $class "-" }}
storageClassName: ""
{{- else if $class }}
storageClassName: {{ $class | quote }}
{{- end }}
resources:
  requests:
    storage: {{ $persistence.size | quote }}
{{- end -}}

{{/* Checksum of a Secret the pods read: of its rendered template, or of the existing Secret's name. (list $ EXISTING TEMPLATE) */}}
{{- define "agentforge.secretChecksum" -}}
{{- $root := index . 0 -}}
{{- if index . 1 -}}
{{- index . 1 | sha256sum -}}
{{- else -}}
{{- include (print $root.Template.BasePath (index . 2)) $root | sha256sum -}}
{{- end -}}
{{- end -}}

{{/* Environment every Python container (backend, collector, migrations) needs: (.Values.<component>.server). */}}
{{- define "agentforge.pythonEnv" -}}
- name: PYTHONPATH
  value: {{ .pythonPath | quote }}
# The root filesystem is read-only: no bytecode cache.
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
{{- end -}}

{{/* Secret that holds the application's secret settings: the generated one, secrets.existingSecret, or the
ExternalSecret's (agentforge.providedAppSecret, templates/external-secrets/). */}}
{{- define "agentforge.secretName" -}}
{{- default (include "agentforge.componentName" (list . "secrets")) (include "agentforge.providedAppSecret" .) -}}
{{- end -}}

{{/* ConfigMap that holds the application's non-secret settings. */}}
{{- define "agentforge.configMapName" -}}
{{- include "agentforge.componentName" (list . "config") -}}
{{- end -}}

{{/*
A secret value: the value given in values, else the one in the live Secret (so upgrades never
regenerate it), else the generated one. (dict "root" $ "secret" NAME "key" KEY "value" GIVEN "generated" NEW)
With "immutable" REASON and "path" VALUES-KEY, a given value that differs from the live one is refused:
the data already written depends on the live one.
A generated value is remembered for the rest of the render, so the Secret and the checksum
annotations computed from it (which render the Secret again) see the same value.
*/}}
{{- define "agentforge.secretValue" -}}
{{- $live := lookup "v1" "Secret" (include "agentforge.namespace" .root) .secret -}}
{{- $liveValue := dig "data" .key "" ($live | default dict) -}}
{{- if .value -}}
{{- if and .immutable $liveValue (ne .value ($liveValue | b64dec)) -}}
{{- fail (printf "%s differs from the value already in Secret %q (key %s), which the existing data depends on: %s. Leave %s empty to keep the current value." .path .secret .key .immutable .path) -}}
{{- end -}}
{{- .value -}}
{{- else if $liveValue -}}
{{- $liveValue | b64dec -}}
{{- else -}}
{{- if not (hasKey .root.Values "_generatedSecrets") -}}
{{- $_ := set .root.Values "_generatedSecrets" dict -}}
{{- end -}}
{{- $generated := index .root.Values "_generatedSecrets" -}}
{{- $id := printf "%s/%s" .secret .key -}}
{{- if not (hasKey $generated $id) -}}
{{- $_ := set $generated $id .generated -}}
{{- end -}}
{{- index $generated $id -}}
{{- end -}}
{{- end -}}

{{/*
Password of an external service: the value given, else the key of its existing Secret, read from
the cluster. (list $ .Values.externalDatabase "externalDatabase")
*/}}
{{- define "agentforge.externalPassword" -}}
{{- $root := index . 0 -}}
{{- $ext := index . 1 -}}
{{- $path := index . 2 -}}
{{- if $ext.existingSecret -}}
{{- $secret := lookup "v1" "Secret" (include "agentforge.namespace" $root) $ext.existingSecret | default dict -}}
{{- $value := dig "data" $ext.existingSecretPasswordKey "" $secret -}}
{{- if not $value -}}
{{- fail (printf "%s.existingSecret: Secret %q with key %q was not found in namespace %q. Create it before installing, set %s.password instead, or keep the whole URL in that Secret and set %s.existingSecretUrlKey: the pods then read it themselves, so `helm template` and GitOps tools, which cannot read the cluster, render it." $path $ext.existingSecret $ext.existingSecretPasswordKey (include "agentforge.namespace" $root) $path $path) -}}
{{- end -}}
{{- $value | b64dec -}}
{{- else -}}
{{- $ext.password -}}
{{- end -}}
{{- end -}}

{{/* Percent-encode a URL component (userinfo): urlquery encodes a space as "+", which userinfo reads literally. */}}
{{- define "agentforge.urlEncode" -}}
{{- urlquery . | replace "+" "%20" -}}
{{- end -}}

{{/* Host and port of the database the application uses, bundled or external, as YAML. */}}
{{- define "agentforge.database" -}}
{{- if .Values.postgresql.enabled -}}
host: {{ include "agentforge.host" (list . "postgresql") }}
port: {{ include "agentforge.port" "postgresql" }}
database: {{ .Values.postgresql.auth.database }}
{{- else -}}
host: {{ required "externalDatabase.host is required when postgresql.enabled is false" .Values.externalDatabase.host }}
port: {{ .Values.externalDatabase.port }}
database: {{ .Values.externalDatabase.database }}
{{- end -}}
{{- end -}}

{{/* Host and port of the Redis the application uses, bundled or external, as YAML. */}}
{{- define "agentforge.redis" -}}
{{- if .Values.redis.enabled -}}
host: {{ include "agentforge.host" (list . "redis") }}
port: {{ include "agentforge.port" "redis" }}
database: 0
{{- else -}}
host: {{ required "externalRedis.host is required when redis.enabled is false" .Values.externalRedis.host }}
port: {{ .Values.externalRedis.port }}
database: {{ .Values.externalRedis.database }}
{{- end -}}
{{- end -}}

{{/* Pull secrets of a pod: (list $ IMAGES), global.imagePullSecrets, then each of the pod's images' own
`pullSecrets`, each name once. */}}
{{- define "agentforge.imagePullSecrets" -}}
{{- $secrets := (index . 0).Values.global.imagePullSecrets | default list -}}
{{- range index . 1 -}}
{{- $secrets = concat $secrets (.pullSecrets | default list) -}}
{{- end -}}
{{- $names := list -}}
{{- range $secrets -}}
{{- if kindIs "map" . -}}
{{- $names = append $names .name -}}
{{- else -}}
{{- $names = append $names . -}}
{{- end -}}
{{- end -}}
{{- with $names | uniq }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
Pod-level settings shared by every component: (list $ "component" .Values.<component> IMAGES), IMAGES the image values
of every container the pod runs. Renders the token mount, imagePullSecrets, DNS, runtime, securityContext and
scheduling fields at the pod spec's indentation.
*/}}
{{- define "agentforge.podSettings" -}}
{{- $root := index . 0 -}}
{{- $values := index . 2 -}}
automountServiceAccountToken: {{ $values.automountServiceAccountToken }}
{{- /* Service environment variables would leak every Service of the namespace into each container. */}}
enableServiceLinks: false
{{- include "agentforge.imagePullSecrets" (list $root (index . 3)) }}
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
  - {{ toYaml (merge (deepCopy .) (dict "labelSelector" (dict "matchLabels" (include "agentforge.selectorLabels" (list $root (index $ 1)) | fromYaml)))) | nindent 4 | trim }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Pod template metadata of a component: (list $ "component" .Values.<component> EXTRA-ANNOTATIONS-DICT). */}}
{{- define "agentforge.podMetadata" -}}
{{- $root := index . 0 -}}
{{- $values := index . 2 -}}
{{- /* The chart's own annotations (checksums) win over podAnnotations of the same key: pods must roll. */ -}}
{{- $annotations := merge (dict) (index . 3) ($values.podAnnotations | default dict) -}}
labels:
  {{- include "agentforge.labels" (list $root (index . 1)) | nindent 2 }}
  {{- with $values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* checksum/config and checksum/secret annotations, so pods roll when their settings change. */}}
{{- define "agentforge.configChecksums" -}}
{{- dict "checksum/config" (include (print .Template.BasePath "/app/configmap.yaml") . | sha256sum) "checksum/secret" (include "agentforge.secretChecksum" (list . (include "agentforge.providedAppSecret" .) "/app/secret.yaml")) | toYaml -}}
{{- end -}}

{{/*
Variables from keys of the app Secret, each under its key's name: (list $ KEY...). Each container gets only the
keys its code reads, not the whole Secret.
*/}}
{{- define "agentforge.secretEnv" -}}
{{- $secret := include "agentforge.secretName" (index . 0) -}}
{{- $env := list -}}
{{- range (rest .) -}}
{{- /* DATABASE_URL and REDIS_URL may come whole from the user's Secret (agentforge.externalUrlRef). */ -}}
{{- $ref := include "agentforge.externalUrlRef" (list (index $ 0) .) | fromYaml | default (dict "name" $secret "key" .) -}}
{{- $env = append $env (dict "name" . "valueFrom" (dict "secretKeyRef" $ref)) -}}
{{- end -}}
{{- toYaml $env -}}
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

{{/*
A value of the values rendered with tpl, so that it may name the release ({{ .Release.Name }},
{{ include "agentforge.fullname" . }}): (list $ VALUE). A string is rendered as it is, anything else as its YAML.
Every extra* value goes through it (extraEnv, extraEnvFrom, extraVolumes, extraVolumeMounts, extraContainers,
extraInitContainers, extraObjects). Text without "{{" is used as it is: tpl would copy every template of the chart
to render it.
*/}}
{{- define "agentforge.tpl" -}}
{{- $value := index . 1 -}}
{{- $text := ternary $value (toYaml $value) (kindIs "string" $value) -}}
{{- if contains "{{" $text -}}
{{- tpl $text (index . 0) -}}
{{- else -}}
{{- $text -}}
{{- end -}}
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
Extra containers of a pod, as a YAML list (empty when there are none): (dict "root" $ "path" "backend.extraContainers"
"containers" LIST "securityContext" .Values.<component>.containerSecurityContext "portName" PORT-NAME "module"
ASGI-MODULE). Each is rendered with tpl and gets the component's containerSecurityContext under its own
securityContext. Refused, naming the container: one that breaks Pod Security "restricted"; one that declares a port
named like the component's (the Service's targetPort, and the port Prometheus and the PodMonitors scrape by name); one
whose command runs the component's own ASGI module (a second server process would split the state the one worker
keeps in memory: WebSocket sessions, collections).
*/}}
{{- define "agentforge.extraContainers" -}}
{{- $root := .root -}}
{{- $out := list -}}
{{- range $i, $item := .containers -}}
{{- $where := printf "%s[%d]" $.path $i -}}
{{- $c := include "agentforge.tpl" (list $root $item) | fromYaml -}}
{{- if hasKey $c "Error" -}}
{{- fail (printf "%s does not render to a container: %s" $where $c.Error) -}}
{{- end -}}
{{- $where = printf "%s (%q)" $where (toString $c.name) -}}
{{- $ctx := mergeOverwrite (deepCopy ($.securityContext | default dict)) ($c.securityContext | default dict) -}}
{{- $caps := $ctx.capabilities | default dict -}}
{{- $problems := list -}}
{{- if $ctx.privileged -}}
{{- $problems = append $problems "securityContext.privileged is true" -}}
{{- end -}}
{{- if ne (toString $ctx.allowPrivilegeEscalation) "false" -}}
{{- $problems = append $problems "securityContext.allowPrivilegeEscalation is not false" -}}
{{- end -}}
{{- if not (has "ALL" ($caps.drop | default list)) -}}
{{- $problems = append $problems "securityContext.capabilities.drop lacks ALL" -}}
{{- end -}}
{{- with without ($caps.add | default list) "NET_BIND_SERVICE" -}}
{{- $problems = append $problems (printf "securityContext.capabilities.add holds %s (only NET_BIND_SERVICE is allowed)" (join ", " .)) -}}
{{- end -}}
{{- if eq (toString $ctx.runAsNonRoot) "false" -}}
{{- $problems = append $problems "securityContext.runAsNonRoot is false" -}}
{{- end -}}
{{- if eq (toString $ctx.runAsUser) "0" -}}
{{- $problems = append $problems "securityContext.runAsUser is 0 (root)" -}}
{{- end -}}
{{- range $profile := list "seccompProfile" "appArmorProfile" -}}
{{- if eq (dig $profile "type" "" $ctx) "Unconfined" -}}
{{- $problems = append $problems (printf "securityContext.%s.type is Unconfined" $profile) -}}
{{- end -}}
{{- end -}}
{{- if and $ctx.procMount (ne (toString $ctx.procMount) "Default") -}}
{{- $problems = append $problems "securityContext.procMount is not Default" -}}
{{- end -}}
{{- range $c.ports -}}
{{- if .hostPort -}}
{{- $problems = append $problems (printf "port %v sets hostPort" .containerPort) -}}
{{- end -}}
{{- end -}}
{{- with $problems -}}
{{- fail (printf "%s breaks Pod Security \"restricted\": %s. Extra containers get the component's containerSecurityContext under their own securityContext: leave out what breaks it" $where (join "; " .)) -}}
{{- end -}}
{{- range $c.ports -}}
{{- if and $.portName (eq (toString .name) $.portName) -}}
{{- fail (printf "%s declares a port named %q, the name of the component's own port: its Service, probes and metrics scraping address that port by name. Name it otherwise" $where .name) -}}
{{- end -}}
{{- end -}}
{{- $module := splitList ":" ($.module | default "") | first -}}
{{- if and $module (contains $module (join " " (concat ($c.command | default list) ($c.args | default list)))) -}}
{{- fail (printf "%s runs %s, the component's own application (server.module %q): the pod runs exactly one server process, in its own container, which holds the in-memory state (WebSocket sessions, collections); a second one would split it" $where $module $.module) -}}
{{- end -}}
{{- $out = append $out (set $c "securityContext" $ctx) -}}
{{- end -}}
{{- with $out -}}
{{- toYaml . -}}
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

{{/*
HorizontalPodAutoscaler of a component's Deployment, on CPU: (list $ "component" .Values.<component>.autoscaling).
Refuses minReplicas above maxReplicas.
*/}}
{{- define "agentforge.hpa" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
{{- $autoscaling := index . 2 -}}
{{- $path := printf "%s.autoscaling" ($component | replace "-" "_" | camelcase | untitle) -}}
{{- if $autoscaling.enabled -}}
{{- if gt ($autoscaling.minReplicas | int) ($autoscaling.maxReplicas | int) -}}
{{- fail (printf "%s.minReplicas (%d) must not exceed %s.maxReplicas (%d)" $path ($autoscaling.minReplicas | int) $path ($autoscaling.maxReplicas | int)) -}}
{{- end -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "agentforge.componentName" (list $root $component) }}
  namespace: {{ include "agentforge.namespace" $root }}
  labels:
    {{- include "agentforge.labels" (list $root $component) | nindent 4 }}
  {{- with include "agentforge.metadataAnnotations" (list $root (dict)) }}
  {{- . | nindent 2 }}
  {{- end }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "agentforge.componentName" (list $root $component) }}
  minReplicas: {{ $autoscaling.minReplicas }}
  maxReplicas: {{ $autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $autoscaling.targetCPUUtilizationPercentage }}
  {{- with $autoscaling.behavior }}
  behavior:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end -}}

{{/*
PodDisruptionBudget of a component: (list $ "component" .Values.<component>.pdb REPLICAS), with minAvailable or
maxUnavailable, whichever is set (agentforge.validateValues refuses both, and neither).
Refuses a minAvailable at or above the replica count, and a maxUnavailable of 0: such a budget blocks every node drain.
*/}}
{{- define "agentforge.pdb" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
{{- $pdb := index . 2 -}}
{{- $replicas := index . 3 | int -}}
{{- $path := printf "%s.pdb" ($component | replace "-" "_" | camelcase | untitle) -}}
{{- if $pdb.enabled }}
{{- if and (not (kindIs "string" $pdb.minAvailable)) (ge ($pdb.minAvailable | int) $replicas) }}
{{- fail (printf "%s.pdb.minAvailable (%d) must be below the %s replica count (%d): a budget that no eviction can satisfy blocks every node drain" ($component | replace "-" "_" | camelcase | untitle) ($pdb.minAvailable | int) $component $replicas) }}
{{- end }}
{{- if has (toString $pdb.maxUnavailable) (list "0" "0%") }}
{{- fail (printf "%s.maxUnavailable (%v) must be at least 1 (or 1%%): a budget that allows no eviction blocks every node drain" $path $pdb.maxUnavailable) }}
{{- end }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "agentforge.componentName" (list $root $component) }}
  namespace: {{ include "agentforge.namespace" $root }}
  labels:
    {{- include "agentforge.labels" (list $root $component) | nindent 4 }}
  {{- with include "agentforge.metadataAnnotations" (list $root (dict)) }}
  {{- . | nindent 2 }}
  {{- end }}
spec:
  {{- if kindIs "invalid" $pdb.maxUnavailable }}
  minAvailable: {{ $pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ $pdb.maxUnavailable }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "agentforge.selectorLabels" (list $root $component) | nindent 6 }}
{{- end }}
{{- end -}}
