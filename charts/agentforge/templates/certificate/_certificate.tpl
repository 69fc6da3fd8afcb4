{{/* The Secret of the edge's TLS certificate from cert-manager: certificate.secretName, else <fullname>-tls. */}}
{{- define "agentforge.tlsSecretName" -}}
{{- .Values.certificate.secretName | default (include "agentforge.componentName" (list . "tls")) -}}
{{- end -}}

{{/* The hostnames the edge serves, as a YAML list: the Ingresses' hosts and the HTTPRoutes' hostnames (each on). */}}
{{- define "agentforge.edgeHostnames" -}}
{{- $hosts := list -}}
{{- if .Values.ingress.enabled }}
{{- $hosts = concat $hosts (.Values.ingress.hosts | default list) -}}
{{- end }}
{{- if .Values.httpRoute.enabled }}
{{- $hosts = concat $hosts (.Values.httpRoute.hostnames | default list) -}}
{{- end }}
{{- $hosts | uniq | toYaml -}}
{{- end -}}
