#!/usr/bin/env bash
# The release step a CI system runs on a tag (and `make publish` runs by hand): lint the chart, check its
# version is new in the registry, package it (signed when a key is given), push it, read it back.
# It refuses a version that is already published or not above the highest published one: an OCI tag can be
# overwritten, a released chart must not be.
#
# Environment:
#   REGISTRY              oci://host[:port]/path (required); the chart lands at REGISTRY/<name>:<version>
#   REGISTRY_USERNAME     with REGISTRY_PASSWORD: log in first (`helm registry login --password-stdin`), into a
#   REGISTRY_PASSWORD     throwaway registry config removed on exit. Neither: anonymous, or an earlier login.
#   PLAIN_HTTP=1          plain HTTP instead of HTTPS (a local registry)
#   SIGN_KEY, KEYRING, PASSPHRASE_FILE   sign the package (see scripts/package.sh)
#   RELEASE_TAG           the git tag that triggered the release (v1.2.3, agentforge-1.2.3 or 1.2.3); when set it
#                         must name the chart's version
#   DRY_RUN=1             everything but the push
#   CHART_DIR, DESTINATION, HELM   as in scripts/package.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export HELM="${HELM:-$ROOT/.tools/bin/helm}"
export CHART_DIR="${CHART_DIR:-$ROOT/charts/agentforge}"

log() { printf '[release] %s\n' "$*" >&2; }
die() { printf '[release] error: %s\n' "$*" >&2; exit 1; }

[[ -x "$HELM" ]] || die "$HELM is missing: run \`make tools\`"
REGISTRY="${REGISTRY:-}"
[[ -n "$REGISTRY" ]] || die "REGISTRY is not set: REGISTRY=oci://host[:port]/path"
[[ "$REGISTRY" == oci://?* ]] || die "REGISTRY must be an oci:// reference (oci://host[:port]/path), got '$REGISTRY'"
REGISTRY="${REGISTRY%/}"
host="${REGISTRY#oci://}"
host="${host%%/*}"
if [[ -n "${REGISTRY_USERNAME:-}" && -z "${REGISTRY_PASSWORD:-}" ]] ||
   [[ -z "${REGISTRY_USERNAME:-}" && -n "${REGISTRY_PASSWORD:-}" ]]; then
  die "set both REGISTRY_USERNAME and REGISTRY_PASSWORD, or neither"
fi
plain=()
[[ "${PLAIN_HTTP:-}" == 1 ]] && plain=(--plain-http)

chart_field() { "$HELM" show chart "$CHART_DIR" | awk -v k="$1:" '$1 == k { gsub(/["'\'']/, "", $2); print $2 }'; }
name=$(chart_field name)
version=$(chart_field version)
log "chart $name $version from $CHART_DIR -> $REGISTRY/$name"

if [[ -n "${RELEASE_TAG:-}" ]]; then
  case "$RELEASE_TAG" in
    "$version" | "v$version" | "$name-$version") ;;
    *) die "RELEASE_TAG=$RELEASE_TAG does not name the chart version $version (want v$version or $name-$version)" ;;
  esac
fi

log "lint"
"$HELM" lint --strict "$CHART_DIR" >&2 || die "helm lint --strict failed"

if [[ -n "${REGISTRY_USERNAME:-}" ]]; then
  HELM_REGISTRY_CONFIG="$(mktemp -d)/config.json"
  export HELM_REGISTRY_CONFIG
  trap 'rm -rf "$(dirname "$HELM_REGISTRY_CONFIG")"' EXIT
  log "log in to $host as $REGISTRY_USERNAME"
  printf '%s' "$REGISTRY_PASSWORD" |
    "$HELM" registry login "$host" --username "$REGISTRY_USERNAME" --password-stdin "${plain[@]}" >&2 ||
    die "helm registry login $host failed"
fi

log "check that $version is new"
set +e
python3 "$ROOT/ci/check_version.py" "$REGISTRY" "$name" "$version" "${plain[@]}"
status=$?
set -e
case $status in
  0) ;;
  1) die "refusing to publish $name $version (see above)" ;;
  *) die "could not list the published versions of $REGISTRY/$name (see above); nothing was pushed" ;;
esac

log "package"
package=$("$ROOT/scripts/package.sh" | tail -n 1)
log "packaged $package${SIGN_KEY:+ (signed, $package.prov)}"

if [[ "${DRY_RUN:-}" == 1 ]]; then
  log "DRY_RUN=1: not pushing $package"
  exit 0
fi

log "push"
out=$("$HELM" push "$package" "$REGISTRY" "${plain[@]}" 2>&1) || { printf '%s\n' "$out" >&2; die "helm push failed"; }
printf '%s\n' "$out" >&2
digest=$(awk '$1 == "Digest:" { print $2 }' <<<"$out")

# Read it back: the registry serves the chart under the version we meant to publish.
"$HELM" show chart "$REGISTRY/$name" --version "$version" "${plain[@]}" >/dev/null ||
  die "pushed, but $REGISTRY/$name --version $version cannot be read back"
log "published $REGISTRY/$name:$version@$digest"
echo "$REGISTRY/$name:$version@$digest"
