{{/*
The chart's one validation layer: every constraint between values that the schema (values.schema.json) cannot
express, and every check on what the templates compute from the values. Each refusal names every key involved and
what to set; all refusals of one input are reported together, in one error, in the order of the sections below.
The chart README's list of constraints points here.

When it runs: every template of the chart (NOTES.txt and templates/tests/ included) starts with
`include "agentforge.validate" .`, which runs agentforge.validateValues once per render (it marks .Values._validated)
and renders nothing. Whichever template Helm renders first therefore validates before that template computes
anything, whatever order Helm renders them in, and templates/app/secret.yaml and the others that are included by
another template for a checksum validate through it too. So `helm template`, `helm install` and `helm upgrade` all
refuse before any object is computed, and no template or helper refuses anything itself (no `fail` or `required`
outside this file).

Checks that need what the templates compute are run here too, by calling the same helpers:
- the extra containers of each pod (rendered with tpl, then held to Pod Security "restricted"):
  agentforge.extraContainers.review, which agentforge.extraContainers renders from;
- extraObjects, rendered with tpl as templates/extra-objects/objects.yaml renders them;
- the live Secrets the release reads or keeps values of (`lookup`, which finds nothing under `helm template` and
  --dry-run=client): agentforge.validate.appSecret, agentforge.validate.keptSecretValue;
- the Redis memory sizes (agentforge.redisBytes, agentforge.bytes in _units.tpl).
No check is left outside this file.
*/}}
{{- define "agentforge.validate" -}}
{{- if not (hasKey .Values "_validated") -}}
{{- $_ := set .Values "_validated" true -}}
{{- include "agentforge.validateValues" . -}}
{{- end -}}
{{- end -}}

{{/* The checks, in sections; the first refusal reported is the first section's. */}}
{{- define "agentforge.validateValues" -}}
{{- $helm := .Capabilities.HelmVersion.Version -}}
{{- if not (semverCompare ">=3.15.0-0" $helm) -}}
{{- fail (printf "this chart needs Helm 3.15 or later (the first built for Kubernetes 1.30, the oldest the chart supports); this is Helm %s" $helm) -}}
{{- end -}}
{{- $v := .Values -}}
{{- $errors := list -}}
{{- /* Lists of components come from the registry (files/components.yaml), in its order. */ -}}
{{- $components := include "agentforge.componentsWith" (list . "") | fromJsonArray -}}

{{- /* An HTTP server's grace period must cover its preStop sleep plus its server's graceful shutdown (uvicorn's
--timeout-graceful-shutdown; Next.js has none and exits at once): the kubelet counts the sleep against it. */ -}}
{{- range $entry := include "agentforge.componentsWith" (list . "httpServer") | fromJsonArray -}}
{{- $component := $entry.key -}}
{{- $c := index $v $component -}}
{{- $graceful := 0 -}}
{{- if $c.server -}}{{- $graceful = int $c.server.gracefulShutdownSeconds -}}{{- end -}}
{{- $sleep := include "agentforge.preStopSleepSeconds" $c | int -}}
{{- $sleepKey := ternary "lifecycleHooks.preStop.sleep.seconds" "preStopSleepSeconds" (not (empty $c.lifecycleHooks)) -}}
{{- $drain := add $sleep $graceful -}}
{{- if le (int $c.terminationGracePeriodSeconds) (int $drain) -}}
{{- $errors = append $errors (printf "%s.terminationGracePeriodSeconds (%d) must exceed %s.%s (%d)%s = %d: the kubelet kills the pod when it ends, in the middle of the requests it drains" $component (int $c.terminationGracePeriodSeconds) $component $sleepKey $sleep (ternary (printf " + %s.server.gracefulShutdownSeconds (%d)" $component $graceful) "" (hasKey $c "server")) (int $drain)) -}}
{{- end -}}
{{- end -}}

{{- /* Server arguments that would start more than one process, or recycle or reload the only one: the in-memory
state (WebSocket sessions, collections) lives in one process. */ -}}
{{- $servers := include "agentforge.componentsWith" (list . "server") | fromJsonArray -}}
{{- range $entry := $servers -}}
{{- $path := printf "%s.server.extraArgs" $entry.key -}}
{{- range (index $v $entry.key).server.extraArgs -}}
{{- if regexMatch "^--(workers|reload|limit-max-requests)([= ]|$)" (toString .) -}}
{{- $errors = append $errors (printf "%s must not contain %q: the server runs exactly one process, which holds the in-memory state (set workers in values, which must be 1)" $path .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- /* uvicorn also reads every option from a UVICORN_<OPTION> variable when the command line leaves it out
(UVICORN_LIMIT_MAX_REQUESTS, UVICORN_RELOAD), and WEB_CONCURRENCY for the worker count. */ -}}
{{- range $entry := $servers -}}
{{- $path := printf "%s.extraEnv" $entry.key -}}
{{- range (index $v $entry.key).extraEnv -}}
{{- if regexMatch "^(UVICORN_(WORKERS|RELOAD|LIMIT_MAX_REQUESTS)|WEB_CONCURRENCY)$" (toString .name) -}}
{{- $errors = append $errors (printf "%s must not set %s: uvicorn reads it as a server option, and the server runs exactly one process, which holds the in-memory state (set workers in values, which must be 1)" $path .name) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /* Discussion sessions and pipeline runs live in one backend pod's memory: routes to several need affinity. */ -}}
{{- $route := $v.httpRoute -}}
{{- if and $route.enabled (not $route.parentRef.name) -}}
{{- $errors = append $errors "httpRoute.parentRef.name is required when httpRoute.enabled is true: name the Gateway the routes attach to" -}}
{{- end -}}
{{- $pods := ternary $v.backend.autoscaling.maxReplicas $v.backend.replicaCount $v.backend.autoscaling.enabled | int -}}
{{- if and $route.enabled (gt $pods 1) (not $route.sessionPersistence.enabled) (not $route.sessionPersistence.providedByGateway) (not $route.controller) -}}
{{- $errors = append $errors (printf "httpRoute.enabled with up to %d backend pods needs affinity: discussion sessions and pipeline runs live in one backend pod's memory, so a client must keep reaching the same pod. Set httpRoute.sessionPersistence.enabled=true (cookie affinity; needs the Gateway API experimental channel), or httpRoute.controller=traefik on Traefik, or httpRoute.sessionPersistence.providedByGateway=true if your Gateway pins clients by a policy of its own, or run one backend pod (backend.autoscaling.enabled=false, backend.replicaCount=1)" $pods) -}}
{{- end -}}

{{- /* The Ingress names its controller: the chart assumes none (ingress-nginx, the old default, is retired). */ -}}
{{- $ingress := $v.ingress -}}
{{- $keepNginx := "ingress.enabled=true ingress.controller=ingress-nginx (the settings earlier versions of the chart rendered by default: class nginx, cookie affinity, WebSocket timeouts, the namespace ingress-nginx in the NetworkPolicies)" -}}
{{- if $ingress.nginx -}}
{{- $errors = append $errors (printf "ingress.nginx was removed: the ingress-nginx settings are a preset now. Set %s, and move ingress.nginx.affinityCookie to ingress.affinityCookie, websocketTimeoutSeconds and proxyBodySize to ingress.*; or choose another controller (README: Moving from ingress-nginx). With helm upgrade --reuse-values the old values keep it: use --reset-then-reuse-values" $keepNginx) -}}
{{- end -}}
{{- if and $ingress.enabled (not $ingress.controller) -}}
{{- $errors = append $errors (printf "ingress.controller is required when ingress.enabled is true: traefik, haproxy, ingress-nginx or generic, whose preset renders that controller's affinity cookie and WebSocket timeouts. To keep what earlier versions rendered, set %s" $keepNginx) -}}
{{- end -}}
{{- if and $ingress.enabled (eq $ingress.controller "generic") -}}
{{- if and (gt $pods 1) (not $ingress.affinityProvidedByController) -}}
{{- $errors = append $errors (printf "ingress.controller=generic with up to %d backend pods needs affinity: discussion sessions and pipeline runs live in one backend pod's memory, so a client must keep reaching the same pod. Set ingress.controller to traefik, haproxy or ingress-nginx (their presets pin clients with a cookie), or give your controller's affinity settings in ingress.annotations and set ingress.affinityProvidedByController=true, or run one backend pod (backend.autoscaling.enabled=false, backend.replicaCount=1)" $pods) -}}
{{- end -}}
{{- if and $v.networkPolicy.enabled (not $v.networkPolicy.ingressNamespaceSelector) -}}
{{- $errors = append $errors "networkPolicy.ingressNamespaceSelector is required with ingress.controller=generic: a LabelSelector of your ingress controller's namespaces ({matchLabels: {}} for every namespace)" -}}
{{- end -}}
{{- end -}}
{{- /* An upgrade must not drop, without a word, the Ingress that earlier versions rendered for ingress-nginx by default
(lookup finds nothing under helm template or --dry-run=client, so this runs against a cluster only). */ -}}
{{- if and .Release.IsUpgrade (not $ingress.enabled) (ne $ingress.controller "generic") -}}
{{- $live := lookup "networking.k8s.io/v1" "Ingress" (include "agentforge.namespace" .) (include "agentforge.componentName" (list . "backend")) -}}
{{- if and $live (hasKey ($live.metadata.annotations | default dict) "nginx.ingress.kubernetes.io/affinity") -}}
{{- $errors = append $errors (printf "this upgrade would delete the Ingress %s, which carries the ingress-nginx settings earlier versions of the chart rendered by default (this version renders no Ingress unless asked). To keep it, set %s; to move, see README: Moving from ingress-nginx; to delete it, set ingress.controller=generic with ingress.enabled=false" $live.metadata.name $keepNginx) -}}
{{- end -}}
{{- end -}}

{{- /* A cert-manager Certificate covers the edge's hostnames, and one issuer writes its Secret. */ -}}
{{- $cert := $v.certificate -}}
{{- if $cert.enabled -}}
{{- if not $cert.issuerRef.name -}}
{{- $errors = append $errors "certificate.issuerRef.name is required when certificate.enabled is true: name the cert-manager Issuer or ClusterIssuer (certificate.issuerRef.kind) that signs it" -}}
{{- end -}}
{{- if not (include "agentforge.edgeHostnames" . | fromYamlArray) -}}
{{- $errors = append $errors "certificate.enabled needs a hostname to certify: enable ingress (ingress.hosts) or httpRoute with httpRoute.hostnames (routes without hostnames match every host, which no certificate names)" -}}
{{- end -}}
{{- if $ingress.certManager.clusterIssuer -}}
{{- $errors = append $errors (printf "certificate.enabled and ingress.certManager.clusterIssuer (%q) both ask cert-manager for the Secret %s: set one of them" $ingress.certManager.clusterIssuer (include "agentforge.tlsSecretName" .)) -}}
{{- end -}}
{{- end -}}
{{- /* A TLS entry for a host the Ingresses do not serve protects nothing: most likely a typo. */ -}}
{{- if $ingress.enabled -}}
{{- range $i, $tls := $ingress.tls -}}
{{- if not $tls.secretName -}}
{{- $errors = append $errors (printf "ingress.tls[%d].secretName is required: the Secret that holds the certificate of %s" $i (join ", " ($tls.hosts | default list))) -}}
{{- end -}}
{{- range $tls.hosts -}}
{{- if not (has . $ingress.hosts) -}}
{{- $errors = append $errors (printf "ingress.tls[%d].hosts names %q, which is not in ingress.hosts (%s): the Ingresses serve only those hosts" $i . (join ", " $ingress.hosts)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /* A credential given inline while the Secret that holds it comes from elsewhere would be ignored. */ -}}
{{- $appSecretFrom := printf "secrets.existingSecret (%q)" $v.secrets.existingSecret -}}
{{- $appSecretOff := "leave secrets.existingSecret empty" -}}
{{- if and $v.externalSecrets.enabled (not $v.secrets.existingSecret) -}}
{{- $appSecretFrom = printf "externalSecrets.enabled (the Secret %q, from your store)" (include "agentforge.secretName" .) -}}
{{- $appSecretOff = "set externalSecrets.enabled=false" -}}
{{- end -}}
{{- if or $v.secrets.existingSecret $v.externalSecrets.enabled -}}
{{- range $key, $value := dict "secrets.secretKey" $v.secrets.secretKey "secrets.encryptionKey" $v.secrets.encryptionKey "postgresql.auth.password" $v.postgresql.auth.password "redis.auth.password" $v.redis.auth.password "externalDatabase.password" $v.externalDatabase.password "externalRedis.password" $v.externalRedis.password "externalDatabase.existingSecret" $v.externalDatabase.existingSecret "externalRedis.existingSecret" $v.externalRedis.existingSecret -}}
{{- if $value -}}
{{- $errors = append $errors (printf "%s is set together with %s, which then holds every credential the app reads: %s would be ignored. Put it in that Secret, or %s" $key $appSecretFrom $key $appSecretOff) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $kind := list "externalDatabase" "externalRedis" -}}
{{- $ext := index $v $kind -}}
{{- if and $ext.existingSecret $ext.password -}}
{{- $errors = append $errors (printf "%s.password and %s.existingSecret are both set: set one of them" $kind $kind) -}}
{{- end -}}
{{- end -}}
{{- if and $v.grafana.admin.existingSecret $v.grafana.admin.password -}}
{{- $errors = append $errors "grafana.admin.password and grafana.admin.existingSecret are both set: the password would be ignored. Set one of them" -}}
{{- end -}}

{{- /* Credentials of a server the release does not run, or does not use. */ -}}
{{- if $v.postgresql.enabled -}}
{{- range $key := list "password" "existingSecret" -}}
{{- if index $v.externalDatabase $key -}}
{{- $errors = append $errors (printf "externalDatabase.%s is set while postgresql.enabled is true: the bundled PostgreSQL is used and externalDatabase is ignored. Set postgresql.enabled=false to use the external database" $key) -}}
{{- end -}}
{{- end -}}
{{- else -}}
{{- if $v.postgresql.auth.password -}}
{{- $errors = append $errors "postgresql.auth.password is set while postgresql.enabled is false: it would be ignored. Set externalDatabase.password (or externalDatabase.existingSecret) for the external database" -}}
{{- end -}}
{{- if not (or $v.externalDatabase.password $v.externalDatabase.existingSecret $v.secrets.existingSecret $v.externalSecrets.enabled) -}}
{{- $errors = append $errors "postgresql.enabled is false but the external database has no password: set externalDatabase.password, externalDatabase.existingSecret, or secrets.existingSecret (a Secret holding DATABASE_URL), or externalSecrets.enabled (DATABASE_URL from your store)" -}}
{{- end -}}
{{- end -}}
{{- if $v.redis.enabled -}}
{{- range $key := list "password" "existingSecret" -}}
{{- if index $v.externalRedis $key -}}
{{- $errors = append $errors (printf "externalRedis.%s is set while redis.enabled is true: the bundled Redis is used and externalRedis is ignored. Set redis.enabled=false to use the external Redis" $key) -}}
{{- end -}}
{{- end -}}
{{- else if $v.redis.auth.password -}}
{{- $errors = append $errors "redis.auth.password is set while redis.enabled is false: it would be ignored. Set externalRedis.password (or externalRedis.existingSecret) for the external Redis" -}}
{{- end -}}

{{- /* TLS and URLs of external PostgreSQL and Redis (agentforge.externalServiceErrors, below). */ -}}
{{- $errors = concat $errors (include "agentforge.externalServiceErrors" . | fromJsonArray) -}}
{{- /* Scheduled database dumps (templates/backup/_backup.tpl). */ -}}
{{- $errors = concat $errors (include "agentforge.backup.errors" . | fromJsonArray) -}}
{{- /* The app Secret from an external store (templates/external-secrets/). */ -}}
{{- $errors = concat $errors (include "agentforge.externalSecrets.errors" . | fromJsonArray) -}}
{{- /* Alert windows, the PrometheusRule and the Alertmanagers (templates/monitoring/_alerts.tpl). */ -}}
{{- $errors = concat $errors (include "agentforge.alerts.errors" . | fromJsonArray) -}}

{{- /* Settings that another one switches off. */ -}}
{{- if and $v.networkPolicy.egress.enabled (not $v.networkPolicy.enabled) -}}
{{- $errors = append $errors "networkPolicy.egress.enabled is true while networkPolicy.enabled is false: no policy, egress included, would be rendered. Set networkPolicy.enabled=true, or networkPolicy.egress.enabled=false" -}}
{{- end -}}
{{- range $entry := include "agentforge.componentsWith" (list . "claim") | fromJsonArray -}}
{{- $component := $entry.key -}}
{{- $persistence := (index $v $component).persistence -}}
{{- if and $persistence.existingClaim (not $persistence.enabled) -}}
{{- $errors = append $errors (printf "%s.persistence.existingClaim (%q) is set while %s.persistence.enabled is false: the claim would not be mounted. Set %s.persistence.enabled=true" $component $persistence.existingClaim $component $component) -}}
{{- end -}}
{{- end -}}
{{- $prometheus := $v.prometheus -}}
{{- if and $v.monitoring.enabled $prometheus.persistence.enabled (not $prometheus.persistence.existingClaim) $prometheus.retentionSize -}}
{{- if ge (float64 (include "agentforge.bytes" $prometheus.retentionSize)) (float64 (include "agentforge.bytes" $prometheus.persistence.size)) -}}
{{- $errors = append $errors (printf "prometheus.retentionSize (%s) must be below prometheus.persistence.size (%s): Prometheus deletes old blocks only past it, so the claim would fill up first" $prometheus.retentionSize $prometheus.persistence.size) -}}
{{- end -}}
{{- end -}}
{{- range $kind := list "podMonitor" "serviceMonitor" -}}
{{- $m := index $v.monitoring $kind -}}
{{- if and $m.enabled $m.scrapeTimeout (gt (int (include "agentforge.durationMs" $m.scrapeTimeout)) (int (include "agentforge.durationMs" $m.interval))) -}}
{{- $errors = append $errors (printf "monitoring.%s.scrapeTimeout (%s) is longer than monitoring.%s.interval (%s), which Prometheus refuses" $kind $m.scrapeTimeout $kind $m.interval) -}}
{{- end -}}
{{- end -}}

{{- /* Extension points: a PDB takes one of minAvailable and maxUnavailable. */ -}}
{{- range $entry := include "agentforge.componentsWith" (list . "autoscaled") | fromJsonArray -}}
{{- $component := $entry.key -}}
{{- $pdb := (index $v $component).pdb -}}
{{- $min := not (kindIs "invalid" $pdb.minAvailable) -}}
{{- $max := not (kindIs "invalid" $pdb.maxUnavailable) -}}
{{- if and $min $max -}}
{{- $errors = append $errors (printf "%s.pdb.minAvailable (%v) and %s.pdb.maxUnavailable (%v) are both set: a PodDisruptionBudget takes one of them. Set %s.pdb.minAvailable to null to use maxUnavailable, or leave maxUnavailable out" $component $pdb.minAvailable $component $pdb.maxUnavailable $component) -}}
{{- else if and $pdb.enabled (not $min) (not $max) -}}
{{- $errors = append $errors (printf "%s.pdb.enabled is true but neither %s.pdb.minAvailable nor %s.pdb.maxUnavailable is set: set one of them" $component $component $component) -}}
{{- end -}}
{{- end -}}
{{- /* A Service field that its type does not read would be ignored (or refused by the API server). */ -}}
{{- range $entry := $components -}}
{{- if not $entry.headless -}}
{{- $component := $entry.key -}}
{{- $service := (index $v $component).service -}}
{{- $type := $service.type | default "ClusterIP" -}}
{{- if and (eq $type "ClusterIP") $service.nodePort -}}
{{- $errors = append $errors (printf "%s.service.nodePort (%v) is set while %s.service.type is ClusterIP: set the type to NodePort or LoadBalancer, or leave nodePort out" $component $service.nodePort $component) -}}
{{- end -}}
{{- if and (eq $type "ClusterIP") $service.externalTrafficPolicy -}}
{{- $errors = append $errors (printf "%s.service.externalTrafficPolicy (%s) is set while %s.service.type is ClusterIP: it applies to NodePort and LoadBalancer Services only" $component $service.externalTrafficPolicy $component) -}}
{{- end -}}
{{- range $field := list "loadBalancerIP" "loadBalancerSourceRanges" -}}
{{- if and (ne $type "LoadBalancer") (index $service $field) -}}
{{- $errors = append $errors (printf "%s.service.%s is set while %s.service.type is %s: it applies to LoadBalancer Services only" $component $field $component $type) -}}
{{- end -}}
{{- end -}}
{{- if and $service.sessionAffinityConfig (ne $service.sessionAffinity "ClientIP") -}}
{{- $errors = append $errors (printf "%s.service.sessionAffinityConfig is set while %s.service.sessionAffinity is %q: it applies to ClientIP affinity only" $component $component ($service.sessionAffinity | default "")) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- /* The StatefulSets' Services are headless: their names resolve to the one pod, and nothing balances or pins. */ -}}
{{- range $entry := include "agentforge.componentsWith" (list . "headless") | fromJsonArray -}}
{{- $component := $entry.key -}}
{{- range $field := list "sessionAffinity" "sessionAffinityConfig" -}}
{{- if index (index $v $component).service $field -}}
{{- $errors = append $errors (printf "%s.service.%s is not supported: the %s Service is headless (its name resolves to the one pod), so there is no load balancing to pin" $component $field $component) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- /* The bundled PostgreSQL's configuration: the settings the chart's pod relies on are its own, and max_connections
must hold the backend's worst case, every pod's pool full at once (README: Database connections). */ -}}
{{- if $v.postgresql.enabled -}}
{{- $config := $v.postgresql.config | default dict -}}
{{- range $key, $_ := $config -}}
{{- if not (regexMatch "^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)?$" $key) -}}
{{- $errors = append $errors (printf "postgresql.config.%s is not a PostgreSQL parameter name (lower-case letters, digits and _, with one . for an extension's parameter)" $key) -}}
{{- end -}}
{{- end -}}
{{- range $key := list "port" "listen_addresses" "data_directory" "hba_file" "ident_file" "config_file" "unix_socket_directories" -}}
{{- if hasKey $config $key -}}
{{- $errors = append $errors (printf "postgresql.config.%s is set by the chart (the Service, probes and volumes depend on it): remove it" $key) -}}
{{- end -}}
{{- end -}}
{{- $c := include "agentforge.postgresql.connections" . | fromYaml -}}
{{- if lt (int $c.maxConnections) (int $c.need) -}}
{{- $errors = append $errors (printf "postgresql.config.max_connections (%d) cannot hold the backend's worst case, %d connections: %d pods (%s) x (config.dbPoolSize %d + config.dbMaxOverflow %d) + %d for the migration Job (migrations.enabled) + %d for the exporter (postgresql.metrics.enabled) + %d for the backup (backup.enabled) + %d reserved for an administrator (superuser_reserved_connections). Raise postgresql.config.max_connections to at least %d, or lower %s, config.dbPoolSize or config.dbMaxOverflow" (int $c.maxConnections) (int $c.need) (int $c.pods) $c.podsKey (int $c.poolSize) (int $c.maxOverflow) (int $c.migrations) (int $c.exporter) (int $c.backup) (int $c.reserved) (int $c.need) $c.podsKey) -}}
{{- end -}}
{{- end -}}
{{- /* Pod DNS: dnsPolicy None leaves the pod with no resolver but the ones dnsConfig names. */ -}}
{{- range $entry := $components -}}
{{- $component := $entry.key -}}
{{- $c := index $v $component -}}
{{- if and (eq $c.dnsPolicy "None") (not (dig "nameservers" list ($c.dnsConfig | default dict))) -}}
{{- $errors = append $errors (printf "%s.dnsPolicy is None but %s.dnsConfig.nameservers is empty: the pods would have no DNS server. Give dnsConfig.nameservers, or another dnsPolicy" $component $component) -}}
{{- end -}}
{{- end -}}
{{- /* Update strategies. A rolling update's missing fields take Kubernetes' default, 25%. */ -}}
{{- range $entry := $components -}}
{{- if eq $entry.kind "Deployment" -}}
{{- $component := $entry.key -}}
{{- $strategy := (index $v $component).strategy -}}
{{- $rolling := $strategy.rollingUpdate | default dict -}}
{{- $surge := "25%" -}}
{{- if not (kindIs "invalid" $rolling.maxSurge) -}}
{{- $surge = toString $rolling.maxSurge -}}
{{- end -}}
{{- $unavailable := "25%" -}}
{{- if not (kindIs "invalid" $rolling.maxUnavailable) -}}
{{- $unavailable = toString $rolling.maxUnavailable -}}
{{- end -}}
{{- $rollingUpdate := eq $strategy.type "RollingUpdate" -}}
{{- if and $rollingUpdate (has $surge (list "0" "0%")) (has $unavailable (list "0" "0%")) -}}
{{- $errors = append $errors (printf "%s.strategy.rollingUpdate.maxSurge and maxUnavailable are both 0: the rollout could never replace a pod" $component) -}}
{{- else if and (eq $component "backend") (or (not $rollingUpdate) (not (has $unavailable (list "0" "0%")))) -}}
{{- /* tests/test_backend.py::test_rolling_update_never_takes_a_pod_away_first */ -}}
{{- $errors = append $errors (printf "backend.strategy must be a RollingUpdate with rollingUpdate.maxUnavailable 0 (it is type %s, maxUnavailable %s): each backend pod's one worker holds its WebSocket sessions, so a rollout starts the new pod before it stops an old one. Raise rollingUpdate.maxSurge to roll faster" $strategy.type (ternary $unavailable "-" $rollingUpdate)) -}}
{{- else if and $rollingUpdate (dig "persistence" "enabled" false (index $v $component)) (not (has $surge (list "0" "0%"))) -}}
{{- $errors = append $errors (printf "%s.strategy: a RollingUpdate with maxSurge %s starts the new pod while the old one holds the ReadWriteOnce claim (%s.persistence.enabled): keep type Recreate, or set rollingUpdate.maxSurge to 0 and maxUnavailable to 1" $component $surge $component) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /* Checks on what the templates compute from the values (tpl-rendered extension points, the live Secrets the
release reads, the Redis memory sizes), in the order Helm renders the objects that use them: the first message is
the one the object rendered first would have raised. */ -}}
{{- $appSecretChecks := not (include "agentforge.providedAppSecret" .) -}}
{{- $redis := $v.redis -}}
{{- if $redis.enabled -}}
{{- /* Room above maxmemory: Redis' own overhead (buffers, fragmentation, the fork of a background save) lives
outside maxmemory, and a limit at maxmemory gets the pod OOM-killed under load. Rule: the limit must be at least
maxmemory + 25%, and at least maxmemory + 32Mi. */ -}}
{{- $maxmemoryBytes := include "agentforge.redisBytes" $redis.maxmemory -}}
{{- $limit := dig "limits" "memory" "" ($redis.resources | default dict) -}}
{{- $limitBytes := include "agentforge.bytes" $limit -}}
{{- if not $maxmemoryBytes -}}
{{- $errors = append $errors (printf "redis.maxmemory %q is not a Redis memory size (such as 256mb or 1gb)" ($redis.maxmemory | toString | lower)) -}}
{{- else if eq (float64 $maxmemoryBytes) 0.0 -}}
{{- $errors = append $errors "redis.maxmemory must not be 0 (no limit): Redis would grow until the container's memory limit OOM-kills it instead of evicting keys" -}}
{{- else if not $limit -}}
{{- $errors = append $errors (printf "redis.resources.limits.memory is required: set it above redis.maxmemory (%s) by at least 25%% (and 32Mi)" $redis.maxmemory) -}}
{{- else if not $limitBytes -}}
{{- $errors = append $errors (printf "redis.resources.limits.memory %q is not a Kubernetes quantity (such as 384Mi or 1Gi)" $limit) -}}
{{- else -}}
{{- $maxmemory := float64 $maxmemoryBytes -}}
{{- $needed := maxf (mulf $maxmemory 1.25) (addf $maxmemory 33554432) -}}
{{- if lt (float64 $limitBytes) $needed -}}
{{- $errors = append $errors (printf "redis.resources.limits.memory (%v = %.0f bytes) must exceed redis.maxmemory (%s = %.0f bytes) by at least 25%% and 32Mi, i.e. be at least %.0f bytes (%.0fMi): Redis needs memory beyond maxmemory and is OOM-killed at the limit" $limit (float64 $limitBytes) (toString $redis.maxmemory) $maxmemory $needed (ceil (divf $needed 1048576))) -}}
{{- end -}}
{{- end -}}
{{- if $appSecretChecks -}}
{{- $errors = concat $errors (include "agentforge.validate.appSecret" . | fromJsonArray) -}}
{{- $appSecretChecks = false -}}
{{- end -}}
{{- if regexMatch "(?im)^\\s*(requirepass|masterauth|user)\\s" ($redis.extraConfig | default "") -}}
{{- $errors = append $errors "redis.extraConfig must not set requirepass, masterauth or user: passwords belong in the Secret (redis.auth.password), never in a ConfigMap" -}}
{{- end -}}
{{- $errors = concat $errors (include "agentforge.validate.extraContainers" (list . "redis") | fromJsonArray) -}}
{{- end -}}
{{- $errors = concat $errors (include "agentforge.validate.extraContainers" (list . "prometheus") | fromJsonArray) -}}
{{- $errors = concat $errors (include "agentforge.validate.extraContainers" (list . "postgresql") | fromJsonArray) -}}
{{- $dnsSelector := $v.networkPolicy.egress.dnsNamespaceSelector -}}
{{- if and $v.networkPolicy.enabled (or (kindIs "invalid" $dnsSelector) (eq (toString $dnsSelector) "")) -}}
{{- $errors = append $errors "networkPolicy.egress.dnsNamespaceSelector is required: a LabelSelector of the cluster DNS's namespace" -}}
{{- end -}}
{{- $grafana := include "agentforge.grafana.enabled" . -}}
{{- if and (or $v.monitoring.dashboardConfigMap.enabled $grafana) (not (.Files.Get "files/dashboards/agentforge.json")) -}}
{{- $errors = append $errors "files/dashboards/agentforge.json is missing from the chart" -}}
{{- end -}}
{{- if $v.migrations.enabled -}}
{{- with (include "agentforge.extraContainers.review" (dict "root" . "path" "migrations.extraInitContainers" "containers" $v.migrations.extraInitContainers "securityContext" $v.backend.containerSecurityContext) | fromJson).error -}}
{{- $errors = append $errors . -}}
{{- end -}}
{{- end -}}
{{- if $grafana -}}
{{- if not $v.grafana.admin.existingSecret -}}
{{- with include "agentforge.validate.keptSecretValue" (dict "root" . "secret" (include "agentforge.grafana.secretName" .) "key" "admin-password" "value" $v.grafana.admin.password "path" "grafana.admin.password" "reason" "Grafana stores the admin password in its database on first start and ignores later changes; change it in Grafana (grafana cli admin reset-admin-password)") -}}
{{- $errors = append $errors . -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $errors = concat $errors (include "agentforge.validate.extraContainers" (list . "grafana") | fromJsonArray) -}}
{{- $errors = concat $errors (include "agentforge.validate.scaling" (list . "frontend") | fromJsonArray) -}}
{{- $errors = concat $errors (include "agentforge.validate.extraContainers" (list . "frontend") | fromJsonArray) -}}
{{- /* extraObjects: each item renders one object. */ -}}
{{- range $i, $item := $v.extraObjects -}}
{{- $text := include "agentforge.tpl" (list $ $item) -}}
{{- $object := $text | fromYaml -}}
{{- if or (hasKey $object "Error") (not $object.apiVersion) (not $object.kind) (not (dig "metadata" "name" "" $object)) -}}
{{- $errors = append $errors (printf "extraObjects[%d] must render one Kubernetes object with apiVersion, kind and metadata.name; it renders:\n%s" $i ($text | trim)) -}}
{{- end -}}
{{- end -}}
{{- $errors = concat $errors (include "agentforge.validate.extraContainers" (list . "dataCollector") | fromJsonArray) -}}
{{- $errors = concat $errors (include "agentforge.validate.scaling" (list . "backend") | fromJsonArray) -}}
{{- if $appSecretChecks -}}
{{- $errors = concat $errors (include "agentforge.validate.appSecret" . | fromJsonArray) -}}
{{- end -}}
{{- $errors = concat $errors (include "agentforge.validate.extraContainers" (list . "backend") | fromJsonArray) -}}

{{- with $errors -}}
{{- fail (printf "\n- %s" (join "\n- " .)) -}}
{{- end -}}
{{- end -}}

{{/*
The refusals of a component's extra containers, as a JSON list: (list $ VALUES-KEY), its extraInitContainers first,
then its extraContainers (agentforge.extraContainers.review), held to its port's name and, for a server, its module
(the registry, files/components.yaml); none when the component does not render (the registry's enabledBy).
*/}}
{{- define "agentforge.validate.extraContainers" -}}
{{- $root := index . 0 -}}
{{- $key := index . 1 -}}
{{- $values := index $root.Values $key -}}
{{- $entry := include "agentforge.component" . | fromJson -}}
{{- $module := ternary (dig "server" "module" "" $values) "" $entry.server -}}
{{- $errors := list -}}
{{- if include "agentforge.componentEnabled" (list $root $entry) -}}
{{- range $field := list "extraInitContainers" "extraContainers" -}}
{{- $review := include "agentforge.extraContainers.review" (dict "root" $root "path" (printf "%s.%s" $key $field) "containers" (index $values $field) "securityContext" $values.containerSecurityContext "portName" $entry.port.name "module" $module) | fromJson -}}
{{- with $review.error -}}
{{- $errors = append $errors . -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $errors -}}
{{- end -}}

{{/*
The refusals of a Deployment's PodDisruptionBudget and HorizontalPodAutoscaler, as a JSON list: (list $ VALUES-KEY).
A budget that no eviction can satisfy (minAvailable at or above the replica count, the HPA's minReplicas when it
scales) or that allows none (maxUnavailable 0) blocks every node drain.
*/}}
{{- define "agentforge.validate.scaling" -}}
{{- $key := index . 1 -}}
{{- $values := index (index . 0).Values $key -}}
{{- $component := $key | kebabcase -}}
{{- $errors := list -}}
{{- $pdb := $values.pdb -}}
{{- $autoscaling := $values.autoscaling -}}
{{- $replicas := ternary $autoscaling.minReplicas $values.replicaCount $autoscaling.enabled | int -}}
{{- if $pdb.enabled -}}
{{- if and (not (kindIs "string" $pdb.minAvailable)) (ge ($pdb.minAvailable | int) $replicas) -}}
{{- $errors = append $errors (printf "%s.pdb.minAvailable (%d) must be below the %s replica count (%d): a budget that no eviction can satisfy blocks every node drain" $key ($pdb.minAvailable | int) $component $replicas) -}}
{{- else if has (toString $pdb.maxUnavailable) (list "0" "0%") -}}
{{- $errors = append $errors (printf "%s.pdb.maxUnavailable (%v) must be at least 1 (or 1%%): a budget that allows no eviction blocks every node drain" $key $pdb.maxUnavailable) -}}
{{- end -}}
{{- end -}}
{{- if and $autoscaling.enabled (gt ($autoscaling.minReplicas | int) ($autoscaling.maxReplicas | int)) -}}
{{- $errors = append $errors (printf "%s.autoscaling.minReplicas (%d) must not exceed %s.autoscaling.maxReplicas (%d)" $key ($autoscaling.minReplicas | int) $key ($autoscaling.maxReplicas | int)) -}}
{{- end -}}
{{- toJson $errors -}}
{{- end -}}

{{/*
The refusals of the app Secret the chart generates, as a JSON list ($): a given value that differs from the one in the
live Secret when the data already written depends on the live one, and an external service's existingSecret (read
for its password) that is not in the cluster. Both need the cluster: `helm template` and --dry-run=client read no
live Secret.
*/}}
{{- define "agentforge.validate.appSecret" -}}
{{- $v := .Values -}}
{{- $name := include "agentforge.secretName" . -}}
{{- $errors := list (include "agentforge.validate.keptSecretValue" (dict "root" . "secret" $name "key" "ENCRYPTION_KEY" "value" $v.secrets.encryptionKey "path" "secrets.encryptionKey" "reason" "users' stored LLM API keys are encrypted with it and would be lost")) -}}
{{- if $v.postgresql.enabled -}}
{{- $errors = append $errors (include "agentforge.validate.keptSecretValue" (dict "root" . "secret" $name "key" "POSTGRES_PASSWORD" "value" $v.postgresql.auth.password "path" "postgresql.auth.password" "reason" "PostgreSQL keeps the password it was initialised with, so the backend would be locked out; change it in the database first (ALTER USER ... PASSWORD ...), then in the Secret")) -}}
{{- else if not (include "agentforge.externalUrlRef" (list . "DATABASE_URL")) -}}
{{- $errors = append $errors (include "agentforge.validate.externalSecret" (list . "externalDatabase")) -}}
{{- end -}}
{{- if and (not $v.redis.enabled) (not (include "agentforge.externalUrlRef" (list . "REDIS_URL"))) -}}
{{- $errors = append $errors (include "agentforge.validate.externalSecret" (list . "externalRedis")) -}}
{{- end -}}
{{- toJson (compact $errors) -}}
{{- end -}}

{{/*
A value given for a key of a live Secret that the data already written depends on: refused when it differs from the
live one. (dict "root" $ "secret" NAME "key" KEY "value" GIVEN "path" VALUES-KEY "reason" WHY) -> the message, or
nothing.
*/}}
{{- define "agentforge.validate.keptSecretValue" -}}
{{- $live := lookup "v1" "Secret" (include "agentforge.namespace" .root) .secret | default dict -}}
{{- $liveValue := dig "data" .key "" $live -}}
{{- if and .value $liveValue (ne .value ($liveValue | b64dec)) -}}
{{- printf "%s differs from the value already in Secret %q (key %s), which the existing data depends on: %s. Leave %s empty to keep the current value." .path .secret .key .reason .path -}}
{{- end -}}
{{- end -}}

{{/*
An external service's existingSecret that holds its password: refused when the cluster has no such Secret or key.
(list $ "externalDatabase"|"externalRedis") -> the message, or nothing.
*/}}
{{- define "agentforge.validate.externalSecret" -}}
{{- $root := index . 0 -}}
{{- $path := index . 1 -}}
{{- $ext := index $root.Values $path -}}
{{- if $ext.existingSecret -}}
{{- $secret := lookup "v1" "Secret" (include "agentforge.namespace" $root) $ext.existingSecret | default dict -}}
{{- if not (dig "data" $ext.existingSecretPasswordKey "" $secret) -}}
{{- printf "%s.existingSecret: Secret %q with key %q was not found in namespace %q. Create it before installing, set %s.password instead, or keep the whole URL in that Secret and set %s.existingSecretUrlKey: the pods then read it themselves, so `helm template` and GitOps tools, which cannot read the cluster, render it." $path $ext.existingSecret $ext.existingSecretPasswordKey (include "agentforge.namespace" $root) $path $path -}}
{{- end -}}
{{- end -}}
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
