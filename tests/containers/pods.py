"""What the container tests share: podman with the repository's containers.conf, the image
under test, moto's settings for the pods, and playing a Pod with `podman kube play`. The
fixtures (moto, the application image) are in conftest.py."""

import contextlib
import json
import os
import socket
import subprocess
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("SECRETS_AGENT_IMAGE", "localhost/secrets-agent:0.1.0-amd64")
ENV = {**os.environ, "CONTAINERS_CONF": str(ROOT / "image/containers.conf")}
RUN_ID = f"sa-test-{os.getpid()}"
SECRET_ID = "myapp/db-credentials"
SECRET_VALUE = '{"username":"app","password":"pod-test-pw-7d1e"}'
TOKEN_HEADER = "X-Aws-Parameters-Secrets-Token"
PATIENCE = 60


def podman(*args, check=True, timeout=120):
    result = subprocess.run(
        ["podman", *args], capture_output=True, text=True, env=ENV, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {result.stderr.strip()}")
    return result


def remove_pod(name):
    """Removes a pod's containers with their anonymous volumes (the image declares
    `VOLUME /run/secrets-agent`, which podman fills with one where nothing is mounted), then
    the pod."""
    ids = podman("ps", "-a", "-q", "--filter", f"pod={name}", check=False).stdout.split()
    if ids:
        podman("rm", "-f", "-v", "-t", "0", *ids, check=False)
    podman("pod", "rm", "-f", "-t", "0", name, check=False)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, check, timeout=PATIENCE):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def aws_env(moto_url, port):
    """What the tests give the agent beyond the shipped files: moto and a free port."""
    return {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(port),
    }


def env_flags(env):
    return [flag for k, v in env.items() for flag in ("-e", f"{k}={v}")]


READ_SECRET = (
    'wget -q -O - --header "{header}: $(cat "$SECRETS_AGENT_TOKEN_FILE")" '
    '"$SECRETS_AGENT_URL/secretsmanager/get?secretId={id}"'
).format(header=TOKEN_HEADER, id=SECRET_ID)


def local_pod(name, spec):
    """A pod template's spec as a Pod podman plays here: no service account (there is no API
    server here), host networking (moto listens on the host's loopback), run once."""
    spec.pop("serviceAccountName", None)
    spec["hostNetwork"] = True
    spec["restartPolicy"] = "Never"
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


@contextlib.contextmanager
def played(pod, tmp_path, what):
    """Plays `pod`, waits for its `app` container to exit and yields (its state, its logs);
    removes the pod afterwards, also when the test fails."""
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(yaml.safe_dump(pod))
    name = pod["metadata"]["name"]
    app = f"{name}-app"
    volumes_before = set(podman("volume", "ls", "-q").stdout.split())
    try:
        podman("kube", "play", str(manifest))

        def app_exited():
            out = podman("inspect", app, "--format", "{{.State.Status}}", check=False).stdout
            return out.strip() == "exited"

        wait_for(what, app_exited)
        state = json.loads(podman("inspect", app).stdout)[0]["State"]
        yield state, podman("logs", app)
    finally:
        podman("kube", "play", "--down", str(manifest), check=False)
        remove_pod(name)
        # Init containers are gone once they ran, so their anonymous volumes are found as the
        # anonymous volumes this play added.
        for volume in set(podman("volume", "ls", "-q").stdout.split()) - volumes_before:
            info = json.loads(podman("volume", "inspect", volume).stdout)[0]
            if info.get("Anonymous"):
                podman("volume", "rm", "-f", volume, check=False)
