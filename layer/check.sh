#!/usr/bin/env bash
# Checks a layer zip: exactly two entries, `extensions/secrets-agent` and the exec wrapper
# `secrets-agent-exec` (a shell script that runs `extensions/secrets-agent exec`), regular files
# with mode 0755; the agent a stripped ELF executable whose `file` description names the expected
# architecture, and that needs no glibc symbol newer than Amazon Linux 2's (2.26): the binaries
# `make layer-all` builds are static (release/build.sh), so they need none at all.
#
#   layer/check.sh layer/secrets-agent-x86_64.zip x86-64
#   layer/check.sh layer/secrets-agent-arm64.zip 'ARM aarch64'
set -euo pipefail

zip_path=${1:?usage: layer/check.sh ZIP ARCH}
arch=${2:?usage: layer/check.sh ZIP ARCH}
fail() { echo "layer-test: $zip_path: $*" >&2; exit 1; }

[ -f "$zip_path" ] || fail "missing (run make layer)"

python3 - "$zip_path" <<'PY' || fail "bad layout"
import stat, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    infos = z.infolist()
    want = ["extensions/secrets-agent", "secrets-agent-exec"]
    names = [i.filename for i in infos]
    if names != want:
        sys.exit(f"entries are {names}, want exactly {want}")
    for info in infos:
        mode = info.external_attr >> 16
        if not stat.S_ISREG(mode):
            sys.exit(f"{info.filename} is not a regular file (mode {oct(mode)})")
        if stat.S_IMODE(mode) != 0o755:
            sys.exit(f"{info.filename} has mode {oct(stat.S_IMODE(mode))}, want 0o755")
    wrapper = z.read("secrets-agent-exec").decode()
    if not wrapper.startswith("#!/bin/sh\n") or '/extensions/secrets-agent" exec -- "$@"' not in wrapper:
        sys.exit("secrets-agent-exec does not exec extensions/secrets-agent exec -- \"$@\"")
PY

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
unzip -q "$zip_path" -d "$tmp"
bin="$tmp/extensions/secrets-agent"
[ -x "$bin" ] || fail "extensions/secrets-agent is not executable once unzipped"
desc=$(file -b "$bin")
case "$desc" in
  *"ELF 64-bit LSB"*"$arch"*) ;;
  *) fail "file says '$desc', want an ELF 64-bit $arch executable" ;;
esac
case "$desc" in
  *"not stripped"*) fail "not stripped: $desc" ;;
esac
max_glibc=2.26
if command -v readelf >/dev/null; then
  newest=$(readelf -W -V "$bin" | { grep -o 'GLIBC_[0-9.]*' || true; } | sed 's/GLIBC_//' | sort -uV | tail -n1)
  if [ -n "$newest" ] && [ "$(printf '%s\n%s\n' "$newest" "$max_glibc" | sort -V | tail -n1)" != "$max_glibc" ]; then
    fail "needs glibc $newest, newer than $max_glibc (Amazon Linux 2)"
  fi
  desc="$desc; newest glibc symbol needed: ${newest:-none}"
fi
echo "ok: $zip_path: extensions/secrets-agent and secrets-agent-exec, 0755, $(stat -c %s "$bin") bytes; $desc"
