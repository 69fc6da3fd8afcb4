{{/*
Secret values and how pods read them: values kept across upgrades, passwords of external services, the
app Secret's keys as environment variables, and the checksums that roll pods when settings change.
*/}}

{{/*
A secret value: the value given in values, else the one in the live Secret (so upgrades never
regenerate it), else the generated one. (dict "root" $ "secret" NAME "key" KEY "value" GIVEN "generated" NEW)
A given value that must not differ from the live one is refused by agentforge.validateValues
(agentforge.validate.keptSecretValue).
A generated value is remembered for the rest of the render, so the Secret and the checksum
annotations computed from it (which render the Secret again) see the same value.
*/}}
{{- define "agentforge.secretValue" -}}
{{- $live := lookup "v1" "Secret" (include "agentforge.namespace" .root) .secret -}}
{{- $liveValue := dig "data" .key "" ($live | default dict) -}}
{{- if .value -}}
{{- .value -}}
{{- else if $liveValue -}}
{{- $liveValue | b64dec -}}
{{- else -}}
{{- if not (hasKey .root.Values "_generatedSecrets") -}}
{{- $_ := set .root.Values "_generatedSecrets" dict -}}
{{- end -}}
{{- $generated := index .root.Values "_generatedSecrets" -}}
{{- $id := printf "%s/%s" .secret .key -}}
{{- if not (hasKey $generated $id) -}}
{{- $_ := set $generated $id .generated -}}
{{- end -}}
{{- index $generated $id -}}
{{- end -}}
{{- end -}}

{{/*
Password of an external service: the value given, else the key of its existing Secret, read from the cluster
(agentforge.validateValues refuses a Secret or key that is not there). (list $ .Values.externalDatabase)
*/}}
{{- define "agentforge.externalPassword" -}}
{{- $root := index . 0 -}}
{{- $ext := index . 1 -}}
{{- if $ext.existingSecret -}}
{{- $secret := lookup "v1" "Secret" (include "agentforge.namespace" $root) $ext.existingSecret | default dict -}}
{{- dig "data" $ext.existingSecretPasswordKey "" $secret | b64dec -}}
{{- else -}}
{{- $ext.password -}}
{{- end -}}
{{- end -}}

{{/*
Variables from keys of the app Secret, each under its key's name: (list $ KEY...). Each container gets only the
keys its code reads, not the whole Secret.
*/}}
{{- define "agentforge.secretEnv" -}}
{{- $secret := include "agentforge.secretName" (index . 0) -}}
{{- $env := list -}}
{{- range (rest .) -}}
{{- /* DATABASE_URL and REDIS_URL may come whole from the user's Secret (agentforge.externalUrlRef). */ -}}
{{- $ref := include "agentforge.externalUrlRef" (list (index $ 0) .) | fromYaml | default (dict "name" $secret "key" .) -}}
{{- $env = append $env (dict "name" . "valueFrom" (dict "secretKeyRef" $ref)) -}}
{{- end -}}
{{- toYaml $env -}}
{{- end -}}

{{/* Checksum of a Secret the pods read: of its rendered template, or of the existing Secret's name. (dict "root" $ "existing" EXISTING-SECRET-NAME "template" "/path/of/its/template.yaml") */}}
{{- define "agentforge.secretChecksum" -}}
{{- $root := .root -}}
{{- if .existing -}}
{{- .existing | sha256sum -}}
{{- else -}}
{{- include (print $root.Template.BasePath .template) $root | sha256sum -}}
{{- end -}}
{{- end -}}

{{/* checksum/config and checksum/secret annotations, so pods roll when their settings change. */}}
{{- define "agentforge.configChecksums" -}}
{{- dict "checksum/config" (include (print .Template.BasePath "/app/configmap.yaml") . | sha256sum) "checksum/secret" (include "agentforge.secretChecksum" (dict "root" . "existing" (include "agentforge.providedAppSecret" .) "template" "/app/secret.yaml")) | toYaml -}}
{{- end -}}
