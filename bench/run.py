#!/usr/bin/env python3
"""`make bench`: the figures that say whether secrets-agent is fast and small, in one run, side by
side with the two AWS agents it replaces (bench/contenders.py) and a bare hyper server (the floor).

Builds the agent and the floor server (benches/floor.rs), starts moto, a counting proxy between
the agents and moto, the agents (each from the same TOML configuration) and the floor, measures,
stops everything, and writes Markdown tables to stdout and to bench/results/latest.md (raw
figures in bench/results/latest.json). BENCH_OURS_ONLY=1 leaves the AWS agents out.

What it measures:
- cache hits with wrk at 1, 32 and 256 connections, agent and floor alternating, median of reps;
- cold-miss storms: N concurrent first reads of one secret, backend calls counted by the proxy;
- expiry under load: short TTL, a delay injected by the proxy, p99 and max across expiries;
- start to the first /ping 200 (container mode) and to the first event/next (Lambda mode,
  against a fake Extensions API), idle RSS, RSS with 1000 cached secrets, binary and layer sizes;
- backend calls per hour per hot secret, measured at a short TTL and scaled to 300 s.

Only 127.0.0.1 is used. Every child runs in its own process group and is stopped in a `finally`;
moto, the proxy and the floor also exit when their stdin closes, and the agents get
PR_SET_PDEATHSIG, so nothing outlives this script even if it is killed.

`python bench/run.py proxy UPSTREAM_PORT` runs the counting proxy alone (the benchmark starts it
that way). BENCH_QUICK=1 shortens every phase, for trying the script out.
"""

import asyncio
import ctypes
import datetime
import glob
import http.client
import http.server
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from contenders import OURS, contenders, write_config  # noqa: E402


def _cpu_range(first, last):
    return str(first) if first == last else f"{first}-{last}"


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
LOGS = os.path.join(RESULTS, "logs")
# Each agent's configuration file and working directory (the AWS agents write logs/ there).
WORK = os.path.join(RESULTS, "work")
AGENT = OURS.binary
LUA = os.path.join(ROOT, "bench", "report.lua")
PY = sys.executable
TOKEN = "bench-token"
TOKEN_HEADER = "X-Aws-Parameters-Secrets-Token"
HOT = "bench/hot"
# A typical database secret, about 150 bytes.
HOT_VALUE = json.dumps(
    {
        "engine": "postgres",
        "host": "db.cluster-abc123.us-east-1.rds.amazonaws.com",
        "port": 5432,
        "username": "app",
        "password": "Zq8r!c0T4vW2yLm9Kp3sXe7b",
    }
)

QUICK = os.environ.get("BENCH_QUICK") == "1"
CONNECTIONS = (1, 32, 256)
REPS = 1 if QUICK else 10
RUN_S = 1 if QUICK else 4
# wrk on the lower half of the cores, the server under test on the upper half: where the
# scheduler puts the two otherwise changes req/s at 1 connection threefold from run to run.
CORES = os.cpu_count() or 1
WRK_CPUS = _cpu_range(0, CORES // 2 - 1) if CORES >= 2 else None
SERVER_CPUS = _cpu_range(CORES // 2, CORES - 1) if CORES >= 2 else None
ALL_CPUS = f"0-{CORES - 1}"
STORMS = (1, 50, 500)
STORM_DELAY_MS = 100
STORM_TIMEOUT_S = 60
EXPIRY_TTL_S = 2
EXPIRY_DELAY_MS = 200
EXPIRY_RUN_S = 4 if QUICK else 12
EXPIRY_CONNS = 32
HOURLY_RUN_S = 6 if QUICK else 20
START_RUNS = 5 if QUICK else 30
MANY = 50 if QUICK else 1000

# Goals from issue 7.
GOAL_HIT_RATIO = 0.95
GOAL_P99_RATIO = 1.10
GOAL_START_MS = 3.0
GOAL_IDLE_RSS_MIB = 6.0
GOAL_BINARY_MIB = 8.0


# ---------------------------------------------------------------------------------------------
# Child processes


def _die_with_parent():
    """Runs in the child between fork and exec: SIGTERM it when this script dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Children:
    """Every process this script starts; `stop_all` ends them, newest first."""

    def __init__(self):
        self.procs = []

    def start(self, args, log_name, stdin=subprocess.DEVNULL, stdout=None, env=None, fast=False, cwd=ROOT):
        log = open(os.path.join(LOGS, log_name), "ab")
        proc = subprocess.Popen(
            args,
            stdin=stdin,
            stdout=stdout if stdout is not None else log,
            stderr=log,
            env=env,
            cwd=cwd,
            start_new_session=True,
            # preexec_fn forces fork() instead of vfork(); the start-up timing skips it so the
            # spawn itself costs what it costs a supervisor.
            preexec_fn=None if fast else _die_with_parent,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def stop(self, proc, sig=signal.SIGTERM, timeout=10.0):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream:
                stream.close()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self):
        for proc in reversed(list(self.procs)):
            try:
                self.stop(proc, timeout=5.0)
            except Exception as e:  # keep stopping the others
                print(f"could not stop pid {proc.pid}: {e}", file=sys.stderr)


def read_port(proc, what):
    """Reads the `PORT n` line a helper prints once it listens."""
    line = proc.stdout.readline().decode().strip()
    if not line.startswith("PORT "):
        raise RuntimeError(f"{what} did not start (said {line!r}); see {LOGS}")
    return int(line.split()[1])


def write_results(name, table, data):
    """bench/results/NAME.md (the table) and NAME.json (every sample)."""
    with open(os.path.join(RESULTS, f"{name}.md"), "w") as f:
        f.write(table)
    with open(os.path.join(RESULTS, f"{name}.json"), "w") as f:
        json.dump(data, f, indent=1)


def start_backend(children, prefix=""):
    """moto and the counting/fault proxy in front of it; returns (moto port, proxy port)."""
    moto = children.start([PY, "tests/support/moto_server.py"], f"{prefix}moto.log",
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    moto_port = read_port(moto, "moto")
    proxy = children.start([PY, os.path.abspath(__file__), "proxy", str(moto_port)],
                           f"{prefix}proxy.log", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    return moto_port, read_port(proxy, "proxy")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cargo_build():
    """Builds the agent and the floor; returns the floor's executable. BENCH_NO_BUILD=1 takes
    what target/release already holds (for trying the script out while others build);
    BENCH_FLOOR names another floor executable then (e.g. a `--profile dev` build)."""
    if os.environ.get("BENCH_NO_BUILD") == "1":
        if os.environ.get("BENCH_FLOOR"):
            return os.environ["BENCH_FLOOR"]
        floors = [p for p in glob.glob(os.path.join(ROOT, "target", "release", "deps", "floor-*"))
                  if os.access(p, os.X_OK) and not p.endswith(".d")]
        return max(floors, key=os.path.getmtime)
    subprocess.run(["cargo", "build", "--release", "--bin", "secrets-agent"], cwd=ROOT, check=True)
    out = subprocess.run(
        ["cargo", "build", "--release", "--bench", "floor", "--message-format=json-render-diagnostics"],
        cwd=ROOT,
        check=True,
        stdout=subprocess.PIPE,
    ).stdout
    for line in out.decode().splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "floor":
            if msg.get("executable"):
                return msg["executable"]
    raise RuntimeError("cargo did not report the floor executable")


# ---------------------------------------------------------------------------------------------
# The counting proxy (a separate process, so its threads do not share a GIL with the clients)


def proxy_main(upstream_port):
    # fault: "none", "drop" (close without answering: an outage) or "throttle" (400
    # ThrottlingException); `make soak` switches it.
    state = {"delay_ms": 0, "counts": {}, "fault": "none"}
    lock = threading.Lock()
    local = threading.local()
    hop = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _reply(self, status, headers, body):
            self.send_response(status)
            for k, v in headers:
                if k.lower() not in hop and k.lower() != "content-length":
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            q = dict(urllib.parse.parse_qsl(url.query))
            with lock:
                if url.path == "/__bench/delay":
                    state["delay_ms"] = int(q["ms"])
                elif url.path == "/__bench/fault":
                    state["fault"] = q["mode"]
                elif url.path == "/__bench/reset":
                    state["counts"] = {}
                body = json.dumps(state).encode()
            self._reply(200, [("Content-Type", "application/json")], body)

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            target = self.headers.get("X-Amz-Target", "?").rsplit(".", 1)[-1]
            with lock:
                state["counts"][target] = state["counts"].get(target, 0) + 1
                delay = state["delay_ms"]
                fault = state["fault"]
            if fault == "drop":
                self.close_connection = True
                return
            if fault == "throttle":
                body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
                self._reply(400, [("Content-Type", "application/x-amz-json-1.1"),
                                  ("x-amzn-ErrorType", "ThrottlingException")], body)
                return
            if delay:
                time.sleep(delay / 1000)
            for attempt in range(2):
                conn = getattr(local, "conn", None)
                if conn is None:
                    conn = local.conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in hop}
                    conn.request("POST", self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    break
                except (http.client.HTTPException, OSError):
                    conn.close()
                    local.conn = None
                    if attempt:
                        raise
            self._reply(resp.status, resp.getheaders(), data)

    class Server(http.server.ThreadingHTTPServer):
        # socketserver's listen backlog is 5: a storm's 500 concurrent backend calls would
        # overflow it and wait out SYN retransmits (1 s, 3 s, 7 s, ...), which no AWS endpoint
        # makes a client do.
        request_queue_size = 1024
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"PORT {server.server_address[1]}", flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin


class Proxy:
    def __init__(self, port):
        self.port = port

    def _call(self, path):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request("GET", path)
        data = json.loads(conn.getresponse().read())
        conn.close()
        return data

    def delay(self, ms):
        self._call(f"/__bench/delay?ms={ms}")

    def reset(self):
        self._call("/__bench/reset")

    def fault(self, mode):
        self._call(f"/__bench/fault?mode={mode}")

    def counts(self):
        return self._call("/__bench/stats")["counts"]


# ---------------------------------------------------------------------------------------------
# The agent


def command(who, cfg):
    # AGENT, not OURS.binary: soak.py, slow.py and builds.py point AGENT at other builds.
    return [AGENT, "--config", cfg] if who.ours else who.command(cfg)


def launch(children, who, name, port, env, ttl_s=300, fast=False):
    """Starts `who` from its configuration file WORK/NAME.toml, in the working directory WORK/NAME
    (environment variables still override the file for secrets-agent)."""
    cfg = write_config(WORK, name, port, ttl_s=ttl_s)
    cwd = os.path.join(WORK, name)
    os.makedirs(cwd, exist_ok=True)
    return children.start(command(who, cfg), f"{name}.log", env=env, fast=fast, cwd=cwd)


class Agent:
    def __init__(self, children, proxy_port, name, who=OURS, ttl_s=300, **env):
        self.who = who
        name = f"{who.key}-{name}"
        self.port = free_port()
        self.env = agent_env(proxy_port, **env)
        self.proc = launch(children, who, name, self.port, self.env, ttl_s=ttl_s)
        deadline = time.monotonic() + 20
        while True:
            try:
                # The AWS agents want the token on /ping too.
                if self.get("/ping")[0] == 200:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start; see {LOGS}/{name}.log")
            time.sleep(0.01)

    def get(self, path, token=True):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request("GET", path, headers={TOKEN_HEADER: TOKEN} if token else {})
        resp = conn.getresponse()
        out = (resp.status, dict(resp.getheaders()), resp.read())
        conn.close()
        return out

    def secret(self, secret_id):
        status, headers, body = self.get(secret_path(secret_id))
        if status != 200:
            raise RuntimeError(f"agent answered {status} for {secret_id}: {body[:200]!r}")
        return headers, body

    def metrics(self):
        """The Prometheus counters as {name{labels}: value}."""
        _, _, body = self.get("/metrics")
        out = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                out[k] = float(v)
        return out

    def rss_kib(self):
        return proc_status(self.proc.pid, "VmRSS")


def agent_env(proxy_port, **extra):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "AWS_TOKEN": TOKEN,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy_port}",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
    }
    env.update({k: str(v) for k, v in extra.items()})
    return env


def secret_path(secret_id):
    return "/secretsmanager/get?secretId=" + urllib.parse.quote(secret_id, safe="")


def proc_status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} for pid {pid}")


# ---------------------------------------------------------------------------------------------
# Load generation


def wrk(port, conns, seconds, path=secret_path(HOT)):
    threads = min(2, conns)
    pin = ["taskset", "-c", WRK_CPUS] if WRK_CPUS else []
    cmd = pin + [
        "wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--timeout", "10s", "-s", LUA,
        "-H", f"{TOKEN_HEADER}: {TOKEN}", f"http://127.0.0.1:{port}{path}",
    ]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, timeout=seconds + 60).stdout.decode()
    line = next(l for l in out.splitlines() if l.startswith("BENCH "))
    r = json.loads(line[len("BENCH "):])
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    if r["socket_errors"] or r["non_2xx"]:
        raise RuntimeError(f"wrk saw errors against port {port}: {r}")
    return r


async def _one_request(port, path, connected, start, results):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    req = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{TOKEN_HEADER}: {TOKEN}\r\n\r\n".encode()
    connected.append(1)
    await start.wait()
    t0 = time.perf_counter()
    writer.write(req)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(l.split(": ", 1) for l in lines[1:] if ": " in l)
    headers = {k.lower(): v for k, v in headers.items()}
    await reader.readexactly(int(headers.get("content-length", "0")))
    t1 = time.perf_counter()
    writer.close()
    results.append((t1 - t0, int(lines[0].split()[1]), headers.get("x-cache", "?")))


async def _storm(port, path, n):
    """n connections opened first, then one request on each, all at once."""
    connected, start, results = [], asyncio.Event(), []
    tasks = [asyncio.create_task(_one_request(port, path, connected, start, results)) for _ in range(n)]
    deadline = time.monotonic() + 30
    while len(connected) < n:
        if any(t.done() for t in tasks) or time.monotonic() > deadline:
            await asyncio.gather(*tasks)  # raises the connection error
            raise RuntimeError(f"only {len(connected)} of {n} connections opened")
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)  # let the agent accept them
    start.set()
    # A server that cannot answer them all in STORM_TIMEOUT_S gets that in its cell instead
    # of ending the run.
    _, pending = await asyncio.wait(tasks, timeout=STORM_TIMEOUT_S)
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return results, len(pending)


def percentile(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


# ---------------------------------------------------------------------------------------------
# Fake Lambda Extensions API, for start-to-ready in Lambda mode


class ExtensionRun:
    """What the fake Extensions API saw of one start of the agent in Lambda mode."""

    def __init__(self, generation):
        self.extension_id = f"bench-extension-{generation}"
        self.registered_at = None
        self.next_at = None
        self.name = None
        self.errors = []
        self.ready = threading.Event()  # the first event/next arrived: init is done
        self.stop = threading.Event()  # send SHUTDOWN now
        self.lock = threading.Lock()
        self.shutdown_sent = False


class ExtensionsApi:
    """Answers /register and event/next like Lambda. Each start of the agent gets a fresh
    `ExtensionRun` (`reset`); a handler works on the run it started in, so a late call from an
    extension that has already exited cannot touch the next run."""

    def __init__(self):
        api = self
        self.generation = 0
        self.reset()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status, body, headers=()):
                data = json.dumps(body).encode()
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                try:
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the extension exited after SHUTDOWN, as it should

            def do_POST(self):
                run = api.run
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path.endswith("/extension/register"):
                    run.registered_at = time.perf_counter()
                    run.name = self.headers.get("Lambda-Extension-Name")
                    self._send(
                        200,
                        {"functionName": "bench", "functionVersion": "$LATEST", "handler": "x"},
                        [("Lambda-Extension-Identifier", run.extension_id)],
                    )
                else:  # init/error, exit/error
                    run.errors.append(self.path)
                    self._send(202, {"status": "OK"})

            def do_GET(self):
                run = api.run
                if not self.path.endswith("/extension/event/next"):
                    return self._send(404, {"errorMessage": "no such route"})
                if self.headers.get("Lambda-Extension-Identifier") != run.extension_id:
                    # A late call from the previous run's extension, which has exited.
                    return self._send(403, {"errorMessage": "unknown extension id"})
                with run.lock:
                    if run.next_at is None:
                        run.next_at = time.perf_counter()
                        run.ready.set()
                stopped = run.stop.wait(10)
                with run.lock:
                    send = stopped and not run.shutdown_sent
                    run.shutdown_sent = run.shutdown_sent or send
                if not send:
                    # After SHUTDOWN the extension asks again; it exits meanwhile.
                    time.sleep(5)
                    return self._send(500, {"errorMessage": "no more events"})
                deadline_ms = int(time.time() * 1000) + 2000
                self._send(
                    200,
                    {"eventType": "SHUTDOWN", "shutdownReason": "spindown", "deadlineMs": deadline_ms},
                )

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self):
        self.generation += 1
        self.run = ExtensionRun(self.generation)
        return self.run

    def close(self):
        self.run.stop.set()
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------------------------------
# Measurements


def pin(pid, cpus):
    """Moves every thread of `pid` to `cpus` (no-op on a single core)."""
    if cpus:
        subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], check=True, stdout=subprocess.DEVNULL)


class CpuMeter:
    """How much of the machine processes other than this benchmark used over a phase, from
    /proc/stat minus our own processes' CPU time (the benchmark, wrk, moto, proxy, servers)."""

    def __init__(self, children):
        self.children = children
        self.start = self._sample()

    def _sample(self):
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        total = sum(fields[:8])
        busy = total - fields[3] - fields[4]
        ours = sum(os.times()[:4]) * os.sysconf("SC_CLK_TCK")
        per_pid = {}
        for proc in self.children.procs:
            try:
                with open(f"/proc/{proc.pid}/stat") as f:
                    st = f.read().rsplit(")", 1)[1].split()
                per_pid[proc.pid] = int(st[11]) + int(st[12])
            except OSError:
                pass
        return total, busy, ours, per_pid

    def foreign_share(self):
        t0, b0, o0, p0 = self.start
        t1, b1, o1, p1 = self._sample()
        ours = (o1 - o0) + sum(v - p0.get(pid, 0) for pid, v in p1.items())
        return max(0.0, ((b1 - b0) - ours) / max(1, t1 - t0))


def measure_hits(agents, floor, floor_port):
    """wrk against every agent and the floor, in an order that rotates, REPS times per
    connection count."""
    servers = [(a.who.key, a.port, a.proc.pid) for a in agents] + [("floor", floor_port, floor.pid)]
    samples = {(k, c): [] for k, _, _ in servers for c in CONNECTIONS}
    for _, _, pid in servers:
        pin(pid, SERVER_CPUS)
    for _, port, _ in servers:  # warm-up: connections, caches, CPU frequency
        wrk(port, 32, 1)
    for rep in range(REPS):
        for i, c in enumerate(CONNECTIONS):
            shift = (rep + i) % len(servers)
            for k, port, _ in servers[shift:] + servers[:shift]:
                samples[(k, c)].append(wrk(port, c, RUN_S))
        print(f"  hits: rep {rep + 1}/{REPS} done", file=sys.stderr)
    rows = []
    for c in CONNECTIONS:
        floor_s = samples[("floor", c)]
        for k, _, _ in servers:
            s = samples[(k, c)]
            med = {key: statistics.median(r[key] for r in s) for key in ("rps", "p50_us", "p99_us", "max_us")}
            # Each rep measures every server within the same few seconds, so a slow spell of the
            # machine hits them all; the median of the per-rep ratios is steadier than the ratio
            # of the medians.
            rps_ratios = [a["rps"] / f["rps"] for a, f in zip(s, floor_s)]
            p99_ratios = [a["p99_us"] / f["p99_us"] for a, f in zip(s, floor_s)]
            rows.append({"connections": c, "server": k, **med,
                         "rps_ratio": statistics.median(rps_ratios),
                         "rps_ratio_min": min(rps_ratios), "rps_ratio_max": max(rps_ratios),
                         "p99_ratio": statistics.median(p99_ratios)})
    for _, _, pid in servers:
        pin(pid, ALL_CPUS)
    return rows, {f"{k}/{c}": s for (k, c), s in samples.items()}


def measure_storms(agent, proxy):
    rows = []
    proxy.delay(STORM_DELAY_MS)
    try:
        for n in STORMS:
            proxy.reset()
            results, unanswered = asyncio.run(_storm(agent.port, secret_path(storm_secret(agent.who, n)), n))
            time.sleep(0.3)  # let any straggling backend call land in the counts
            counts = proxy.counts()
            lat = [r[0] * 1000 for r in results] or [float("nan")]
            statuses = [r[2] for r in results]
            rows.append({
                "server": agent.who.key,
                "n": n,
                "ok": sum(1 for r in results if r[1] == 200),
                "unanswered": unanswered,
                "get_calls": counts.get("GetSecretValue", 0),
                "all_calls": sum(counts.values()),
                "miss": statuses.count("miss"),
                "hit": statuses.count("hit"),
                "p50_ms": percentile(lat, 50),
                "p99_ms": percentile(lat, 99),
                "max_ms": max(lat),
                "min_ms": min(lat),
            })
    finally:
        proxy.delay(0)
    return rows


def answered(storm):
    """How many reads of a storm got a 200, and how many none at all within the timeout."""
    left = storm.get("unanswered", 0)
    return f"{storm['ok']} ({left} unanswered after {STORM_TIMEOUT_S} s)" if left else str(storm["ok"])


def storm_cell(storm):
    if storm.get("unanswered", 0):
        return f"{storm['all_calls']} / {answered(storm)}"
    return f"{storm['all_calls']} / {storm['p99_ms']:.0f} ms"


def storm_secret(who, n):
    return f"bench/storm-{who.key}-{n}"


def counter(metrics, name):
    return sum(v for k, v in metrics.items() if k == name or k.startswith(name + "{"))


def measure_expiry(children, proxy, control_agent):
    """Hit latency without expiry (control), then across expiries at TTL 2 s with a slow backend;
    for secrets-agent with refresh-ahead (default 0.8) and without it (ratio 1: the first reader
    after expiry waits). The AWS agents have no refresh-ahead setting."""
    who = control_agent.who
    rows = []
    runs = [("no expiry (TTL 300 s)", None, None)]
    if who.ours:
        runs += [
            (f"TTL {EXPIRY_TTL_S} s, refresh-ahead 0.8", "expiry", {}),
            (f"TTL {EXPIRY_TTL_S} s, refresh-ahead off (ratio 1.0)", "expiry-no-refresh-ahead",
             {"SECRETS_AGENT_REFRESH_RATIO": "1.0"}),
        ]
    else:
        runs.append((f"TTL {EXPIRY_TTL_S} s", "expiry", {}))
    short_ttl_agent = None
    for label, name, env in runs:
        started = name is not None
        agent = Agent(children, proxy.port, name, who, ttl_s=EXPIRY_TTL_S, **env) if started else control_agent
        agent.secret(HOT)
        proxy.delay(EXPIRY_DELAY_MS)
        proxy.reset()
        before = agent.metrics() if who.ours else None
        pin(agent.proc.pid, SERVER_CPUS)
        r = wrk(agent.port, EXPIRY_CONNS, EXPIRY_RUN_S)
        pin(agent.proc.pid, ALL_CPUS)
        after = agent.metrics() if who.ours else None
        proxy.delay(0)
        counts = proxy.counts()
        delta = None
        if who.ours:
            delta = {
                k: counter(after, metric) - counter(before, metric)
                for k, metric in (
                    ("hits", "secrets_agent_cache_hits_total"),
                    ("misses", "secrets_agent_cache_misses_total"),
                    ("stale", "secrets_agent_stale_served_total"),
                )
            }
        rows.append({
            "server": who.key,
            "run": label,
            "p50_us": r["p50_us"],
            "p99_us": r["p99_us"],
            "p999_us": r["p999_us"],
            "max_us": r["max_us"],
            "rps": r["rps"],
            "expiries": EXPIRY_RUN_S / EXPIRY_TTL_S if started else 0,
            "backend_calls": counts,
            "metrics_delta": delta,
        })
        if started and "off" not in label:
            short_ttl_agent = agent
        elif started:
            children.stop(agent.proc)
    return rows, short_ttl_agent


def measure_hourly(agent, proxy):
    """Backend calls for one hot secret at TTL 2 s over HOURLY_RUN_S, scaled to TTL 300 s."""
    agent.secret(HOT)
    proxy.delay(0)
    proxy.reset()
    wrk(agent.port, 1, HOURLY_RUN_S)
    counts = proxy.counts()
    scale = (3600 / HOURLY_RUN_S) * (EXPIRY_TTL_S / 300)
    return {
        "run_s": HOURLY_RUN_S,
        "ttl_s": EXPIRY_TTL_S,
        "counts": counts,
        "per_hour_at_300s": {k: v * scale for k, v in counts.items()},
        "total_per_hour_at_300s": sum(counts.values()) * scale,
    }


def measure_start(children, proxy_port, whos=(OURS,)):
    """Spawn to the first /ping 200 (container mode), START_RUNS times each, the servers taking
    turns; the configuration file is written before the clock starts."""
    times = {who.key: [] for who in whos}
    request = (f"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n{TOKEN_HEADER}: {TOKEN}\r\n"
               "Connection: close\r\n\r\n").encode()
    for i in range(START_RUNS):
        for who in whos:
            port = free_port()
            env = agent_env(proxy_port)
            cfg = write_config(WORK, f"{who.key}-start", port)
            cwd = os.path.join(WORK, f"{who.key}-start")
            os.makedirs(cwd, exist_ok=True)
            t0 = time.perf_counter()
            proc = children.start(command(who, cfg), f"{who.key}-start.log", env=env, fast=True, cwd=cwd)
            answer = b""
            while time.perf_counter() - t0 < 10:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                        s.sendall(request)
                        while True:
                            chunk = s.recv(4096)
                            if not chunk:
                                break
                            answer += chunk
                    break
                except ConnectionRefusedError:
                    time.sleep(0.0001)
            t1 = time.perf_counter()
            children.stop(proc)
            if not answer.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"{who.key} start run {i}: /ping answered {answer[:60]!r}")
            times[who.key].append((t1 - t0) * 1000)
    return times


def measure_spawn_baseline():
    """What spawning a process and seeing it exit costs from this harness (`/bin/true`)."""
    times = []
    for _ in range(START_RUNS):
        t0 = time.perf_counter()
        subprocess.run(["/bin/true"])
        times.append((time.perf_counter() - t0) * 1000)
    return times


def measure_lambda_start(children, proxy_port):
    """Lambda mode: spawn to /register and to the first event/next (init done), then SHUTDOWN."""
    api = ExtensionsApi()
    reg, ready, stop = [], [], []
    try:
        for i in range(START_RUNS):
            run = api.reset()
            env = agent_env(proxy_port, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{api.port}")
            # Lambda mode takes its port from the configuration; each run gets a fresh one.
            env["PARAMETERS_SECRETS_EXTENSION_HTTP_PORT"] = str(free_port())
            t0 = time.perf_counter()
            proc = children.start([AGENT], "agent-lambda.log", env=env, fast=True)
            if not run.ready.wait(10):
                children.stop(proc)
                raise RuntimeError(f"lambda run {i}: no event/next (errors: {run.errors}); see {LOGS}/agent-lambda.log")
            reg.append((run.registered_at - t0) * 1000)
            ready.append((run.next_at - t0) * 1000)
            t2 = time.perf_counter()
            run.stop.set()
            try:
                code = proc.wait(5)
            except subprocess.TimeoutExpired:
                code = None
            stop.append((time.perf_counter() - t2) * 1000)
            children.stop(proc)
            if code != 0:
                raise RuntimeError(f"lambda run {i}: exit code {code} after SHUTDOWN")
            if run.name != "secrets-agent":
                raise RuntimeError(f"lambda run {i}: registered as {run.name!r}")
    finally:
        api.close()
    return reg, ready, stop


def measure_memory(children, proxy_port, who):
    """Idle RSS after one secret, then RSS with MANY cached secrets (fresh agent)."""
    agent = Agent(children, proxy_port, "memory", who)
    try:
        agent.secret(HOT)
        time.sleep(1)
        idle = agent.rss_kib()
        idle_anon = proc_status(agent.proc.pid, "RssAnon")
        idle_thp = anon_huge_kib(agent.proc.pid)
        idle_file = proc_status(agent.proc.pid, "RssFile")
        local = threading.local()

        def read(i):
            conn = getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=30)
            conn.request("GET", secret_path(f"bench/many-{i:04d}"), headers={TOKEN_HEADER: TOKEN})
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise RuntimeError(f"bench/many-{i:04d}: {resp.status}")

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(read, range(MANY)))
        time.sleep(1)
        entries = counter(agent.metrics(), "secrets_agent_cache_entries") if who.ours else None
        full = agent.rss_kib()
        peak = proc_status(agent.proc.pid, "VmHWM")
    finally:
        children.stop(agent.proc)
    return {"idle_kib": idle, "idle_anon_kib": idle_anon, "idle_file_kib": idle_file, "idle_thp_kib": idle_thp,
            "many_kib": full, "peak_kib": peak, "entries": entries}


def anon_huge_kib(pid):
    """Anonymous memory in transparent huge pages (a 2 MiB page counts whole once touched)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("AnonHugePages:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def stripped_size(binary):
    """(bytes, stripped?) of BINARY once stripped (a stripped copy when it is not)."""
    out = subprocess.run(["file", "-b", binary], stdout=subprocess.PIPE).stdout.decode() if have("file") else ""
    stripped = "stripped" in out and "not stripped" not in out
    size = os.path.getsize(binary)
    if not stripped and have("strip"):
        tmp = os.path.join(RESULTS, os.path.basename(binary) + ".stripped")
        subprocess.run(["strip", "-o", tmp, binary], check=True)
        size = os.path.getsize(tmp)
        os.remove(tmp)
        stripped = True
    return size, stripped


def sizes(whos):
    size, stripped = stripped_size(AGENT)
    layers = {os.path.basename(p): os.path.getsize(p) for p in sorted(glob.glob(os.path.join(ROOT, "layer", "*.zip")))}
    others = {who.key: stripped_size(who.binary)[0] for who in whos if not who.ours}
    return {"binary_bytes": size, "stripped": stripped, "arch": platform.machine(), "layers": layers,
            "others": others}


def have(cmd):
    return subprocess.run(["sh", "-c", f"command -v {cmd}"], stdout=subprocess.DEVNULL).returncode == 0


def create_secrets(moto_port, whos=(OURS,)):
    import boto3  # in .venv with moto

    client = boto3.client(
        "secretsmanager",
        endpoint_url=f"http://127.0.0.1:{moto_port}",
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )
    names = ([HOT] + [storm_secret(who, n) for who in whos for n in STORMS]
             + [f"bench/many-{i:04d}" for i in range(MANY)])

    def create(name):
        client.create_secret(Name=name, SecretString=HOT_VALUE)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(create, names))


# ---------------------------------------------------------------------------------------------
# Report


def met(ok):
    return "met" if ok else "**missed**"


def us(v):
    return f"{v / 1000:.2f} ms" if v >= 1000 else f"{v:.0f} µs"


NO_METRICS = "n/a (no /metrics)"


def summary(r):
    """One table: each measure, a column per server and the floor (the README's table)."""
    keys = [k for k, _ in r["contenders"]]
    labels = dict(r["contenders"])
    ours = OURS.key
    cols = keys + ["floor"]
    L = ["| | " + " | ".join(labels.get(k, "floor (bare hyper)") for k in cols) + " |",
         "|---|" + "---:|" * len(cols)]

    def row(name, cell):
        L.append(f"| {name} | " + " | ".join(cell(k) for k in cols) + " |")

    hits = {(h["server"], h["connections"]): h for h in r["hits"]}
    for c in CONNECTIONS:
        row(f"cache hits, {c} connection{'s' if c > 1 else ''}: req/s (× floor)",
            lambda k: f"{hits[(k, c)]['rps']:,.0f}" + ("" if k == "floor" else f" ({hits[(k, c)]['rps_ratio']:.2f} ×)"))
        row(f"p50 / p99 at {c}",
            lambda k: f"{us(hits[(k, c)]['p50_us'])} / {us(hits[(k, c)]['p99_us'])}")
    big = max(STORMS)
    storms = {s["server"]: s for s in r["storms"] if s["n"] == big}
    row(f"cold-miss storm, {big} concurrent first reads: backend calls / p99",
        lambda k: "—" if k == "floor" else storm_cell(storms[k]))
    expiry = {e["server"]: e for e in r["expiry"] if e["expiries"] and "off" not in e["run"]}
    row(f"expiry under load (TTL {EXPIRY_TTL_S} s, backend +{EXPIRY_DELAY_MS} ms): p99 / max",
        lambda k: "—" if k == "floor" else f"{us(expiry[k]['p99_us'])} / {us(expiry[k]['max_us'])}")
    row("start to first `/ping` 200 (median)",
        lambda k: "—" if k == "floor" else f"{statistics.median(r['start'][k]):.1f} ms")
    row("Lambda: start to first `event/next` (median)",
        lambda k: f"{statistics.median(r['lambda']['ready']):.1f} ms" if k == ours
        else ("—" if k == "floor" else "no Lambda mode"))
    row("idle RSS after one secret",
        lambda k: "—" if k == "floor" else f"{r['memory'][k]['idle_kib'] / 1024:.1f} MiB")
    row(f"RSS with {MANY} cached secrets",
        lambda k: "—" if k == "floor" else f"{r['memory'][k]['many_kib'] / 1024:.1f} MiB")
    sz = r["sizes"]
    row(f"stripped binary, {sz['arch']}",
        lambda k: f"{sz['binary_bytes'] / 2**20:.1f} MiB" if k == ours
        else ("—" if k == "floor" else f"{sz['others'][k] / 2**20:.1f} MiB"))
    row("backend calls per hour per hot secret (TTL 300 s)",
        lambda k: "—" if k == "floor" else f"{r['hourly'][k]['total_per_hour_at_300s']:.0f}")
    row("SSM parameters", lambda k: "yes" if k == ours else ("—" if k == "floor" else "no (Secrets Manager only)"))
    return L


def render(r):
    m = r["machine"]
    ours = OURS.key
    L = []
    L.append(f"Measured {r['date']} on {m['cores']} cores ({m['cpu']}), Linux {m['kernel']}; "
             f"load average {m['load_before']} before the run, {m['load_after']} after; "
             f"command `make bench` ({r['duration_s']:.0f} s).")
    L.append("")
    L.append("**Summary** (every server started from the same TOML configuration; details below):")
    L.append("")
    L += summary(r)
    L.append("")
    pinned = (f"wrk pinned to CPU {WRK_CPUS}, the servers to CPU {SERVER_CPUS}; " if WRK_CPUS else "")
    L.append(f"**Cache hits vs the floor** (wrk 4.1, ≤ 2 threads, keep-alive, {REPS} × {RUN_S} s per cell, "
             f"servers taking turns in a rotating order, median; {pinned}other processes used "
             f"{100 * r['foreign_cpu_hits']:.0f} % of the machine meanwhile). The ratios are the median "
             "of each rep's server/floor pair; the range shows how much single pairs vary on this "
             "machine. The goals (ratio ≥ 0.95, p99 ratio ≤ 1.10) are secrets-agent's:")
    L.append("")
    L.append("| connections | server | req/s | ratio to floor | ratio range | p50 | p99 | p99 ratio |")
    L.append("|---:|---|---:|---:|---:|---:|---:|---:|")
    for h in r["hits"]:
        if h["server"] == "floor":
            L.append(f"| {h['connections']} | floor | {h['rps']:,.0f} | 1 | | {us(h['p50_us'])} | {us(h['p99_us'])} | 1 |")
            continue
        goal = h["server"] == ours
        ratio, p99r = h["rps_ratio"], h["p99_ratio"]
        L.append(f"| {h['connections']} | {h['server']} | {h['rps']:,.0f} "
                 f"| {ratio:.3f}{' ' + met(ratio >= GOAL_HIT_RATIO) if goal else ''} "
                 f"| {h['rps_ratio_min']:.2f}–{h['rps_ratio_max']:.2f} | {us(h['p50_us'])} | {us(h['p99_us'])} "
                 f"| {p99r:.2f}{' ' + met(p99r <= GOAL_P99_RATIO) if goal else ''} |")
    L.append("")
    L.append(f"**Cold-miss storm**: N concurrent first reads of one secret, {STORM_DELAY_MS} ms added to each "
             "backend call by the proxy so that all N overlap; latency from request sent to answer read. "
             "X-Cache is secrets-agent's header:")
    L.append("")
    L.append("| server | N | answered 200 | backend calls (GetSecretValue / all) | goal: 1 | X-Cache miss / hit | p50 | p99 | max |")
    L.append("|---|---:|---:|---:|---|---:|---:|---:|---:|")
    for s in r["storms"]:
        xc = f"{s['miss']} / {s['hit']}" if s["server"] == ours else "n/a"
        L.append(f"| {s['server']} | {s['n']} | {answered(s)} | {s['get_calls']} / {s['all_calls']} | {met(s['all_calls'] == 1)} "
                 f"| {xc} | {s['p50_ms']:.1f} ms | {s['p99_ms']:.1f} ms | {s['max_ms']:.1f} ms |")
    L.append("")
    L.append(f"**Expiry under load**: wrk, {EXPIRY_CONNS} connections, {EXPIRY_RUN_S} s per run, "
             f"{EXPIRY_DELAY_MS} ms added to each backend call. Reads that waited come from "
             "secrets-agent's /metrics; the AWS agents have none:")
    L.append("")
    L.append("| server | run | req/s | p50 | p99 | p99.9 | max | reads that waited (miss / stale) | backend calls | goal: no spike |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---|---|")
    controls = {e["server"]: e for e in r["expiry"] if not e["expiries"]}
    for e in r["expiry"]:
        calls = ", ".join(f"{k} {v}" for k, v in sorted(e["backend_calls"].items())) or "none"
        d = e["metrics_delta"]
        control = controls[e["server"]]
        spike = not (e["max_us"] < EXPIRY_DELAY_MS * 1000 and e["p99_us"] <= control["p99_us"] * GOAL_P99_RATIO)
        if e is control:
            verdict = "(reference)"
        elif e["server"] == ours and "off" not in e["run"]:
            verdict = met(d["misses"] == 0 and not spike)
        else:
            verdict = ("spike" if spike else "no spike") + " (informative)"
        waited = f"{d['misses']:.0f} / {d['stale']:.0f}" if d else NO_METRICS
        L.append(f"| {e['server']} | {e['run']} | {e['rps']:,.0f} | {us(e['p50_us'])} | {us(e['p99_us'])} | {us(e['p999_us'])} "
                 f"| {us(e['max_us'])} | {waited} | {calls} | {verdict} |")
    L.append("")
    L.append("Goal for secrets-agent's refresh-ahead row: no read waited for the backend (no miss), max below "
             f"the injected {EXPIRY_DELAY_MS} ms, and p99 within 10 % of the no-expiry run.")
    L.append("")
    st, lam, mem, sz, hr = r["start"][ours], r["lambda"], r["memory"][ours], r["sizes"], r["hourly"][ours]
    L.append("**secrets-agent: start, memory, size, backend cost** (the AWS agents' figures are in the summary):")
    L.append("")
    L.append("| measure | value | goal |")
    L.append("|---|---:|---|")
    sm = statistics.median(st)
    L.append(f"| start to first `/ping` 200, container mode (median of {len(st)}; min / p90; "
             f"other processes used {100 * r['foreign_cpu_start']:.0f} % of the machine meanwhile) "
             f"| {sm:.2f} ms ({min(st):.2f} / {percentile(st, 90):.2f}) | ≤ 3 ms {met(sm <= GOAL_START_MS)} |")
    L.append(f"| for scale: spawn and exit of `/bin/true` from the same harness | {statistics.median(r['spawn_baseline']):.2f} ms | |")
    L.append(f"| start to `/register`, Lambda mode (median of {len(lam['register'])}) | {statistics.median(lam['register']):.2f} ms | |")
    L.append(f"| start to first `event/next` (init done), Lambda mode | {statistics.median(lam['ready']):.2f} ms | |")
    L.append(f"| SHUTDOWN to exit, Lambda mode | {statistics.median(lam['shutdown']):.2f} ms | |")
    idle = mem["idle_kib"] / 1024
    L.append(f"| idle RSS after serving one secret (anonymous {mem['idle_anon_kib'] / 1024:.1f}, of it "
             f"{mem['idle_thp_kib'] / 1024:.1f} in transparent huge pages; file-backed {mem['idle_file_kib'] / 1024:.1f}) | {idle:.1f} MiB | ≤ 6 MiB {met(idle <= GOAL_IDLE_RSS_MIB)} |")
    L.append(f"| RSS with {mem['entries']:.0f} cached secrets ({len(HOT_VALUE)}-byte values; peak {mem['peak_kib'] / 1024:.1f} MiB) "
             f"| {mem['many_kib'] / 1024:.1f} MiB | |")
    b = sz["binary_bytes"] / 2**20
    L.append(f"| {'stripped ' if sz['stripped'] else ''}binary, {sz['arch']} | {b:.2f} MiB ({sz['binary_bytes']:,} bytes) "
             f"| ≤ 8 MiB {met(b <= GOAL_BINARY_MIB) if sz['arch'] == 'x86_64' else '(x86_64 only)'} |")
    if sz["layers"]:
        for name, size in sz["layers"].items():
            L.append(f"| layer `{name}` | {size / 2**20:.2f} MiB ({size:,} bytes) | |")
    else:
        L.append("| layer zips | not built (`make layer` builds them) | |")
    calls = ", ".join(f"{k} {v}" for k, v in sorted(hr["counts"].items())) or "none"
    L.append(f"| backend calls per hour per hot secret at TTL 300 s, refresh-ahead 0.8 "
             f"(scaled from {hr['run_s']} s of reads at TTL {hr['ttl_s']} s: {calls}) "
             f"| {hr['total_per_hour_at_300s']:.1f} | |")
    L.append("")
    return "\n".join(L)


# ---------------------------------------------------------------------------------------------


def main():
    whos = contenders()
    os.makedirs(LOGS, exist_ok=True)
    for old in glob.glob(os.path.join(LOGS, "*.log")):
        os.remove(old)
    floor_bin = cargo_build()
    t_start = time.monotonic()
    load_before = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    children = Children()
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {
            "cores": os.cpu_count(),
            "cpu": cpu_model(),
            "kernel": platform.release(),
            "load_before": load_before,
        },
        "contenders": [(who.key, who.label) for who in whos],
    }
    print(f"cores: {os.cpu_count()} ({cpu_model()}); load average: {load_before}", file=sys.stderr)
    try:
        moto_port, proxy_port = start_backend(children)
        proxy = Proxy(proxy_port)
        print(f"creating {MANY + 1 + len(STORMS) * len(whos)} secrets in moto", file=sys.stderr)
        create_secrets(moto_port, whos)

        agents = [Agent(children, proxy.port, "main", who) for who in whos]
        _, body = agents[0].secret(HOT)
        for agent in agents[1:]:
            agent.secret(HOT)
        body_file = os.path.join(RESULTS, "floor-body.json")
        with open(body_file, "wb") as f:
            f.write(body)
        floor = children.start([floor_bin, "127.0.0.1:0", body_file], "floor.log",
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        floor_port = read_port(floor, "floor")

        print("cache hits: " + ", ".join(w.key for w in whos) + " and the floor", file=sys.stderr)
        meter = CpuMeter(children)
        report["hits"], report["hit_samples"] = measure_hits(agents, floor, floor_port)
        report["foreign_cpu_hits"] = meter.foreign_share()
        children.stop(floor)
        report["storms"], report["expiry"], report["hourly"] = [], [], {}
        for agent in agents:
            print(f"{agent.who.key}: cold-miss storms", file=sys.stderr)
            report["storms"] += measure_storms(agent, proxy)
            print(f"{agent.who.key}: expiry under load", file=sys.stderr)
            rows, short = measure_expiry(children, proxy, agent)
            report["expiry"] += rows
            children.stop(agent.proc)
            print(f"{agent.who.key}: backend calls per hour", file=sys.stderr)
            report["hourly"][agent.who.key] = measure_hourly(short, proxy)
            children.stop(short.proc)
        print("start-up", file=sys.stderr)
        meter = CpuMeter(children)
        report["start"] = measure_start(children, proxy.port, whos)
        report["foreign_cpu_start"] = meter.foreign_share()
        report["spawn_baseline"] = measure_spawn_baseline()
        reg, ready, stop = measure_lambda_start(children, proxy.port)
        report["lambda"] = {"register": reg, "ready": ready, "shutdown": stop}
        print("memory", file=sys.stderr)
        report["memory"] = {who.key: measure_memory(children, proxy.port, who) for who in whos}
        report["sizes"] = sizes(whos)
    finally:
        children.stop_all()
    report["machine"]["load_after"] = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    report["duration_s"] = time.monotonic() - t_start
    table = render(report)
    write_results("latest", table, report)
    # The README's table, on its own.
    with open(os.path.join(RESULTS, "summary.md"), "w") as f:
        f.write("\n".join(summary(report)) + "\n")
    print(table)
    print(f"written to {os.path.relpath(RESULTS, ROOT)}/latest.md and latest.json", file=sys.stderr)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def on_signal(signum, _frame):
    # Turn SIGTERM/SIGHUP into an exception so the `finally` that stops the children runs.
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "proxy":
        proxy_main(int(sys.argv[2]))
    else:
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGHUP, on_signal)
        main()
