#!/usr/bin/env python3
"""`make soak`: SOAK_MINUTES (default 30) of mixed, partly hostile load on the release agent,
through the fault proxy, watching that nothing grows.

Load (modest, a few hundred requests per second in all):
- hits: HOT secrets read in a loop over keep-alive connections; every one must answer 200;
- misses: reads over MANY secrets, more than the agent's cache_size (CACHE entries);
- a rotation of one hot secret every minute;
- every 5 minutes a 30 s backend outage (the proxy closes connections unanswered), and 150 s
  later a 30 s throttling storm (the proxy answers ThrottlingException);
- connections dropped mid-request (part of a head, or a request whose answer is not read),
  silent connections, and readers that pipeline requests and stop reading.

Every 10 s it records the agent's RSS, open fds, tokio task count, and the error counts so far,
and at the end writes bench/results/soak.md (the table), soak.json, soak-rss.png and
soak-fds.png. It fails (exit 1) if a hit failed, or if RSS, fds or tasks keep growing after the
warm-up (the first 5 minutes, or the first third of a shorter run): the median of the last
third of the samples above the highest of the first third after warm-up, by more than a
margin. 127.0.0.1 only; every child is stopped at the end.
"""

import http.client
import json
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the benchmark's harness: children, proxy, agent)

MINUTES = float(os.environ.get("SOAK_MINUTES", "30"))
AGENT = os.environ.get("SOAK_AGENT", run.AGENT)
HOT = [f"soak/hot-{i:02d}" for i in range(20)]
MANY = [f"soak/many-{i:04d}" for i in range(300)]
CACHE = 100
# Small, so that the rude clients and the silent bursts fill it and evictions happen all along.
MAX_CONN = 32
SILENT_BURST = 40
TTL_S = 60
SAMPLE_S = 10
OUTAGE_EVERY_S = 300
FAULT_S = 30
HIT_THREADS = 3
HIT_PAUSE_S = 0.01  # per thread: about 3 x 80 = 250 hits/s on this machine
MISS_PAUSE_S = 0.05  # about 20 misses/s
# Allowed growth of the last third over the first third (after warm-up): factor and slack.
MARGIN = {"rss_kib": (1.10, 2048), "fds": (1.0, 16), "tasks": (1.0, 32)}


class Counts:
    def __init__(self):
        self.lock = threading.Lock()
        self.c = {}

    def add(self, key):
        with self.lock:
            self.c[key] = self.c.get(key, 0) + 1

    def snapshot(self):
        with self.lock:
            return dict(self.c)


def reader(port, names, pause, counts, kind, stop):
    """Reads `names` at random over one keep-alive connection, reconnecting when needed. As
    urllib3 and the AWS SDKs do, a request on a reused connection that the agent had closed
    (evicted as idle at the limit) is retried once on a new connection; only the retry counts."""
    conn = None
    while not stop.is_set():
        name = random.choice(names)
        for attempt in (0, 1):
            reused = conn is not None
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("GET", run.secret_path(name), headers={run.TOKEN_HEADER: run.TOKEN})
                resp = conn.getresponse()
                resp.read()
                counts.add(f"{kind} {resp.status}")
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
                break
            except (OSError, http.client.HTTPException) as e:
                if conn:
                    conn.close()
                conn = None
                if reused and attempt == 0:
                    counts.add(f"retried {kind}")
                    continue
                counts.add(f"{kind} {type(e).__name__}")
        time.sleep(pause)


def rude(port, counts, stop):
    """Every ~2 s: connections dropped mid-request, silent ones, and a reader that stops."""
    held = []
    request = (f"GET {run.secret_path(HOT[0])} HTTP/1.1\r\nHost: x\r\n{run.TOKEN_HEADER}: {run.TOKEN}\r\n\r\n").encode()
    while not stop.is_set():
        try:
            for _ in range(5):  # part of a head, then gone
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.sendall(request[:20])
                s.close()
            for _ in range(5):  # a whole request, gone before the answer
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.sendall(request)
                s.close()
            for _ in range(3):  # silent
                held.append((time.monotonic(), socket.create_connection(("127.0.0.1", port), timeout=5)))
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.settimeout(5)
            s.connect(("127.0.0.1", port))
            s.sendall(request * 50)  # pipelined, never read
            held.append((time.monotonic(), s))
            if int(time.monotonic()) % 30 < 2:  # a burst of silent ones past max_conn
                for _ in range(SILENT_BURST):
                    held.append((time.monotonic(), socket.create_connection(("127.0.0.1", port), timeout=5)))
            counts.add("rude ok")
        except OSError as e:
            counts.add(f"rude {type(e).__name__}")
        # Give the held ones up after 20 s (the agent should have closed them long before).
        now = time.monotonic()
        keep = []
        for at, s in held:
            if now - at > 20:
                s.close()
            else:
                keep.append((at, s))
        held = keep
        stop.wait(2)
    for _, s in held:
        s.close()


def rotate(moto_port, counts, stop):
    import boto3

    client = boto3.client("secretsmanager", endpoint_url=f"http://127.0.0.1:{moto_port}", region_name="us-east-1",
                          aws_access_key_id="bench", aws_secret_access_key="bench")
    n = 0
    while not stop.wait(60):
        n += 1
        client.put_secret_value(SecretId=HOT[n % len(HOT)], SecretString=f"{run.HOT_VALUE}-rotation-{n}")
        counts.add("rotations")


def faults(proxy, counts, stop, t0):
    """Outage at 120 s into every 5 minutes, throttling 150 s later, each for 30 s."""
    events = []
    t = 120
    while t < MINUTES * 60:
        events.append((t, "drop"))
        events.append((t + FAULT_S, "none"))
        events.append((t + 150, "throttle"))
        events.append((t + 150 + FAULT_S, "none"))
        t += OUTAGE_EVERY_S
    for at, mode in sorted(events):
        if stop.wait(max(0, t0 + at - time.monotonic())):
            break
        proxy.fault(mode)
        if mode != "none":
            counts.add(f"fault {mode}")
    proxy.fault("none")


def sample(agent, t0, counts):
    pid = agent.proc.pid
    m = agent.metrics()
    return {
        "t_s": round(time.monotonic() - t0),
        "rss_kib": run.proc_status(pid, "VmRSS"),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "tasks": int(m.get("secrets_agent_tasks", -1)),
        "open": int(m.get('secrets_agent_connections_open{pool="main"}', -1)),
        "evicted": int(m.get("secrets_agent_connections_evicted_total", 0)),
        "refused": int(m.get("secrets_agent_connections_refused_total", 0)),
        "entries": int(m.get("secrets_agent_cache_entries", -1)),
        "counts": counts.snapshot(),
    }


def growing(samples, key, warmup_s):
    after = [s[key] for s in samples if s["t_s"] >= warmup_s]
    if len(after) < 6:
        return False, "too few samples"
    third = len(after) // 3
    first, last = after[:third], after[-third:]
    factor, slack = MARGIN[key]
    bound = max(first) * factor + slack
    med = statistics.median(last)
    return med > bound, f"median of last third {med:.0f} vs bound {bound:.0f} (max of first third {max(first)})"


def plot(samples, path_rss, path_fds):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t_s"] / 60 for s in samples]
    for path, series, label in ((path_rss, [s["rss_kib"] / 1024 for s in samples], "RSS (MiB)"),
                                (path_fds, None, None)):
        fig, ax = plt.subplots(figsize=(8, 3.5))
        if series is not None:
            ax.plot(t, series, label=label)
            ax.set_ylabel(label)
            ax.set_ylim(bottom=0)
        else:
            ax.plot(t, [s["fds"] for s in samples], label="open fds")
            ax.plot(t, [s["tasks"] for s in samples], label="tokio tasks")
            ax.plot(t, [s["open"] for s in samples], label="open connections (main pool)")
            ax.set_ylabel("count")
            ax.set_ylim(bottom=0)
            ax.legend(loc="upper left")
        ax.set_xlabel("minutes")
        ax.grid(alpha=0.3)
        ax.set_title(f"secrets-agent soak, {MINUTES:g} min: {label or 'fds, tasks, connections'}")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.makedirs(run.LOGS, exist_ok=True)
    children = run.Children()
    stop = threading.Event()
    counts = Counts()
    samples = []
    try:
        moto_port, proxy_port = run.start_backend(children, "soak-")
        proxy = run.Proxy(proxy_port)
        import boto3

        client = boto3.client("secretsmanager", endpoint_url=f"http://127.0.0.1:{moto_port}",
                              region_name="us-east-1", aws_access_key_id="bench", aws_secret_access_key="bench")
        for name in HOT + MANY:
            client.create_secret(Name=name, SecretString=run.HOT_VALUE)
        config = os.path.join(run.RESULTS, "soak-agent.toml")
        with open(config, "w") as f:
            f.write(f"max_conn = {MAX_CONN}\n")
        wrapper = os.path.join(run.RESULTS, "soak-agent.sh")
        with open(wrapper, "w") as f:
            f.write(f'#!/bin/sh\nexec "{AGENT}" --config "{config}" "$@"\n')
        os.chmod(wrapper, 0o755)
        run.AGENT = wrapper
        agent = run.Agent(children, proxy.port, "soak", PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE=CACHE,
                          SECRETS_MANAGER_TTL=TTL_S)
        for name in HOT:
            agent.secret(name)
        t0 = time.monotonic()
        threads = [threading.Thread(target=reader, args=(agent.port, HOT, HIT_PAUSE_S, counts, "hit", stop))
                   for _ in range(HIT_THREADS)]
        threads.append(threading.Thread(target=reader, args=(agent.port, MANY, MISS_PAUSE_S, counts, "miss", stop)))
        threads.append(threading.Thread(target=rude, args=(agent.port, counts, stop)))
        threads.append(threading.Thread(target=rotate, args=(moto_port, counts, stop)))
        threads.append(threading.Thread(target=faults, args=(proxy, counts, stop, t0)))
        for th in threads:
            th.daemon = True
            th.start()
        end = t0 + MINUTES * 60
        while time.monotonic() < end:
            time.sleep(max(0, min(SAMPLE_S, end - time.monotonic())))
            if agent.proc.poll() is not None:
                raise RuntimeError("the agent exited during the soak")
            s = sample(agent, t0, counts)
            samples.append(s)
            print(json.dumps(s), file=sys.stderr, flush=True)
        stop.set()
        for th in threads:
            th.join(10)
    finally:
        stop.set()
        children.stop_all()

    warmup_s = min(300, MINUTES * 60 / 3)
    verdicts = {k: growing(samples, k, warmup_s) for k in ("rss_kib", "fds", "tasks")}
    final = samples[-1]["counts"] if samples else {}
    hit_failures = sum(v for k, v in final.items() if k.startswith("hit ") and k != "hit 200")
    lines = [f"Soak of {MINUTES:g} minutes: {final.get('hit 200', 0)} hits, "
             f"{sum(v for k, v in final.items() if k.startswith('miss '))} misses, "
             f"{final.get('rotations', 0)} rotations, {final.get('fault drop', 0)} outages, "
             f"{final.get('fault throttle', 0)} throttling storms, {final.get('rude ok', 0)} rounds of rude clients.",
             "",
             "| min | RSS MiB | fds | tasks | open conns | evicted | 429 | hit errors | hits retried | miss non-200 | cache entries |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in samples:
        if s["t_s"] % 60 >= SAMPLE_S and s is not samples[-1]:
            continue  # one row a minute in the table; every sample is in soak.json
        c = s["counts"]
        hit_err = sum(v for k, v in c.items() if k.startswith("hit ") and k != "hit 200")
        miss_bad = sum(v for k, v in c.items() if k.startswith("miss ") and k != "miss 200")
        lines.append(f"| {s['t_s'] / 60:.1f} | {s['rss_kib'] / 1024:.1f} | {s['fds']} | {s['tasks']} | {s['open']} "
                     f"| {s['evicted']} | {s['refused']} | {hit_err} | {c.get('retried hit', 0)} | {miss_bad} "
                     f"| {s['entries']} |")
    lines.append("")
    lines.append(f"Final client counts: {json.dumps(final, sort_keys=True)}")
    for k, (bad, why) in verdicts.items():
        lines.append(f"- {k}: {'**growing**' if bad else 'flat'} ({why})")
    lines.append(f"- hits that failed: {hit_failures}")
    text = "\n".join(lines) + "\n"
    print(text)
    run.write_results("soak", text, samples)
    try:
        plot(samples, os.path.join(run.RESULTS, "soak-rss.png"), os.path.join(run.RESULTS, "soak-fds.png"))
    except ImportError:
        print("matplotlib missing: no plots (make soak installs it)", file=sys.stderr)
    if hit_failures or any(bad for bad, _ in verdicts.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
