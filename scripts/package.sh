#!/usr/bin/env bash
# Packages the chart into dist/ with `helm package`; signs it when SIGN_KEY names a GPG key, writing the
# provenance file <chart>-<version>.tgz.prov beside it, and checks that signature with `helm verify`.
# Prints the package's path as the last line of stdout (everything else goes to stderr).
#
# Environment:
#   SIGN_KEY         the GPG key to sign with (user id, e-mail or fingerprint); empty: no signature
#   KEYRING          the secret keyring that holds it (default ${GNUPGHOME:-~/.gnupg}/secring.gpg). helm reads only
#                    the legacy keyring format, which GnuPG >= 2.1 does not write: make one with
#                    gpg --export-secret-keys "$SIGN_KEY" > secring.gpg
#   PASSPHRASE_FILE  file holding the key's passphrase (empty: the key has none)
#   DESTINATION      output folder (default dist/)
#   CHART_DIR        the chart (default charts/agentforge)
#   HELM             the helm binary (default .tools/bin/helm)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HELM="${HELM:-$ROOT/.tools/bin/helm}"
CHART_DIR="${CHART_DIR:-$ROOT/charts/agentforge}"
DESTINATION="${DESTINATION:-$ROOT/dist}"

die() { printf 'package.sh: %s\n' "$*" >&2; exit 1; }

[[ -x "$HELM" ]] || die "$HELM is missing: run \`make tools\`"
[[ -f "$CHART_DIR/Chart.yaml" ]] || die "CHART_DIR=$CHART_DIR holds no Chart.yaml"

chart_field() { "$HELM" show chart "$CHART_DIR" | awk -v k="$1:" '$1 == k { gsub(/["'\'']/, "", $2); print $2 }'; }
name=$(chart_field name)
version=$(chart_field version)
mkdir -p "$DESTINATION"
package="$(cd "$DESTINATION" && pwd)/$name-$version.tgz"

# A provenance file left by an earlier signed run would describe other bytes, and `helm push` uploads
# whatever .prov lies beside the package.
rm -f "$package" "$package.prov"

args=(package "$CHART_DIR" --destination "$DESTINATION")
if [[ -n "${SIGN_KEY:-}" ]]; then
  KEYRING="${KEYRING:-${GNUPGHOME:-$HOME/.gnupg}/secring.gpg}"
  [[ -r "$KEYRING" ]] || die "KEYRING=$KEYRING is not a readable file. helm needs the legacy keyring format:
  gpg --export-secret-keys '$SIGN_KEY' > secring.gpg   and then KEYRING=secring.gpg"
  args+=(--sign --key "$SIGN_KEY" --keyring "$KEYRING")
  if [[ -n "${PASSPHRASE_FILE:-}" ]]; then
    [[ -r "$PASSPHRASE_FILE" ]] || die "PASSPHRASE_FILE=$PASSPHRASE_FILE is not a readable file"
    args+=(--passphrase-file "$PASSPHRASE_FILE")
  fi
elif [[ -n "${KEYRING:-}" ]]; then
  die "KEYRING is set but SIGN_KEY is empty: name the key to sign with (SIGN_KEY=<user id or fingerprint>)"
fi

if ! "$HELM" "${args[@]}" >&2; then
  rm -f "$package" "$package.prov"  # helm writes the package before it signs: leave no unsigned one behind
  die "helm package failed${SIGN_KEY:+ (is '$SIGN_KEY' a secret key in $KEYRING?)}"
fi
[[ -f "$package" ]] || die "helm package wrote no $package"

if [[ -n "${SIGN_KEY:-}" ]]; then
  # The secret keyring carries the public keys too, so it verifies what it signed.
  "$HELM" verify --keyring "$KEYRING" "$package" >&2 || die "helm verify refused the fresh signature of $package"
  echo "package.sh: signed with '$SIGN_KEY': $package.prov" >&2
fi
echo "$package"
