{{/*
Refuse a Redis memory limit without room above maxmemory: Redis' own overhead (buffers, fragmentation, the
fork of a background save) lives outside maxmemory, and a limit at maxmemory gets the pod OOM-killed under load.
Rule: the limit must be at least maxmemory + 25%, and at least maxmemory + 32Mi.
*/}}
{{- define "agentforge.redisMemoryGuard" -}}
{{- $redis := .Values.redis -}}
{{- $maxmemoryBytes := include "agentforge.redisBytes" $redis.maxmemory -}}
{{- if not $maxmemoryBytes -}}
{{- fail (printf "redis.maxmemory %q is not a Redis memory size (such as 256mb or 1gb)" ($redis.maxmemory | toString | lower)) -}}
{{- end -}}
{{- $maxmemory := $maxmemoryBytes | float64 -}}
{{- if eq $maxmemory 0.0 -}}
{{- fail "redis.maxmemory must not be 0 (no limit): Redis would grow until the container's memory limit OOM-kills it instead of evicting keys" -}}
{{- end -}}
{{- $limit := dig "limits" "memory" "" ($redis.resources | default dict) -}}
{{- if not $limit -}}
{{- fail (printf "redis.resources.limits.memory is required: set it above redis.maxmemory (%s) by at least 25%% (and 32Mi)" $redis.maxmemory) -}}
{{- end -}}
{{- $limitBytes := include "agentforge.bytes" $limit -}}
{{- if not $limitBytes -}}
{{- fail (printf "redis.resources.limits.memory %q is not a Kubernetes quantity (such as 384Mi or 1Gi)" $limit) -}}
{{- end -}}
{{- $limitBytes = $limitBytes | float64 -}}
{{- $needed := maxf (mulf $maxmemory 1.25) (addf $maxmemory 33554432) -}}
{{- if lt $limitBytes $needed -}}
{{- fail (printf "redis.resources.limits.memory (%v = %.0f bytes) must exceed redis.maxmemory (%s = %.0f bytes) by at least 25%% and 32Mi, i.e. be at least %.0f bytes (%.0fMi): Redis needs memory beyond maxmemory and is OOM-killed at the limit" $limit $limitBytes (toString $redis.maxmemory) $maxmemory $needed (ceil (divf $needed 1048576))) -}}
{{- end -}}
{{- end -}}
