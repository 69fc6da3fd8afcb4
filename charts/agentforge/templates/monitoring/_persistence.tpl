{{/*
Data claim of the bundled Prometheus or Grafana: (list $ "component" .Values.<component>.persistence).
A plain PVC, not a StatefulSet template, so `helm.sh/resource-policy: keep` holds it (and its data) across
an uninstall; a reinstall under the same release name picks it up again.
*/}}
{{- define "agentforge.monitoring.claim" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
{{- $persistence := index . 2 -}}
{{- if and $persistence.enabled (not $persistence.existingClaim) -}}
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: {{ include "agentforge.componentName" (list $root $component) }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "agentforge.labels" (list $root $component) | nindent 4 }}
  annotations:
    helm.sh/resource-policy: keep
spec:
  accessModes:
    {{- toYaml $persistence.accessModes | nindent 4 }}
  {{- /* Empty: leave the field out so the cluster's default class applies; "-": no class at all. */}}
  {{- if eq $persistence.storageClass "-" }}
  storageClassName: ""
  {{- else if $persistence.storageClass }}
  storageClassName: {{ $persistence.storageClass | quote }}
  {{- end }}
  resources:
    requests:
      storage: {{ $persistence.size | quote }}
{{- end -}}
{{- end -}}

{{/* The data volume of the pod: the claim, an existing claim, or an emptyDir when persistence is off. (list $ "component" persistence) */}}
{{- define "agentforge.monitoring.dataVolume" -}}
{{- $persistence := index . 2 -}}
- name: data
{{- if $persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ default (include "agentforge.componentName" (list (index . 0) (index . 1))) $persistence.existingClaim }}
{{- else }}
  emptyDir: {}
{{- end }}
{{- end -}}
