"""The image run as real containers with podman: the ECS task definition's shape and the EKS
Deployment's pod, each next to an application container that reads a secret from moto through
the agent with the token from the shared volume.

Run by `make container-test` (part of `make test`) after `make image`. Only what this machine
needs is changed, here and not in the shipped files: image names (local tags), host networking
(moto listens on the host's loopback), a free port instead of 2773, moto's endpoint and test
credentials, and the rewrites listed in `eks_pod`. Everything a test creates (pods, containers,
volumes, the application image) is removed afterwards, also when it fails.
"""

import copy
import json
import shutil
from pathlib import Path

import boto3
import pytest
import yaml

from pods import (
    IMAGE,
    READ_SECRET,
    ROOT,
    RUN_ID,
    SECRET_ID,
    SECRET_VALUE,
    aws_env,
    env_flags,
    free_port,
    local_pod,
    played,
    podman,
    remove_pod,
    wait_for,
)

# ----------------------------------------------------------------------------------------------
# ECS: the task definition's containers as a pod


@pytest.fixture
def ecs_pod():
    name = f"{RUN_ID}-ecs"
    volume = f"{RUN_ID}-token"
    podman("pod", "create", "--name", name, "--network", "host")
    yield name, volume
    remove_pod(name)
    podman("volume", "rm", "-f", volume, check=False)


def test_ecs_task_shape(moto_server, app_image, ecs_pod, tmp_path):
    pod, volume = ecs_pod
    # The agent reaches moto over TLS, the test CA given as a corporate one (AWS_CA_BUNDLE).
    ca = tmp_path / "ca"
    ca.mkdir()
    shutil.copy(moto_server.ca, ca / "ca.pem")
    task = json.loads((ROOT / "ecs/task-definition.json").read_text())
    containers = {c["name"]: c for c in task["containerDefinitions"]}
    agent, app = containers["secrets-agent"], containers["app"]
    port = free_port()

    # The agent as ECS runs it: user, read-only root, capabilities, its environment, the task
    # volume at its containerPath, the health check command, the stop timeout.
    (mount,) = agent["mountPoints"]
    check = agent["healthCheck"]
    assert check["command"][0] == "CMD"
    agent_env = {e["name"]: e["value"] for e in agent["environment"]}
    agent_env.update(aws_env(moto_server.tls_url, port))
    agent_env["AWS_CA_BUNDLE"] = "/etc/test-ca/ca.pem"
    args = ["create", "--pod", pod, "--name", f"{pod}-agent", "--user", agent["user"]]
    if agent.get("readonlyRootFilesystem"):
        args.append("--read-only")
    for cap in agent["linuxParameters"]["capabilities"]["drop"]:
        args += ["--cap-drop", cap]
    args += ["-v", f"{volume}:{mount['containerPath']}", "-v", f"{ca}:/etc/test-ca:ro"]
    args += ["--health-cmd", json.dumps(check["command"][1:])]
    args += ["--stop-timeout", str(agent["stopTimeout"])]
    args += env_flags(agent_env)
    args.append(IMAGE)
    podman(*args)
    podman("start", f"{pod}-agent")

    # dependsOn HEALTHY: the application starts only once the agent's health check passes.
    (dep,) = app["dependsOn"]
    assert (dep["containerName"], dep["condition"]) == ("secrets-agent", "HEALTHY")
    wait_for(
        "the agent's health check",
        lambda: podman("healthcheck", "run", f"{pod}-agent", check=False).returncode == 0,
    )

    app_env = {e["name"]: e["value"] for e in app["environment"]}
    app_env["SECRETS_AGENT_URL"] = f"http://127.0.0.1:{port}"
    (app_mount,) = app["mountPoints"]
    assert app_mount["readOnly"] is True
    ro = ":ro" if app_mount["readOnly"] else ""
    result = podman(
        "run", "--pod", pod, "--name", f"{pod}-app", "--user", "1000:1000",
        "-v", f"{volume}:{app_mount['containerPath']}{ro}",
        *env_flags(app_env), app_image, "sh", "-c", READ_SECRET,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["Name"] == SECRET_ID and answer["SecretString"] == SECRET_VALUE

    # Stopping the task: SIGTERM, drain, exit 0 within stopTimeout (else podman kills: 137).
    podman("stop", f"{pod}-agent", timeout=agent["stopTimeout"] + 30)
    state = json.loads(podman("inspect", f"{pod}-agent").stdout)[0]["State"]
    assert state["ExitCode"] == 0, state
    logs = podman("logs", f"{pod}-agent").stderr + podman("logs", f"{pod}-agent").stdout
    assert "pod-test-pw-7d1e" not in logs
    assert "stopped" in logs


# ----------------------------------------------------------------------------------------------
# EKS: the Deployment's pod template with podman kube play


def eks_pod(moto_url, port, app_image):
    """k8s/deployment.yaml's pod template, as a Pod podman can play here. Rewrites (README lists
    them): the native sidecar (an init container with restartPolicy Always, which podman 4 runs to
    completion before the app) becomes a regular container; images are local tags; hostNetwork;
    the app gets a command (the shipped one names an image we do not have); no service account
    (there is no API server here); the test's AWS settings and port."""
    docs = list(yaml.safe_load_all((ROOT / "k8s/deployment.yaml").read_text()))
    (deployment,) = [d for d in docs if d and d.get("kind") == "Deployment"]
    spec = copy.deepcopy(deployment["spec"]["template"]["spec"])
    (sidecar,) = spec.pop("initContainers")
    assert sidecar["restartPolicy"] == "Always"
    del sidecar["restartPolicy"]
    # podman 4 plays liveness probes but not startup probes.
    sidecar.pop("startupProbe", None)
    sidecar["image"] = IMAGE
    sidecar["env"] = [e for e in sidecar["env"] if e["name"] not in aws_env(moto_url, port)]
    sidecar["env"] += [{"name": k, "value": v} for k, v in aws_env(moto_url, port).items()]
    (app,) = spec["containers"]
    app["image"] = app_image
    app["env"] = [
        {"name": e["name"], "value": f"http://127.0.0.1:{port}"}
        if e["name"] == "SECRETS_AGENT_URL"
        else e
        for e in app["env"]
    ]
    app["command"] = [
        "sh", "-c",
        'until [ -s "$SECRETS_AGENT_TOKEN_FILE" ] && ' + READ_SECRET + " > /tmp/answer; "
        "do sleep 0.2; done; cat /tmp/answer",
    ]
    # The app writes its answer to /tmp: give it a writable /tmp on its read-only root.
    spec["volumes"].append({"name": "app-tmp", "emptyDir": {"medium": "Memory"}})
    app["volumeMounts"].append({"name": "app-tmp", "mountPath": "/tmp"})
    spec["containers"] = [sidecar, app]
    return local_pod(f"{RUN_ID}-eks", spec)




def test_eks_pod_shape(moto, app_image, tmp_path):
    pod = eks_pod(moto, free_port(), app_image)
    with played(pod, tmp_path, "the application container to read the secret") as (state, logs):
        assert state["ExitCode"] == 0, logs.stderr
        answer = json.loads(logs.stdout)
        assert answer["SecretString"] == SECRET_VALUE
        # The sidecar ran as the pod's non-root user and wrote the token to the memory volume.
        name = pod["metadata"]["name"]
        agent = json.loads(podman("inspect", f"{name}-secrets-agent").stdout)[0]
        assert agent["Config"]["User"] in ("65532", "65532:65532")


# ----------------------------------------------------------------------------------------------
# EKS: secrets as files, k8s/render-init.yaml's pod with podman kube play

TLS_KEY = "-----BEGIN PRIVATE KEY-----\npod-test-key-5c2a\n-----END PRIVATE KEY-----\n"


def render_init_pod(moto_url, app_image, podinfo, files_dir):
    """k8s/render-init.yaml's pod template, as a Pod podman can play here. Rewrites: images are
    local tags; the downward-API volume (podman 4 cannot play one) becomes a host folder holding
    the annotations file as the kubelet writes it; the memory emptyDir becomes a host folder on
    /dev/shm, because podman 4 backs every emptyDir with a disk volume (medium: Memory or not)
    and `render` rightly refuses a disk; hostNetwork; no service account; the app gets a command
    that prints the files; the test's AWS settings."""
    docs = list(yaml.safe_load_all((ROOT / "k8s/render-init.yaml").read_text()))
    (deployment,) = [d for d in docs if d and d.get("kind") == "Deployment"]
    template = copy.deepcopy(deployment["spec"]["template"])
    annotations = template["metadata"]["annotations"]
    # Go's %q, as the kubelet writes each annotation; for these ASCII values JSON's quoting is
    # the same.
    (podinfo / "annotations").write_text(
        "".join(f"{k}={json.dumps(v)}\n" for k, v in sorted(annotations.items()))
    )
    spec = template["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["secret-files"]["emptyDir"]["medium"] == "Memory"
    volumes["secret-files"].pop("emptyDir")
    volumes["secret-files"]["hostPath"] = {"path": str(files_dir), "type": "Directory"}
    assert "downwardAPI" in volumes["podinfo"]
    volumes["podinfo"].pop("downwardAPI")
    volumes["podinfo"]["hostPath"] = {"path": str(podinfo), "type": "Directory"}
    (init,) = spec["initContainers"]
    assert "restartPolicy" not in init
    init["image"] = IMAGE
    test_env = aws_env(moto_url, free_port())
    init["env"] = [e for e in init.get("env", []) if e["name"] not in test_env]
    init["env"] += [{"name": k, "value": v} for k, v in test_env.items()]
    (app,) = spec["containers"]
    app["image"] = app_image
    app["command"] = [
        "sh", "-c",
        "cd /run/secrets/app && for f in db-password tls/key.pem .pgpass; do "
        'stat -c "%a %u $f" "$f"; cat "$f"; echo; done',
    ]
    # The pod's annotations stay out: podman 4 refuses values over 63 characters (Kubernetes
    # has no such limit), and the file above is where `render` reads them.
    return local_pod(f"{RUN_ID}-render", spec)


def test_eks_render_init_writes_files_for_the_app(moto, app_image, tmp_path):
    sm = boto3.client(
        "secretsmanager",
        endpoint_url=moto,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    sm.create_secret(Name="myapp/tls-key", SecretString=TLS_KEY)
    podinfo = tmp_path / "podinfo"
    podinfo.mkdir()
    files_dir = Path("/dev/shm") / f"{RUN_ID}-files"
    files_dir.mkdir()
    # The emptyDir's mount point is writable by the pod's user, as the kubelet makes it.
    files_dir.chmod(0o777)
    pod = render_init_pod(moto, app_image, podinfo, files_dir)
    try:
        with played(pod, tmp_path, "the application to read its files") as (state, logs):
            assert state["ExitCode"] == 0, logs.stderr
            secret = json.loads(SECRET_VALUE)
            assert logs.stdout == (
                f"400 65532 db-password\n{secret['password']}\n"
                f"400 65532 tls/key.pem\n{TLS_KEY}\n"
                f"400 65532 .pgpass\n"
                f"db.internal:5432:app:{secret['username']}:{secret['password']}\n"
            ), logs.stdout
            # The init container ran to completion before the app (podman removes it then, logs
            # and all: tests/render.rs checks that render logs no value) and created tls/ 0700.
            assert (files_dir / "tls").stat().st_mode & 0o777 == 0o700
            assert (files_dir / "tls").stat().st_uid == 65532
    finally:
        shutil.rmtree(files_dir, ignore_errors=True)
        sm.delete_secret(SecretId="myapp/tls-key", ForceDeleteWithoutRecovery=True)
