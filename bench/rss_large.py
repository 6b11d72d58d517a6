"""RSS of an agent holding secrets of 64 KiB (the Secrets Manager maximum), against moto.

    .venv/bin/python bench/rss_large.py target/release/secrets-agent [CACHE_MAX_BYTES]

Creates N (default 1000, env N) secrets of 64 KiB, reads each twice through the agent, and prints
VmRSS after the first secret and VmRSS / VmHWM at the end, with the cache's own entry and byte
gauges. See README, "Memory".
"""
import os, subprocess, sys, time, urllib.request, socket
import boto3

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = sys.argv[1]
MAX_BYTES = sys.argv[2] if len(sys.argv) > 2 else None
N = int(os.environ.get("N", "1000"))
moto = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests/support/moto_server.py")],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                        text=True)
port = int(moto.stdout.readline().split()[1])
url = f"http://127.0.0.1:{port}"
sm = boto3.client("secretsmanager", endpoint_url=url, region_name="us-east-1",
                  aws_access_key_id="t", aws_secret_access_key="t")
value = "v" * (64 * 1024)
for i in range(N):
    sm.create_secret(Name=f"big-{i}", SecretString=value)
s = socket.socket(); s.bind(("127.0.0.1", 0)); aport = s.getsockname()[1]; s.close()
env = {"PATH": "/usr/bin:/bin", "AWS_ENDPOINT_URL": url, "AWS_REGION": "us-east-1",
       "AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "AWS_TOKEN": "tok",
       "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(aport), "PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL": "warn"}
if MAX_BYTES:
    env["SECRETS_AGENT_CACHE_MAX_BYTES"] = MAX_BYTES
agent = subprocess.Popen([BIN], env=env)
def rss(field="VmRSS"):
    for line in open(f"/proc/{agent.pid}/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024
for _ in range(100):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{aport}/ping"); break
    except Exception:
        time.sleep(0.05)
def get(i):
    req = urllib.request.Request(f"http://127.0.0.1:{aport}/secretsmanager/get?secretId=big-{i}",
                                 headers={"X-Aws-Parameters-Secrets-Token": "tok"})
    return urllib.request.urlopen(req).read()
get(0); time.sleep(1)
print(f"after one secret: RSS {rss():.1f} MiB")
for r in range(2):
    for i in range(N):
        assert len(get(i)) > 64 * 1024
time.sleep(1)
m = urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{aport}/metrics",
        headers={"X-Aws-Parameters-Secrets-Token": "tok"})).read().decode()
gauges = [l for l in m.splitlines() if l.startswith("secrets_agent_cache_entries") or l.startswith("secrets_agent_cache_bytes")]
print(f"budget {MAX_BYTES or 'default'}: {N} x 64 KiB read twice: RSS {rss():.1f} MiB, peak (VmHWM) {rss('VmHWM'):.1f} MiB; {gauges}")
agent.terminate(); agent.wait(); moto.stdin.close(); moto.wait()
