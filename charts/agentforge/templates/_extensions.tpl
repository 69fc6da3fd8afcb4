{{/*
Extension points of the values: extra* values rendered with tpl, extra containers held to Pod Security
"restricted" (the Pod Security enforcer), and the look-up of a variable set in extraEnv.
*/}}

{{/*
A value of the values rendered with tpl, so that it may name the release ({{ .Release.Name }},
{{ include "agentforge.fullname" . }}): (list $ VALUE). A string is rendered as it is, anything else as its YAML.
Every extra* value goes through it (extraEnv, extraEnvFrom, extraVolumes, extraVolumeMounts, extraContainers,
extraInitContainers, extraObjects). Text without "{{" is used as it is: tpl would copy every template of the chart
to render it.
*/}}
{{- define "agentforge.tpl" -}}
{{- $value := index . 1 -}}
{{- $text := ternary $value (toYaml $value) (kindIs "string" $value) -}}
{{- if contains "{{" $text -}}
{{- tpl $text (index . 0) -}}
{{- else -}}
{{- $text -}}
{{- end -}}
{{- end -}}

{{/*
Extra containers of a pod reviewed: (dict "root" $ "path" "backend.extraContainers" "containers" LIST
"securityContext" .Values.<component>.containerSecurityContext "portName" PORT-NAME "module" ASGI-MODULE), as JSON
{"containers": LIST, "error": MESSAGE}. Each container is rendered with tpl and gets the component's
containerSecurityContext under its own securityContext. The error names the first container refused: one that does not
render to a container; one that breaks Pod Security "restricted"; one that declares a port named like the component's
(the Service's targetPort, and the port Prometheus and the PodMonitors scrape by name); one whose command runs the
component's own ASGI module (a second server process would split the state the one worker keeps in memory: WebSocket
sessions, collections). agentforge.validateValues reports the error; agentforge.extraContainers renders the list.
*/}}
{{- define "agentforge.extraContainers.review" -}}
{{- $root := .root -}}
{{- $out := list -}}
{{- $error := "" -}}
{{- range $i, $item := .containers -}}
{{- if not $error -}}
{{- $where := printf "%s[%d]" $.path $i -}}
{{- $c := include "agentforge.tpl" (list $root $item) | fromYaml -}}
{{- if hasKey $c "Error" -}}
{{- $error = printf "%s does not render to a container: %s" $where $c.Error -}}
{{- else -}}
{{- $where = printf "%s (%q)" $where (toString $c.name) -}}
{{- $ctx := mergeOverwrite (deepCopy ($.securityContext | default dict)) ($c.securityContext | default dict) -}}
{{- $caps := $ctx.capabilities | default dict -}}
{{- $problems := list -}}
{{- if $ctx.privileged -}}
{{- $problems = append $problems "securityContext.privileged is true" -}}
{{- end -}}
{{- if ne (toString $ctx.allowPrivilegeEscalation) "false" -}}
{{- $problems = append $problems "securityContext.allowPrivilegeEscalation is not false" -}}
{{- end -}}
{{- if not (has "ALL" ($caps.drop | default list)) -}}
{{- $problems = append $problems "securityContext.capabilities.drop lacks ALL" -}}
{{- end -}}
{{- with without ($caps.add | default list) "NET_BIND_SERVICE" -}}
{{- $problems = append $problems (printf "securityContext.capabilities.add holds %s (only NET_BIND_SERVICE is allowed)" (join ", " .)) -}}
{{- end -}}
{{- if eq (toString $ctx.runAsNonRoot) "false" -}}
{{- $problems = append $problems "securityContext.runAsNonRoot is false" -}}
{{- end -}}
{{- if eq (toString $ctx.runAsUser) "0" -}}
{{- $problems = append $problems "securityContext.runAsUser is 0 (root)" -}}
{{- end -}}
{{- range $profile := list "seccompProfile" "appArmorProfile" -}}
{{- if eq (dig $profile "type" "" $ctx) "Unconfined" -}}
{{- $problems = append $problems (printf "securityContext.%s.type is Unconfined" $profile) -}}
{{- end -}}
{{- end -}}
{{- if and $ctx.procMount (ne (toString $ctx.procMount) "Default") -}}
{{- $problems = append $problems "securityContext.procMount is not Default" -}}
{{- end -}}
{{- range $c.ports -}}
{{- if .hostPort -}}
{{- $problems = append $problems (printf "port %v sets hostPort" .containerPort) -}}
{{- end -}}
{{- end -}}
{{- with $problems -}}
{{- $error = printf "%s breaks Pod Security \"restricted\": %s. Extra containers get the component's containerSecurityContext under their own securityContext: leave out what breaks it" $where (join "; " .) -}}
{{- end -}}
{{- range $c.ports -}}
{{- if and (not $error) $.portName (eq (toString .name) $.portName) -}}
{{- $error = printf "%s declares a port named %q, the name of the component's own port: its Service, probes and metrics scraping address that port by name. Name it otherwise" $where .name -}}
{{- end -}}
{{- end -}}
{{- $module := splitList ":" ($.module | default "") | first -}}
{{- if and (not $error) $module (contains $module (join " " (concat ($c.command | default list) ($c.args | default list)))) -}}
{{- $error = printf "%s runs %s, the component's own application (server.module %q): the pod runs exactly one server process, in its own container, which holds the in-memory state (WebSocket sessions, collections); a second one would split it" $where $module $.module -}}
{{- end -}}
{{- $out = append $out (set $c "securityContext" $ctx) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson (dict "containers" $out "error" $error) -}}
{{- end -}}

{{/* Extra containers of a pod, as a YAML list (empty when there are none): the arguments of
agentforge.extraContainers.review, which refuses what they must not do. */}}
{{- define "agentforge.extraContainers" -}}
{{- with (include "agentforge.extraContainers.review" . | fromJson).containers -}}
{{- toYaml . -}}
{{- end -}}
{{- end -}}

{{/* "true" when an extraEnv list sets a variable: (list EXTRA-ENV NAME). */}}
{{- define "agentforge.extraEnvSets" -}}
{{- $name := index . 1 -}}
{{- range index . 0 -}}
{{- if eq (toString .name) $name -}}true{{- end -}}
{{- end -}}
{{- end -}}
