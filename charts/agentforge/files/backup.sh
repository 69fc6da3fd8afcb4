set -eu
umask 077
dir=$BACKUP_DIR
keep=$BACKUP_RETENTION
find "$dir" -maxdepth 1 -name '.agentforge-*.dump.partial' -mmin +"$BACKUP_STALE_MINUTES" -exec rm -f {} \;
waited=0
until pg_isready --quiet || [ "$waited" -ge "$BACKUP_WAIT_SECONDS" ]; do
  echo "waiting for $PGHOST:$PGPORT to answer ($waited s)"
  sleep 2
  waited=$((waited + 2))
done
name=agentforge-$(date -u +%Y%m%dT%H%M%SZ).dump
while [ -e "$dir/$name" ]; do sleep 1; name=agentforge-$(date -u +%Y%m%dT%H%M%SZ).dump; done
partial=$dir/.$name.partial
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || :; wait "$pid" 2>/dev/null || :; fi
  rm -f "$partial"
}
trap cleanup EXIT
trap 'cleanup; trap - EXIT; exit 143' TERM INT
started=$(date +%s)
pg_dump --format=custom --no-password --file="$partial" &
pid=$!
wait "$pid"
pid=
pg_restore --list "$partial" >/dev/null
sync
mv "$partial" "$dir/$name"
sync
echo "dumped database $PGDATABASE of $PGHOST:$PGPORT into $name: $(wc -c <"$dir/$name") bytes in $(($(date +%s) - started)) s"
ls "$dir" | grep -E '^agentforge-[0-9]{8}T[0-9]{6}Z\.dump$' | sort -r | tail -n +"$((keep + 1))" | while read -r old; do
  if [ "$old" != "$name" ]; then rm -f "$dir/$old"; echo "deleted $old (backup.retention: $keep)"; fi
done
ls -ln "$dir"
