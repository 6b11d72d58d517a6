"""User-space instructions per cache hit of secrets-agent, the two AWS agents
(bench/contenders.py, each from the same configuration file) and the floor, counted by
valgrind's callgrind.

Unlike requests per second, the count does not move with what else the machine is doing, so it
shows small hit-path changes that `make bench` cannot tell from noise. Each server runs under
callgrind twice, answering FEW and MANY requests on one keep-alive connection; the difference
divided by MANY - FEW is the cost of one request, start-up and shutdown cancelling out.

Run by `make bench-instructions` after `make bench` has built the agent and the floor and
`make bench-agents` installed the AWS agents (needs valgrind). BENCH_OURS_ONLY=1: secrets-agent
and the floor only.
"""
import glob
import http.client
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# BENCH_AGENT counts another build of the agent (bench/builds.py compares two).
from contenders import ROOT, TOKEN_HEADER, contenders, write_config  # noqa: E402

BODY = os.path.join(ROOT, "bench", "results", "floor-body.json")
# BENCH_QUICK=1: fewer requests, to check the script (the per-hit figure is noisier).
FEW, MANY = (50, 250) if os.environ.get("BENCH_QUICK") == "1" else (500, 2500)
TOKEN = "bench-instructions-token"
SECRET = "bench/instructions"
PATH = f"/secretsmanager/get?secretId={SECRET}"


def floor_binary():
    if os.environ.get("BENCH_FLOOR"):  # another floor build, e.g. `--profile dev`
        return os.environ["BENCH_FLOOR"]
    floors = [p for p in glob.glob(os.path.join(ROOT, "target", "release", "deps", "floor-*"))
              if os.access(p, os.X_OK) and not p.endswith(".d")]
    if not floors or not os.path.exists(BODY):
        sys.exit("no floor build or body: run `make bench` first")
    return max(floors, key=os.path.getmtime)


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def total_instructions(out):
    total = 0
    for f in glob.glob(out + "*"):
        with open(f) as fh:
            for line in fh:
                if line.startswith(("summary:", "totals:")):
                    total += int(line.split()[1])
                    break
    return total


def serve_and_count(cmd, port_of, requests, env=None):
    """Starts `cmd` under callgrind, sends `requests` GETs on one connection, stops it."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                env=env, text=True, cwd=tmp)
        try:
            port = port_of(proc)
            conn = None
            for _ in range(600):  # valgrind starts slowly
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                    conn.request("GET", "/ping", headers={TOKEN_HEADER: TOKEN})
                    conn.getresponse().read()
                    break
                except OSError:
                    time.sleep(0.1)
            for _ in range(requests + 1):  # the first read of the agent is its miss
                conn.request("GET", PATH, headers={TOKEN_HEADER: TOKEN})
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"{cmd[0]} answered {resp.status}")
            conn.close()
        finally:
            # The floor exits when its standard input closes, the agent on SIGTERM; either way
            # callgrind writes its counts on the way out.
            proc.stdin.close()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
        return total_instructions(out)


def per_request(cmd, port_of, env=None):
    few = serve_and_count(cmd, port_of, FEW, env)
    many = serve_and_count(cmd, port_of, MANY, env)
    return (many - few) / (MANY - FEW)


def main():
    whos = contenders()
    if subprocess.run(["sh", "-c", "command -v valgrind"], stdout=subprocess.DEVNULL).returncode != 0:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    moto = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "support", "moto_server.py")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        moto_url = f"http://127.0.0.1:{int(moto.stdout.readline().split()[1])}"
        import boto3
        boto3.client("secretsmanager", endpoint_url=moto_url, region_name="us-east-1",
                     aws_access_key_id="bench", aws_secret_access_key="bench").create_secret(
            Name=SECRET, SecretString="x" * 150)
        env = dict(os.environ, AWS_ENDPOINT_URL=moto_url, AWS_REGION="us-east-1", AWS_ACCESS_KEY_ID="bench",
                   AWS_SECRET_ACCESS_KEY="bench", AWS_EC2_METADATA_DISABLED="true", AWS_TOKEN=TOKEN,
                   PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL="warn")
        floor = per_request([floor_binary(), "127.0.0.1:0", BODY],
                            lambda proc: int(proc.stdout.readline().split()[1]))
        counts = {}
        with tempfile.TemporaryDirectory() as configs:
            for who in whos:
                port = free_port()
                cfg = write_config(configs, who.key, port)
                counts[who.label] = per_request(who.command(cfg), lambda _, p=port: p, env)
    finally:
        moto.stdin.close()
        moto.wait()
    print(f"user-space instructions per cache hit (callgrind, {MANY} - {FEW} requests on one connection):")
    print(f"  {'floor':42} {floor:>10,.0f}")
    for label, n in counts.items():
        print(f"  {label:42} {n:>10,.0f}  ({n / floor:.2f} × the floor)")


if __name__ == "__main__":
    main()
