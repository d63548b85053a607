#!/usr/bin/env bash
# Installs what husk needs to build and test on Debian 12, idempotently.
# Never upgrades installed packages; installs only what is missing.
set -euo pipefail

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "husk: run as root (sandboxes need namespaces, cgroups and mounts)" >&2
    exit 1
  fi
}

apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "husk setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

check_cargo() {
  if ! command -v cargo >/dev/null 2>&1; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    apt_install cargo
  fi
  local v
  v=$(rustc --version | awk '{print $2}')
  local minor=${v#1.}; minor=${minor%%.*}
  if [ "$minor" -lt 85 ]; then
    echo "husk: rustc $v is too old; husk needs Rust 1.85 or newer (install it with rustup)" >&2
    exit 1
  fi
}

need_root
# runc and busybox-static: containers in husk pods (the demo runs one).
apt_install ca-certificates gcc libc6-dev pkg-config iproute2 util-linux procps protobuf-compiler runc busybox-static
check_cargo

# Builds release binaries of the shim, husk-pause and huskctl, statically linked: the
# shim is exec'd for `start`, `delete` and every pod holder, and a static
# binary skips the dynamic loader each time (see docs/PERFORMANCE.md).
# Sets HUSK_BIN to the directory holding them.
build_release() {
  local host var
  host=$(rustc -vV | sed -n 's/^host: //p')
  var="CARGO_TARGET_$(echo "$host" | tr 'a-z-' 'A-Z_')_RUSTFLAGS"
  env "$var=-C target-feature=+crt-static -C relocation-model=static" \
    cargo build --release --quiet --target "$host" --bin containerd-shim-husk-v1 --bin huskctl
  # The pod holder's program: no_std, its own workspace (panic = abort).
  env "$var=-C target-feature=+crt-static -C relocation-model=static" \
    cargo build --release --quiet --manifest-path crates/husk-pause/Cargo.toml --target "$host" --target-dir "$PWD/target"
  HUSK_BIN="$PWD/target/$host/release"
  export HUSK_BIN
}

# Brings up the private containerd unless it runs already, exports its
# env, and stops it at exit only if this call started it.
use_private_containerd() {
  local out
  # (Not `tee /dev/stderr`: with stderr on a file, that reopens and
  # truncates the file, and a CI log loses all it had.)
  out=$(bash scripts/containerd-env.sh up 2>&1) || { echo "$out" >&2; exit 1; }
  echo "$out" >&2
  if ! grep -q "already running" <<<"$out"; then
    trap 'bash scripts/containerd-env.sh down' EXIT
  fi
  set -a
  eval "$(bash scripts/containerd-env.sh env)"
  set +a
}
