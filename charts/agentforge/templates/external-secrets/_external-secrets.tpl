{{/*
The app Secret from an external store, written by the External Secrets Operator (externalSecrets.enabled): an
ExternalSecret (external-secrets.io/v1) whose Secret the pods read in place of the one the chart generates, exactly
as they read secrets.existingSecret (templates/app/secret.yaml renders nothing, checksum/secret follows the name, the
`lookup`s of the generated Secret are skipped).
*/}}

{{/* The Secret the ExternalSecret writes: <fullname>-external-secrets. Not <fullname>-secrets, the generated one,
which `helm.sh/resource-policy: keep` leaves in place when a release switches: the operator (creationPolicy Owner)
would take it over and overwrite the keys it holds, ENCRYPTION_KEY among them. */}}
{{- define "agentforge.externalSecrets.targetName" -}}
{{- include "agentforge.componentName" (list . "external-secrets") -}}
{{- end -}}

{{/* The app Secret the chart reads but does not render: secrets.existingSecret, or the Secret of the ExternalSecret;
empty when the chart generates it (templates/app/secret.yaml). */}}
{{- define "agentforge.providedAppSecret" -}}
{{- if .Values.secrets.existingSecret -}}
{{- .Values.secrets.existingSecret -}}
{{- else if (.Values.externalSecrets | default dict).enabled -}}
{{- include "agentforge.externalSecrets.targetName" . -}}
{{- end -}}
{{- end -}}

{{/* The keys of the app Secret some pod reads in this topology without `optional`, as a JSON list. The bundled
servers read their passwords (and the backup the database's); an external Redis may have none (wait-for-redis reads REDIS_PASSWORD as optional). With
the Secret from the store, the URLs always come from it: externalDatabase/externalRedis.existingSecret are refused. */}}
{{- define "agentforge.externalSecrets.requiredKeys" -}}
{{- $keys := list "SECRET_KEY" "ENCRYPTION_KEY" "POSTGRES_USER" -}}
{{- /* The bundled server reads its password, and so does the backup's pg_dump (PGPASSWORD), whatever the database. */ -}}
{{- if or .Values.postgresql.enabled (dig "enabled" false (.Values.backup | default dict)) -}}
{{- $keys = append $keys "POSTGRES_PASSWORD" -}}
{{- end -}}
{{- $keys = append $keys "DATABASE_URL" -}}
{{- if .Values.redis.enabled -}}
{{- $keys = append $keys "REDIS_PASSWORD" -}}
{{- end -}}
{{- $keys = append $keys "REDIS_URL" -}}
{{- toJson $keys -}}
{{- end -}}

{{/* What externalSecrets refuses, as a JSON list of messages (run by agentforge.validateValues). */}}
{{- define "agentforge.externalSecrets.errors" -}}
{{- $v := .Values -}}
{{- $es := $v.externalSecrets -}}
{{- $errors := list -}}
{{- if $es.enabled -}}
{{- if $v.secrets.existingSecret -}}
{{- $errors = append $errors (printf "externalSecrets.enabled and secrets.existingSecret (%q) both name the app Secret the pods read: set one of them (externalSecrets.enabled has the External Secrets Operator write it from your store; secrets.existingSecret names one you manage)" $v.secrets.existingSecret) -}}
{{- end -}}
{{- if not $es.secretStoreRef.name -}}
{{- $errors = append $errors "externalSecrets.secretStoreRef.name is required when externalSecrets.enabled is true: name the SecretStore or ClusterSecretStore (externalSecrets.secretStoreRef.kind) that reads your store" -}}
{{- end -}}
{{- $mapped := list -}}
{{- range $i, $item := $es.data -}}
{{- if has $item.secretKey $mapped -}}
{{- $errors = append $errors (printf "externalSecrets.data[%d] maps %s again: each key of the Secret comes from one remote key" $i $item.secretKey) -}}
{{- end -}}
{{- $mapped = append $mapped $item.secretKey -}}
{{- end -}}
{{- /* With dataFrom, the keys are the fields of remote objects, which only the operator sees. */ -}}
{{- if not $es.dataFrom -}}
{{- $missing := list -}}
{{- range include "agentforge.externalSecrets.requiredKeys" . | fromJsonArray -}}
{{- if not (has . $mapped) -}}
{{- $missing = append $missing . -}}
{{- end -}}
{{- end -}}
{{- if $missing -}}
{{- $errors = append $errors (printf "externalSecrets.data lacks %s, which the pods read (postgresql.enabled=%v, redis.enabled=%v): map each to a remote key ({secretKey: KEY, remoteRef: {key: ..., property: ...}}), or read whole remote objects with externalSecrets.dataFrom" (join ", " $missing) $v.postgresql.enabled $v.redis.enabled) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $errors -}}
{{- end -}}
