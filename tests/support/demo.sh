#!/usr/bin/env bash
# `make run`: moto on a free local port with a demo secret and parameter, and the agent against
# it on 127.0.0.1:2773 (DEMO_PORT=N for another port). Ctrl-C stops both.
#
#   --once   exit after the first answer (`make test` runs the demo this way: tests/demo)
#
# Nothing is taken from the caller's environment but PATH: moto, the seeding and the agent run
# under `env -i` with a fixed set of variables, so a real AWS_PROFILE, real keys, an
# AWS_ENDPOINT_URL of the user's own or an AWS_LAMBDA_RUNTIME_API cannot send a call elsewhere.
# SECRETS_AGENT_BIN picks the binary (default: the release build).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
BIN=${SECRETS_AGENT_BIN:-target/release/secrets-agent}
AGENT_PORT=${DEMO_PORT:-2773}
ONCE=0
for arg in "$@"; do
  case "$arg" in
    --once) ONCE=1 ;;
    *) echo "demo.sh: unknown argument '$arg' (known: --once)" >&2; exit 64 ;;
  esac
done

for f in "$PY" "$BIN"; do
  [ -x "$f" ] || { echo "demo.sh: $f is missing: run 'make run', which builds it" >&2; exit 1; }
done
case "$AGENT_PORT" in
  ''|*[!0-9]*) echo "demo.sh: DEMO_PORT='$AGENT_PORT' is not a port number" >&2; exit 64 ;;
esac
if (exec 3<>"/dev/tcp/127.0.0.1/$AGENT_PORT") 2>/dev/null; then
  echo "demo.sh: port $AGENT_PORT on 127.0.0.1 is taken (an agent already running?); pick another: make run DEMO_PORT=2774" >&2
  exit 1
fi

MOTO_CHILD='' AGENT_PID='' SCRATCH=$(mktemp -d)
stop() {
  trap - EXIT INT TERM
  for pid in $AGENT_PID $MOTO_CHILD; do kill "$pid" 2>/dev/null || true; done
  for pid in $AGENT_PID $MOTO_CHILD; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$SCRATCH"
}
trap stop EXIT
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM

# The one environment every child gets: no AWS profile or config file, demo keys, moto's endpoint.
clean_env=(env -i PATH="$PATH" HOME="$SCRATCH" LANG=C.UTF-8
  AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
  AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
  AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_EC2_METADATA_DISABLED=true
  AWS_TOKEN=demo-token)

# moto prints "PORT n" once it listens; it stops when its standard input (the coproc pipe) closes.
coproc MOTO { exec "${clean_env[@]}" "$PY" tests/support/moto_server.py; }
MOTO_CHILD=$MOTO_PID  # bash unsets MOTO_PID when the coproc ends
read -r _ PORT <&"${MOTO[0]}" || { echo "demo.sh: moto did not start" >&2; exit 1; }
clean_env+=(AWS_ENDPOINT_URL="http://127.0.0.1:$PORT")

"${clean_env[@]}" "$PY" - <<'PY'
import boto3
boto3.client("secretsmanager").create_secret(Name="demo/db-password", SecretString='{"username":"demo","password":"hunter2"}')
boto3.client("ssm").put_parameter(Name="/demo/greeting", Value="hello from SSM", Type="String")
PY

"${clean_env[@]}" "$BIN" --port "$AGENT_PORT" &
AGENT_PID=$!
for _ in $(seq 100); do
  "${clean_env[@]}" "$BIN" health --port "$AGENT_PORT" 2>/dev/null && break
  kill -0 "$AGENT_PID" 2>/dev/null || { echo "demo.sh: the agent exited (its message is above)" >&2; exit 1; }
  sleep 0.1
done

URL="http://127.0.0.1:$AGENT_PORT"
echo
echo "moto on 127.0.0.1:$PORT, secrets-agent on 127.0.0.1:$AGENT_PORT (token: demo-token). Try:"
echo
echo "  curl -s -H 'X-Aws-Parameters-Secrets-Token: demo-token' '$URL/secretsmanager/get?secretId=demo/db-password'"
echo "  curl -s -H 'X-Aws-Parameters-Secrets-Token: demo-token' '$URL/systemsmanager/parameters/get?name=/demo/greeting'"
echo
echo "First answer:"
curl -sS -i --max-time 10 -H 'X-Aws-Parameters-Secrets-Token: demo-token' "$URL/secretsmanager/get?secretId=demo/db-password"
echo
echo
if [ "$ONCE" = 1 ]; then exit 0; fi
echo "Ctrl-C stops the agent and moto."
wait "$AGENT_PID"
