{{/*
How the pods reach each other and the data stores: the in-cluster address (host, port) of every component's
Service, the frontend's public URLs, and how the application reaches PostgreSQL and Redis, bundled or external: the
endpoints, the URLs the chart composes (DATABASE_URL, REDIS_URL), the TLS settings and CA certificates of external
servers, and URLs kept whole in a Secret of the user's.

Consumers (read from the application's source): DATABASE_URL by the backend (SQLAlchemy's asyncpg dialect,
backend/shared/database.py) and by the migration Job (alembic/env.py, the same dialect); REDIS_URL by the backend
alone (redis.asyncio.Redis.from_url, gateway/rate_limiter.py). The data collector reads neither.
*/}}

{{/*
Container port number of a component, a fact of its image: (list $ "component"), or "<component>-metrics" for a data
store's exporter. From the component registry (files/components.yaml).
*/}}
{{- define "agentforge.port" -}}
{{- $name := index . 1 -}}
{{- range (include "agentforge.components" (index . 0) | fromYaml).components -}}
{{- if eq .name $name -}}
{{- .port.number -}}
{{- else if and .exporter (eq (printf "%s-metrics" .name) $name) -}}
{{- .exporter.port -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Fully qualified in-cluster hostname of a component's Service. */}}
{{- define "agentforge.host" -}}
{{- $root := index . 0 -}}
{{- printf "%s.%s.svc.%s" (include "agentforge.componentName" .) (include "agentforge.namespace" $root) $root.Values.global.clusterDomain -}}
{{- end -}}

{{/* The public origins the frontend image was built with (frontend.publicUrls): the API's defaults to the first CORS
origin (the edge serves the frontend and the API on one origin), the WebSocket's to the API's with ws(s)://. */}}
{{- define "agentforge.frontendPublicUrls" -}}
{{- $api := .Values.frontend.publicUrls.api | default (first .Values.config.corsOrigins) | default "" -}}
{{- $ws := .Values.frontend.publicUrls.ws | default (regexReplaceAll "^http" $api "ws") -}}
{{- dict "api" $api "ws" $ws | toYaml -}}
{{- end -}}

{{/* Percent-encode a URL component (userinfo): urlquery encodes a space as "+", which userinfo reads literally. */}}
{{- define "agentforge.urlEncode" -}}
{{- urlquery . | replace "+" "%20" -}}
{{- end -}}

{{/* Host and port of the database the application uses, bundled or external, as YAML. */}}
{{- define "agentforge.databaseEndpoint" -}}
{{- if .Values.postgresql.enabled -}}
host: {{ include "agentforge.host" (list . "postgresql") }}
port: {{ include "agentforge.port" (list $ "postgresql") }}
database: {{ .Values.postgresql.auth.database }}
{{- else -}}
host: {{ .Values.externalDatabase.host }}
port: {{ .Values.externalDatabase.port }}
database: {{ .Values.externalDatabase.database }}
{{- end -}}
{{- end -}}

{{/* Host and port of the Redis the application uses, bundled or external, as YAML. */}}
{{- define "agentforge.redisEndpoint" -}}
{{- if .Values.redis.enabled -}}
host: {{ include "agentforge.host" (list . "redis") }}
port: {{ include "agentforge.port" (list $ "redis") }}
database: 0
{{- else -}}
host: {{ .Values.externalRedis.host }}
port: {{ .Values.externalRedis.port }}
database: {{ .Values.externalRedis.database }}
{{- end -}}
{{- end -}}

{{/*
How the application reaches PostgreSQL and Redis: the URLs the chart composes (DATABASE_URL, REDIS_URL), the TLS
settings and CA certificates of external servers, and URLs kept whole in a Secret of the user's.

Consumers (read from the application's source): DATABASE_URL by the backend (SQLAlchemy's asyncpg dialect,
backend/shared/database.py) and by the migration Job (alembic/env.py, the same dialect); REDIS_URL by the backend
alone (redis.asyncio.Redis.from_url, gateway/rate_limiter.py). The data collector reads neither.
*/}}

{{/*
DATABASE_URL as the chart composes it: (dict "root" $ "user" USER "password" PASSWORD "db" (agentforge.databaseEndpoint)).
An external server's TLS mode is the query parameter `ssl`, which SQLAlchemy hands to asyncpg.connect(ssl=...):
libpq's `sslmode` would reach asyncpg as an unknown argument and fail every connection.
*/}}
{{- define "agentforge.databaseUrl" -}}
{{- $ext := .root.Values.externalDatabase -}}
{{- printf "postgresql+asyncpg://%s:%s@%s:%v/%s" (include "agentforge.urlEncode" .user) (include "agentforge.urlEncode" .password) .db.host .db.port (include "agentforge.urlEncode" (toString .db.database)) -}}
{{- if and (not .root.Values.postgresql.enabled) $ext.sslMode -}}
{{- printf "?ssl=%s" $ext.sslMode -}}
{{- end -}}
{{- end -}}

{{/*
REDIS_URL as the chart composes it: (dict "root" $ "password" PASSWORD "redis" (agentforge.redisEndpoint)). An external
server may take an ACL user (userinfo) and TLS (rediss://, with redis-py's ssl_* query parameters).
*/}}
{{- define "agentforge.redisUrl" -}}
{{- $external := not .root.Values.redis.enabled -}}
{{- $ext := .root.Values.externalRedis -}}
{{- $user := ternary $ext.username "" $external -}}
{{- $userinfo := "" -}}
{{- if or $user .password -}}
{{- $userinfo = printf "%s%s@" (include "agentforge.urlEncode" $user) (ternary (printf ":%s" (include "agentforge.urlEncode" .password)) "" (ne .password "")) -}}
{{- end -}}
{{- $tls := and $external $ext.tls.enabled -}}
{{- printf "%s://%s%s:%v/%v" (ternary "rediss" "redis" $tls) $userinfo .redis.host .redis.port .redis.database -}}
{{- if $tls -}}
{{- /* redis-py verifies the chain by default (ssl_cert_reqs=required) but not the name: both are written out. */ -}}
{{- $query := list "ssl_cert_reqs=required" -}}
{{- if $ext.tls.checkHostname -}}
{{- $query = append $query "ssl_check_hostname=true" -}}
{{- end -}}
{{- if include "agentforge.externalCa" (list .root "redis") -}}
{{- $query = append $query (printf "ssl_ca_certs=%s" (include "agentforge.externalCaPath" "redis")) -}}
{{- end -}}
{{- printf "?%s" (join "&" $query) -}}
{{- end -}}
{{- end -}}

{{/*
Where the pods read a URL from when the user's Secret holds it whole (externalDatabase/externalRedis
.existingSecretUrlKey): (list $ "DATABASE_URL"|"REDIS_URL") -> `name` and `key` as YAML; nothing when the chart's
Secret (or secrets.existingSecret) holds it. No `lookup`: `helm template` and GitOps tools render it.
*/}}
{{- define "agentforge.externalUrlRef" -}}
{{- $root := index . 0 -}}
{{- $ext := dict -}}
{{- if and (eq (index . 1) "DATABASE_URL") (not $root.Values.postgresql.enabled) -}}
{{- $ext = $root.Values.externalDatabase -}}
{{- else if and (eq (index . 1) "REDIS_URL") (not $root.Values.redis.enabled) -}}
{{- $ext = $root.Values.externalRedis -}}
{{- end -}}
{{- if $ext.existingSecretUrlKey -}}
{{- toYaml (dict "name" $ext.existingSecret "key" $ext.existingSecretUrlKey) -}}
{{- end -}}
{{- end -}}

{{/*
The CA certificate of an external server the release uses: (list $ "postgresql"|"redis") -> its reference
(secret or configMap, key) as YAML, or nothing.
*/}}
{{- define "agentforge.externalCa" -}}
{{- $root := index . 0 -}}
{{- $ca := dict -}}
{{- if eq (index . 1) "postgresql" -}}
{{- if not $root.Values.postgresql.enabled -}}
{{- $ca = $root.Values.externalDatabase.sslRootCert -}}
{{- end -}}
{{- else if not $root.Values.redis.enabled -}}
{{- $ca = $root.Values.externalRedis.tls.caCert -}}
{{- end -}}
{{- if or $ca.secret $ca.configMap -}}
{{- toYaml $ca -}}
{{- end -}}
{{- end -}}

{{/* Path of an external server's CA certificate in the pods that connect to it: "postgresql"|"redis". */}}
{{- define "agentforge.externalCaPath" -}}
{{- printf "/etc/agentforge/tls/%s/ca.crt" . -}}
{{- end -}}

{{/* Volumes of the CA certificates a pod needs: (list $ "postgresql" "redis"...), as a YAML list (or nothing). */}}
{{- define "agentforge.externalCaVolumes" -}}
{{- $root := index . 0 -}}
{{- $volumes := list -}}
{{- range $kind := rest . -}}
{{- with include "agentforge.externalCa" (list $root $kind) | fromYaml -}}
{{- $items := list (dict "key" .key "path" (base (include "agentforge.externalCaPath" $kind))) -}}
{{- if .secret -}}
{{- $volumes = append $volumes (dict "name" (printf "%s-ca" $kind) "secret" (dict "secretName" .secret "items" $items)) -}}
{{- else -}}
{{- $volumes = append $volumes (dict "name" (printf "%s-ca" $kind) "configMap" (dict "name" .configMap "items" $items)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- with $volumes -}}
{{- toYaml . -}}
{{- end -}}
{{- end -}}

{{/* Mounts of those volumes in a container: (list $ "postgresql" "redis"...), as a YAML list (or nothing). */}}
{{- define "agentforge.externalCaMounts" -}}
{{- $root := index . 0 -}}
{{- $mounts := list -}}
{{- range $kind := rest . -}}
{{- if include "agentforge.externalCa" (list $root $kind) -}}
{{- $mounts = append $mounts (dict "name" (printf "%s-ca" $kind) "mountPath" (dir (include "agentforge.externalCaPath" $kind)) "readOnly" true) -}}
{{- end -}}
{{- end -}}
{{- with $mounts -}}
{{- toYaml . -}}
{{- end -}}
{{- end -}}

{{/*
PGSSLROOTCERT for a container that connects to the external database with a CA of its own ($): asyncpg reads it
(the URL cannot carry a CA path through SQLAlchemy); with it, sslMode `require` verifies the chain too.
*/}}
{{- define "agentforge.databaseCaEnv" -}}
{{- if include "agentforge.externalCa" (list . "postgresql") -}}
- name: PGSSLROOTCERT
  value: {{ include "agentforge.externalCaPath" "postgresql" | quote }}
{{- end -}}
{{- end -}}

{{/*
"true" when the backend's wait-for-redis checks Redis with the backend's own client (redis-py, in the backend
image) instead of redis-cli ($): for an external Redis with TLS, an ACL user, or a URL from the user's Secret,
which redis-cli would not connect to as the backend does (hostname check, URL parameters, a URL it cannot see).
*/}}
{{- define "agentforge.redisWaitWithClient" -}}
{{- $ext := .Values.externalRedis -}}
{{- if and (not .Values.redis.enabled) (or $ext.tls.enabled $ext.username $ext.existingSecretUrlKey) -}}
true
{{- end -}}
{{- end -}}

{{/*
The wait-for-redis script run with the backend's client, files/redis_wait.py: what the backend does once, at start
(gateway/rate_limiter.py: Redis.from_url(REDIS_URL, decode_responses=True, socket_connect_timeout=5), then PING),
until it answers True. Its errors name the server, never the URL (which holds the password).
*/}}
{{- define "agentforge.redisClientWait" -}}
{{- .Files.Get "files/redis_wait.py" | trimSuffix "\n" -}}
{{- end -}}
