{{/*
Whole objects rendered the same way for several components: ServiceAccount, Service, HPA, PDB.
*/}}

{{/*
ServiceAccount of a component: (dict "root" $ "component" "component" "serviceAccount" .Values.<component>.serviceAccount). Tokens are never
automounted through the account; the one pod that calls the API (Prometheus) asks for its token itself.
*/}}
{{- define "agentforge.serviceAccount" -}}
{{- $root := .root -}}
{{- $component := .component -}}
{{- $sa := .serviceAccount -}}
{{- if $sa.create -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  {{- include "agentforge.metadata" (dict "root" $root "name" (include "agentforge.serviceAccountName" .) "component" $component "annotations" $sa.annotations) | nindent 2 }}
automountServiceAccountToken: false
{{- end }}
{{- end -}}

{{/*
Service of a component: (dict "root" $ "component" "component" "service" .Values.<component>.service). Its port is
the component's own (name and number from the registry, files/components.yaml), with, for a data store whose exporter
runs (<key>.metrics.enabled), also the port `metrics` (agentforge.port "<component>-metrics"). Headless Services
(the registry's `headless`) govern the StatefulSets, whose names resolve to their pods, and stay ClusterIP. The type's own fields (nodePort, loadBalancer*, externalTrafficPolicy) are rendered only for the type
that reads them; agentforge.validateValues refuses them with any other.
*/}}
{{- define "agentforge.service" -}}
{{- $root := .root -}}
{{- $component := .component -}}
{{- $entry := include "agentforge.component" (list $root $component) | fromJson -}}
{{- $portName := $entry.port.name -}}
{{- $service := .service | default dict -}}
{{- $type := $service.type | default "ClusterIP" -}}
apiVersion: v1
kind: Service
metadata:
  {{- include "agentforge.metadata" (dict "root" $root "suffix" $component "component" $component "annotations" $service.annotations) | nindent 2 }}
spec:
  type: {{ $type }}
  {{- if $entry.headless }}
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
      port: {{ include "agentforge.port" (list $root $component) }}
      targetPort: {{ $portName }}
      protocol: TCP
      {{- if and (ne $type "ClusterIP") $service.nodePort }}
      nodePort: {{ $service.nodePort }}
      {{- end }}
    {{- if and $entry.exporter (index $root.Values $entry.key).metrics.enabled }}
    - name: metrics
      port: {{ include "agentforge.port" (list $root (printf "%s-metrics" $component)) }}
      targetPort: metrics
      protocol: TCP
    {{- end }}
{{- end -}}

{{/*
HorizontalPodAutoscaler of a component's Deployment, on CPU: (dict "root" $ "component" "component" "autoscaling"
.Values.<component>.autoscaling).
agentforge.validateValues refuses minReplicas above maxReplicas.
*/}}
{{- define "agentforge.hpa" -}}
{{- $root := .root -}}
{{- $component := .component -}}
{{- $autoscaling := .autoscaling -}}
{{- if $autoscaling.enabled -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  {{- include "agentforge.metadata" (dict "root" $root "suffix" $component "component" $component) | nindent 2 }}
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
PodDisruptionBudget of a component: (dict "root" $ "component" "component" "pdb" .Values.<component>.pdb), with minAvailable or
maxUnavailable, whichever is set. agentforge.validateValues refuses both, and neither, and a budget that blocks every
node drain (a minAvailable at or above the replica count, a maxUnavailable of 0).
*/}}
{{- define "agentforge.pdb" -}}
{{- $root := .root -}}
{{- $component := .component -}}
{{- $pdb := .pdb -}}
{{- if $pdb.enabled }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  {{- include "agentforge.metadata" (dict "root" $root "suffix" $component "component" $component) | nindent 2 }}
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
