{{/*
A StatefulSet's data claim template, shared by PostgreSQL and Redis: (list $ "component" .Values.<component>.persistence),
the field and its list, or nothing with `existingClaim` (agentforge.dataClaimVolume mounts that claim instead).
Its labels are the selector labels only: volumeClaimTemplates cannot change after creation, so a label that
moves with the chart version would make every upgrade fail.
*/}}
{{- define "agentforge.claimTemplate" -}}
{{- $root := index . 0 -}}
{{- $persistence := index . 2 -}}
{{- if not $persistence.existingClaim -}}
volumeClaimTemplates:
  - metadata:
      name: data
      labels:
        {{- include "agentforge.selectorLabels" (list $root (index . 1)) | nindent 8 }}
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
