#!/usr/bin/env python3
"""Slow connections against the release agent: legitimate reads and /ping while N hostile
connections (half silent, half a partial request head) hold or retry their place.

    .venv/bin/python bench/slow.py 0 1000 10000
    SLOW_KIND=pipeline .venv/bin/python bench/slow.py 1000
    SLOW_KIND=large .venv/bin/python bench/slow.py 400

(0: the same reads with no hostile connection, the machine's own baseline.)

SLOW_KIND picks the hostile clients: `silent` (the default, as above); `pipeline`, clients that
pipeline requests for a 64 KiB secret as fast as the agent reads them and never read an answer
(a 4 KiB receive buffer); `large`, keep-alive clients that each read a 64 KiB secret once and
then sit idle (memory per connection after a large answer). After the hostile clients are
stopped, RSS is read again (`after`): what the agent gave back.

For each N: the agent (default settings, max_conn 800) serves one cached secret; a separate
process keeps N hostile connections open, reconnecting 100 ms after the agent closes one; once
they are all connected (or 20 s have passed), legitimate reads (a new connection each, as a
health check or a short-lived client does) and /ping run for MEASURE_S seconds. Reported:
status counts and latency percentiles of both, the agent's RSS and open fds before and during,
and RSS per held connection. Results in bench/results/slow.md and slow.json. 127.0.0.1 only;
every loop is bounded in count and time.
"""

import asyncio
import json
import os
import resource
import select
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the benchmark's harness: children, proxy, agent)

MEASURE_S = float(os.environ.get("SLOW_MEASURE_S", "10"))
KIND = os.environ.get("SLOW_KIND", "silent")
SECRET = "bench/slow"
# 64 KiB: the Secrets Manager maximum.
LARGE = "bench/large"


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


async def hostile_main(port, n, seconds, kind):
    """Keeps n hostile connections of `kind` for `seconds`; prints how many are connected every
    second."""
    connected = 0
    reconnects = 0
    end = time.monotonic() + seconds
    large = (f"GET {run.secret_path(LARGE)} HTTP/1.1\r\nHost: x\r\n"
             f"{run.TOKEN_HEADER}: {run.TOKEN}\r\n\r\n").encode()

    async def connect():
        sock = socket.socket()
        if kind == "pipeline":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        return await asyncio.open_connection(sock=sock)

    async def pipeline_or_large(r, w):
        left = max(0.0, end - time.monotonic())
        if kind == "pipeline":
            # As fast as the agent reads; never an answer read.
            while time.monotonic() < end:
                w.write(large * 20)
                await asyncio.wait_for(w.drain(), timeout=left)
        else:
            w.write(large)
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), timeout=left)
            length = int([h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")][0]
                         .split(b":")[1])
            await asyncio.wait_for(r.readexactly(length), timeout=left)
            # Idle in keep-alive until the agent closes it or the run ends.
            await asyncio.wait_for(r.read(1), timeout=max(0.0, end - time.monotonic()))

    async def one(i):
        nonlocal connected, reconnects
        while time.monotonic() < end:
            try:
                r, w = await (asyncio.open_connection("127.0.0.1", port) if kind == "silent" else connect())
            except OSError:
                await asyncio.sleep(0.1)
                continue
            connected += 1
            try:
                if kind == "silent":
                    if i % 2:
                        w.write(b"GET /secretsmanager/get?secretId=bench%2Fsl")
                    await asyncio.wait_for(r.read(4096), timeout=max(0.0, end - time.monotonic()))
                else:
                    await pipeline_or_large(r, w)
            except (asyncio.TimeoutError, asyncio.IncompleteReadError, OSError, IndexError, ValueError):
                pass
            connected -= 1
            reconnects += 1
            w.close()
            await asyncio.sleep(0.1)

    async def report():
        while time.monotonic() < end:
            print(f"CONNECTED {connected} {reconnects}", flush=True)
            await asyncio.sleep(1)

    # Stagger the connects a little so the listen backlog does not overflow into SYN retries.
    tasks = [asyncio.ensure_future(report())]
    for i in range(n):
        tasks.append(asyncio.ensure_future(one(i)))
        if i % 200 == 199:
            await asyncio.sleep(0.01)
    await asyncio.gather(*tasks)


def legit(port, path, token):
    start = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            head = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            if token:
                head += f"{run.TOKEN_HEADER}: {run.TOKEN}\r\n"
            s.sendall((head + "\r\n").encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else "closed"
    except OSError as e:
        status = type(e).__name__
    return status, (time.perf_counter() - start) * 1e6


def summarize(samples):
    lat = sorted(us for _, us in samples)
    counts = {}
    for status, _ in samples:
        counts[str(status)] = counts.get(str(status), 0) + 1
    pct = lambda p: lat[min(len(lat) - 1, int(p / 100 * len(lat)))] if lat else 0  # noqa: E731
    return {"n": len(samples), "status": counts, "p50_us": pct(50), "p99_us": pct(99), "max_us": lat[-1] if lat else 0}


def measure(children, proxy_port, n):
    run.AGENT = os.environ.get("SLOW_AGENT", run.AGENT)
    # SLOW_MAX_CONN: the agent's max_conn (default 800).
    limit = os.environ.get("SLOW_MAX_CONN")
    extra = {"PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS": limit} if limit else {}
    agent = run.Agent(children, proxy_port, f"slow-{n}", **extra)
    agent.secret(SECRET)
    time.sleep(0.5)
    pid = agent.proc.pid
    if KIND == "large":
        agent.secret(LARGE)
    base = {"rss_kib": agent.rss_kib(), "fds": fds(pid)}
    hostile = children.start([run.PY, os.path.abspath(__file__), "hostile", str(agent.port), str(n),
                              str(20 + MEASURE_S + 5), KIND], f"hostile-{n}.log", stdout=subprocess.PIPE)
    deadline = time.monotonic() + 20
    line = ""
    while time.monotonic() < deadline:
        if not select.select([hostile.stdout], [], [], 1)[0]:
            continue
        line = hostile.stdout.readline().decode().strip()
        if line.startswith("CONNECTED") and (n == 0 or int(line.split()[1]) >= n * 0.9):
            break
    print(f"N={n}: hostile {line}", file=sys.stderr)
    path = run.secret_path(SECRET)
    reads, pings = [], []
    peak_rss, peak_fds = 0, 0
    end = time.monotonic() + MEASURE_S
    i = 0
    while time.monotonic() < end:
        reads.append(legit(agent.port, path, True))
        if i % 10 == 0:
            pings.append(legit(agent.port, "/ping", False))
            peak_rss = max(peak_rss, agent.rss_kib())
            peak_fds = max(peak_fds, fds(pid))
        i += 1
        time.sleep(0.002)
    metrics = agent.metrics()
    # The hostile process's last count: it was still at it during the whole measurement.
    during = line
    while select.select([hostile.stdout], [], [], 0)[0]:
        got = hostile.stdout.readline().decode().strip()
        if not got:
            break
        during = got
    line = f"{line} / at the end: {during}"
    children.stop(hostile)
    # Two seconds of ordinary reads once the hostile clients are gone: what the agent gives back
    # while it serves (an idle allocator returns freed pages only when it next runs).
    settle = time.monotonic() + 2
    while time.monotonic() < settle:
        legit(agent.port, path, True)
        time.sleep(0.002)
    after_rss = agent.rss_kib()
    out = {
        "n": n,
        "hostile": line,
        "base": base,
        "kind": KIND,
        "peak_rss_kib": peak_rss,
        "after_rss_kib": after_rss,
        "peak_fds": peak_fds,
        "held": min(n, int(limit or 800)),
        "rss_per_held_conn_kib": (peak_rss - base["rss_kib"]) / max(1, min(n, int(limit or 800))),
        "reads": summarize(reads),
        "pings": summarize(pings),
        "evicted": metrics.get("secrets_agent_connections_evicted_total"),
        "refused": metrics.get("secrets_agent_connections_refused_total"),
        "dropped": metrics.get("secrets_agent_connections_dropped_total"),
    }
    children.stop(agent.proc)
    return out


def main(ns):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.makedirs(run.LOGS, exist_ok=True)
    children = run.Children()
    results = []
    try:
        moto_port, proxy_port = run.start_backend(children)
        import boto3

        sm = boto3.client("secretsmanager", endpoint_url=f"http://127.0.0.1:{moto_port}",
                          region_name="us-east-1", aws_access_key_id="bench", aws_secret_access_key="bench")
        sm.create_secret(Name=SECRET, SecretString=run.HOT_VALUE)
        sm.create_secret(Name=LARGE, SecretString="v" * (64 * 1024))
        for n in ns:
            r = measure(children, proxy_port, n)
            print(json.dumps(r), file=sys.stderr)
            results.append(r)
    finally:
        children.stop_all()
    ms = lambda us: f"{us / 1000:.2f} ms"  # noqa: E731
    lines = [f"Hostile clients: {KIND}.", "",
             "| hostile connections | reads (status: count) | read p50 / p99 / max | /ping (status: count) "
             "| /ping p99 / max | RSS idle → peak → after | RSS per held connection | agent fds peak | evicted |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r['n']} | {r['reads']['status']} | {ms(r['reads']['p50_us'])} / {ms(r['reads']['p99_us'])} / "
            f"{ms(r['reads']['max_us'])} | {r['pings']['status']} | {ms(r['pings']['p99_us'])} / "
            f"{ms(r['pings']['max_us'])} | "
            f"{r['base']['rss_kib'] / 1024:.1f} → {r['peak_rss_kib'] / 1024:.1f} → {r['after_rss_kib'] / 1024:.1f} MiB | "
            f"{r['rss_per_held_conn_kib']:.1f} KiB | {r['peak_fds']} | {r['evicted']:.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    run.write_results("slow" if KIND == "silent" else f"slow-{KIND}", text, results)


if __name__ == "__main__":
    if sys.argv[1] == "hostile":
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        asyncio.run(hostile_main(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]))
    else:
        main([int(a) for a in sys.argv[1:]])
