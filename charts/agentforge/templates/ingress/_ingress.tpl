{{/*
Shared parts of the chart's two Ingresses. There are two so that the backend's settings (cookie affinity,
WebSocket timeouts) apply to /api only: one affinity cookie over both paths would be rewritten by the
frontend's location, which knows none of the backend's endpoints, and the backend would lose its pinning.
*/}}

{{/*
The preset of ingress.controller, as YAML: the IngressClass and namespace the controller usually has, and the
controller's own settings of the backend's affinity cookie and WebSocket timeouts, as annotations of the backend's
Ingress (ingress-nginx) or of its Service (Traefik and HAProxy read them there). Each controller's names, and where it
reads them, are those of its documentation: ingress-nginx's annotations reference, Traefik's routing reference for
Kubernetes Ingress (service annotations), HAProxy Technologies' kubernetes-ingress annotations (cookie-persistence:
ConfigMap or Service; its WebSocket timeout, timeout-tunnel, is a ConfigMap setting, 1h by default).
*/}}
{{- define "agentforge.ingress.preset" -}}
{{- $ingress := .Values.ingress -}}
{{- $cookie := $ingress.affinityCookie -}}
{{- $timeout := $ingress.websocketTimeoutSeconds | toString -}}
{{- $presets := dict
  "ingress-nginx" (dict "class" "nginx" "namespace" "ingress-nginx" "ingressAnnotations" (dict
    "nginx.ingress.kubernetes.io/affinity" "cookie"
    "nginx.ingress.kubernetes.io/affinity-mode" "persistent"
    "nginx.ingress.kubernetes.io/session-cookie-name" $cookie.name
    "nginx.ingress.kubernetes.io/session-cookie-max-age" ($cookie.maxAge | toString)
    "nginx.ingress.kubernetes.io/session-cookie-path" "/"
    "nginx.ingress.kubernetes.io/proxy-read-timeout" $timeout
    "nginx.ingress.kubernetes.io/proxy-send-timeout" $timeout
    "nginx.ingress.kubernetes.io/proxy-body-size" $ingress.proxyBodySize
    "nginx.ingress.kubernetes.io/proxy-http-version" "1.1"))
  "traefik" (dict "class" "traefik" "namespace" "traefik" "serviceAnnotations" (dict
    "traefik.ingress.kubernetes.io/service.sticky.cookie" "true"
    "traefik.ingress.kubernetes.io/service.sticky.cookie.name" $cookie.name
    "traefik.ingress.kubernetes.io/service.sticky.cookie.maxage" ($cookie.maxAge | toString)
    "traefik.ingress.kubernetes.io/service.sticky.cookie.path" "/"
    "traefik.ingress.kubernetes.io/service.sticky.cookie.httponly" "true"
    "traefik.ingress.kubernetes.io/service.sticky.cookie.samesite" "lax"))
  "haproxy" (dict "class" "haproxy" "namespace" "haproxy-controller" "serviceAnnotations" (dict
    "haproxy.org/cookie-persistence" $cookie.name))
-}}
{{- if $ingress.enabled -}}
{{- index $presets $ingress.controller | default dict | toYaml -}}
{{- end -}}
{{- end -}}

{{/* The IngressClass of the Ingresses: ingress.ingressClassName, else the preset's (none with `generic`). */}}
{{- define "agentforge.ingress.className" -}}
{{- .Values.ingress.ingressClassName | default (include "agentforge.ingress.preset" . | fromYaml).class | default "" -}}
{{- end -}}

{{/*
TLS of the Ingresses: the given list, else, with a certificate from cert-manager (ingress.certManager.clusterIssuer or
certificate.enabled), every host in that certificate's Secret.
*/}}
{{- define "agentforge.ingress.tls" -}}
{{- $ingress := .Values.ingress -}}
{{- $tls := $ingress.tls -}}
{{- if and (not $tls) (or $ingress.certManager.clusterIssuer .Values.certificate.enabled) -}}
{{- $tls = list (dict "secretName" (include "agentforge.tlsSecretName" .) "hosts" $ingress.hosts) -}}
{{- end -}}
{{- with $tls -}}
tls:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
An Ingress of the release: (dict "root" $ "component" "backend"|"frontend" "annotations" DICT "paths" PATHS "extraPaths"
BOOL). Every path goes to the component's Service on its port, with ingress.pathType, for every host of
ingress.hosts; with extraPaths true, ingress.extraPaths come before (position `before`, the default) or after them.
*/}}
{{- define "agentforge.ingress" -}}
{{- $root := .root -}}
{{- $component := .component -}}
{{- $paths := .paths -}}
{{- $extra := dict "before" list "after" list -}}
{{- if .extraPaths -}}
{{- range $root.Values.ingress.extraPaths -}}
{{- $position := .position | default "before" -}}
{{- $_ := set $extra $position (append (get $extra $position) (omit . "position")) -}}
{{- end -}}
{{- end -}}
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  {{- include "agentforge.metadata" (dict "root" $root "suffix" $component "component" $component "annotations" .annotations) | nindent 2 }}
spec:
  {{- with include "agentforge.ingress.className" $root }}
  ingressClassName: {{ . }}
  {{- end }}
  {{- with include "agentforge.ingress.tls" $root }}
  {{- . | nindent 2 }}
  {{- end }}
  rules:
  {{- range $root.Values.ingress.hosts }}
    - host: {{ . | quote }}
      http:
        paths:
          {{- with $extra.before }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
          {{- range $paths }}
          - path: {{ . }}
            pathType: {{ $root.Values.ingress.pathType }}
            backend:
              service:
                name: {{ include "agentforge.componentName" (list $root $component) }}
                port:
                  number: {{ include "agentforge.port" (list $root $component) }}
          {{- end }}
          {{- with $extra.after }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
  {{- end }}
{{- end -}}
