{{/*
Names of the release's objects. Component helpers take (list $ "component") where "component" is the kebab-case
component name used in object names and labels (backend, data-collector, ...).
*/}}

{{- define "agentforge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix of every object name: the release name, plus the chart name unless the release already holds it. */}}
{{- define "agentforge.fullname" -}}
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

{{/* Namespace of every namespaced object: namespaceOverride, else the release's. */}}
{{- define "agentforge.namespace" -}}
{{- .Values.namespaceOverride | default .Release.Namespace -}}
{{- end -}}

{{/* Name of the ServiceAccount of a component: (dict "root" $ "component" "component" "serviceAccount"
.Values.<component>.serviceAccount). */}}
{{- define "agentforge.serviceAccountName" -}}
{{- $sa := .serviceAccount -}}
{{- if $sa.create -}}
{{- default (include "agentforge.componentName" (list .root .component)) $sa.name -}}
{{- else -}}
{{- default "default" $sa.name -}}
{{- end -}}
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
