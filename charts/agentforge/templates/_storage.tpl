{{/*
Persistent data: the spec of a data claim, the StatefulSets' claim templates (PostgreSQL, Redis), and the plain
claims of the Deployments that keep data (Prometheus, Grafana).
*/}}

{{/* Spec of a data claim: (list $ .Values.<component>.persistence). Its storageClass, else global.storageClass. */}}
{{- define "agentforge.claimSpec" -}}
{{- $persistence := index . 1 -}}
{{- $class := $persistence.storageClass | default (index . 0).Values.global.storageClass -}}
accessModes:
  {{- toYaml $persistence.accessModes | nindent 2 }}
{{- /* Empty: leave the field out so the cluster's default class applies; "-": no class at all. */}}
{{- if eq $class "-" }}
storageClassName: ""
{{- else if $class }}
storageClassName: {{ $class | quote }}
{{- end }}
resources:
  requests:
    storage: {{ $persistence.size | quote }}
{{- end -}}

{{/*
A StatefulSet's data claim template, shared by PostgreSQL and Redis: (dict "root" $ "component" "component" "persistence" .Values.<component>.persistence),
the field and its list, or nothing with `existingClaim` (agentforge.dataClaimVolume mounts that claim instead).
Its labels are the selector labels only: volumeClaimTemplates cannot change after creation, so a label that
moves with the chart version would make every upgrade fail.
*/}}
{{- define "agentforge.claimTemplate" -}}
{{- $root := .root -}}
{{- $persistence := .persistence -}}
{{- if not $persistence.existingClaim -}}
volumeClaimTemplates:
  - metadata:
      name: data
      labels:
        {{- include "agentforge.selectorLabels" (list $root .component) | nindent 8 }}
    spec:
      {{- include "agentforge.claimSpec" (list $root $persistence) | nindent 6 }}
{{- end -}}
{{- end -}}

{{/* The pod volume `data` of a StatefulSet given an existing claim (.Values.<component>.persistence), mounted where
the template's claim would be; nothing without one. */}}
{{- define "agentforge.dataClaimVolume" -}}
{{- with .existingClaim -}}
- name: data
  persistentVolumeClaim:
    claimName: {{ . | quote }}
{{- end -}}
{{- end -}}

{{/*
Data claim of the bundled Prometheus or Grafana: (dict "root" $ "component" "component" "persistence"
.Values.<component>.persistence).
A plain PVC, not a StatefulSet template, so `helm.sh/resource-policy: keep` holds it (and its data) across
an uninstall; a reinstall under the same release name picks it up again.
*/}}
{{- define "agentforge.monitoring.claim" -}}
{{- $root := .root -}}
{{- $component := .component -}}
{{- $persistence := .persistence -}}
{{- if and $persistence.enabled (not $persistence.existingClaim) -}}
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: {{ include "agentforge.componentName" (list $root $component) }}
  namespace: {{ include "agentforge.namespace" $root }}
  labels:
    {{- include "agentforge.labels" (list $root $component) | nindent 4 }}
  annotations:
    helm.sh/resource-policy: keep
    {{- with omit $root.Values.commonAnnotations "helm.sh/resource-policy" }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  {{- include "agentforge.claimSpec" (list $root $persistence) | nindent 2 }}
{{- end -}}
{{- end -}}

{{/* The data volume of the pod: the claim, an existing claim, or an emptyDir when persistence is off. (dict "root" $ "component" "component" "persistence" PERSISTENCE) */}}
{{- define "agentforge.monitoring.dataVolume" -}}
{{- $persistence := .persistence -}}
- name: data
{{- if $persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ default (include "agentforge.componentName" (list .root .component)) $persistence.existingClaim }}
{{- else }}
  emptyDir: {}
{{- end }}
{{- end -}}
