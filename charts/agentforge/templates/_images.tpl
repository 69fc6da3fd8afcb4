{{/*
Image references and the pull secrets of the images a pod runs.
*/}}

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

{{/* The images a data store's pod runs: (.Values.<component>), its own and, with metrics, the exporter's. */}}
{{- define "agentforge.dataStoreImages" -}}
{{- $images := list .image -}}
{{- if .metrics.enabled -}}
{{- $images = append $images .metrics.image -}}
{{- end -}}
{{- toYaml $images -}}
{{- end -}}
