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
