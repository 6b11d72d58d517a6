#!/usr/bin/env bash
# `make run`: moto on a free local port with a demo secret and parameter, and the agent against
# it on 127.0.0.1:2773. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
BIN=target/release/secrets-agent

coproc MOTO { exec "$PY" tests/support/moto_server.py; }
trap 'kill "$MOTO_PID" 2>/dev/null || true; kill "${AGENT_PID:-}" 2>/dev/null || true' EXIT
read -r _ PORT <&"${MOTO[0]}"
export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT" AWS_REGION=us-east-1 \
       AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo
"$PY" - <<'PY'
import boto3
boto3.client("secretsmanager").create_secret(Name="demo/db-password", SecretString='{"username":"demo","password":"hunter2"}')
boto3.client("ssm").put_parameter(Name="/demo/greeting", Value="hello from SSM", Type="String")
PY
export AWS_TOKEN=demo-token
"$BIN" &
AGENT_PID=$!
for _ in $(seq 50); do "$BIN" health 2>/dev/null && break; sleep 0.1; done
echo
echo "moto on 127.0.0.1:$PORT, secrets-agent on 127.0.0.1:2773 (token: $AWS_TOKEN). Try:"
echo
echo "  curl -s -H 'X-Aws-Parameters-Secrets-Token: demo-token' 'http://127.0.0.1:2773/secretsmanager/get?secretId=demo/db-password'"
echo "  curl -s -H 'X-Aws-Parameters-Secrets-Token: demo-token' 'http://127.0.0.1:2773/systemsmanager/parameters/get?name=/demo/greeting'"
echo
echo "First answer:"
curl -s -i -H 'X-Aws-Parameters-Secrets-Token: demo-token' 'http://127.0.0.1:2773/secretsmanager/get?secretId=demo/db-password'
echo
echo
echo "Ctrl-C stops the agent and moto."
wait "$AGENT_PID"
