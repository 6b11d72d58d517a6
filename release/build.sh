#!/usr/bin/env bash
# Builds the one release binary of an architecture that the layer zip and the image both ship:
# statically linked against glibc (crt-static), so it needs no libc on the machine that runs it
# (a FROM scratch image, either Lambda OS family) and no glibc symbol version at all. It is
# copied to target/dist/<arch>/secrets-agent; layer/layer.mk and image/image.mk take it from
# there.
#
#   release/build.sh amd64     x86_64-unknown-linux-gnu, rustup's compiler (the host's std)
#   release/build.sh arm64     aarch64-unknown-linux-gnu, cross-linked with Debian's
#                              gcc-aarch64-linux-gnu (static glibc from libc6-dev-arm64-cross)
#
# The arm64 Rust std comes, in this order, from
#   1. rustup, when `rustup target list --installed` has aarch64-unknown-linux-gnu;
#   2. `rustup target add aarch64-unknown-linux-gnu`, given RUSTUP_TARGET_TIMEOUT seconds
#      (default 120): the Rust toolchain server is not a package registry and may hang;
#   3. Debian: rustc-web and libstd-rust-web-dev:arm64 (bookworm-security), with Debian's
#      compiler named explicitly (RUSTC=/usr/bin/rustc, never found through PATH) and its own
#      target directory (target/debian-rustc), so it never rebuilds rustup's builds.
# AARCH64_STD=rustup|debian skips the choice (e.g. to check the Debian route on a machine that
# has rustup's std). A fallback is remembered in target/debian-rustc/.rustup-target-add-failed,
# so the next build does not wait for the toolchain server again.
#
# target-cpu stays the target's default (x86-64; generic armv8-a with outline atomics on
# aarch64): one arm64 binary serves Lambda (Graviton2 and later) and ECS/EKS fleets that may
# still run Graviton1 (A1, Cortex-A72: no LSE atomics). Outline atomics pick LSE at run time
# where the CPU has it, and ring selects its AES/SHA/PMULL code by CPU feature detection.
set -euo pipefail

arch=${1:?usage: release/build.sh amd64|arm64}
cd "$(dirname "$0")/.."
target_dir=${RELEASE_TARGET_DIR:-${CARGO_TARGET_DIR:-$PWD/target}}
dist=$PWD/target/dist/$arch
say() { echo "release/build.sh: $*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Installs the Debian packages named that are missing (arm64 ones need the architecture added).
apt_install() {
  local need=() p
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p"); done
  [ ${#need[@]} -eq 0 ] && return 0
  if printf '%s\n' "${need[@]}" | grep -q ':arm64$' && ! dpkg --print-foreign-architectures | grep -qx arm64; then
    as_root dpkg --add-architecture arm64
  fi
  say "installing: ${need[*]}"
  as_root apt-get -o DPkg::Lock::Timeout=300 update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

# Prints `rustup` or `debian`: where the aarch64 std comes from (see the header).
aarch64_std() {
  local triple=aarch64-unknown-linux-gnu
  local failed=$target_dir/debian-rustc/.rustup-target-add-failed
  local timeout=${RUSTUP_TARGET_TIMEOUT:-120}
  case "${AARCH64_STD:-auto}" in
    rustup | debian) echo "$AARCH64_STD"; return ;;
    auto) ;;
    *) say "AARCH64_STD=$AARCH64_STD: want rustup, debian or auto"; exit 2 ;;
  esac
  if rustup target list --installed 2>/dev/null | grep -qx "$triple"; then echo rustup; return; fi
  local why="rustup is not installed"
  if [ -f "$failed" ]; then
    why="an earlier rustup target add $triple failed or timed out ($failed)"
  elif command -v rustup >/dev/null; then
    say "rustup target add $triple (at most ${timeout} s)"
    if timeout --kill-after=10 "$timeout" rustup target add "$triple" >&2; then echo rustup; return; fi
    mkdir -p "$(dirname "$failed")" && date -u >"$failed"
    why="rustup target add $triple failed or did not finish in ${timeout} s"
  fi
  say "$why: building arm64 with Debian's rustc-web and libstd-rust-web-dev:arm64 instead"
  echo debian
}

case "$arch" in
  amd64)
    triple=x86_64-unknown-linux-gnu
    env=(CARGO_TARGET_DIR="$target_dir")
    ;;
  arm64)
    triple=aarch64-unknown-linux-gnu
    # The linker and C compiler (mimalloc, ring) and the static glibc, whichever std is used.
    apt_install gcc-aarch64-linux-gnu libc6-dev-arm64-cross
    env=(CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
         CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
         AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar)
    std=$(aarch64_std)
    if [ "$std" = debian ]; then
      apt_install rustc-web libstd-rust-web-dev:arm64
      env+=(RUSTC=/usr/bin/rustc CARGO_TARGET_DIR="$target_dir/debian-rustc")
      say "compiler: $(/usr/bin/rustc -V) (Debian)"
    else
      env+=(CARGO_TARGET_DIR="$target_dir")
    fi
    ;;
  *) say "unknown architecture '$arch': want amd64 or arm64"; exit 2 ;;
esac

bin_dir=$(printf '%s\n' "${env[@]}" | sed -n 's/^CARGO_TARGET_DIR=//p')/$triple/release
env "${env[@]}" RUSTFLAGS="-C target-feature=+crt-static" \
  nice -n 10 cargo build --release --locked --target "$triple"
bin=$bin_dir/secrets-agent
desc=$(file -b "$bin")
case "$desc" in
  *"static"*) ;;
  *) say "$bin is not statically linked: $desc"; exit 1 ;;
esac
mkdir -p "$dist"
install -m 0755 "$bin" "$dist/secrets-agent.tmp"
mv "$dist/secrets-agent.tmp" "$dist/secrets-agent"
say "$arch: $dist/secrets-agent, $(stat -c %s "$dist/secrets-agent") bytes: $desc"
