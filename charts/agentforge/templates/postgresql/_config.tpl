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

{{/*
The bundled PostgreSQL's connection budget, as YAML: the backend's worst case (the HPA's maxReplicas, else the replica
count, each pod's pool full: config.dbPoolSize + config.dbMaxOverflow), the migration Job's one connection (alembic's
NullPool), the exporter's and the backup's one each when they run, and superuser_reserved_connections (PostgreSQL
keeps them for an administrator's psql), against max_connections. PostgreSQL's defaults apply to what is not set.
*/}}
{{- define "agentforge.postgresql.connections" -}}
{{- $v := .Values -}}
{{- $config := $v.postgresql.config | default dict -}}
{{- $autoscaling := $v.backend.autoscaling.enabled -}}
{{- $pods := ternary $v.backend.autoscaling.maxReplicas $v.backend.replicaCount $autoscaling | int -}}
{{- $poolSize := $v.config.dbPoolSize | int -}}
{{- $maxOverflow := $v.config.dbMaxOverflow | int -}}
{{- $migrations := ternary 1 0 (dig "enabled" true ($v.migrations | default dict)) -}}
{{- $exporter := ternary 1 0 $v.postgresql.metrics.enabled -}}
{{- $backup := ternary 1 0 (dig "enabled" false ($v.backup | default dict)) -}}
{{- $reserved := get $config "superuser_reserved_connections" | default 3 | int -}}
{{- $need := add (mul $pods (add $poolSize $maxOverflow)) $migrations $exporter $backup $reserved -}}
pods: {{ $pods }}
podsKey: {{ ternary "backend.autoscaling.maxReplicas" "backend.replicaCount" $autoscaling }}
poolSize: {{ $poolSize }}
maxOverflow: {{ $maxOverflow }}
migrations: {{ $migrations }}
exporter: {{ $exporter }}
backup: {{ $backup }}
reserved: {{ $reserved }}
need: {{ $need }}
maxConnections: {{ get $config "max_connections" | default 100 | int }}
{{- end -}}
