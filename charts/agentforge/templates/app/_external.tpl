{{/*
How the application reaches PostgreSQL and Redis: the URLs the chart composes (DATABASE_URL, REDIS_URL), the TLS
settings and CA certificates of external servers, and URLs kept whole in a Secret of the user's.

Consumers (read from the application's source): DATABASE_URL by the backend (SQLAlchemy's asyncpg dialect,
backend/shared/database.py) and by the migration Job (alembic/env.py, the same dialect); REDIS_URL by the backend
alone (redis.asyncio.Redis.from_url, gateway/rate_limiter.py). The data collector reads neither.
*/}}

{{/*
DATABASE_URL as the chart composes it: (dict "root" $ "user" USER "password" PASSWORD "db" (agentforge.database)).
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
REDIS_URL as the chart composes it: (dict "root" $ "password" PASSWORD "redis" (agentforge.redis)). An external
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
The wait-for-redis script run with the backend's client: what the backend does once, at start
(gateway/rate_limiter.py: Redis.from_url(REDIS_URL, decode_responses=True, socket_connect_timeout=5), then PING),
until it answers True. Its errors name the server, never the URL (which holds the password).
*/}}
{{- define "agentforge.redisClientWait" -}}
import asyncio, os, time
from redis.asyncio import Redis


async def ping():
    client = Redis.from_url(os.environ["REDIS_URL"], decode_responses=True, socket_connect_timeout=5)
    try:
        return await client.ping()
    finally:
        await client.aclose()


while True:
    try:
        if asyncio.run(ping()) is True:
            break
        reason = "no PONG"
    except Exception as error:
        reason = f"{type(error).__name__}: {error}"
    print(f"waiting for Redis to answer the backend's authenticated PING: {reason}", flush=True)
    time.sleep(2)
{{- end -}}

{{/*
Constraints on externalDatabase and externalRedis that the schema cannot express ($), as a JSON list of messages
for agentforge.validateValues.
*/}}
{{- define "agentforge.externalServiceErrors" -}}
{{- $v := .Values -}}
{{- $errors := list -}}
{{- $db := $v.externalDatabase -}}
{{- $redis := $v.externalRedis -}}
{{- range $kind, $ext := dict "externalDatabase" $db "externalRedis" $redis -}}
{{- if and $ext.existingSecretUrlKey (not $ext.existingSecret) -}}
{{- $errors = append $errors (printf "%s.existingSecretUrlKey (%q) is set without %s.existingSecret: name the Secret that holds the URL" $kind $ext.existingSecretUrlKey $kind) -}}
{{- end -}}
{{- end -}}
{{- range $path, $ca := dict "externalDatabase.sslRootCert" $db.sslRootCert "externalRedis.tls.caCert" $redis.tls.caCert -}}
{{- if and $ca.secret $ca.configMap -}}
{{- $errors = append $errors (printf "%s.secret (%q) and %s.configMap (%q) are both set: set one of them" $path $ca.secret $path $ca.configMap) -}}
{{- end -}}
{{- end -}}

{{- /* Settings of a server the release does not use. */ -}}
{{- if $v.postgresql.enabled -}}
{{- range $key, $set := dict "sslMode" $db.sslMode "existingSecretUrlKey" $db.existingSecretUrlKey "sslRootCert" (or $db.sslRootCert.secret $db.sslRootCert.configMap) -}}
{{- if $set -}}
{{- $errors = append $errors (printf "externalDatabase.%s is set while postgresql.enabled is true: the bundled PostgreSQL is used and externalDatabase is ignored. Set postgresql.enabled=false to use the external database" $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $v.redis.enabled -}}
{{- range $key, $set := dict "username" $redis.username "existingSecretUrlKey" $redis.existingSecretUrlKey "tls.enabled" $redis.tls.enabled "tls.caCert" (or $redis.tls.caCert.secret $redis.tls.caCert.configMap) -}}
{{- if $set -}}
{{- $errors = append $errors (printf "externalRedis.%s is set while redis.enabled is true: the bundled Redis is used and externalRedis is ignored. Set redis.enabled=false to use the external Redis" $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /* A setting of the URL the chart composes, while the URL comes whole from a Secret, would be ignored. */ -}}
{{- $dbUrlFrom := "" -}}
{{- if $db.existingSecretUrlKey -}}
{{- $dbUrlFrom = printf "Secret %q (key %q, externalDatabase.existingSecretUrlKey)" $db.existingSecret $db.existingSecretUrlKey -}}
{{- else if $v.secrets.existingSecret -}}
{{- $dbUrlFrom = printf "Secret %q (secrets.existingSecret)" $v.secrets.existingSecret -}}
{{- else if $v.externalSecrets.enabled -}}
{{- $dbUrlFrom = printf "Secret %q (externalSecrets.enabled, from your store)" (include "agentforge.secretName" $) -}}
{{- end -}}
{{- if and (not $v.postgresql.enabled) $db.sslMode $dbUrlFrom -}}
{{- $errors = append $errors (printf "externalDatabase.sslMode (%q) is set while DATABASE_URL comes from %s: it would be ignored. Write ?ssl=%s into that URL (asyncpg's parameter) and leave externalDatabase.sslMode empty" $db.sslMode $dbUrlFrom $db.sslMode) -}}
{{- end -}}
{{- $redisUrlFrom := "" -}}
{{- if $redis.existingSecretUrlKey -}}
{{- $redisUrlFrom = printf "Secret %q (key %q, externalRedis.existingSecretUrlKey)" $redis.existingSecret $redis.existingSecretUrlKey -}}
{{- else if $v.secrets.existingSecret -}}
{{- $redisUrlFrom = printf "Secret %q (secrets.existingSecret)" $v.secrets.existingSecret -}}
{{- else if $v.externalSecrets.enabled -}}
{{- $redisUrlFrom = printf "Secret %q (externalSecrets.enabled, from your store)" (include "agentforge.secretName" $) -}}
{{- end -}}
{{- if and (not $v.redis.enabled) $redis.username $redisUrlFrom -}}
{{- $errors = append $errors (printf "externalRedis.username (%q) is set while REDIS_URL comes from %s: it would be ignored. Write the user into that URL (rediss://USER:PASSWORD@host:port/db) and leave externalRedis.username empty" $redis.username $redisUrlFrom) -}}
{{- end -}}

{{- /* asyncpg verifies a server against PGSSLROOTCERT (else ~/.postgresql/root.crt), never the system's CAs. */ -}}
{{- if and (not $v.postgresql.enabled) (has $db.sslMode (list "verify-ca" "verify-full")) (not $dbUrlFrom) (not (or $db.sslRootCert.secret $db.sslRootCert.configMap)) -}}
{{- if not (include "agentforge.extraEnvSets" (list $v.backend.extraEnv "PGSSLROOTCERT")) -}}
{{- $errors = append $errors (printf "externalDatabase.sslMode %q verifies the server's certificate against a CA file, and asyncpg reads no system CAs (only PGSSLROOTCERT, else ~/.postgresql/root.crt, which the image lacks): set externalDatabase.sslRootCert.secret or .configMap (the CA certificate), or PGSSLROOTCERT in backend.extraEnv" $db.sslMode) -}}
{{- end -}}
{{- end -}}
{{- if and (include "agentforge.externalCa" (list . "postgresql")) (include "agentforge.extraEnvSets" (list $v.backend.extraEnv "PGSSLROOTCERT")) -}}
{{- $errors = append $errors "backend.extraEnv sets PGSSLROOTCERT while externalDatabase.sslRootCert is set, which sets it too: remove one of them" -}}
{{- end -}}
{{- if and (not $v.redis.enabled) (or $redis.tls.caCert.secret $redis.tls.caCert.configMap) (not $redis.tls.enabled) (not $redis.existingSecretUrlKey) -}}
{{- $errors = append $errors "externalRedis.tls.caCert is set while externalRedis.tls.enabled is false: the CA would be unused. Set externalRedis.tls.enabled=true (REDIS_URL becomes rediss://)" -}}
{{- end -}}
{{- toJson $errors -}}
{{- end -}}

{{/* "true" when an extraEnv list sets a variable: (list EXTRA-ENV NAME). */}}
{{- define "agentforge.extraEnvSets" -}}
{{- $name := index . 1 -}}
{{- range index . 0 -}}
{{- if eq (toString .name) $name -}}true{{- end -}}
{{- end -}}
{{- end -}}
