{{/* Where the server's data and initdb's own postgresql.conf are (PGDATA of the StatefulSet). */}}
{{- define "agentforge.postgresql.dataDir" -}}
/var/lib/postgresql/data/pgdata
{{- end -}}

{{/*
The server's configuration file (postgres -c config_file=...): initdb's postgresql.conf, then postgresql.config, each
value single-quoted (a quote doubled), which PostgreSQL reads for every type. A later setting wins.
*/}}
{{- define "agentforge.postgresql.config" -}}
# initdb's configuration, then postgresql.config (values.yaml): a later line wins.
include_if_exists = '{{ include "agentforge.postgresql.dataDir" . }}/postgresql.conf'
{{- range $key, $value := .Values.postgresql.config }}
{{ $key }} = '{{ toString $value | replace "'" "''" }}'
{{- end }}
{{- end -}}
