{{/*
Whole objects rendered the same way for several components: ServiceAccount, Service, HPA, PDB.
*/}}

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
