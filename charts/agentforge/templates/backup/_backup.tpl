{{/*
Scheduled dumps of the application's database (backup.*): a CronJob whose pod runs pg_dump against the database the
application uses (bundled or external, agentforge.databaseEndpoint) and writes the dump into a claim of its own.
*/}}

{{/* The image of the dump container ($), as YAML: backup.image, or postgresql.image as it is while backup.image
.repository is empty (pg_dump then matches the bundled server). */}}
{{- define "agentforge.backup.image" -}}
{{- $image := .Values.backup.image -}}
{{- if $image.repository -}}
{{- toYaml (merge (dict "pullPolicy" ($image.pullPolicy | default "IfNotPresent")) (omit $image "pullPolicy")) -}}
{{- else -}}
{{- toYaml .Values.postgresql.image -}}
{{- end -}}
{{- end -}}

{{/* The claim the dumps are written to ($): backup.persistence.existingClaim, else the chart's. */}}
{{- define "agentforge.backup.claimName" -}}
{{- .Values.backup.persistence.existingClaim | default (include "agentforge.componentName" (list . "backup")) -}}
{{- end -}}

{{/* Where the claim is mounted in the dump container. */}}
{{- define "agentforge.backup.dir" -}}
/backups
{{- end -}}

{{/* The libpq sslmode of pg_dump ($): backup.sslMode, else externalDatabase.sslMode; nothing for the bundled server. */}}
{{- define "agentforge.backup.sslMode" -}}
{{- if not .Values.postgresql.enabled -}}
{{- .Values.backup.sslMode | default .Values.externalDatabase.sslMode -}}
{{- end -}}
{{- end -}}

{{/*
The dump container's script, files/backup.sh. Everything it is told comes from its environment: libpq's PGHOST, PGPORT, PGDATABASE,
PGUSER, PGPASSWORD (pg_dump reads them itself, so no credential is on a command line), BACKUP_DIR, BACKUP_RETENTION,
BACKUP_STALE_MINUTES and BACKUP_WAIT_SECONDS. POSIX sh with the tools of busybox and of coreutils alike (the alpine image and the Debian
stand-in). The dump is written to a hidden partial file and renamed only once pg_dump succeeded and pg_restore reads
its table of contents back: a dump's name never holds a partial file, and nothing is deleted after a failure.
pg_dump runs in the background so that SIGTERM (the Job's deadline, an eviction) reaches the shell, which stops it
and removes the partial file; a partial file left by SIGKILL is removed by a later run once it is older than the
Job's deadline, when no live run can own it. It first waits, for BACKUP_WAIT_SECONDS at most, until the server
answers (pg_isready): a NetworkPolicy enforcer admits a new pod's address a moment after the pod starts, and a dump
that connects at once would be refused; past the wait, pg_dump runs and fails with the server's own error.
*/}}
{{- define "agentforge.backup.script" -}}
{{- .Files.Get "files/backup.sh" | trimSuffix "\n" -}}
{{- end -}}

{{/* The dump container's environment ($), as a YAML list. */}}
{{- define "agentforge.backup.env" -}}
{{- $db := include "agentforge.databaseEndpoint" . | fromYaml -}}
{{- $secret := include "agentforge.secretName" . -}}
{{- $ext := .Values.externalDatabase -}}
{{- /* A DATABASE_URL kept whole in the user's Secret leaves the chart's Secret without the password: the same Secret
holds it under existingSecretPasswordKey. */ -}}
{{- $password := dict "name" $secret "key" "POSTGRES_PASSWORD" -}}
{{- if include "agentforge.externalUrlRef" (list . "DATABASE_URL") -}}
{{- $password = dict "name" $ext.existingSecret "key" $ext.existingSecretPasswordKey -}}
{{- end -}}
- name: PGHOST
  value: {{ $db.host | quote }}
- name: PGPORT
  value: {{ $db.port | quote }}
- name: PGDATABASE
  value: {{ $db.database | toString | quote }}
- name: PGUSER
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: POSTGRES_USER
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      {{- toYaml $password | nindent 6 }}
{{- with include "agentforge.backup.sslMode" . }}
- name: PGSSLMODE
  value: {{ . | quote }}
{{- end }}
{{- with include "agentforge.databaseCaEnv" . }}
{{ . }}
{{- end }}
# An unreachable server fails the attempt (and the Job retries) instead of hanging until the deadline.
- name: PGCONNECT_TIMEOUT
  value: "30"
- name: PGAPPNAME
  value: agentforge-backup
- name: BACKUP_DIR
  value: {{ include "agentforge.backup.dir" . | quote }}
- name: BACKUP_RETENTION
  value: {{ .Values.backup.retention | quote }}
- name: BACKUP_STALE_MINUTES
  value: {{ div (add .Values.backup.activeDeadlineSeconds 59) 60 | quote }}
- name: BACKUP_WAIT_SECONDS
  value: "120"
{{- end -}}

{{/* Constraints on backup.* that the schema cannot express ($), as a JSON list of messages for
agentforge.validateValues. */}}
{{- define "agentforge.backup.errors" -}}
{{- $errors := list -}}
{{- $b := .Values.backup -}}
{{- if $b.enabled -}}
{{- $image := $b.image -}}
{{- if $image.repository -}}
{{- if not (or $image.tag $image.digest) -}}
{{- $errors = append $errors (printf "backup.image.tag (or backup.image.digest) is required with backup.image.repository (%q): the chart's appVersion is no PostgreSQL tag. Name the tag of a PostgreSQL image whose pg_dump is of the server's major version or newer" $image.repository) -}}
{{- end -}}
{{- else -}}
{{- range $key := list "registry" "tag" "digest" "pullPolicy" "pullSecrets" -}}
{{- if index $image $key -}}
{{- $errors = append $errors (printf "backup.image.%s is set while backup.image.repository is empty: the backup then runs postgresql.image as it is, and backup.image.%s would be ignored. Set backup.image.repository too, or leave backup.image.%s empty" $key $key $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and .Values.postgresql.enabled $b.sslMode -}}
{{- $errors = append $errors (printf "backup.sslMode (%q) is set while postgresql.enabled is true: the bundled PostgreSQL takes no TLS. Leave backup.sslMode empty, or set postgresql.enabled=false for an external database" $b.sslMode) -}}
{{- end -}}
{{- $mode := include "agentforge.backup.sslMode" . -}}
{{- if and (has $mode (list "verify-ca" "verify-full")) (not (include "agentforge.externalCa" (list . "postgresql"))) -}}
{{- $errors = append $errors (printf "backup.sslMode (or externalDatabase.sslMode) %q verifies the server's certificate, and pg_dump reads the CA from PGSSLROOTCERT, which only externalDatabase.sslRootCert sets in the backup pod: set externalDatabase.sslRootCert.secret or .configMap (the CA certificate)" $mode) -}}
{{- end -}}
{{- end -}}
{{- toJson $errors -}}
{{- end -}}

{{/*
Pod template of the claim check Job ($): it mounts the backup claim as the dump pods do and writes and removes a file
there. It binds the claim when the release is installed or upgraded: with a WaitForFirstConsumer StorageClass (most
clouds' default) the claim would otherwise stay Pending until the first scheduled dump, and `helm install --wait` (or
Argo CD's health check) would wait for it until its timeout. A claim the dump pods could not write fails the Job then,
not at the first dump.
*/}}
{{- define "agentforge.backup.checkPod" -}}
{{- $b := .Values.backup -}}
{{- $image := include "agentforge.backup.image" . | fromYaml -}}
metadata:
  {{- include "agentforge.podMetadata" (dict "root" . "component" "backup" "values" $b "annotations" (dict)) | nindent 2 }}
spec:
  restartPolicy: Never
  {{- include "agentforge.podSettings" (dict "root" . "component" "backup" "values" $b "images" (list $image)) | nindent 2 }}
  containers:
    - name: check
      image: {{ include "agentforge.image" (list . $image) }}
      imagePullPolicy: {{ $image.pullPolicy }}
      command:
        - sh
        - -c
        - |
          set -eu
          probe=$BACKUP_DIR/.agentforge-write-check
          : >"$probe"
          rm -f "$probe"
          echo "the backup claim is writable by uid $(id -u)"
          ls -ln "$BACKUP_DIR"
      env:
        - name: BACKUP_DIR
          value: {{ include "agentforge.backup.dir" . | quote }}
      {{- include "agentforge.containerSettings" $b | nindent 6 }}
      volumeMounts:
        - name: backups
          mountPath: {{ include "agentforge.backup.dir" . }}
  volumes:
    - name: backups
      persistentVolumeClaim:
        claimName: {{ include "agentforge.backup.claimName" . }}
{{- end -}}
