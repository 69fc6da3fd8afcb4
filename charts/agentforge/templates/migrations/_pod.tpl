{{/* Pod template of the migration Job: (dict "root" $ "db" DATABASE "image" BACKEND-IMAGE). */}}
{{- define "agentforge.migrationPod" -}}
{{- $root := .root -}}
{{- $backend := $root.Values.backend -}}
{{- $m := $root.Values.migrations -}}
metadata:
  {{- include "agentforge.podMetadata" (dict "root" $root "component" "migrations" "values" $backend "annotations" (dict)) | nindent 2 }}
spec:
  restartPolicy: Never
  serviceAccountName: {{ include "agentforge.serviceAccountName" (dict "root" $root "component" "backend" "serviceAccount" $backend.serviceAccount) }}
  {{- include "agentforge.podSettings" (dict "root" $root "component" "migrations" "values" $backend "images" (list $backend.image $root.Values.postgresql.image)) | nindent 2 }}
  initContainers:
    {{- /* First: a native sidecar (restartPolicy Always, e.g. a database proxy) among them is up before the wait. */}}
    {{- with include "agentforge.extraContainers" (dict "root" $root "path" "migrations.extraInitContainers" "containers" $m.extraInitContainers "securityContext" $backend.containerSecurityContext) }}
    {{- . | nindent 4 }}
    {{- end }}
    - name: wait-for-database
      image: {{ include "agentforge.image" (list $root $root.Values.postgresql.image) }}
      imagePullPolicy: {{ $root.Values.postgresql.image.pullPolicy }}
      command:
        - sh
        - -c
        - until pg_isready --quiet --host="$DB_HOST" --port="$DB_PORT"; do echo "waiting for $DB_HOST:$DB_PORT"; sleep 2; done
      env:
        - name: DB_HOST
          value: {{ .db.host | quote }}
        - name: DB_PORT
          value: {{ .db.port | quote }}
        # pg_isready never authenticates, but without a user name libpq looks up the OS user, which the
        # image does not know under the backend's uid, and gives up without trying.
        - name: PGUSER
          valueFrom:
            secretKeyRef:
              name: {{ include "agentforge.secretName" $root }}
              key: POSTGRES_USER
      {{- include "agentforge.containerSettings" (dict "containerSecurityContext" $backend.containerSecurityContext "resources" $m.waitResources) | nindent 6 }}
  containers:
    - name: migrate
      image: {{ .image }}
      imagePullPolicy: {{ $backend.image.pullPolicy }}
      workingDir: {{ $m.workingDir }}
      # alembic/env.py hands DATABASE_URL to configparser, which reads "%" (percent-encoded passwords) as
      # interpolation: every "%" is doubled for it, so any password works.
      command:
        - sh
        - -c
        - 'set -e; url=$(printf "%s" "$DATABASE_URL" | sed "s/%/%%/g"); export DATABASE_URL="$url"; exec "$@"'
        - migrate
        {{- toYaml $m.command | nindent 8 }}
      env:
        {{- include "agentforge.pythonEnv" $backend.server | nindent 8 }}
        {{- /* What the migrations read: the database, and what the settings module refuses to load without. */}}
        - name: DEBUG
          valueFrom:
            configMapKeyRef:
              name: {{ include "agentforge.configMapName" $root }}
              key: DEBUG
        {{- include "agentforge.secretEnv" (list $root "SECRET_KEY" "DATABASE_URL") | nindent 8 }}
        {{- with include "agentforge.databaseCaEnv" $root }}
        {{- . | nindent 8 }}
        {{- end }}
        {{- with $backend.extraEnv }}
        {{- include "agentforge.tpl" (list $root .) | nindent 8 }}
        {{- end }}
      {{- with $backend.extraEnvFrom }}
      envFrom:
        {{- include "agentforge.tpl" (list $root .) | nindent 8 }}
      {{- end }}
      {{- include "agentforge.containerSettings" (dict "containerSecurityContext" $backend.containerSecurityContext "resources" $m.resources) | nindent 6 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        {{- with include "agentforge.externalCaMounts" (list $root "postgresql") }}
        {{- . | nindent 8 }}
        {{- end }}
        {{- with $backend.extraVolumeMounts }}
        {{- include "agentforge.tpl" (list $root .) | nindent 8 }}
        {{- end }}
  volumes:
    - name: tmp
      emptyDir: {}
    {{- with include "agentforge.externalCaVolumes" (list $root "postgresql") }}
    {{- . | nindent 4 }}
    {{- end }}
    {{- with $backend.extraVolumes }}
    {{- include "agentforge.tpl" (list $root .) | nindent 4 }}
    {{- end }}
{{- end -}}
