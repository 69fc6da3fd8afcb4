{{/*
A StatefulSet's data claim template, shared by PostgreSQL and Redis: (list $ "component" .Values.<component>.persistence).
Its labels are the selector labels only: volumeClaimTemplates cannot change after creation, so a label that
moves with the chart version would make every upgrade fail.
*/}}
{{- define "agentforge.claimTemplate" -}}
{{- $root := index . 0 -}}
{{- $persistence := index . 2 -}}
- metadata:
    name: data
    labels:
      {{- include "agentforge.selectorLabels" (list $root (index . 1)) | nindent 6 }}
  spec:
    {{- include "agentforge.claimSpec" $persistence | nindent 4 }}
{{- end -}}
