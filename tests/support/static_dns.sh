#!/usr/bin/env bash
# The release binaries are statically linked against glibc (release/build.sh). A static glibc
# resolves names with its built-in `files` and `dns` NSS modules, and would dlopen any other
# module /etc/nsswitch.conf lists (absent ones are skipped). This check runs the binary where AWS
# hostnames resolve only through DNS, with a hosts line that lists a module beyond files and dns
# (`hosts: files dns myhostname`; Lambda's own nsswitch.conf was not inspected), and has it fetch
# a secret from moto by hostname:
#
#   tests/support/static_dns.sh BINARY [RUNNER...]     e.g. RUNNER = qemu-aarch64-static
#
# In new user, mount and network namespaces (`unshare -r -m -n`, no root needed): loopback only,
# /etc/nsswitch.conf and /etc/resolv.conf bind-mounted from temporary files, a DNS server on
# 127.0.0.1:53 that answers every A query with 127.0.0.1 and logs it, moto on 127.0.0.1, and
# the agent with AWS_ENDPOINT_URL=http://secretsmanager.us-east-1.amazonaws.com:<moto's port>.
set -euo pipefail

bin=$(realpath "${1:?usage: tests/support/static_dns.sh BINARY [RUNNER...]}")
shift
runner="$*"
cd "$(dirname "$0")/../.."
# Absolute, but not through realpath: a virtualenv's python is a link to the base interpreter,
# and resolving it would leave the virtualenv (and its moto) behind.
py=${PY:-.venv/bin/python}
py="$(cd "$(dirname "$py")" && pwd)/$(basename "$py")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'hosts: files dns myhostname\n' >"$tmp/nsswitch.conf"
printf 'nameserver 127.0.0.1\n' >"$tmp/resolv.conf"
cat >"$tmp/dns.py" <<'PY'
# Answers every A query with 127.0.0.1 (no answer for other types); logs each queried name.
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
log = open(sys.argv[1], "a", buffering=1)
while True:
    q, addr = s.recvfrom(512)
    i, labels = 12, []
    while q[i]:
        labels.append(q[i + 1:i + 1 + q[i]].decode())
        i += q[i] + 1
    qtype = struct.unpack(">H", q[i + 1:i + 3])[0]
    log.write(f"{'.'.join(labels)} {qtype}\n")
    a = 1 if qtype == 1 else 0
    resp = struct.pack(">HHHHHH", struct.unpack(">H", q[:2])[0], 0x8180, 1, a, 0, 0) + q[12:i + 5]
    if a:
        resp += b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + bytes([127, 0, 0, 1])
    s.sendto(resp, addr)
PY

export BIN="$bin" RUNNER="$runner" PY="$py" TMP="$tmp" SUPPORT="$PWD/tests/support"
unshare -r -m -n bash -euo pipefail <<'EOF'
ip link set lo up
mount --bind "$TMP/nsswitch.conf" /etc/nsswitch.conf
mount --bind "$TMP/resolv.conf" /etc/resolv.conf
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
"$PY" "$TMP/dns.py" "$TMP/queries" &
# moto runs until its standard input closes: a FIFO this shell holds open until it exits.
mkfifo "$TMP/hold"
"$PY" "$SUPPORT/moto_server.py" <"$TMP/hold" >"$TMP/moto.out" 2>/dev/null &
exec 3>"$TMP/hold"
for _ in $(seq 100); do grep -q '^PORT ' "$TMP/moto.out" 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's/^PORT //p' "$TMP/moto.out")
[ -n "$port" ] || { echo "static_dns: moto did not start" >&2; exit 1; }
"$PY" - "$port" <<'PY'
import sys, boto3
boto3.client("secretsmanager", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}", region_name="us-east-1",
             aws_access_key_id="testing", aws_secret_access_key="testing").create_secret(
    Name="static-dns", SecretString="resolved-by-dns")
PY
env -i AWS_ENDPOINT_URL="http://secretsmanager.us-east-1.amazonaws.com:$port" AWS_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true \
  AWS_TOKEN=static-dns-token $RUNNER "$BIN" 2>"$TMP/agent.log" &
agent=$!
for _ in $(seq 300); do curl -fs http://127.0.0.1:2773/ping >/dev/null && break; sleep 0.2; done
got=$(curl -s -H 'X-Aws-Parameters-Secrets-Token: static-dns-token' \
  'http://127.0.0.1:2773/secretsmanager/get?secretId=static-dns')
kill -TERM "$agent"; wait "$agent" || true
case "$got" in
  *'"SecretString":"resolved-by-dns"'*) ;;
  *) echo "static_dns: no secret through a DNS-resolved endpoint: $got" >&2; cat "$TMP/agent.log" >&2; exit 1 ;;
esac
grep -q '^secretsmanager.us-east-1.amazonaws.com 1$' "$TMP/queries" || {
  echo "static_dns: the endpoint was not resolved through DNS; queries:" >&2; cat "$TMP/queries" >&2; exit 1; }
echo "ok: $BIN${RUNNER:+ (under $RUNNER)}: resolved secretsmanager.us-east-1.amazonaws.com through DNS with 'hosts: files dns myhostname' and served the secret"
EOF
