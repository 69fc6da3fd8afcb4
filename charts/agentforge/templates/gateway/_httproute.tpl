{{/*
An HTTPRoute of the chart: (dict "root" $ "component" "component" "rules" RULES). Routes attach to the Gateway named in httpRoute.parentRef;
its listener must admit routes from the release's namespace.
*/}}
{{- define "agentforge.httpRoute" -}}
{{- $root := .root -}}
{{- $component := .component -}}
{{- $route := $root.Values.httpRoute -}}
{{- $parent := $route.parentRef -}}
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  {{- include "agentforge.metadata" (dict "root" $root "suffix" $component "component" $component "annotations" $route.annotations) | nindent 2 }}
spec:
  parentRefs:
    - name: {{ $parent.name | quote }}
      {{- with $parent.namespace }}
      namespace: {{ . }}
      {{- end }}
      {{- with $parent.sectionName }}
      sectionName: {{ . }}
      {{- end }}
  {{- with $route.hostnames }}
  hostnames:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  rules:
    {{- .rules | toYaml | nindent 4 }}
{{- end -}}

{{/* A rule's backendRefs: (list $ "component"), the component's Service on its port. */}}
{{- define "agentforge.httpRoute.backendRefs" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
{{- list (dict "name" (include "agentforge.componentName" (list $root $component)) "port" (include "agentforge.port" (list $root $component) | int)) | toYaml -}}
{{- end -}}

{{/* PathPrefix matches of the given paths. */}}
{{- define "agentforge.httpRoute.matches" -}}
{{- $matches := list -}}
{{- range . -}}
{{- $matches = append $matches (dict "path" (dict "type" "PathPrefix" "value" .)) -}}
{{- end -}}
{{- toYaml $matches -}}
{{- end -}}
