"""The servers `make bench` and `make bench-instructions` compare: secrets-agent and the two AWS
agents it replaces, each started from the same TOML configuration file (the keys all three
read: http_port, ttl_seconds, cache_size, ssrf_headers, ssrf_env_variables, region, logging).

The AWS agents are installed by `make bench-agents` into bench/.agents (git-ignored) with
`cargo install --locked --version X`, once; later runs reuse them.
"""

import os
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AGENTS_DIR = os.path.join(ROOT, "bench", ".agents", "bin")
TOKEN_HEADER = "X-Aws-Parameters-Secrets-Token"
TOKEN_ENV = "AWS_TOKEN"


@dataclass(frozen=True)
class Contender:
    key: str  # short name: log files, JSON keys
    label: str  # table headings
    binary: str
    args: tuple = ()  # before `--config FILE`
    ours: bool = False  # has /metrics, X-Cache, Lambda mode, env-only knobs
    notes: dict = field(default_factory=dict, compare=False, hash=False)

    def command(self, config_path):
        return [self.binary, *self.args, "--config", config_path]


OURS = Contender(
    key="secrets-agent",
    label="secrets-agent",
    binary=os.environ.get("BENCH_AGENT") or os.path.join(ROOT, "target", "release", "secrets-agent"),
    ours=True,
)
# crates.io name, version and binary of each AWS agent (Apache-2.0).
AWS = (
    Contender(
        key="aws-sm-agent",
        label="AWS Secrets Manager Agent 2.1.0",
        binary=os.path.join(AGENTS_DIR, "aws_secretsmanager_agent"),
    ),
    Contender(
        key="aws-wcp",
        label="AWS Workload Credentials Provider 3.1.2",
        binary=os.path.join(AGENTS_DIR, "aws-workload-credentials-provider"),
        args=("sm", "start"),
    ),
)


def contenders():
    """secrets-agent and the two AWS agents; BENCH_OURS_ONLY=1: ours alone; BENCH_ONLY=key,...:
    secrets-agent and those (e.g. `aws-sm-agent`)."""
    if os.environ.get("BENCH_OURS_ONLY") == "1":
        return [OURS]
    chosen = [OURS, *AWS]
    if os.environ.get("BENCH_ONLY"):
        keys = os.environ["BENCH_ONLY"].split(",")
        unknown = set(keys) - {c.key for c in chosen}
        if unknown:
            raise SystemExit(f"BENCH_ONLY: unknown {', '.join(sorted(unknown))}; "
                             f"choose from {', '.join(c.key for c in chosen)}")
        chosen = [c for c in chosen if c.ours or c.key in keys]
    missing = [c.binary for c in chosen if not os.access(c.binary, os.X_OK)]
    if missing:
        raise SystemExit(f"not installed: {', '.join(missing)}; `make bench-agents` installs them "
                         "(BENCH_OURS_ONLY=1 benchmarks secrets-agent alone)")
    return chosen


def config_toml(port, ttl_s=300, cache_size=1000, log_level="warn"):
    """One configuration for all three. validate_credentials = false: the AWS agents would
    otherwise call STS at start, which secrets-agent does not do."""
    return (
        f'log_level = "{log_level}"\n'
        "log_to_file = false\n"
        f"http_port = {port}\n"
        f"ttl_seconds = {ttl_s}\n"
        f"cache_size = {cache_size}\n"
        f'ssrf_headers = ["{TOKEN_HEADER}"]\n'
        f'ssrf_env_variables = ["{TOKEN_ENV}"]\n'
        'region = "us-east-1"\n'
        "validate_credentials = false\n"
    )


def write_config(directory, name, port, **kw):
    """Writes DIRECTORY/NAME.toml; returns its path."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{name}.toml")
    with open(path, "w") as f:
        f.write(config_toml(port, **kw))
    return path
