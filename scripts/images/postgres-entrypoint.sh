#!/usr/bin/env bash
# docker-entrypoint.sh of the postgres stand-in: the part of the official postgres image's entrypoint that its
# users rely on. On the first start (no PG_VERSION in PGDATA) it runs initdb as POSTGRES_USER with
# POSTGRES_PASSWORD given through a file descriptor (never on a command line), allows password logins from
# anywhere (`host all all all scram-sha-256`, local connections trusted, as initdb leaves them), creates POSTGRES_DB,
# runs /docker-entrypoint-initdb.d/*.sh and *.sql on a server that listens on the socket only, stops it, then execs
# the command (postgres) in the foreground. Started as root, it owns PGDATA to postgres and drops to it.
set -Eeo pipefail

# `docker run postgres -c x=y`: options go to postgres.
if [ "${1:0:1}" = '-' ]; then
  set -- postgres "$@"
fi

process_sql() {
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc "$@"
}

init_database() {
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "${POSTGRES_HOST_AUTH_METHOD:-}" != trust ]; then
    cat >&2 <<'MSG'
Error: Database is uninitialized and superuser password is not specified.
       Set POSTGRES_PASSWORD to a non-empty value for the superuser, or POSTGRES_HOST_AUTH_METHOD=trust to allow
       all connections without a password (not recommended).
MSG
    exit 1
  fi
  # initdb reads the password's first line; the newline also keeps an empty file from being refused.
  # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of options, as in the official image
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "${POSTGRES_PASSWORD:-}") ${POSTGRES_INITDB_ARGS:-}
  local auth
  auth=${POSTGRES_HOST_AUTH_METHOD:-$(postgres -C password_encryption -D "$PGDATA")}
  printf '\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"

  # A server for the setup only: no TCP listener, so nothing can connect before it is done.
  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p ${PGPORT:-5432}" -w start
  export PGPASSWORD="${POSTGRES_PASSWORD:-}"
  if [ "$POSTGRES_DB" != postgres ] &&
    [ -z "$(process_sql --dbname postgres --set db="$POSTGRES_DB" --tuples-only \
      <<<"SELECT 1 FROM pg_database WHERE datname = :'db';")" ]; then
    process_sql --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
  fi
  local f
  for f in /docker-entrypoint-initdb.d/*; do
    case $f in
      *.sh)
        echo "running $f"
        # shellcheck disable=SC1090 # the user's init scripts
        if [ -x "$f" ]; then "$f"; else . "$f"; fi
        ;;
      *.sql) echo "running $f"; process_sql --dbname "$POSTGRES_DB" -f "$f" ;;
      *) [ -e "$f" ] && echo "ignoring $f" ;;
    esac
  done
  unset PGPASSWORD
  pg_ctl -D "$PGDATA" -m fast -w stop
  echo 'PostgreSQL init process complete; ready for start up.'
}

if [ "$1" = postgres ]; then
  : "${PGDATA:=/var/lib/postgresql/data}" "${POSTGRES_USER:=postgres}"
  : "${POSTGRES_DB:=$POSTGRES_USER}"
  export PGDATA POSTGRES_USER POSTGRES_DB
  if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown -R postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
  fi
  mkdir -p "$PGDATA"
  chmod 700 "$PGDATA" 2>/dev/null || :
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    init_database
  fi
fi

exec "$@"
