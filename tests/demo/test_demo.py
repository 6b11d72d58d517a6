"""The first command a new user runs: `make run` (tests/support/demo.sh).

Run by `make demo-test` (part of `make test`) with SECRETS_AGENT_BIN set to the layer's binary,
so no extra release build is made. Each demo runs in a session of its own; "nothing is left
running" means no process of that session is alive once the script has exited.
"""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "tests/support/demo.sh"
BIN = os.environ.get("SECRETS_AGENT_BIN", str(ROOT / "target/release/secrets-agent"))
SECRET = '"SecretString":"{\\"username\\":\\"demo\\",\\"password\\":\\"hunter2\\"}"'


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_members(sid):
    """PIDs of live (not zombie) processes whose session id is sid."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[3]) == sid:
            found.append(int(stat.parent.name))
    return found


def assert_nothing_left(sid):
    deadline = time.monotonic() + 10
    while session_members(sid) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = session_members(sid)
    for pid in left:  # do not leave them to the next test either
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left running after the demo: {left}"


def start(tmp_path, *args, extra_env=None, port=None):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "SECRETS_AGENT_BIN": BIN}
    env["DEMO_PORT"] = str(port or free_port())
    env.update(extra_env or {})
    # `env -i` as a user would type it: only what is passed here reaches the script.
    cmd = ["env", "-i", *[f"{k}={v}" for k, v in env.items()], str(DEMO), *args]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def finish(proc, timeout=60):
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        assert_nothing_left(proc.pid)
    return proc.returncode, out, err


def test_demo_serves_the_secret_with_nothing_from_the_environment(tmp_path):
    code, out, err = finish(start(tmp_path, "--once"))
    assert code == 0, err
    assert "HTTP/1.1 200" in out and SECRET in out, out + err
    assert "X-Cache: miss" in out or "x-cache: miss" in out


def test_the_users_own_aws_settings_cannot_redirect_the_demo(tmp_path):
    # A profile that does not exist, keys, an endpoint nobody listens on, a config file that
    # points elsewhere, and a Lambda runtime variable: each would break the demo if it leaked.
    (tmp_path / "aws-config").write_text("[default]\nregion = eu-west-9\nendpoint_url = http://127.0.0.1:9\n")
    hostile = {
        "AWS_PROFILE": "does-not-exist",
        "AWS_CONFIG_FILE": str(tmp_path / "aws-config"),
        "AWS_ACCESS_KEY_ID": "AKIAREALKEY",
        "AWS_SECRET_ACCESS_KEY": "real-secret",
        "AWS_SESSION_TOKEN": "real-session",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": "http://127.0.0.1:9",
        "AWS_REGION": "eu-west-9",
        "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9",
        "SECRETS_AGENT_CONFIG": "/nonexistent.toml",
        "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": "1",
    }
    code, out, err = finish(start(tmp_path, "--once", extra_env=hostile))
    assert code == 0, err
    assert SECRET in out, out + err


def test_a_taken_port_is_one_line_that_says_what_to_do(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = finish(start(tmp_path, "--once", port=port))
    assert code != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert f"port {port}" in lines[0] and "DEMO_PORT=" in lines[0], lines[0]
    assert "Traceback" not in out + err


def test_an_unknown_argument_is_refused(tmp_path):
    code, _, err = finish(start(tmp_path, "--forever"))
    assert code == 64 and "--forever" in err


def wait_for(proc, text, timeout=60):
    """Reads stdout until a line contains text; returns what was read."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return "".join(seen)
    raise AssertionError(f"{text!r} never appeared in: {''.join(seen)}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("when", [0.0, 0.3, 1.0, "serving"])
def test_a_signal_at_any_point_leaves_nothing_running(tmp_path, sig, when):
    proc = start(tmp_path)
    if when == "serving":
        wait_for(proc, "Ctrl-C stops")
    else:
        time.sleep(when)
    os.kill(proc.pid, sig)
    code, _, err = finish(proc)
    assert code != 0, err
