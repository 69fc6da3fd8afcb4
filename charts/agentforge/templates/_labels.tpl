{{/*
Labels and annotations of the release's objects.
*/}}

{{/* Labels that select a component's pods. Quoted: a release or name such as `y` or `n` is a boolean to YAML 1.1,
which the API machinery reads. */}}
{{- define "agentforge.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "agentforge.name" $root | quote }}
app.kubernetes.io/instance: {{ $root.Release.Name | quote }}
app.kubernetes.io/component: {{ index . 1 | quote }}
{{- end -}}

{{/* Labels of every object of a component. */}}
{{- define "agentforge.labels" -}}
{{- $root := index . 0 -}}
{{ include "agentforge.selectorLabels" . }}
app.kubernetes.io/part-of: agentforge
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service | quote }}
helm.sh/chart: {{ printf "%s-%s" $root.Chart.Name $root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" | quote }}
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

{{/*
The metadata of an object of the release, at indentation 0 (`metadata:` then this, `| nindent 2`): its name, namespace,
labels and annotations. (dict "root" $ "suffix" SUFFIX "component" LABEL "annotations" DICT), the name
<prefix>-SUFFIX (agentforge.componentName), or "name" NAME for a name of its own; LABEL the component label; DICT the
object's own annotations, over commonAnnotations.
*/}}
{{- define "agentforge.metadata" -}}
{{- if .name -}}
name: {{ .name }}
{{- else -}}
name: {{ include "agentforge.componentName" (list .root .suffix) }}
{{- end }}
namespace: {{ include "agentforge.namespace" .root }}
labels:
  {{- include "agentforge.labels" (list .root .component) | nindent 2 }}
{{- with include "agentforge.metadataAnnotations" (list .root (.annotations | default dict)) }}
{{- . | nindent 0 }}
{{- end }}
{{- end -}}
