{{/*
Shared parts of the chart's two Ingresses. There are two so that the backend's settings (cookie affinity,
WebSocket timeouts) apply to /api only: one affinity cookie over both paths would be rewritten by the
frontend's location, which knows none of the backend's endpoints, and the backend would lose its pinning.
*/}}

{{/* TLS of the Ingresses: the given list, else, with a cert-manager issuer, every host in <fullname>-tls. */}}
{{- define "agentforge.ingress.tls" -}}
{{- $ingress := .Values.ingress -}}
{{- $tls := $ingress.tls -}}
{{- if and (not $tls) $ingress.certManager.clusterIssuer -}}
{{- $tls = list (dict "secretName" (include "agentforge.componentName" (list . "tls")) "hosts" $ingress.hosts) -}}
{{- end -}}
{{- with $tls -}}
tls:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Rules of an Ingress: (list $ "component" PATHS), every path to the component's Service on its port. */}}
{{- define "agentforge.ingress.rules" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
{{- $paths := index . 2 -}}
rules:
{{- range $root.Values.ingress.hosts }}
  - host: {{ . | quote }}
    http:
      paths:
        {{- range $paths }}
        - path: {{ . }}
          pathType: Prefix
          backend:
            service:
              name: {{ include "agentforge.componentName" (list $root $component) }}
              port:
                number: {{ include "agentforge.port" $component }}
        {{- end }}
{{- end }}
{{- end -}}
