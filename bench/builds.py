"""The static binary (the image's) against the glibc one (the layer's): stripped size, spawn to
the first /ping (container mode), spawn to the first event/next (Lambda mode), RSS after one
secret. Both builds must exist: `make image` and `make layer`; or name them:

    .venv/bin/python bench/builds.py [STATIC_BINARY GLIBC_BINARY]

Writes bench/results/builds.md and .json. Timings move with what else runs on the machine:
compare the two columns of one run, not runs of different days. Instructions per hit come
from `BENCH_AGENT=<binary> make bench-instructions`.
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

import run

STATIC = os.path.join(run.ROOT, "target", "x86_64-unknown-linux-gnu", "release", "secrets-agent")
GLIBC = os.path.join(run.ROOT, "layer", "build", "x86_64", "extensions", "secrets-agent")


def stripped_size(binary):
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "b")
        shutil.copy(binary, copy)
        subprocess.run(["strip", copy], check=True)
        return os.path.getsize(copy)


def main():
    static, glibc = sys.argv[1:3] if len(sys.argv) == 3 else (STATIC, GLIBC)
    for b in (static, glibc):
        if not os.access(b, os.X_OK):
            sys.exit(f"{b} is missing: run `make image` and `make layer` first")
    os.makedirs(run.LOGS, exist_ok=True)
    children = run.Children()
    data = {}
    try:
        moto_port, proxy_port = run.start_backend(children, prefix="builds-")
        run.create_secrets(moto_port)
        for label, binary in (("static", static), ("glibc", glibc)):
            run.AGENT = binary
            start = run.measure_start(children, proxy_port)[run.OURS.key]
            _, ready, _ = run.measure_lambda_start(children, proxy_port)
            agent = run.Agent(children, proxy_port, f"builds-{label}")
            status = agent.get(run.secret_path(run.HOT))[0]
            rss = agent.rss_kib()
            children.stop(agent.proc)
            data[label] = {
                "binary": binary,
                "stripped_bytes": stripped_size(binary),
                "start_ms": start,
                "lambda_ready_ms": ready,
                "rss_kib_after_one_secret": rss,
                "read_status": status,
            }
    finally:
        children.stop_all()
    rows = [
        ("stripped size (MiB)", lambda d: f"{d['stripped_bytes'] / 2**20:.2f}"),
        ("spawn to first /ping, median (ms)", lambda d: f"{statistics.median(d['start_ms']):.2f}"),
        ("spawn to first event/next, median (ms)", lambda d: f"{statistics.median(d['lambda_ready_ms']):.2f}"),
        ("RSS after one secret (MiB)", lambda d: f"{d['rss_kib_after_one_secret'] / 1024:.1f}"),
    ]
    table = "| | static (image) | glibc (layer) |\n|---|---|---|\n"
    for name, cell in rows:
        table += f"| {name} | {cell(data['static'])} | {cell(data['glibc'])} |\n"
    print(table)
    run.write_results("builds", table, data)


if __name__ == "__main__":
    main()
