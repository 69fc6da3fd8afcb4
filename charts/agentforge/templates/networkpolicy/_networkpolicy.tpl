{{/*
NetworkPolicy helpers. Every pod of the release is isolated for ingress by default-deny.yaml; each component's
policy then allows only the paths the application uses. Ports are numeric (agentforge.port): a named port would
silently match nothing if a container named its port differently.
*/}}

{{/* Whether the bundled monitoring stack (Prometheus, Grafana) is deployed. */}}
{{- define "agentforge.networkPolicy.monitoring" -}}
{{- if .Values.monitoring.enabled }}true{{ end -}}
{{- end -}}

{{/* A peer selecting the pods of a component of this release: (list $ "component"), as YAML. */}}
{{- define "agentforge.networkPolicy.podPeer" -}}
podSelector:
  matchLabels:
    {{- include "agentforge.selectorLabels" . | nindent 4 }}
{{- end -}}

{{/* Peers of the components given: (list $ "component" ...), as a YAML list. */}}
{{- define "agentforge.networkPolicy.podPeers" -}}
{{- $root := first . -}}
{{- $peers := list -}}
{{- range rest . -}}
{{- $peers = append $peers (include "agentforge.networkPolicy.podPeer" (list $root .) | fromYaml) -}}
{{- end -}}
{{- toYaml $peers -}}
{{- end -}}

{{/* A peer of a namespace selector and an optional pod selector (one peer: both must match). */}}
{{- define "agentforge.networkPolicy.namespacePeer" -}}
{{- $peer := dict "namespaceSelector" (index . 0) -}}
{{- with index . 1 }}
{{- $_ := set $peer "podSelector" . -}}
{{- end }}
{{- toYaml $peer -}}
{{- end -}}

{{/*
Sources outside the release that may reach the edge (frontend, backend), as a YAML list: the ingress controller
while the chart's Ingress is on, the Gateway's data plane while its HTTPRoutes are on, and extraEdgeFrom.
*/}}
{{- define "agentforge.networkPolicy.edgePeers" -}}
{{- $np := .Values.networkPolicy -}}
{{- $peers := list -}}
{{- if .Values.ingress.enabled }}
{{- $namespaces := $np.ingressNamespaceSelector -}}
{{- with (include "agentforge.ingress.preset" . | fromYaml).namespace }}
{{- $namespaces = $namespaces | default (dict "matchLabels" (dict "kubernetes.io/metadata.name" .)) -}}
{{- end }}
{{- $peers = append $peers (include "agentforge.networkPolicy.namespacePeer" (list $namespaces $np.ingressPodSelector) | fromYaml) -}}
{{- end }}
{{- if .Values.httpRoute.enabled }}
{{- $selector := $np.gatewayNamespaceSelector -}}
{{- if not $selector }}
{{- $namespace := default (include "agentforge.namespace" .) .Values.httpRoute.parentRef.namespace -}}
{{- $selector = dict "matchLabels" (dict "kubernetes.io/metadata.name" $namespace) -}}
{{- end }}
{{- $peers = append $peers (include "agentforge.networkPolicy.namespacePeer" (list $selector $np.gatewayPodSelector) | fromYaml) -}}
{{- end }}
{{- $peers = concat $peers $np.extraEdgeFrom -}}
{{- toYaml $peers -}}
{{- end -}}

{{/* A TCP port list of one component's port: (list $ "component"), as YAML. */}}
{{- define "agentforge.networkPolicy.ports" -}}
- protocol: TCP
  port: {{ include "agentforge.port" . }}
{{- end -}}

{{/*
An ingress policy for the pods of one component: (dict "root" $ "component" "component" "rules" RULES); renders nothing without rules
(default-deny.yaml already isolates the pods).
*/}}
{{- define "agentforge.networkPolicy.ingress" -}}
{{- $root := .root -}}
{{- $component := .component -}}
{{- $rules := .rules -}}
{{- if $rules }}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  {{- include "agentforge.metadata" (dict "root" $root "suffix" $component "component" $component) | nindent 2 }}
spec:
  podSelector:
    matchLabels:
      {{- include "agentforge.selectorLabels" (list $root $component) | nindent 6 }}
  policyTypes:
    - Ingress
  ingress:
    {{- toYaml $rules | nindent 4 }}
{{- end }}
{{- end -}}

{{/* A rule allowing PEERS to the port of a component: (dict "root" $ "peers" PEERS "component" "component"); nothing without peers. */}}
{{- define "agentforge.networkPolicy.rule" -}}
{{- $peers := .peers -}}
{{- if $peers -}}
{{- list (dict "from" $peers "ports" (include "agentforge.networkPolicy.ports" (list .root .component) | fromYamlArray)) | toYaml -}}
{{- else -}}
[]
{{- end -}}
{{- end -}}

{{/* Selector of every pod of the release, whatever its component. */}}
{{- define "agentforge.networkPolicy.releaseSelector" -}}
matchLabels:
  app.kubernetes.io/name: {{ include "agentforge.name" . | quote }}
  app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end -}}

{{/* Selector of the release's pods of the components given: (list $ "component" ...). */}}
{{- define "agentforge.networkPolicy.componentsSelector" -}}
{{- include "agentforge.networkPolicy.releaseSelector" (first .) }}
matchExpressions:
  - key: app.kubernetes.io/component
    operator: In
    values:
      {{- toYaml (rest .) | nindent 6 }}
{{- end -}}

{{/* Sources that may scrape metrics: the bundled Prometheus and metricsFrom, as a YAML list. */}}
{{- define "agentforge.networkPolicy.scrapers" -}}
{{- $peers := list -}}
{{- if include "agentforge.networkPolicy.monitoring" . }}
{{- $peers = include "agentforge.networkPolicy.podPeers" (list . "prometheus") | fromYamlArray -}}
{{- end }}
{{- concat $peers .Values.networkPolicy.metricsFrom | toYaml -}}
{{- end -}}

{{/*
Egress rules to TCP ports: a list of (dict "port" PORT "cidr" CIDR). An empty CIDR opens the port to every address:
NetworkPolicies match addresses, and an external host's address is not known when the chart renders.
*/}}
{{- define "agentforge.networkPolicy.egressRules" -}}
{{- $rules := list -}}
{{- range . -}}
{{- $rule := dict "ports" (list (dict "protocol" "TCP" "port" (.port | int))) -}}
{{- with .cidr -}}
{{- $_ := set $rule "to" (list (dict "ipBlock" (dict "cidr" .))) -}}
{{- end -}}
{{- $rules = append $rules $rule -}}
{{- end -}}
{{- toYaml $rules -}}
{{- end -}}

{{/* The egress rule to the cluster DNS ($), on UDP and TCP 53. */}}
{{- define "agentforge.networkPolicy.dnsRule" -}}
{{- $egress := .Values.networkPolicy.egress -}}
{{- $dns := include "agentforge.networkPolicy.namespacePeer" (list $egress.dnsNamespaceSelector $egress.dnsPodSelector) | fromYaml -}}
- to:
    - {{ toYaml $dns | nindent 6 | trim }}
  ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
{{- end -}}

{{/*
A NetworkPolicy of the release that limits egress: (dict "root" $ "suffix" SUFFIX "podSelector" SELECTOR-YAML "rules"
LIST), LIST as for agentforge.networkPolicy.egressRules; named <prefix>-SUFFIX.
*/}}
{{- define "agentforge.networkPolicy.egressPolicy" -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  {{- include "agentforge.metadata" (dict "root" .root "suffix" .suffix "component" "networkpolicy") | nindent 2 }}
spec:
  podSelector:
    {{- .podSelector | nindent 4 }}
  policyTypes:
    - Egress
  egress:
    {{- include "agentforge.networkPolicy.egressRules" .rules | nindent 4 }}
{{- end -}}
