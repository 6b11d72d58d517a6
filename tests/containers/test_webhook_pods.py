"""Pods patched by the admission webhook, run with podman: the application sees resolved
environment values (env), the rendered files (files), and the agent (sidecar), with the secret
from moto. The webhook (the binary `cargo test` built) answers over HTTPS as in tests/webhook;
its patch is applied with a JSON Patch library, then only what podman 4 cannot express here is
rewritten (`for_podman` lists it). Run by `make container-test` after `make image`.
"""

import copy
import json
import shutil
import sys
from pathlib import Path

import pytest

from pods import IMAGE, READ_SECRET, ROOT, RUN_ID, SECRET_ID, SECRET_VALUE, aws_env, free_port
from pods import local_pod, played

sys.path.insert(0, str(ROOT / "tests" / "webhook"))
from peer import IMAGE as WEBHOOK_IMAGE  # noqa: E402
from peer import Webhook, admission_review, patched, send  # noqa: E402

PASSWORD = json.loads(SECRET_VALUE)["password"]


@pytest.fixture(scope="module")
def webhook(tmp_path_factory):
    w = Webhook(tmp_path_factory.mktemp("webhook"))
    yield w
    w.stop()


def webhook_patched(webhook, name, annotations, app, init=(), volumes=(), spec=None):
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": {"secrets-agent.io/inject": "true", **annotations}},
        "spec": {"containers": [app]},
    }
    pod["spec"].update(spec or {})
    if init:
        pod["spec"]["initContainers"] = list(init)
    if volumes:
        pod["spec"]["volumes"] = list(volumes)
    response = send(webhook, admission_review(pod, uid=name))
    assert response["allowed"] is True and "patch" in response, response
    return patched(pod, response)


# Where the pods find the test CA when a test gives it (as a user mounts a corporate CA).
CA_DIR = "/etc/test-ca"


def for_podman(pod, moto_url, app_image, podinfo, files_dir, ca=None):
    """The patched pod as podman 4 can play it here. Rewrites: native sidecars (init containers
    with restartPolicy Always, which podman runs to completion first) become regular
    containers, without their startup probe (podman 4 plays none); the memory emptyDir for files
    becomes a folder on /dev/shm (podman backs every emptyDir with disk, which render rightly
    refuses); the downward-API volume (podman 4 plays none) becomes a folder holding the
    annotations file as the kubelet writes it; images are local tags; every container gets
    moto's settings and a free port; host networking, no restarts; the pod's fsGroup becomes a
    supplementary group, as the kubelet applies it. With `ca` (a folder holding
    ca.pem), every container gets it mounted and AWS_CA_BUNDLE pointing at it."""
    annotations = pod["metadata"]["annotations"]
    (podinfo / "annotations").write_text(
        "".join(f"{k}={json.dumps(v)}\n" for k, v in sorted(annotations.items()))
    )
    spec = copy.deepcopy(pod["spec"])
    # The kubelet gives every container the pod's fsGroup as a supplementary group; podman 4
    # plays supplementalGroups but not fsGroup.
    pod_security = spec.get("securityContext", {})
    if "fsGroup" in pod_security:
        pod_security.setdefault("supplementalGroups", []).append(pod_security.pop("fsGroup"))
    port = free_port()
    test_env = aws_env(moto_url, port)
    if ca is not None:
        test_env["AWS_CA_BUNDLE"] = f"{CA_DIR}/ca.pem"
        spec.setdefault("volumes", []).append(
            {"name": "test-ca", "hostPath": {"path": str(ca), "type": "Directory"}}
        )
    init, sidecars = [], []
    for c in spec.get("initContainers", []):
        if c.pop("restartPolicy", None) == "Always":
            c.pop("startupProbe", None)
            sidecars.append(c)
        else:
            init.append(c)
    spec["initContainers"] = init
    spec["containers"] = sidecars + spec["containers"]
    for c in spec["initContainers"] + spec["containers"]:
        assert c["image"] in (WEBHOOK_IMAGE, "app")
        c["image"] = IMAGE if c["image"] == WEBHOOK_IMAGE else app_image
        env = [e for e in c.get("env", []) if e["name"] not in test_env]
        env = [
            {"name": e["name"], "value": f"http://127.0.0.1:{port}"}
            if e["name"] == "SECRETS_AGENT_URL" else e
            for e in env
        ]
        c["env"] = env + [{"name": k, "value": v} for k, v in test_env.items()]
        if ca is not None:
            c.setdefault("volumeMounts", []).append(
                {"name": "test-ca", "mountPath": CA_DIR, "readOnly": True}
            )
    for v in spec["volumes"]:
        if v["name"] == "secrets-agent-files":
            assert v.pop("emptyDir")["medium"] == "Memory"
            v["hostPath"] = {"path": str(files_dir), "type": "Directory"}
        if v["name"] == "secrets-agent-podinfo":
            assert v.pop("downwardAPI")["items"][0]["fieldRef"]["fieldPath"] == "metadata.annotations"
            v["hostPath"] = {"path": str(podinfo), "type": "Directory"}
    return local_pod(pod["metadata"]["name"], spec)


@pytest.fixture
def folders(tmp_path):
    podinfo = tmp_path / "podinfo"
    podinfo.mkdir()
    files_dir = Path("/dev/shm") / f"{RUN_ID}-webhook-files"
    files_dir.mkdir()
    files_dir.chmod(0o777)
    yield podinfo, files_dir
    shutil.rmtree(files_dir, ignore_errors=True)


@pytest.fixture
def test_ca(moto_server, tmp_path):
    """A folder holding only the test CA's certificate, to mount into the pods."""
    folder = tmp_path / "ca"
    folder.mkdir()
    shutil.copy(moto_server.ca, folder / "ca.pem")
    return folder


def test_env_mode_resolves_the_placeholder_over_tls_in_an_image_without_a_ca_bundle(
    webhook, moto_server, test_ca, app_image, folders, tmp_path
):
    """The app image (busybox FROM scratch) has no CA bundle: `exec` verifies moto's TLS
    certificate against the CA given as a user gives a corporate one (AWS_CA_BUNDLE). Without
    it, the roots built into the binary are used, and the failure says it is the certificate,
    of which host, and which roots."""
    app = {
        "name": "app",
        "image": "app",
        "command": ["sh", "-c", 'ls /etc/ssl 2>&1; echo "password=$DB_PASSWORD"'],
        "env": [{"name": "DB_PASSWORD", "value": f"awssm:{SECRET_ID}#password"}],
    }
    pod = webhook_patched(webhook, f"{RUN_ID}-wh-env", {"secrets-agent.io/mode": "env"}, app)
    playable = for_podman(pod, moto_server.tls_url, app_image, *folders, ca=test_ca)
    with played(playable, tmp_path, "the env-mode app") as (state, logs):
        assert state["ExitCode"] == 0, logs.stderr
        assert logs.stdout == (
            "ls: /etc/ssl: No such file or directory\n" f"password={PASSWORD}\n"
        ), logs.stdout
        assert PASSWORD not in logs.stderr

    playable = for_podman(pod, moto_server.tls_url, app_image, *folders)
    with played(playable, tmp_path, "the env-mode app without the CA") as (state, logs):
        assert state["ExitCode"] == 78, logs.stdout + logs.stderr
        assert "password=" not in logs.stdout
        host = moto_server.tls_url.removeprefix("https://")
        assert f"the TLS certificate of {host} is not trusted" in logs.stderr, logs.stderr
        assert "the Mozilla roots built into secrets-agent" in logs.stderr, logs.stderr


def test_env_mode_wraps_the_pods_own_init_container(
    webhook, moto, app_image, folders, tmp_path
):
    """Issue 30, item 3: a `migrate` init container with a placeholder sees the value; the app,
    with none of its own, is left as it is (not wrapped)."""
    migrate = {
        "name": "migrate",
        "image": "app",
        "command": ["sh", "-c", 'echo "migrate saw $DB_PASSWORD" > /shared/migrate'],
        "env": [{"name": "DB_PASSWORD", "value": f"awssm:{SECRET_ID}#password"}],
        "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
    }
    app = {
        "name": "app",
        "image": "app",
        "command": ["sh", "-c", 'cat /shared/migrate; echo "app NOTE=$NOTE"'],
        "env": [{"name": "NOTE", "value": "plain"}],
        "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
    }
    pod = webhook_patched(
        webhook, f"{RUN_ID}-wh-init", {"secrets-agent.io/mode": "env"}, app,
        init=[migrate], volumes=[{"name": "shared", "emptyDir": {}}],
    )
    assert pod["spec"]["containers"][0]["command"] == app["command"], "the app is not wrapped"
    assert pod["spec"]["initContainers"][-1]["command"][1] == "exec"
    playable = for_podman(pod, moto, app_image, *folders)
    with played(playable, tmp_path, "the app after its wrapped init container") as (state, logs):
        assert state["ExitCode"] == 0, logs.stderr
        assert logs.stdout == f"migrate saw {PASSWORD}\napp NOTE=plain\n", logs.stdout


def test_files_mode_renders_the_files_for_the_app(webhook, moto, app_image, folders, tmp_path):
    podinfo, files_dir = folders
    app = {
        "name": "app",
        "image": "app",
        "command": ["sh", "-c", 'cd /secrets && for f in db-password conf/user; do stat -c "%a $f" "$f"; cat "$f"; echo; done'],
    }
    annotations = {
        "secrets-agent.io/mode": "files",
        "secrets-agent.io/files-path": "/secrets",
        "secrets-agent.io/file.db-password": f"awssm:{SECRET_ID}#password",
        "secrets-agent.io/file.user.path": "/secrets/conf/user",
        "secrets-agent.io/file.user.mode": "0440",
        "secrets-agent.io/file.user.source": "user=${awssm:" + SECRET_ID + "#username}",
    }
    pod = webhook_patched(webhook, f"{RUN_ID}-wh-files", annotations, app)
    playable = for_podman(pod, moto, app_image, podinfo, files_dir)
    with played(playable, tmp_path, "the files-mode app") as (state, logs):
        assert state["ExitCode"] == 0, logs.stderr
        assert logs.stdout == f"400 db-password\n{PASSWORD}\n440 conf/user\nuser=app\n", logs.stdout
    assert (files_dir / "db-password").stat().st_uid == 65532


def test_files_mode_with_fs_group_lets_a_container_of_another_uid_read(
    webhook, moto, app_image, folders, tmp_path
):
    """Issue 30, item 5: render runs as the first container's uid (1000); with the pod's
    fsGroup the file goes to that group, 0440, so the app running as 2000 reads it."""
    podinfo, files_dir = folders
    main = {
        "name": "main", "image": "app", "command": ["sh", "-c", "cat /run/secrets/app/db"],
        "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
    }
    app = {
        "name": "app", "image": "app",
        "command": ["sh", "-c", 'id -u; stat -c "%a %u %g" /run/secrets/app/db; cat /run/secrets/app/db'],
        "securityContext": {"runAsUser": 2000, "runAsGroup": 2000},
    }
    annotations = {
        "secrets-agent.io/mode": "files",
        "secrets-agent.io/file.db": f"awssm:{SECRET_ID}#password",
    }
    pod = webhook_patched(
        webhook, f"{RUN_ID}-wh-fsgroup", annotations, main,
        spec={"securityContext": {"fsGroup": 3000}, "containers": [main, app]},
    )
    assert pod["metadata"]["annotations"]["secrets-agent.io/file.db.gid"] == "3000"
    playable = for_podman(pod, moto, app_image, podinfo, files_dir)
    with played(playable, tmp_path, "the app of another uid") as (state, logs):
        assert state["ExitCode"] == 0, logs.stderr
        assert logs.stdout == f"2000\n440 1000 3000\n{PASSWORD}", logs.stdout


def test_sidecar_env_and_files_together(webhook, moto, app_image, folders, tmp_path):
    podinfo, files_dir = folders
    app = {
        "name": "app",
        "image": "app",
        "command": [
            "sh", "-c",
            # The sidecar is a regular container here, started beside the app: wait for it.
            'until [ -s "$SECRETS_AGENT_TOKEN_FILE" ] && answer=$(' + READ_SECRET + "); "
            'do sleep 0.2; done; echo "env=$DB_PASSWORD"; echo "file=$(cat /run/secrets/app/db)"; '
            'echo "$answer"',
        ],
        "env": [{"name": "DB_PASSWORD", "value": f"awssm:{SECRET_ID}#password"}],
    }
    annotations = {
        "secrets-agent.io/mode": "sidecar,env,files",
        "secrets-agent.io/file.db": f"awssm:{SECRET_ID}#password",
    }
    pod = webhook_patched(webhook, f"{RUN_ID}-wh-all", annotations, app)
    playable = for_podman(pod, moto, app_image, podinfo, files_dir)
    names = [c["name"] for c in playable["spec"]["containers"]]
    assert names == ["secrets-agent", "secrets-agent-files", "app"]
    with played(playable, tmp_path, "the app with the agent, exec and files") as (state, logs):
        assert state["ExitCode"] == 0, logs.stderr
        env_line, file_line, answer = logs.stdout.split("\n", 2)
        assert env_line == f"env={PASSWORD}"
        assert file_line == f"file={PASSWORD}"
        assert json.loads(answer)["SecretString"] == SECRET_VALUE
