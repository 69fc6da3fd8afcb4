# Quiet build steps with progress, for the install scripts (sourced, not run).
#
#   step NAME "what it builds" COLD_SECONDS COMMAND...      queue COMMAND (a command or a function); COLD_SECONDS: a
#                                                           cold build's duration to show beside it (0: none)
#   steps_wait                                              run the queued steps, showing progress
#
# steps_wait runs the queued steps in order, STEPS_JOBS of them at a time (default 2). Each step's full output goes to
# $STEPS_LOGS/NAME.log (default .tools/logs/). A step with nothing to do (what it builds is there) ends within two
# seconds and is only listed in one "ready:" line. A step that builds gets a line saying what it builds, the cold
# build's duration given to it (if any), and where its log is; then a running line while steps build
# (rewritten in place on a terminal, one line a minute otherwise); then a line with its elapsed time. A failed step
# prints its whole log and steps_wait returns 1. Elapsed times are appended to $STEPS_LOGS/durations.tsv.

STEPS_LOGS=${STEPS_LOGS:-$ROOT/.tools/logs}
STEPS_JOBS=${STEPS_JOBS:-2}
_QUEUE=()
_STEP_PIDS=() _STEP_NAMES=() _STEP_WHAT=() _STEP_TYPICAL=() _STEP_START=() _STEP_SHOWN=()

_steps_duration() {
  local s=$1
  if ((s >= 60)); then printf '%d min %02d s' $((s / 60)) $((s % 60)); else printf '%d s' "$s"; fi
}

step() {
  local name=$1 what=$2 typical=$3 command
  shift 3
  printf -v command '%q ' "$@"
  _QUEUE+=("$name" "$what" "$typical" "$command")
}

_steps_start() {
  local name=$1 what=$2 typical=$3 command=$4
  mkdir -p "$STEPS_LOGS"
  { printf '$ %s\n' "$command"; eval "$command"; } >"$STEPS_LOGS/$name.log" 2>&1 &
  _STEP_PIDS+=($!) _STEP_NAMES+=("$name") _STEP_WHAT+=("$what") _STEP_TYPICAL+=("$typical")
  _STEP_START+=("$EPOCHSECONDS") _STEP_SHOWN+=(0)
}

steps_wait() {
  local failed=0 tty=0 last_note i pid rc now running elapsed ready="" cold
  [[ -t 2 ]] && tty=1
  last_note=$EPOCHSECONDS
  _STEPS_WAIT_START=$EPOCHSECONDS
  while ((${#_STEP_PIDS[@]} || ${#_QUEUE[@]})); do
    while ((${#_QUEUE[@]} && ${#_STEP_PIDS[@]} < STEPS_JOBS)); do
      _steps_start "${_QUEUE[@]:0:4}"
      _QUEUE=("${_QUEUE[@]:4}")
    done
    for i in "${!_STEP_PIDS[@]}"; do
      pid=${_STEP_PIDS[$i]}
      kill -0 "$pid" 2>/dev/null && continue
      if wait "$pid"; then rc=0; else rc=$?; fi
      elapsed=$(($EPOCHSECONDS - _STEP_START[i]))
      ((tty)) && printf '\r\033[K' >&2
      if ((rc == 0)); then
        if ((_STEP_SHOWN[i] == 0)); then
          ready+="${ready:+, }${_STEP_NAMES[$i]}"
        else
          printf '    %-22s done in %s\n' "${_STEP_NAMES[$i]}" "$(_steps_duration "$elapsed")" >&2
        fi
        printf '%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "${_STEP_NAMES[$i]}" "$elapsed" >>"$STEPS_LOGS/durations.tsv"
      else
        printf '!!! %s failed (exit %s) after %s; its log, %s:\n' "${_STEP_NAMES[$i]}" "$rc" \
          "$(_steps_duration "$elapsed")" "$STEPS_LOGS/${_STEP_NAMES[$i]}.log" >&2
        cat "$STEPS_LOGS/${_STEP_NAMES[$i]}.log" >&2
        failed=1
      fi
      unset '_STEP_PIDS[i]' '_STEP_NAMES[i]' '_STEP_WHAT[i]' '_STEP_TYPICAL[i]' '_STEP_START[i]' '_STEP_SHOWN[i]'
    done
    _STEP_PIDS=("${_STEP_PIDS[@]}") _STEP_NAMES=("${_STEP_NAMES[@]}") _STEP_WHAT=("${_STEP_WHAT[@]}")
    _STEP_TYPICAL=("${_STEP_TYPICAL[@]}") _STEP_START=("${_STEP_START[@]}") _STEP_SHOWN=("${_STEP_SHOWN[@]}")
    ((${#_STEP_PIDS[@]} || ${#_QUEUE[@]})) || break
    ((${#_STEP_PIDS[@]} < STEPS_JOBS && ${#_QUEUE[@]})) && continue
    now=$EPOCHSECONDS
    running=""
    for i in "${!_STEP_PIDS[@]}"; do
      if ((_STEP_SHOWN[i] == 0 && now - _STEP_START[i] >= 2)); then
        ((tty)) && printf '\r\033[K' >&2
        cold=""
        ((_STEP_TYPICAL[i] > 0)) && cold="typically $(_steps_duration "${_STEP_TYPICAL[$i]}"); "
        printf '==> %-22s %s (%slog: %s)\n' "${_STEP_NAMES[$i]}" "${_STEP_WHAT[$i]}" "$cold" \
          "${STEPS_LOGS#"$ROOT"/}/${_STEP_NAMES[$i]}.log" >&2
        _STEP_SHOWN[i]=1
      fi
      running+="${running:+, }${_STEP_NAMES[$i]} $(_steps_duration $((now - _STEP_START[i])))"
    done
    if ((tty)); then
      printf '\r\033[K    building: %s' "$running" >&2
    elif ((now - last_note >= 60)); then
      printf '    still building: %s\n' "$running" >&2
      last_note=$now
    fi
    # Quick polls while steps may still end at once (nothing to build), then one a second.
    if ((now - _STEPS_WAIT_START < 2)); then sleep 0.05; else sleep 1; fi
  done
  [[ -z $ready ]] || printf '    ready: %s\n' "$ready" >&2
  return "$failed"
}
