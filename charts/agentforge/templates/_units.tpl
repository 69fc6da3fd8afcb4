{{/*
Parsers of the units values are written in: durations and byte quantities.
*/}}

{{/* Milliseconds of a Prometheus duration such as 1m30s. */}}
{{- define "agentforge.durationMs" -}}
{{- $units := dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000 "d" 86400000 "w" 604800000 "y" 31536000000 -}}
{{- $total := 0 -}}
{{- range regexFindAll "[0-9]+(ms|s|m|h|d|w|y)" . -1 -}}
{{- $unit := regexFind "(ms|s|m|h|d|w|y)$" . -}}
{{- $total = add $total (mul (trimSuffix $unit . | int64) (get $units $unit)) -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{/*
Bytes in a quantity: a Kubernetes quantity (256Mi, 1Gi, 500M, 1.5G, 268435456) or a Prometheus size (8GB, in powers of
1024), as a whole number; nothing when it is neither, for the caller to refuse it naming its key.
*/}}
{{- define "agentforge.bytes" -}}
{{- if not (kindIs "string" .) -}}
{{- printf "%.0f" (float64 .) -}}
{{- else -}}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" . -}}
{{- $units := dict "" 1 "B" 1 "m" 0.001 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "P" 1e15 "E" 1e18 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "Pi" 1125899906842624 "Ei" 1152921504606846976 "KB" 1024 "MB" 1048576 "GB" 1073741824 "TB" 1099511627776 "PB" 1125899906842624 "EB" 1152921504606846976 -}}
{{- $unit := trimPrefix $number . -}}
{{- if and $number (hasKey $units $unit) -}}
{{- printf "%.0f" (mulf $number (get $units $unit)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Bytes in a Redis memory size (Redis units, not Kubernetes': 1k = 1000, 1kb = 1024, 1m = 1000000, 1mb = 1048576, ...),
as a whole number; nothing when it is not one.
*/}}
{{- define "agentforge.redisBytes" -}}
{{- $text := . | toString | lower -}}
{{- $number := regexFind "^[0-9]+" $text -}}
{{- $units := dict "" 1 "b" 1 "k" 1000 "kb" 1024 "m" 1000000 "mb" 1048576 "g" 1000000000 "gb" 1073741824 -}}
{{- $unit := trimPrefix $number $text -}}
{{- if and $number (hasKey $units $unit) -}}
{{- printf "%.0f" (mulf $number (get $units $unit)) -}}
{{- end -}}
{{- end -}}
