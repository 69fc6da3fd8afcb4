#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, for running the chart's pods as real containers: etcd,
# kube-apiserver, kube-controller-manager and kube-scheduler as plain processes, containerd with runc, a CNI bridge
# of its own, kubelet, kube-proxy (iptables), kube-router (NetworkPolicy firewall only), CoreDNS, a default
# StorageClass `local` and local PersistentVolumes. Root and Linux only. Beside the simulated cluster (cluster.sh),
# which it leaves alone.
# Usage: node.sh up|down|status|kubeconfig|load TAR...|ctr ARGS...|check|snapshot
#   up          start (or reuse a healthy) node; prints the kubeconfig path on stdout
#   down        stop everything and restore the machine: mounts, bridge, iptables/ip6tables/nft/ipset entries,
#               cgroups, kernel settings; keeps only .node/logs/ and containerd's image store (.node/containerd/)
#   status      exit 0 only when the API server answers, the node is Ready and every daemon runs
#   kubeconfig  print the kubeconfig path (use: export KUBECONFIG=$(node.sh kubeconfig))
#   load TAR..  import OCI/docker image archives into containerd (namespace k8s.io), skipping refs already there
#   ctr ARGS..  containerd's ctr on the node's images and containers (namespace k8s.io)
#   check       exit 0 when this machine can run the node, else say which requirement is missing
#   snapshot    print the machine state that `up` changes, normalized, to compare before up and after down
# Environment: AGENTFORGE_NODE_PV_COUNT (local PersistentVolumes, default 12).
#
# Traffic stays on this machine: the API server binds the bridge address only, every other daemon 127.0.0.1 or the
# bridge, CoreDNS has no upstream, the Service range is routed to the bridge, forwarding is enabled on the bridge
# alone, and an nftables table of this script's drops whatever would be forwarded off the bridge or leave another
# interface with a pod's address.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/scripts/kube"
# Pinned versions: KUBERNETES_VERSION, ETCD_VERSION, CONTAINERD_VERSION, KUBE_ROUTER_VERSION.
# shellcheck source=/dev/null
source "$ROOT/scripts/versions.env"
STATE="$ROOT/.node"                 # git-ignored; everything the node writes stays here
LOGS="$STATE/logs"
PIDS="$STATE/pids"
PKI="$STATE/pki"
BEFORE="$STATE/before"              # the machine's settings before `up`, restored by `down`
RUN="$STATE/run"
KUBECONFIG_OUT="$STATE/kubeconfig"
IMAGES_OUT="$ROOT/.tools/images/out"

K8S_BIN="$ROOT/.tools/kubernetes-$KUBERNETES_VERSION/bin"
ETCD_BIN="$ROOT/.tools/etcd-$ETCD_VERSION/etcd"
CTRD_DIR="$ROOT/.tools/containerd-$CONTAINERD_VERSION"
ROUTER_BIN="$ROOT/.tools/kube-router-$KUBE_ROUTER_VERSION/kube-router"
CNI_BIN=/usr/lib/cni
SOCK="$RUN/containerd/containerd.sock"
# A shim's socket is <dir>/<64 hex digits>, and a unix socket path has at most 107 bytes: .node/ when it is short
# enough, else containerd's default (/run/containerd/s).
SHIM_SOCKETS="$RUN/s"
((${#SHIM_SOCKETS} <= 40)) || SHIM_SOCKETS=/run/containerd/s

NODE=agentforge-node
BRIDGE=af-br0
CNI_NET=af-node
NFT_TABLE=agentforge_node
POD_CIDR=10.244.0.0/24
NODE_IP=10.244.0.1                  # the bridge's address: API server, kubelet and the pods' gateway
SERVICE_CIDR=10.96.0.0/24
API_SERVICE_IP=10.96.0.1
DNS_IP=10.96.0.10
API_PORT=6443
ETCD_PORT=12379                     # off etcd's default, so a kwok cluster's etcd may run beside it
PV_COUNT=${AGENTFORGE_NODE_PV_COUNT:-12}
DAEMONS=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy kube-router)
DEBIAN_PACKAGES=(runc containernetworking-plugins iptables ipset nftables conntrack openssl iproute2 util-linux curl)

# Kernel settings the kubelet, kube-proxy or this script may change; recorded before `up`, restored by `down`.
# ip_forward is not among them: the node enables forwarding on its bridge alone and never writes it, while another
# bridge's CNI plugin (an image build's) may, meanwhile.
SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys
  kernel.keys.root_maxbytes net.ipv4.conf.all.route_localnet net.bridge.bridge-nf-call-iptables
  net.bridge.bridge-nf-call-ip6tables net.netfilter.nf_conntrack_max
  net.netfilter.nf_conntrack_tcp_timeout_established net.netfilter.nf_conntrack_tcp_timeout_close_wait)
# Kernel modules the node needs (built in, or loaded by `up` and unloaded by `down`).
MODULES=(overlay br_netfilter)
# Host paths outside .node/ that containerd (shim sockets), the CNI library (its cache) and the kubelet (log
# symlinks, the device plugin socket) write to whatever their configuration says; removed by `down` when `up` found
# them absent.
HOST_PATHS=(/run/containerd /var/lib/cni /var/log/containers /var/lib/kubelet)

export KUBECACHEDIR="$STATE/kube-cache"
# Where the image scripts' tools and Go live on these machines, for shells whose PATH lacks them.
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"

say() { printf '[node] %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
kubectl() { "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_OUT" "$@"; }
ctr() { "$CTRD_DIR/ctr" --address "$SOCK" "$@"; }
# only ARGS...: grep that selects nothing without failing. (No `cmd | grep -q` here: with pipefail, grep's early exit
# can fail cmd with SIGPIPE and the test with it.)
only() { grep "$@" || true; }

# wait_for SECONDS WHAT CMD...: poll CMD until it succeeds; fail naming WHAT (and its log) after SECONDS.
wait_for() {
  local limit=$1 what=$2 deadline
  shift 2
  deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "$what did not come up within ${limit}s (logs: $LOGS/)"
    sleep 0.5
  done
}

# --- the machine's requirements -------------------------------------------------------------------------------------

require_root() {
  [[ $(uname -s) == Linux ]] || die "requirement missing: Linux (this is $(uname -s))"
  ((EUID == 0)) || die "requirement missing: root (the kubelet, containerd, iptables and mounts need it)"
}

require_machine() {
  require_root
  local c
  if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
    for c in cpu memory pids; do
      grep -qw "$c" /sys/fs/cgroup/cgroup.controllers || die "requirement missing: the cgroup v2 '$c' controller"
    done
  else
    for c in cpu cpuacct cpuset memory pids devices freezer; do
      grep -qE "^[^ ]+ [^ ]+ cgroup [^ ]*\b$c\b" /proc/mounts ||
        die "requirement missing: the cgroup v1 '$c' controller"
    done
  fi
  grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null ||
    die "requirement missing: the overlay filesystem (containerd's snapshotter)"
  command -v go >/dev/null || die "requirement missing: go (the binaries are built from the Go module proxy)"
}

# Debian's runc (crun cannot run in a cgroup v1 hybrid layout), the CNI plugins and the netfilter tools.
install_packages() {
  local missing=() p
  for p in "${DEBIAN_PACKAGES[@]}"; do
    [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == *"ok installed" ]] || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  say "installing Debian packages: ${missing[*]}"
  { apt-get -o DPkg::Lock::Timeout=600 update &&
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends \
      "${missing[@]}"; } >"$LOGS/apt.log" 2>&1 ||
    die "requirement missing: Debian packages ${missing[*]} (apt-get failed, see $LOGS/apt.log)"
}

require_tools() {
  local t
  for t in ip iptables ip6tables iptables-save iptables-restore ip6tables-save ip6tables-restore ipset nft runc \
    openssl mount umount flock setsid; do
    command -v "$t" >/dev/null || die "requirement missing: $t"
  done
  for t in bridge host-local portmap loopback; do
    [[ -x $CNI_BIN/$t ]] || die "requirement missing: the CNI plugin $CNI_BIN/$t (Debian containernetworking-plugins)"
  done
}

# The pod and Service ranges must not overlap anything this machine already routes.
require_free_ranges() {
  local cidr clash
  for cidr in "$POD_CIDR" "$SERVICE_CIDR"; do
    clash=$({ ip -4 route show match "$cidr"; ip -4 route show root "$cidr"; } | grep -v '^default' |
      grep -v "dev $BRIDGE" || true)
    [[ -z $clash ]] || die "requirement missing: a free range for $cidr; this machine routes: $clash"
  done
  if [[ -n $(ss -Hltn "sport = :$ETCD_PORT") ]]; then
    die "requirement missing: free port 127.0.0.1:$ETCD_PORT (etcd)"
  fi
}

have_module() {
  case $1 in
    overlay) grep -qw overlay /proc/filesystems ;;
    br_netfilter) [[ -d /proc/sys/net/bridge ]] ;;
  esac
}

# overlay for containerd's snapshotter, br_netfilter so pod-to-pod traffic on the bridge passes iptables.
ensure_modules() {
  local m
  for m in "${MODULES[@]}"; do
    have_module "$m" && continue
    if modprobe "$m" 2>/dev/null && have_module "$m"; then
      echo "$m" >>"$BEFORE/modules"
    else
      die "requirement missing: kernel module $m"
    fi
  done
}

# --- recording and restoring the machine ---------------------------------------------------------------------------

# Written once per node: a second `up` after a failed one must not record the half-changed state.
record_machine() {
  [[ -f $BEFORE/complete ]] && return
  rm -rf "$BEFORE" && mkdir -p "$BEFORE"
  local k p
  for k in "${SYSCTLS[@]}"; do
    sysctl -n "$k" >/dev/null 2>&1 && printf '%s=%s\n' "$k" "$(sysctl -n "$k")"
  done >"$BEFORE/sysctl"
  for p in "${HOST_PATHS[@]}"; do [[ -e $p ]] && echo "$p"; done >"$BEFORE/paths"
  iptables_chains >"$BEFORE/iptables-chains"
  nft_chains >"$BEFORE/nft-chains"
  ipset list -n >"$BEFORE/ipsets" 2>/dev/null || true
  touch "$BEFORE/modules" "$BEFORE/complete"
}

restore_sysctls() {
  [[ -f $BEFORE/sysctl ]] || return 0
  local line
  while IFS= read -r line; do
    sysctl -q -w "$line" >/dev/null 2>&1 || say "could not restore $line"
  done <"$BEFORE/sysctl"
}

restore_modules() {
  [[ -f $BEFORE/modules ]] || return 0
  local m
  while read -r m; do modprobe -r "$m" 2>/dev/null || say "could not unload kernel module $m"; done <"$BEFORE/modules"
}

# Host paths the node created (none existed before up); in paths that did exist, only the node's own entries.
clean_host_paths() {
  local p
  for p in "${HOST_PATHS[@]}"; do
    if [[ -f $BEFORE/paths ]] && ! grep -qxF "$p" "$BEFORE/paths"; then
      rm -rf "$p"
    fi
  done
  # The CNI library's cache of the node's pods (their bridge and loopback results), should a teardown have missed one.
  local f id
  for f in /var/lib/cni/results/"$CNI_NET"-*-eth0; do
    [[ -e $f ]] || continue
    id=${f#/var/lib/cni/results/"$CNI_NET"-} id=${id%-eth0}
    rm -f "$f" "/var/lib/cni/results/cni-loopback-$id-lo"
  done
  if [[ -d /var/log/containers ]]; then
    find /var/log/containers -maxdepth 1 -type l -lname "$STATE/*" -delete
  fi
}

# --- processes -----------------------------------------------------------------------------------------------------

# start NAME BINARY ARGS...: run a daemon in a session of its own (it outlives this script), output to its log,
# without the lock's file descriptor (a daemon holding it would lock out every later command).
start() {
  local name=$1 bin=$2
  shift 2
  setsid "$bin" "$@" </dev/null >>"$LOGS/$name.log" 2>&1 9>&- &
  echo "$!" >"$PIDS/$name.pid"
}

# running NAME: its recorded pid is alive and still runs the binary it started.
running() {
  local f="$PIDS/$1.pid" pid
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ -n $pid ]] && alive "$pid" && [[ $(tr '\0' ' ' 2>/dev/null </proc/"$pid"/cmdline) == *"$STATE"* ]]
}

# alive PID: it runs (an exited daemon stays a zombie until PID 1, which adopted it, reaps it).
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  [[ ${stat##*) } != Z* ]]
}

# stop NAME [SECONDS]: TERM, then KILL after SECONDS (default 15).
stop() {
  local name=$1 grace=${2:-15} f="$PIDS/$1.pid" pid i
  if running "$name"; then
    pid=$(<"$f")
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
      alive "$pid" || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

# Any process left whose command line names this node's folder (daemons whose pid file is gone, containerd's
# shims), and every process in the node's pod cgroups.
kill_leftovers() {
  local pid f
  for pid in $(node_processes | cut -d' ' -f1); do kill -9 "$pid" 2>/dev/null || true; done
  for f in $(pod_cgroups); do
    if [[ -f $f/cgroup.procs ]]; then xargs -r kill -9 <"$f/cgroup.procs" 2>/dev/null || true; fi
  done
}

# node_processes: the pids of processes started from .tools/ whose arguments name .node/ (read with builtins only,
# so the scan never finds itself).
node_processes() {
  local d args
  for d in /proc/[0-9]*; do
    [[ ${d#/proc/} == "$$" || ${d#/proc/} == "$BASHPID" ]] && continue
    mapfile -d '' args 2>/dev/null <"$d/cmdline" || continue
    ((${#args[@]})) || continue
    [[ ${args[0]} == "$ROOT/.tools/"* && "${args[*]}" == *"$STATE/"* ]] && echo "${d#/proc/} ${args[0]##*/}"
  done
  return 0
}

# --- cgroups and mounts --------------------------------------------------------------------------------------------

cgroup_hierarchies() { awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/mounts | sort; }

# Every cgroup hierarchy's kubepods tree (cgroup v1: one per controller; v2: the unified one), deepest first.
pod_cgroups() {
  local h
  while read -r h; do
    [[ -d $h/kubepods ]] && find "$h/kubepods" -depth -type d
  done < <(cgroup_hierarchies)
  return 0
}

remove_cgroups() {
  local d _
  for _ in 1 2 3 4 5; do
    [[ -z $(pod_cgroups) ]] && return 0
    for d in $(pod_cgroups); do rmdir "$d" 2>/dev/null || true; done
    sleep 0.5
  done
  say "cgroups left behind: $(pod_cgroups | tr '\n' ' ')"
}

# Every mount at or under .node/ (container rootfs, pod volumes, network namespaces, the kubelet's shared bind
# mount), deepest first; a lazy unmount for what stays busy.
node_mounts() {
  awk -v s="$STATE" '$5 == s || index($5, s "/") == 1 {print $5}' /proc/self/mountinfo | awk '{print length, $0}' |
    sort -rn | cut -d' ' -f2-
}

unmount_all() {
  local m _
  for _ in 1 2 3 4 5; do
    [[ -z $(node_mounts) ]] && return 0
    for m in $(node_mounts); do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  done
  say "mounts left behind: $(node_mounts | tr '\n' ' ')"
}

# --- network -------------------------------------------------------------------------------------------------------

# The bridge exists before containerd and the API server start: the API server binds its address, and the CNI
# bridge plugin (isGateway false, so it leaves ip_forward alone) attaches pods to it.
setup_bridge() {
  ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
  ip addr replace "$NODE_IP/${POD_CIDR#*/}" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  # An unanswered ClusterIP stays on the bridge instead of taking the default route.
  ip route replace "$SERVICE_CIDR" dev "$BRIDGE" src "$NODE_IP"
  # Routing for the bridge alone: pod to Service to pod. ip_forward (every interface) stays as it was.
  sysctl -q -w "net.ipv4.conf.$BRIDGE.forwarding=1"
  # Pod-to-pod traffic on the bridge passes iptables, where kube-proxy and kube-router act on it.
  sysctl -q -w net.bridge.bridge-nf-call-iptables=1
}

# Nothing leaves the machine: no forwarding between the bridge and any other interface, no pod-sourced packet out
# of a non-bridge interface, and pods reach only the API server and the kubelet on the host itself.
setup_nftables() {
  nft delete table inet "$NFT_TABLE" 2>/dev/null || true
  nft -f - <<NFT
table inet $NFT_TABLE {
  chain forward {
    type filter hook forward priority -5; policy accept;
    iifname "$BRIDGE" oifname "$BRIDGE" accept
    iifname "$BRIDGE" drop
    oifname "$BRIDGE" drop
  }
  chain postrouting {
    type filter hook postrouting priority -5; policy accept;
    ip saddr $POD_CIDR oifname != { "$BRIDGE", "lo" } drop
  }
  chain input {
    type filter hook input priority -5; policy accept;
    iifname != "$BRIDGE" accept
    ct state established,related accept
    meta l4proto { icmp, ipv6-icmp } accept
    ip daddr $NODE_IP tcp dport { $API_PORT, 10250 } accept
    drop
  }
}
NFT
}

# Chains (and rules) that are the node's: kube-proxy's, the kubelet's and kube-router's (KUBE-*), and the CNI portmap
# plugin's (CNI-HOSTPORT-*, CNI-DN-*). Others on this machine (CNI-FORWARD of another CNI user, say) are left alone.
OUR_CHAINS='^(KUBE-|CNI-HOSTPORT-|CNI-DN-)'

# iptables_chains: "family table chain" for every iptables and ip6tables chain.
iptables_chains() {
  local fam
  for fam in iptables ip6tables; do
    "$fam-save" 2>/dev/null | awk -v f="$fam" '/^\*/ {t = substr($0, 2)} /^:/ {print f, t, substr($1, 2)}'
  done
}

# nft_chains: "family table chain" for every nftables chain, and "family table -" for every table.
nft_chains() {
  nft list chains 2>/dev/null | awk '$1 == "table" {t = $2 " " $3} $1 == "chain" {print t, $2}'
  nft list tables 2>/dev/null | awk '{print $2, $3, "-"}'
}

# iptables and ip6tables: the node's chains that were not there before up are flushed and deleted, and every rule
# elsewhere that jumps to one of them, in one iptables-restore --noflush per table (nothing else is rewritten).
clean_iptables() {
  local fam t c chains payload
  [[ -f $BEFORE/iptables-chains ]] || return 0 # no node was started since the last down
  for fam in iptables ip6tables; do
    for t in $("$fam-save" 2>/dev/null | sed -n 's/^\*//p'); do
      chains=$("$fam-save" -t "$t" | sed -n 's/^:\([^ ]*\).*/\1/p' | only -E "$OUR_CHAINS" |
        while read -r c; do grep -qxF "$fam $t $c" "$BEFORE/iptables-chains" 2>/dev/null || echo "$c"; done)
      [[ -n $chains ]] || continue
      payload=$(
        echo "*$t"
        "$fam-save" -t "$t" | awk -v list="$chains" '
          BEGIN {n = split(list, a, "\n"); for (i = 1; i <= n; i++) ours[a[i]] = 1}
          /^-A / && !($2 in ours) {
            for (i = 3; i < NF; i++)
              if (($i == "-j" || $i == "-g") && ($(i + 1) in ours)) {sub(/^-A /, "-D "); print; break}
          }'
        for c in $chains; do echo "-F $c"; done
        for c in $chains; do echo "-X $c"; done
        echo COMMIT
      )
      "$fam-restore" --noflush -w 5 <<<"$payload" 2>>"$LOGS/down.log" || say "could not clean $fam table $t"
    done
  done
}

# nftables: what iptables created here (it writes nftables) and is now empty goes too: base chains and the node's
# chains that were not there before up, then tables that were not there before and hold no chain.
clean_nft() {
  local family table chain listing
  [[ -f $BEFORE/nft-chains ]] || return 0
  while read -r family table chain; do
    [[ $chain == - ]] && continue
    grep -qxF "$family $table $chain" "$BEFORE/nft-chains" 2>/dev/null && continue
    listing=$(nft list chain "$family" "$table" "$chain" 2>/dev/null) || continue
    [[ -n $(only -vE '^\s*(#|table|chain|type|policy|\}|$)' <<<"$listing") ]] && continue
    if [[ $chain =~ $OUR_CHAINS || $listing == *" hook "* ]]; then
      nft delete chain "$family" "$table" "$chain" 2>/dev/null || true
    fi
  done < <(nft_chains)
  while read -r family table chain; do
    [[ $chain == - ]] || continue
    grep -qxF "$family $table -" "$BEFORE/nft-chains" 2>/dev/null && continue
    listing=$(nft list table "$family" "$table" 2>/dev/null) || continue
    [[ $listing == *$'\tchain '* ]] || nft delete table "$family" "$table" 2>/dev/null || true
  done < <(nft_chains)
}

# kube-router's ipsets that were not there before up.
clean_ipsets() {
  local s
  [[ -f $BEFORE/ipsets ]] || return 0
  for s in $(ipset list -n 2>/dev/null | grep -E '^(inet6:)?(KUBE-|kube-router)' || true); do
    grep -qxF "$s" "$BEFORE/ipsets" 2>/dev/null || ipset destroy "$s" 2>/dev/null || say "could not destroy ipset $s"
  done
}

clean_network() {
  ip link del "$BRIDGE" 2>/dev/null || true # takes its routes and the per-interface settings with it
  nft delete table inet "$NFT_TABLE" 2>/dev/null || true
  clean_iptables
  clean_nft
  clean_ipsets
  rm -rf "$STATE/cni"
}

# --- certificates and kubeconfigs ----------------------------------------------------------------------------------

# cert NAME SUBJECT EXTENSIONS: an ECDSA key and a certificate signed by the node's CA.
cert() {
  local name=$1 subj=$2 ext=$3
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$PKI/$name.key" \
    -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -set_serial "0x$(openssl rand -hex 8)" \
    -days 365 -out "$PKI/$name.crt" 2>/dev/null -extfile <(
      printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n%s\n' "$ext")
  rm -f "$PKI/$name.csr"
}

# One identity per component, so RBAC's defaults (system:kube-proxy, system:node:..., ...) apply as on any cluster.
make_pki() {
  [[ -f $PKI/complete ]] && return
  rm -rf "$PKI" && mkdir -p "$PKI" && chmod 700 "$PKI"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$PKI/ca.key" -out "$PKI/ca.crt" \
    -subj "/CN=agentforge-node-ca" -days 365 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    2>/dev/null
  local client="extendedKeyUsage=clientAuth"
  local api_names=DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc
  api_names+=,DNS:kubernetes.default.svc.cluster.local
  # The bridge address (host and pods), the `kubernetes` Service's ClusterIP and names (pods' in-cluster config).
  cert apiserver "/CN=kube-apiserver" "extendedKeyUsage=serverAuth
subjectAltName=IP:$NODE_IP,IP:$API_SERVICE_IP,IP:127.0.0.1,DNS:localhost,$api_names"
  cert kubelet-serving "/CN=$NODE" "extendedKeyUsage=serverAuth
subjectAltName=IP:$NODE_IP,DNS:$NODE"
  cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$client"
  cert admin "/O=system:masters/CN=agentforge-node-admin" "$client"
  cert kubelet "/O=system:nodes/CN=system:node:$NODE" "$client"
  cert kube-controller-manager "/CN=system:kube-controller-manager" "$client"
  cert kube-scheduler "/CN=system:kube-scheduler" "$client"
  cert kube-proxy "/CN=system:kube-proxy" "$client"
  cert kube-router "/CN=kube-router" "$client"
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/sa.key" 2>/dev/null
  openssl ec -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  touch "$PKI/complete"
}

# kubeconfig NAME: $STATE/NAME.kubeconfig with NAME's client certificate ("admin" is KUBECONFIG_OUT).
kubeconfig_for() {
  local name=$1 out="$STATE/$1.kubeconfig"
  [[ $name == admin ]] && out=$KUBECONFIG_OUT
  cat >"$out" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: $NODE
  cluster: {server: "https://$NODE_IP:$API_PORT", certificate-authority: "$PKI/ca.crt"}
users:
- name: $name
  user: {client-certificate: "$PKI/$name.crt", client-key: "$PKI/$name.key"}
contexts:
- name: $NODE
  context: {cluster: $NODE, user: $name}
current-context: $NODE
YAML
  chmod 600 "$out"
}

# --- control plane -------------------------------------------------------------------------------------------------

start_etcd() {
  local url="http://127.0.0.1:$ETCD_PORT" peer="http://127.0.0.1:$((ETCD_PORT + 1))"
  # No fsync: the data lives as long as the node, and etcd's fsyncs are most of its cost on a shared disk.
  start etcd "$ETCD_BIN" --name "$NODE" --data-dir "$STATE/etcd" --listen-client-urls "$url" \
    --advertise-client-urls "$url" --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
    --initial-cluster "$NODE=$peer" --unsafe-no-fsync --log-level warn
  wait_for 60 etcd curl -fsS "$url/health"
}

# Bound to the bridge address alone: reachable from the host and, through the `kubernetes` Service, from pods.
start_apiserver() {
  start kube-apiserver "$K8S_BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$API_PORT" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$PKI/ca.crt" \
    --kubelet-preferred-address-types InternalIP \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --allow-privileged=true --profiling=false
  wait_for 90 kube-apiserver kubectl get --raw /readyz
}

start_controllers() {
  start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig "$STATE/kube-controller-manager.kubeconfig" --secure-port 0 --leader-elect=false \
    --use-service-account-credentials --service-account-private-key-file "$PKI/sa.key" \
    --root-ca-file "$PKI/ca.crt" --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --allocate-node-cidrs --cluster-cidr "$POD_CIDR" --node-cidr-mask-size "${POD_CIDR#*/}" \
    --service-cluster-ip-range "$SERVICE_CIDR" --profiling=false
  start kube-scheduler "$K8S_BIN/kube-scheduler" \
    --kubeconfig "$STATE/kube-scheduler.kubeconfig" --secure-port 0 --leader-elect=false --profiling=false
}

# --- containerd ----------------------------------------------------------------------------------------------------

# Root, state, sockets (shims' too), runc's state and network namespaces all under .node/; no host configuration
# read (imports, NRI, CDI). restrict_oom_score_adj: this machine lacks CAP_SYS_RESOURCE, so the negative OOM score
# every sandbox asks for would fail each one.
write_containerd_config() {
  local pause_ref=$1
  cat >"$STATE/containerd.toml" <<TOML
version = 4
root = "$STATE/containerd"
state = "$RUN/containerd"
temp = "$STATE/tmp"
imports = []
required_plugins = ["io.containerd.grpc.v1.cri"]
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.internal.v1.opt",
  "io.containerd.image-verifier.v1.bindir", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.snapshotter.v1.erofs", "io.containerd.differ.v1.erofs", "io.containerd.mount-handler.v1.erofs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[plugins.'io.containerd.server.v1.grpc']
  address = "$SOCK"
[plugins.'io.containerd.server.v1.ttrpc']
  address = "$SOCK.ttrpc"
[plugins.'io.containerd.shim.v1.manager']
  socket_dir = "$SHIM_SOCKETS"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$pause_ref"

[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  cdi_spec_dirs = []
  enable_criu = false
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        Root = "$RUN/runc"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["$CNI_BIN"]
    conf_dir = "$STATE/cni/net.d"
    max_conf_num = 1

[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
TOML
}

# The pod network: the bridge above, addresses from host-local (its state under .node/), hostPort via portmap;
# containerd sets up each pod's loopback itself with the loopback plugin.
write_cni_config() {
  mkdir -p "$STATE/cni/net.d"
  cat >"$STATE/cni/net.d/10-$CNI_NET.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "$CNI_NET",
  "plugins": [
    {
      "type": "bridge", "bridge": "$BRIDGE", "isGateway": false, "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$STATE/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0", "gw": "$NODE_IP"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
}

start_containerd() {
  mkdir -p "$RUN/containerd" "$STATE/tmp"
  write_containerd_config "$(image_ref pause)"
  write_cni_config
  TMPDIR="$STATE/tmp" start containerd "$CTRD_DIR/containerd" --config "$STATE/containerd.toml"
  wait_for 60 containerd ctr version
}

binaries_built() {
  local b
  for b in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy; do
    [[ -x $K8S_BIN/$b ]] || return 1
  done
  [[ -x $ETCD_BIN && -f $CTRD_DIR/.complete && -x $ROUTER_BIN ]]
}

# --- images --------------------------------------------------------------------------------------------------------

image_ref() { cat "$IMAGES_OUT/$1.ref"; }

# The pause and CoreDNS images, built by scripts/images/build.sh (no registry is reachable).
build_images() {
  local n missing=()
  for n in pause coredns; do
    [[ -f $IMAGES_OUT/$n.ref && -f $IMAGES_OUT/$n.tar ]] || missing+=("$n")
  done
  ((${#missing[@]})) || return 0
  [[ -f $ROOT/scripts/images/build.sh ]] || die "requirement missing: scripts/images/build.sh (builds ${missing[*]})"
  say "building images: ${missing[*]} (log: $LOGS/images.log)"
  bash "$ROOT/scripts/images/build.sh" "${missing[@]}" >"$LOGS/images.log" 2>&1 ||
    die "image build failed: ${missing[*]} (see $LOGS/images.log)"
}

# member TAR FILE: FILE's content from TAR, or nothing.
member() { tar -xOf "$1" "$2" 2>/dev/null || true; }

# archive_refs TAR: the image names an OCI archive's index (or a docker archive's manifest) gives.
archive_refs() {
  {
    member "$1" index.json |
      only -oE '"(io\.containerd\.image\.name|org\.opencontainers\.image\.ref\.name)": *"[^"]+"' |
      sed -E 's/.*: *"([^"]+)"/\1/'
    member "$1" manifest.json | only -oE '"RepoTags": *\[[^]]*\]' | only -oE '"[^"]+"' |
      only -v RepoTags | tr -d '"'
  } | only '[/:]' | sort -u
}

load() {
  ((EUID == 0)) || die "requirement missing: root"
  running containerd || die "the node is not up (run: $0 up)"
  local tar present refs r new
  present=$(ctr -n k8s.io images ls -q 2>/dev/null)
  for tar in "$@"; do
    [[ -f $tar ]] || die "no such archive: $tar"
    refs=$(archive_refs "$tar") new=0
    for r in $refs; do grep -qxF "$r" <<<"$present" || new=1; done
    if [[ -n $refs && $new == 0 ]]; then
      continue
    fi
    ctr -n k8s.io images import --snapshotter overlayfs "$tar" >>"$LOGS/load.log" 2>&1 ||
      die "import failed: $tar (see $LOGS/load.log)"
    say "loaded $tar${refs:+ ($(paste -sd" " <<<"$refs"))}"
  done
}

# --- node ----------------------------------------------------------------------------------------------------------

# Evictions only when the disk is all but full (pods here are few and their data small); no image garbage
# collection, since a deleted image cannot be pulled again; no host resolver for pods (it is off this machine).
write_kubelet_config() {
  cat >"$STATE/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$SOCK
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
clusterDNS: [$DNS_IP]
clusterDomain: cluster.local
resolvConf: ""
podLogsDir: $STATE/pod-logs
volumePluginDir: $STATE/kubelet/volume-plugins
failSwapOn: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
  imagefs.inodesFree: 1%
evictionPressureTransitionPeriod: 30s
protectKernelDefaults: false
serializeImagePulls: false
YAML
}

start_kubelet() {
  write_kubelet_config
  start kubelet "$K8S_BIN/kubelet" --config "$STATE/kubelet.yaml" --kubeconfig "$STATE/kubelet.kubeconfig" \
    --root-dir "$STATE/kubelet" --hostname-override "$NODE" --node-ip "$NODE_IP"
  wait_for 90 "kubelet (Node $NODE)" kubectl get node "$NODE"
}

# iptables mode (no IPVS in this kernel). Node ports only on the bridge address; the conntrack settings at 0 leave
# the kernel's as they are.
start_kube_proxy() {
  cat >"$STATE/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $STATE/kube-proxy.kubeconfig}
hostnameOverride: $NODE
bindAddress: $NODE_IP
clusterCIDR: $POD_CIDR
nodePortAddresses: ["$NODE_IP/32"]
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
iptables: {localhostNodePorts: false}
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
oomScoreAdj: 0
YAML
  start kube-proxy "$K8S_BIN/kube-proxy" --config "$STATE/kube-proxy.yaml"
}

# The firewall controller only; it needs the Node object to exist when it starts.
start_kube_router() {
  start kube-router "$ROUTER_BIN" --kubeconfig "$STATE/kube-router.kubeconfig" --hostname-override "$NODE" \
    --run-firewall=true --run-router=false --run-service-proxy=false --enable-cni=false \
    --enable-ipv4=true --enable-ipv6=false --service-cluster-ip-range "$SERVICE_CIDR" \
    --health-port 0 --metrics-port 0
}

# --- cluster objects -----------------------------------------------------------------------------------------------

write_objects() {
  local coredns_ref=$1 i
  cat <<YAML
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: agentforge-node:kube-router}
rules:
- apiGroups: [""]
  resources: [namespaces, pods, services, nodes, endpoints]
  verbs: [get, list, watch]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: agentforge-node:kube-router}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: agentforge-node:kube-router}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: kube-router}]
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
# No forward plugin: names outside the cluster fail by design (nothing may leave this machine).
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  Corefile: |
    .:53 {
        errors
        health :8080
        ready :8181
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
            ttl 30
        }
        cache 30
        loop
        loadbalance
    }
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: coredns
  namespace: kube-system
  labels: {k8s-app: kube-dns}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      priorityClassName: system-cluster-critical
      dnsPolicy: Default
      # Port 53 as non-root: the sysctl lets it bind. NET_BIND_SERVICE stays in the bounding set only because the
      # binary carries it as a file capability, and exec refuses such a binary when the bounding set lacks it.
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        runAsGroup: 65532
        seccompProfile: {type: RuntimeDefault}
        sysctls: [{name: net.ipv4.ip_unprivileged_port_start, value: "53"}]
      containers:
      - name: coredns
        image: $coredns_ref
        imagePullPolicy: Never
        args: [-conf, /etc/coredns/Corefile]
        ports:
        - {name: dns, containerPort: 53, protocol: UDP}
        - {name: dns-tcp, containerPort: 53, protocol: TCP}
        resources:
          requests: {cpu: 50m, memory: 32Mi}
          limits: {memory: 128Mi}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}
        volumeMounts: [{name: config, mountPath: /etc/coredns, readOnly: true}]
        livenessProbe:
          httpGet: {path: /health, port: 8080}
          initialDelaySeconds: 10
          periodSeconds: 10
        readinessProbe:
          httpGet: {path: /ready, port: 8181}
          periodSeconds: 2
      volumes: [{name: config, configMap: {name: coredns}}]
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns}
spec:
  clusterIP: $DNS_IP
  selector: {k8s-app: kube-dns}
  ports:
  - {name: dns, port: 53, protocol: UDP, targetPort: 53}
  - {name: dns-tcp, port: 53, protocol: TCP, targetPort: 53}
---
# Local volumes (not hostPath): the kubelet applies a pod's fsGroup to them, so non-root pods can write.
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Retain
YAML
  for ((i = 0; i < PV_COUNT; i++)); do
    cat <<YAML
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: $(pv_name "$i")
  labels: {agentforge.node/pool: local}
spec:
  storageClassName: local
  capacity: {storage: 20Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  volumeMode: Filesystem
  local: {path: $STATE/pv/$(pv_name "$i")}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [$NODE]}]
YAML
  done
}

# Server-side apply: what kube-router and CoreDNS need (RBAC first, so kube-router starts authorized), the
# StorageClass and the volumes.
apply_objects() {
  kubectl apply --server-side --force-conflicts --field-manager node.sh -f - >/dev/null \
    < <(write_objects "$(image_ref coredns)")
}

pv_name() { printf 'node-pv-%02d' "$1"; }

make_pv_dirs() {
  local i
  for ((i = 0; i < PV_COUNT; i++)); do mkdir -p "$STATE/pv/$(pv_name "$i")"; done
}

# A Released volume (its claim deleted) is emptied, then made Available again, so reinstalls get fresh volumes.
recycle_pvs() {
  local pv
  for pv in $(kubectl get pv -l agentforge.node/pool=local \
    -o jsonpath='{range .items[?(@.status.phase=="Released")]}{.metadata.name}{" "}{end}'); do
    rm -rf "${STATE:?}/pv/$pv"
    mkdir -p "$STATE/pv/$pv"
    kubectl patch pv "$pv" --type json -p '[{"op":"remove","path":"/spec/claimRef"}]' >/dev/null
  done
}

# --- commands ------------------------------------------------------------------------------------------------------

healthy() {
  local d
  [[ -f $KUBECONFIG_OUT ]] || return 1
  for d in "${DAEMONS[@]}"; do running "$d" || return 1; done
  kubectl get --raw /readyz >/dev/null 2>&1 &&
    [[ $(kubectl get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

lock() {
  mkdir -p "$STATE"
  exec 9>"$STATE/.lock"
  flock 9
}

up() {
  local t0=$SECONDS
  require_machine
  lock
  mkdir -p "$LOGS"
  if healthy; then
    say "node $NODE already up, reusing it"
    # The pause and CoreDNS images may have been rebuilt since (a new ref): load them before CoreDNS names them.
    build_images
    load "$IMAGES_OUT/pause.tar" "$IMAGES_OUT/coredns.tar" 2>>"$LOGS/load.log"
    apply_objects
  else
    [[ -d $BEFORE || -d $PIDS ]] && down_unlocked # stale state (a failed up, a reboot) is not worth repairing
    mkdir -p "$LOGS" "$PIDS" "$RUN"
    # Fresh logs for each node; the previous one's stay as *.log.1.
    local f
    for f in "$LOGS"/*.log; do [[ -f $f ]] && mv -f "$f" "$f.1"; done
    install_packages
    require_tools
    require_free_ranges
    record_machine
    # A node that does not come up is taken down again, so the machine is left as it was.
    trap 'say "up failed; restoring the machine (logs: $LOGS/, what the cluster saw: $LOGS/failure.log)"
      diagnose; down_unlocked' EXIT
    ensure_modules
    binaries_built || say "building the binaries (a few minutes; log: $LOGS/build.log)"
    bash "$HERE/build.sh" kubernetes etcd containerd kube-router >"$LOGS/build.log" 2>&1 ||
      die "build failed (see $LOGS/build.log)"
    build_images
    up_fresh
  fi
  recycle_pvs
  wait_for 120 "Node $NODE Ready" kubectl wait --for=condition=Ready "node/$NODE" --timeout=5s
  wait_for 120 CoreDNS kubectl -n kube-system wait --for=condition=Available deployment/coredns --timeout=5s
  trap - EXIT
  say "node $NODE ready in $((SECONDS - t0))s; API server https://$NODE_IP:$API_PORT"
  echo "$KUBECONFIG_OUT"
}

up_fresh() {
  setup_bridge
  setup_nftables
  make_pki
  local n
  for n in admin kubelet kube-controller-manager kube-scheduler kube-proxy kube-router; do kubeconfig_for "$n"; done
  make_pv_dirs
  start_etcd
  start_apiserver
  apply_objects
  start_controllers
  start_containerd
  load "$IMAGES_OUT/pause.tar" "$IMAGES_OUT/coredns.tar" 2>>"$LOGS/load.log"
  start_kube_proxy
  start_kubelet
  start_kube_router
}

# What a failed `up` saw: nodes, pods, events, and the logs of every pod not Ready.
diagnose() {
  local ns pod
  running kube-apiserver || return 0
  {
    kubectl get nodes,pods --all-namespaces -o wide
    kubectl get events --all-namespaces --sort-by .lastTimestamp | tail -n 40
    kubectl get pods --all-namespaces --no-headers | awk '{split($3, r, "/")} r[1] != r[2] {print $1, $2}' |
      while read -r ns pod; do
        echo "== $ns/$pod"
        kubectl -n "$ns" logs "$pod" --all-containers --tail 40 2>&1
        kubectl -n "$ns" logs "$pod" --all-containers --previous --tail 40 2>&1
      done
  } >"$LOGS/failure.log" 2>&1 || true
}

down() {
  lock
  down_unlocked
}

# Pods first (with a short grace, so their shims end), then the daemons, then everything they left on the machine.
down_unlocked() {
  # Nothing of a node here (never up, or already down): nothing to stop, and another kubelet's cgroups are not ours.
  [[ -d $PIDS || -d $BEFORE ]] || return 0
  mkdir -p "$LOGS"
  local d t0=$SECONDS
  mark() { echo "down: $((SECONDS - t0))s $*" >>"$LOGS/down.log"; }
  if running kube-apiserver && running kubelet; then
    stop kube-controller-manager 5
    stop kube-scheduler 5
    kubectl delete pods --all --all-namespaces --grace-period 2 --wait=false >>"$LOGS/down.log" 2>&1 || true
    kubectl wait --for=delete pods --all --all-namespaces --timeout 30s >>"$LOGS/down.log" 2>&1 || true
    mark "pods deleted"
  fi
  for d in kube-router kube-proxy kubelet; do stop "$d"; done
  remove_containers
  mark "node daemons stopped, containers removed"
  for d in containerd kube-controller-manager kube-scheduler kube-apiserver etcd; do stop "$d"; done
  kill_leftovers
  mark "control plane and containerd stopped"
  remove_cgroups
  unmount_all
  clean_network
  clean_host_paths
  restore_sysctls
  restore_modules
  mark "machine restored"
  # Keep the logs and containerd's image store (imported images survive a down); the rest goes.
  find "$STATE" -mindepth 1 -maxdepth 1 ! -name logs ! -name containerd ! -name .lock -exec rm -rf {} +
  return 0
}

# Whatever the kubelet left in containerd (it has stopped by now): tasks killed, containers and sandboxes removed, so
# the image store that stays holds no stale containers.
remove_containers() {
  running containerd || return 0
  local id
  for id in $(ctr -n k8s.io tasks ls -q 2>/dev/null); do
    ctr -n k8s.io tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
  done
  sleep 1
  for id in $(ctr -n k8s.io tasks ls -q 2>/dev/null); do ctr -n k8s.io tasks rm -f "$id" >/dev/null 2>&1 || true; done
  for id in $(ctr -n k8s.io containers ls -q 2>/dev/null); do
    ctr -n k8s.io containers rm "$id" >/dev/null 2>&1 || true
  done
  for id in $(ctr -n k8s.io sandboxes ls -q 2>/dev/null); do
    ctr -n k8s.io sandboxes rm -f "$id" >/dev/null 2>&1 || true
  done
}

status() { healthy; }

# iptables_normalized FAMILY: its rules without counters, chains in name order (a whole-table iptables-restore, as
# kube-router does, recreates them in another order), each chain's rules in their own order. A built-in chain that
# accepts with no rule, and a table of nothing else, are left out: they change nothing, and any iptables user on this
# machine (an image build's CNI plugins) may create them by merely looking.
iptables_normalized() {
  "$1-save" 2>/dev/null | only -v '^#' | sed -E 's/ \[[0-9]+:[0-9]+\]$//' | only -vE '^:[A-Z]+ ACCEPT$' |
    awk -v OFS='\t' '/^\*/ {t = $0; c = 0; k = ""} /^:/ {c = 1; k = $1} /^-A / {c = 2; k = $2} /^COMMIT/ {c = 3; k = ""}
      {print t, c, k, sprintf("%08d", NR), $0}' |
    LC_ALL=C sort -t $'\t' -k1,1 -k2,2n -k3,3 -k4,4 | cut -f5- |
    awk '/^\*/ {head = $0; n = 0; next} /^COMMIT$/ {if (n) print "COMMIT"; next} {if (!n++) print head; print}'
}

# nft_normalized: the nftables ruleset without counters, one line per table and per chain or set (its rules in
# order), sorted: a table or chain recreated elsewhere in the listing is the same state. As above, base chains that
# accept with no rule are left out, and so is a table that holds nothing else (a table with nothing at all stays).
nft_normalized() {
  nft list ruleset 2>/dev/null | sed -E 's/ (packets|bytes) [0-9]+//g' | awk '
    function close_table() { if (t != "" && (blocks == 0 || kept > 0)) print t; t = "" }
    /^table / {close_table(); t = $0; sub(/ \{$/, "", t); blocks = 0; kept = 0; next}
    /^\t[a-z]/ && / \{$/ {b = $0; sub(/^\t/, "", b); sub(/ \{$/, "", b); r = t " | " b; blocks++; next}
    /^\t\}$/ {if (r !~ /^[^|]+\| chain [^ ]+ ; type [^;]+; policy accept;$/) {print r; kept++}; next}
    /^\t\t/ {l = $0; sub(/^\t+/, "", l); r = r " ; " l}
    END {close_table()}' | LC_ALL=C sort
}

# The machine state `up` may change, normalized (no counters, no volatile fields), one section per kind.
snapshot() {
  local h
  echo "== sysctl"
  local keys='vm\.(overcommit_memory|panic_on_oom)|kernel\.(panic|panic_on_oops|keys\.root_max(keys|bytes))'
  keys+='|net\.ipv4\.ip_forward|net\.ipv4\.conf\.(all|default)\.[a-z_]+'
  keys+='|net\.ipv6\.conf\.(all|default)\.(forwarding|disable_ipv6)'
  keys+='|net\.bridge\.[a-z_-]+|net\.netfilter\.nf_conntrack_(max|tcp_timeout_(established|close_wait)|udp_timeout'
  keys+='|udp_timeout_stream|tcp_be_liberal)'
  sysctl -a 2>/dev/null | only -E "^($keys) = " | sort
  echo "== iptables"
  iptables_normalized iptables
  echo "== ip6tables"
  iptables_normalized ip6tables
  echo "== nft"
  nft_normalized
  echo "== ipset"
  ipset list -n 2>/dev/null | sort
  echo "== links"
  ip -o link | awk -F': ' '{sub(/@.*/, "", $2); print $2}' | sort
  echo "== addresses"
  ip -o addr | awk '{print $2, $3, $4}' | sort
  echo "== routes"
  ip route; ip -6 route | only -v ' expires '
  echo "== netns"
  ip netns list 2>/dev/null
  echo "== mounts"
  awk '{for (i = 7; i < NF; i++) if ($i == "-") {print $5, $(i + 1); break}}' /proc/self/mountinfo | sort
  echo "== cgroups"
  while read -r h; do
    find "$h" -mindepth 1 -maxdepth 1 -type d -printf "$h/%f\n" | sort
  done < <(cgroup_hierarchies)
  echo "== modules"
  if [[ -r /proc/modules ]]; then awk '{print $1}' /proc/modules | sort; else echo "(no loadable modules)"; fi
  echo "== host paths"
  for h in "${HOST_PATHS[@]}" /run/netns /var/run/netns /etc/cni /opt/cni /opt/containerd /var/log/pods \
    /var/lib/containerd /run/nri /var/run/nri; do
    [[ -e $h ]] && echo "$h"
  done
  echo "== processes"
  node_processes | cut -d' ' -f2 | sort
  return 0
}

# Sourcing the script (to try one function) runs nothing.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  case ${1:-} in
    up) up ;;
    down) require_root; down ;;
    status) healthy ;;
    kubeconfig) echo "$KUBECONFIG_OUT" ;;
    load) shift; lock; load "$@" ;;
    ctr) shift; ctr --namespace k8s.io "$@" ;;
    check) require_machine ;;
    snapshot) snapshot ;;
    *) echo "usage: $0 up|down|status|kubeconfig|load TAR...|ctr ARGS...|check|snapshot" >&2; exit 2 ;;
  esac
fi
