#!/usr/bin/env bash
# A private containerd 2.1 for husk's end-to-end tests and pod benchmarks.
#
#   scripts/containerd-env.sh up     download (cached), configure, start; idempotent
#   scripts/containerd-env.sh start  start containerd again on the same state (restart tests)
#   scripts/containerd-env.sh down   stop what `up` started, by pid, and clean up
#   scripts/containerd-env.sh env    print the variables tests read
#
# containerd 2.1 and the CNI plugins come from Debian sid as .debs, fetched
# through a private apt sources list and lists dir and unpacked with dpkg -x
# into .cache/prefix; nothing on the system is upgraded. runc and
# busybox-static come from Debian 12 itself. Downloads are cached in .cache/.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE="$REPO/.cache"
PREFIX="$CACHE/prefix"
APTDIR="$CACHE/apt"
DEBS="$CACHE/debs"
# Long-lived data (content store, snapshots) stays in the cache; sockets,
# state and netns mounts live under /run, short enough for sun_path.
CROOT="$CACHE/containerd-root"
RUN=/run/husk-e2e
SOCK="$RUN/containerd.sock"
CFG="$RUN/config.toml"
PIDFILE="$RUN/containerd.pid"
LOG="$RUN/containerd.log"
CNI_CONF="$RUN/cni"
BRIDGE=husk-e2e0
IMAGE_NAME=husk.local/busybox:1
IMAGE_TAR="$CACHE/busybox-oci.tar"
CGROUP_PARENT=husk-e2e

CONTAINERD_VERSION=2.1.9+ds1-5
CNI_VERSION=1.9.1+ds1-1

log() { echo "containerd-env: $*" >&2; }

husk_shim() {
  # The shim containerd launches: HUSK_SHIM, else the static release build.
  if [ -n "${HUSK_SHIM:-}" ]; then echo "$HUSK_SHIM"; return; fi
  local host
  host=$(rustc -vV 2>/dev/null | sed -n 's/^host: //p')
  echo "$REPO/target/$host/release/containerd-shim-husk-v1"
}

apt_private() {
  # The registry's sid may be a snapshot older than its Release file's
  # Valid-Until: accept it (the packages are still signature-checked).
  apt-get -o Dir::Etc::SourceList="$APTDIR/sources.list" -o Dir::Etc::SourceParts=/dev/null \
    -o Acquire::Check-Valid-Until=false \
    -o Dir::State::Lists="$APTDIR/lists" -o Dir::Cache="$APTDIR/cache" "$@"
}

fetch_sid() {
  # fetch_sid PACKAGE VERSION: the .deb, pinned, with a warned fallback to
  # whatever version sid has now.
  local pkg=$1 ver=$2
  if ls "$DEBS/${pkg}_"*.deb >/dev/null 2>&1; then return; fi
  mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial" "$DEBS"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main" \
    >"$APTDIR/sources.list"
  if [ ! -f "$APTDIR/updated" ]; then
    apt_private update -qq
    touch "$APTDIR/updated"
  fi
  (cd "$DEBS" && apt_private download -qq "$pkg=$ver" 2>/dev/null) || {
    log "WARNING: $pkg $ver is gone from sid; taking its current version"
    (cd "$DEBS" && apt_private download -qq "$pkg")
  }
}

install_system() {
  local missing=()
  for p in runc busybox-static iproute2 python3; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]} from Debian 12"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

unpack() {
  if [ -x "$PREFIX/usr/bin/containerd" ] && [ -x "$PREFIX/usr/lib/cni/bridge" ]; then return; fi
  mkdir -p "$PREFIX"
  for d in "$DEBS"/*.deb; do dpkg -x "$d" "$PREFIX"; done
}

write_config() {
  # write_config FILE: containerd's config; the CNI conf goes next to it.
  local out=$1 shim
  mkdir -p "$RUN" "$CROOT" "$CNI_CONF"
  shim=$(husk_shim)
  # Handler husk runs containers on husk's own runtime (no options: the
  # default). Handler husk-runc is the same shim with runc as the OCI
  # runtime, chosen by its node config. (A CRI options table on a
  # sandboxer = 'shim' handler breaks containers on containerd < 2.4: its
  # client forces them into runc's options type.)
  mkdir -p "$RUN/bin"
  printf "BinaryName = '%s'\n" "$(command -v runc)" >"$RUN/husk-runc.toml"
  printf '#!/bin/sh\nHUSK_CONFIG=%s exec %s "$@"\n' "$RUN/husk-runc.toml" "$shim" \
    >"$RUN/bin/containerd-shim-husk-runc-v1"
  chmod 755 "$RUN/bin/containerd-shim-husk-runc-v1"
  cat >"$out" <<EOF
version = 3
root = '$CROOT'
state = '$RUN/state'

[grpc]
  address = '$SOCK'

[ttrpc]
  address = '$SOCK.ttrpc'

[debug]
  level = '${HUSK_E2E_LOG_LEVEL:-info}'

[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = '$IMAGE_NAME'

  [plugins.'io.containerd.cri.v1.runtime']
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    enable_cdi = false

    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'

      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        sandboxer = 'podsandbox'

      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.husk]
        runtime_type = '$shim'
        sandboxer = 'shim'

      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.husk-runc]
        runtime_type = '$RUN/bin/containerd-shim-husk-runc-v1'
        sandboxer = 'shim'

    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['$PREFIX/usr/lib/cni']
      conf_dir = '$CNI_CONF'
      max_conf_num = 1

  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = '127.0.0.1'
    stream_server_port = '0'
EOF
  # A bridge with no gateway and no masquerade: pods get addresses on a
  # /16 (room for the density runs: 300 pods and more at once) on a
  # host-local bridge with no uplink, so nothing leaves the host.
  cat >"$CNI_CONF/10-husk-e2e.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "husk-e2e",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": false,
      "ipMasq": false,
      "hairpinMode": false,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "10.222.0.0/16" }]],
        "dataDir": "$RUN/cni-ipam"
      }
    }
  ]
}
EOF
}

build_image() {
  # The pause process of runc pods: husk-pause, as built next to the shim.
  local pause
  pause="$(dirname "$(husk_shim)")/husk-pause"
  [ -x "$pause" ] || { log "no $pause: build first (scripts/setup.sh build_release)"; exit 1; }
  IMAGE_TAR="$CACHE/busybox-oci-$(cat /bin/busybox "$pause" "$REPO/scripts/mkimage.py" | sha256sum | cut -c1-12).tar"
  [ -f "$IMAGE_TAR" ] && return
  rm -f "$CACHE"/busybox-oci*.tar
  python3 "$REPO/scripts/mkimage.py" /bin/busybox "$pause" "$IMAGE_NAME" "$IMAGE_TAR"
}

running() {
  [ -f "$PIDFILE" ] || return 1
  local pid
  pid=$(cat "$PIDFILE")
  [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "--config $CFG"
}

ctr_() { "$PREFIX/usr/bin/ctr" --address "$SOCK" "$@"; }

# Starts containerd on the existing config and state, keeping whatever
# runs (husk pods survive a containerd restart; tests check that).
start_containerd() {
  if running; then return; fi
  [ -f "$CFG" ] || { log "no config: run 'up' first"; exit 1; }
  rm -f "$SOCK"
  # husk's node config for handler husk: husk's own runtime, the default.
  : >"$RUN/husk-runtime.toml"
  HUSK_CONFIG="$RUN/husk-runtime.toml" PATH="$PREFIX/usr/bin:$PATH" \
    setsid "$PREFIX/usr/bin/containerd" --config "$CFG" \
    </dev/null >>"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 200); do
    ctr_ version >/dev/null 2>&1 && break
    sleep 0.05
  done
  ctr_ version >/dev/null || { log "containerd did not come up; see $LOG"; tail -20 "$LOG" >&2; exit 1; }
  log "containerd $("$PREFIX/usr/bin/containerd" --version | awk '{print $3}') up (pid $(cat "$PIDFILE")), socket $SOCK"
}

up() {
  [ "$(id -u)" -eq 0 ] || { log "run as root"; exit 1; }
  install_system
  fetch_sid containerd "$CONTAINERD_VERSION"
  fetch_sid containernetworking-plugins "$CNI_VERSION"
  unpack
  build_image
  [ -x "$(husk_shim)" ] || log "WARNING: husk shim $(husk_shim) is not built yet (scripts/setup.sh build_release)"
  if ! running; then
    # Whatever a killed earlier run left (its pods, mounts, bridge, state)
    # goes first, so every start is a clean one.
    down
  fi
  mkdir -p "$RUN"
  write_config "$CFG.new"
  if running && ! cmp -s "$CFG" "$CFG.new"; then
    log "configuration changed: restarting containerd"
    down
    mkdir -p "$RUN"
    write_config "$CFG.new"
  fi
  if running; then
    log "containerd already running (pid $(cat "$PIDFILE"))"
    rm -f "$CFG.new"
  else
    mv "$CFG.new" "$CFG"
    start_containerd
  fi
  if ! ctr_ -n k8s.io images ls -q | grep -qx "$IMAGE_NAME"; then
    ctr_ -n k8s.io images import "$IMAGE_TAR" >/dev/null
    log "imported $IMAGE_NAME"
  fi
}

# Processes our containerd launched (shims, pause containers) name its socket.
own_processes() {
  local p
  for p in /proc/[0-9]*; do
    tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q -- "$SOCK" && basename "$p"
  done
  return 0
}

down() {
  if running; then
    local pid
    pid=$(cat "$PIDFILE")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do [ -d "/proc/$pid" ] || break; sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null || true
    log "containerd (pid $pid) stopped"
  fi
  rm -f "$PIDFILE"
  for pid in $(own_processes); do kill -KILL "$pid" 2>/dev/null || true; done
  # husk sandboxes our containerd made (their bundles live under $RUN):
  # `shim delete` kills their holders and removes their cgroups and state.
  local st id shim
  shim=$(husk_shim)
  for st in /run/husk/state/k8s.io/*/state.json; do
    [ -f "$st" ] || continue
    grep -q "\"bundle\":\"$RUN/" "$st" || continue
    id=$(basename "$(dirname "$st")")
    [ -x "$shim" ] && "$shim" -namespace k8s.io -id "$id" delete >/dev/null 2>&1 || true
  done
  # Mounts under our state and root: netns files, rootfs, shm.
  awk -v a="$RUN/" -v b="$CROOT/" '$5 ~ "^"a || $5 ~ "^"b {print $5}' /proc/self/mountinfo | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
  ip link del "$BRIDGE" 2>/dev/null || true
  # Cgroups the e2e pods used (tests put pods under $CGROUP_PARENT).
  for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/unified/; do
    [ -d "$h$CGROUP_PARENT" ] && find "$h$CGROUP_PARENT" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  rm -rf "$RUN"
  # containerd's root holds the CRI sandbox metadata of this run: drop it
  # (the image is re-imported from the cached tar at the next `up`).
  rm -rf "$CROOT"
}

case "${1:-}" in
  up) up ;;
  start) start_containerd ;;
  down) down ;;
  env)
    echo "HUSK_E2E_CRI_SOCK=$SOCK"
    echo "HUSK_E2E_CTR=$PREFIX/usr/bin/ctr"
    echo "HUSK_E2E_STATE=$RUN"
    echo "HUSK_E2E_IMAGE=$IMAGE_NAME"
    echo "HUSK_E2E_CGROUP_PARENT=$CGROUP_PARENT"
    echo "HUSK_E2E_PIDFILE=$PIDFILE"
    ;;
  *) echo "usage: $0 up|start|down|env" >&2; exit 2 ;;
esac
