{{/* Bytes in a Redis memory size (Redis units: 1k = 1000, 1kb = 1024, 1m = 1000000, 1mb = 1048576, ...). */}}
{{- define "agentforge.redisBytes" -}}
{{- $text := . | toString | lower -}}
{{- $number := regexFind "^[0-9]+" $text -}}
{{- $units := dict "" 1 "b" 1 "k" 1000 "kb" 1024 "m" 1000000 "mb" 1048576 "g" 1000000000 "gb" 1073741824 -}}
{{- $unit := trimPrefix $number $text -}}
{{- if or (not $number) (not (hasKey $units $unit)) -}}
{{- fail (printf "redis.maxmemory %q is not a Redis memory size (such as 256mb or 1gb)" $text) -}}
{{- end -}}
{{- printf "%.0f" (mulf $number (get $units $unit)) -}}
{{- end -}}

{{/* Bytes in a Kubernetes memory quantity (256Mi, 1Gi, 500M, 1.5G, 268435456). */}}
{{- define "agentforge.quantityBytes" -}}
{{- if not (kindIs "string" .) -}}
{{- printf "%.0f" (float64 .) -}}
{{- else -}}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" . -}}
{{- $units := dict "" 1 "m" 0.001 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "P" 1e15 "E" 1e18 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "Pi" 1125899906842624 "Ei" 1152921504606846976 -}}
{{- $unit := trimPrefix $number . -}}
{{- if or (not $number) (not (hasKey $units $unit)) -}}
{{- fail (printf "redis.resources.limits.memory %q is not a Kubernetes quantity (such as 384Mi or 1Gi)" .) -}}
{{- end -}}
{{- printf "%.0f" (mulf $number (get $units $unit)) -}}
{{- end -}}
{{- end -}}

{{/*
Refuse a Redis memory limit without room above maxmemory: Redis' own overhead (buffers, fragmentation, the
fork of a background save) lives outside maxmemory, and a limit at maxmemory gets the pod OOM-killed under load.
Rule: the limit must be at least maxmemory + 25%, and at least maxmemory + 32Mi.
*/}}
{{- define "agentforge.redisMemoryGuard" -}}
{{- $redis := .Values.redis -}}
{{- $maxmemory := include "agentforge.redisBytes" $redis.maxmemory | float64 -}}
{{- if eq $maxmemory 0.0 -}}
{{- fail "redis.maxmemory must not be 0 (no limit): Redis would grow until the container's memory limit OOM-kills it instead of evicting keys" -}}
{{- end -}}
{{- $limit := dig "limits" "memory" "" ($redis.resources | default dict) -}}
{{- if not $limit -}}
{{- fail (printf "redis.resources.limits.memory is required: set it above redis.maxmemory (%s) by at least 25%% (and 32Mi)" $redis.maxmemory) -}}
{{- end -}}
{{- $limitBytes := include "agentforge.quantityBytes" $limit | float64 -}}
{{- $needed := maxf (mulf $maxmemory 1.25) (addf $maxmemory 33554432) -}}
{{- if lt $limitBytes $needed -}}
{{- fail (printf "redis.resources.limits.memory (%v = %.0f bytes) must exceed redis.maxmemory (%s = %.0f bytes) by at least 25%% and 32Mi, i.e. be at least %.0f bytes (%.0fMi): Redis needs memory beyond maxmemory and is OOM-killed at the limit" $limit $limitBytes (toString $redis.maxmemory) $maxmemory $needed (ceil (divf $needed 1048576))) -}}
{{- end -}}
{{- end -}}
