{{/*
The component registry: files/components.yaml, one entry per component with a workload of its own (values key,
object-name suffix, workload kind, port, and what the chart's loops over components need to know). Every list of
components the templates go through comes from it.
*/}}

{{/* The registry as YAML, {components: [...]}: (include "agentforge.components" $ | fromYaml).components. */}}
{{- define "agentforge.components" -}}
{{- .Files.Get "files/components.yaml" -}}
{{- end -}}

{{/*
The components whose registry entry has a field true (or set): (list $ FIELD), as a JSON list of entries in the
registry's order; with FIELD "" every component.
*/}}
{{- define "agentforge.componentsWith" -}}
{{- $field := index . 1 -}}
{{- $out := list -}}
{{- range (include "agentforge.components" (index . 0) | fromYaml).components -}}
{{- if or (not $field) (index . $field) -}}
{{- $out = append $out . -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* One component's registry entry by its values key or its name: (list $ KEY-OR-NAME), as JSON. */}}
{{- define "agentforge.component" -}}
{{- $key := index . 1 -}}
{{- range (include "agentforge.components" (index . 0) | fromYaml).components -}}
{{- if or (eq .key $key) (eq .name $key) -}}
{{- toJson . -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "true" when a component renders: every value of its registry entry's enabledBy is true. (list $ ENTRY) */}}
{{- define "agentforge.componentEnabled" -}}
{{- $root := index . 0 -}}
{{- $enabled := true -}}
{{- range (index . 1).enabledBy -}}
{{- $value := $root.Values -}}
{{- range splitList "." . -}}
{{- $value = index $value . -}}
{{- end -}}
{{- if not $value -}}
{{- $enabled = false -}}
{{- end -}}
{{- end -}}
{{- if $enabled -}}true{{- end -}}
{{- end -}}
