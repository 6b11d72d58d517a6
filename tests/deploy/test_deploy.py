"""Offline checks of the deployment files (ECS, Kubernetes, systemd, SAM).

Run with `.venv/bin/python -m pytest tests/deploy -q`. Hermetic: the only
network traffic goes to servers this file starts on 127.0.0.1 (a moto server
for ECS and IAM, a stub of the agent for the Lambda example).
"""

import ast
import http.server
import json
import os
import py_compile
import re
import shutil
import subprocess
import sys
import threading
import tomllib
import urllib.parse
from pathlib import Path, PurePosixPath

import boto3
import botocore.session
import pytest
import yaml
from moto.server import ThreadedMotoServer

ROOT = Path(__file__).resolve().parents[2]
BINARY = "/usr/local/bin/secrets-agent"
HEALTH_CMD = [BINARY, "health"]
ACCOUNT = "123456789012"
TOKEN_HEADER = "X-Aws-Parameters-Secrets-Token"
# Directories Kubernetes mounts service-account tokens under (/var/run is a
# symlink to /run in most images, so both spellings count).
RESERVED_TOKEN_DIRS = [PurePosixPath("/var/run"), PurePosixPath("/run/secrets")]


def read(rel):
    return (ROOT / rel).read_text()


def is_under(path, parent):
    path, parent = PurePosixPath(path), PurePosixPath(parent)
    return path == parent or parent in path.parents


def venv_tool(name):
    """A console script of the interpreter running the tests, else one on PATH."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"{name} is not installed (see tests/deploy/requirements.txt)"
    return found


def run(cmd, **kwargs):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kwargs)


# --------------------------------------------------------------------------
# ECS / Fargate
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def aws_client(service, endpoint):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(scope="module")
def task_definition():
    return json.loads(read("ecs/task-definition.json"))


def containers_by_name(task_def):
    return {c["name"]: c for c in task_def["containerDefinitions"]}


def test_task_definition_has_only_register_api_keys(task_definition):
    # `aws ecs register-task-definition --cli-input-json file://...` rejects
    # unknown keys, so the file must be exactly the API's input shape.
    model = botocore.session.get_session().get_service_model("ecs")
    request = model.operation_model("RegisterTaskDefinition").input_shape
    container_shape = request.members["containerDefinitions"].member
    assert set(task_definition) <= set(request.members)
    for container in task_definition["containerDefinitions"]:
        assert set(container) <= set(container_shape.members), container["name"]


def test_task_definition_registers_against_moto(moto_endpoint, task_definition):
    ecs = aws_client("ecs", moto_endpoint)
    registered = ecs.register_task_definition(**task_definition)["taskDefinition"]
    described = ecs.describe_task_definition(
        taskDefinition=registered["taskDefinitionArn"]
    )["taskDefinition"]

    for got in (registered, described):
        assert got["family"] == "myapp-with-secrets-agent"
        assert got["networkMode"] == "awsvpc"
        assert got["requiresCompatibilities"] == ["FARGATE"]
        assert got["runtimePlatform"]["operatingSystemFamily"] == "LINUX"
        assert f":{ACCOUNT}:" in got["taskRoleArn"]
        assert f":{ACCOUNT}:" in got["executionRoleArn"]

        containers = containers_by_name(got)
        assert set(containers) == {"secrets-agent", "app"}
        agent, app = containers["secrets-agent"], containers["app"]

        assert agent["essential"] is True
        assert agent["healthCheck"]["command"] == ["CMD", *HEALTH_CMD]
        assert app["dependsOn"] == [
            {"containerName": "secrets-agent", "condition": "HEALTHY"}
        ]
        for container in (agent, app):
            log = container["logConfiguration"]
            assert log["logDriver"] == "awslogs"
            assert {"awslogs-group", "awslogs-region", "awslogs-stream-prefix"} <= set(
                log["options"]
            )


def test_task_definition_shares_the_token_volume(task_definition):
    containers = containers_by_name(task_definition)
    agent, app = containers["secrets-agent"], containers["app"]
    volume_names = {v["name"] for v in task_definition["volumes"]}

    (agent_mount,) = agent["mountPoints"]
    (app_mount,) = app["mountPoints"]
    assert agent_mount["sourceVolume"] == app_mount["sourceVolume"]
    assert agent_mount["sourceVolume"] in volume_names
    assert agent_mount.get("readOnly") is False
    assert app_mount["readOnly"] is True

    agent_env = {e["name"]: e["value"] for e in agent["environment"]}
    app_env = {e["name"]: e["value"] for e in app["environment"]}
    token_file = agent_env["SECRETS_AGENT_TOKEN_FILE"]
    assert is_under(token_file, agent_mount["containerPath"])
    assert is_under(app_env["SECRETS_AGENT_TOKEN_FILE"], app_mount["containerPath"])
    assert app_env["SECRETS_AGENT_TOKEN_FILE"] == token_file
    # A token variable in the agent's environment would win over the file.
    assert not {"AWS_TOKEN", "AWS_SESSION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN"} & set(
        agent_env
    )
    # The volume starts with the image's ownership only if the mount point is
    # the path the image declares as VOLUME (see image/Containerfile).
    assert agent_mount["containerPath"] in dockerfile_volumes()


def mebibytes(quantity):
    assert quantity.endswith("Mi"), quantity
    return int(quantity[:-2])


def fits_budget(max_bytes, limit_mib):
    """The measured RSS model (docs/benchmarks.md, "Memory"): about 10 MiB idle plus 1.15 times the
    byte budget of cached values when the cache is full."""
    return 10 + 1.15 * int(max_bytes) / 2**20 <= limit_mib


def test_task_definition_fits_fargate_limits(task_definition):
    # Fargate's valid cpu -> memory (MiB) combinations for the smallest sizes.
    valid = {"256": {"512", "1024", "2048"}, "512": {str(m) for m in range(1024, 4097, 1024)}}
    assert task_definition["memory"] in valid[task_definition["cpu"]]
    check = containers_by_name(task_definition)["secrets-agent"]["healthCheck"]
    assert 5 <= check["interval"] <= 300
    assert 2 <= check["timeout"] <= 60
    assert 1 <= check["retries"] <= 10
    assert 0 <= check["startPeriod"] <= 300
    agent = containers_by_name(task_definition)["secrets-agent"]
    assert agent["linuxParameters"]["capabilities"]["drop"] == ["ALL"]
    # The hard limit holds a full cache (the whole task stops if the agent is OOM-killed).
    env = {e["name"]: e["value"] for e in agent["environment"]}
    assert fits_budget(env["SECRETS_AGENT_CACHE_MAX_BYTES"], agent["memory"])
    assert agent["readonlyRootFilesystem"] is True
    assert not agent["user"].startswith(("0:", "root")) and agent["user"] != "0"


def dockerfile_instructions():
    text = read("image/Containerfile").replace("\\\n", " ")
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def dockerfile_volumes():
    volumes = []
    for keyword, rest in dockerfile_instructions():
        if keyword == "VOLUME":
            volumes += json.loads(rest) if rest.startswith("[") else rest.split()
    return volumes


def test_image_is_from_scratch_non_root_with_health_check():
    instructions = dockerfile_instructions()
    froms = [rest for keyword, rest in instructions if keyword == "FROM"]
    # Nothing but what make image stages: the static binary, the CA bundle, the token folder.
    assert froms == ["scratch"]
    copies = [rest.split() for keyword, rest in instructions if keyword == "COPY"]
    sources = sorted(c[-2] for c in copies)
    assert sources == ["ca-certificates.crt", "run/", "secrets-agent"]
    assert ["secrets-agent", BINARY] in [c[-2:] for c in copies]
    # Where the agent's rustls client (rustls-native-certs) looks for the trust store.
    assert ["ca-certificates.crt", "/etc/ssl/certs/ca-certificates.crt"] in [c[-2:] for c in copies]
    assert not [k for k, _ in instructions if k == "RUN"], "a FROM-scratch image cannot RUN"

    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users == ["65532:65532"]

    checks = [rest for keyword, rest in instructions if keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    cmd = checks[0].split("CMD", 1)[1].strip()
    assert json.loads(cmd) == HEALTH_CMD

    entrypoints = [rest for keyword, rest in instructions if keyword == "ENTRYPOINT"]
    assert json.loads(entrypoints[-1]) == [BINARY]
    labels = " ".join(rest for keyword, rest in instructions if keyword == "LABEL")
    for label in ("source", "version", "licenses"):
        assert f"org.opencontainers.image.{label}=" in labels
    # The agent is reached over loopback only: nothing to publish.
    assert not [k for k, _ in instructions if k == "EXPOSE"]


ALLOWED_ACTIONS = {
    "secretsmanager:GetSecretValue",
    "secretsmanager:DescribeSecret",
    "secretsmanager:BatchGetSecretValue",
    "ssm:GetParameter",
    "kms:Decrypt",
}


def as_list(value):
    return value if isinstance(value, list) else [value]


def test_task_role_policy_is_least_privilege(moto_endpoint):
    text = read("ecs/task-role-policy.json")
    policy = json.loads(text)
    assert policy["Version"] == "2012-10-17"

    granted = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement and "NotResource" not in statement
        actions = set(as_list(statement["Action"]))
        assert actions <= ALLOWED_ACTIONS, actions - ALLOWED_ACTIONS
        granted |= actions
        resources = as_list(statement["Resource"])
        if "*" in resources:
            # BatchGetSecretValue has no resource-level permissions; each secret
            # it returns is still checked against GetSecretValue.
            assert actions == {"secretsmanager:BatchGetSecretValue"}
        else:
            for arn in resources:
                assert arn.startswith("arn:aws:") and f":{ACCOUNT}:" in arn
    assert granted == ALLOWED_ACTIONS
    # ListSecrets is only needed for BatchGetSecretValue with Filters, which the
    # agent does not use.
    assert "ListSecrets" not in text

    iam = aws_client("iam", moto_endpoint)
    created = iam.create_policy(PolicyName="secrets-agent-task", PolicyDocument=text)
    assert created["Policy"]["Arn"].endswith(":policy/secrets-agent-task")


# --------------------------------------------------------------------------
# Kubernetes
# --------------------------------------------------------------------------

K8S_FILES = [
    "k8s/deployment.yaml",
    "k8s/daemonset.yaml",
    "k8s/render-init.yaml",
    "k8s/render-sidecar.yaml",
    "k8s/webhook/webhook.yaml",
]


def k8s_docs(rel):
    return [d for d in yaml.safe_load_all(read(rel)) if d]


def kind(rel, kind_name):
    (found,) = [d for d in k8s_docs(rel) if d["kind"] == kind_name]
    return found


def test_manifests_pass_kubernetes_validate_strict():
    from kubernetes_validate.utils import latest_version
    from packaging.version import Version

    version = latest_version()
    # Native sidecars are GA from 1.33 on.
    assert Version(version) >= Version("1.33")
    result = run(
        [sys.executable, "-m", "kubernetes_validate", "-k", version, "--strict"]
        + [str(ROOT / f) for f in K8S_FILES]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Every resource in every file was checked (nothing skipped).
    resources = sum(len(k8s_docs(f)) for f in K8S_FILES)
    assert result.stdout.count("passed") + result.stderr.count("passed") == resources


def pod_spec(rel, kind_name):
    return kind(rel, kind_name)["spec"]["template"]["spec"]


def test_deployment_runs_agent_as_native_sidecar():
    spec = pod_spec("k8s/deployment.yaml", "Deployment")
    (agent,) = [c for c in spec["initContainers"] if c["name"] == "secrets-agent"]
    (app,) = spec["containers"]

    assert agent["restartPolicy"] == "Always"
    assert agent["startupProbe"]["exec"]["command"] == HEALTH_CMD
    assert agent["livenessProbe"]["exec"]["command"] == HEALTH_CMD

    volumes = {v["name"]: v for v in spec["volumes"]}
    (agent_mount,) = agent["volumeMounts"]
    (app_mount,) = app["volumeMounts"]
    assert agent_mount["name"] == app_mount["name"]
    assert volumes[agent_mount["name"]]["emptyDir"]["medium"] == "Memory"
    assert not agent_mount.get("readOnly", False)
    assert app_mount["readOnly"] is True
    for mount in (agent_mount, app_mount):
        for reserved in RESERVED_TOKEN_DIRS:
            assert not is_under(mount["mountPath"], reserved), mount["mountPath"]

    agent_env = {e["name"]: e["value"] for e in agent["env"]}
    app_env = {e["name"]: e["value"] for e in app["env"]}
    assert is_under(agent_env["SECRETS_AGENT_TOKEN_FILE"], agent_mount["mountPath"])
    assert app_env["SECRETS_AGENT_TOKEN_FILE"] == agent_env["SECRETS_AGENT_TOKEN_FILE"]
    assert not {"AWS_TOKEN", "AWS_SESSION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN"} & set(
        agent_env
    )


FILE_ANNOTATION = re.compile(r"^secrets-agent\.io/file\.([A-Za-z0-9_-]+)\.(path|source|mode|uid|gid)$")
PLACEHOLDER = re.compile(r"^(awssm|awsparam):[^\s#]+(#[^#]*(#[^#]*)?)?$")


def render_files(rel):
    """The files a manifest's pod annotations ask `render` for, by name."""
    annotations = kind(rel, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    files = {}
    for key, value in annotations.items():
        m = FILE_ANNOTATION.match(key)
        assert m, f"{rel}: {key} is not a file annotation render understands"
        files.setdefault(m[1], {})[m[2]] = value
    return files


def check_render_container(c, mount_path, once):
    command = c["command"]
    assert command[:2] == [BINARY, "render"]
    assert ("--once" in command) == once
    assert "--from-annotations=/etc/podinfo/annotations" in command
    assert "--allow-disk" not in command
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["secret-files"]["mountPath"] == mount_path
    assert not mounts["secret-files"].get("readOnly", False)
    assert mounts["podinfo"]["mountPath"] == "/etc/podinfo"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]


def check_render_pod(rel):
    spec = pod_spec(rel, "Deployment")
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["secret-files"]["emptyDir"]["medium"] == "Memory"
    (item,) = volumes["podinfo"]["downwardAPI"]["items"]
    assert item == {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}
    (app,) = spec["containers"]
    (app_mount,) = [m for m in app["volumeMounts"] if m["name"] == "secret-files"]
    assert app_mount["readOnly"] is True
    mount_path = app_mount["mountPath"]
    files = render_files(rel)
    assert files
    for name, attrs in files.items():
        assert is_under(attrs["path"], mount_path), (name, attrs["path"])
        source = attrs["source"]
        if source.startswith(("awssm:", "awsparam:")):
            assert PLACEHOLDER.match(source), source
        else:
            assert re.search(r"\$\{(awssm|awsparam):[^}]+\}", source), source
        if "mode" in attrs:
            assert re.fullmatch(r"0?[0-7]{3}", attrs["mode"]), attrs["mode"]
    # The app and the writer run as one user: the 0400 files are the app's to read.
    assert spec["securityContext"]["runAsUser"] == 65532
    return spec, mount_path


def go_quote(value):
    """A string as Go's %q writes it (the downward API's annotations file)."""
    out = []
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append("\\x%02x" % ord(ch))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


@pytest.fixture(scope="module")
def agent_binary():
    """SECRETS_AGENT_BIN, else the debug binary `cargo test` built (make test runs it first),
    else a debug build made here. `cargo build` alone is no shortcut: without the
    dev-dependencies' features it compiles much of the tree again."""
    if os.environ.get("SECRETS_AGENT_BIN"):
        return Path(os.environ["SECRETS_AGENT_BIN"])
    built = ROOT / "target" / "debug" / "secrets-agent"
    if not built.exists():
        result = subprocess.run(
            ["cargo", "build", "--quiet", "--bin", "secrets-agent"],
            cwd=ROOT, capture_output=True, text=True, timeout=1800,
        )
        assert result.returncode == 0, result.stderr
    return built


@pytest.mark.parametrize("rel", ["k8s/render-init.yaml", "k8s/render-sidecar.yaml"])
def test_render_reads_the_manifests_annotations(agent_binary, tmp_path, rel):
    annotations = kind(rel, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    podinfo = tmp_path / "annotations"
    podinfo.write_text(
        "".join(f"{k}={go_quote(v)}\n" for k, v in sorted(annotations.items()))
    )
    result = run(
        [str(agent_binary), "render", "--dry-run", f"--from-annotations={podinfo}"],
        env={"PATH": os.environ["PATH"]},
    )
    assert result.returncode == 0, result.stderr
    listed = {line.split(" ")[0]: line for line in result.stdout.splitlines()}
    files = render_files(rel)
    assert set(listed) == {attrs["path"] for attrs in files.values()}
    for attrs in files.values():
        line = listed[attrs["path"]]
        assert f"mode {attrs.get('mode', '0400')}," in line, line
        for ref in re.findall(r"(?:awssm|awsparam):([^#}\s]+)", attrs["source"]):
            assert f"'{ref}'" in line, (ref, line)


def test_render_init_variant_writes_files_once_to_memory():
    spec, mount_path = check_render_pod("k8s/render-init.yaml")
    (init,) = spec["initContainers"]
    assert "restartPolicy" not in init, "a run-to-completion init container"
    check_render_container(init, mount_path, once=True)


def test_render_sidecar_variant_keeps_files_current():
    spec, mount_path = check_render_pod("k8s/render-sidecar.yaml")
    first, watcher = spec["initContainers"]
    assert "restartPolicy" not in first, "files exist before the app starts"
    check_render_container(first, mount_path, once=True)
    assert watcher["restartPolicy"] == "Always", "a native sidecar"
    check_render_container(watcher, mount_path, once=False)
    # --notify and --on-change run `kill` and `sh`, which the FROM-scratch image lacks.
    assert not [a for a in watcher["command"] if a.startswith(("--notify", "--on-change"))]
    assert "--notify" in read("k8s/render-sidecar.yaml"), "the comment says how to signal"


def test_deployment_security_and_resources():
    text = read("k8s/deployment.yaml")
    spec = pod_spec("k8s/deployment.yaml", "Deployment")
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    for container in spec["initContainers"] + spec["containers"]:
        ctx = container["securityContext"]
        assert ctx["readOnlyRootFilesystem"] is True
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["capabilities"]["drop"] == ["ALL"]
        assert ctx.get("runAsNonRoot", True) is True

    (agent,) = spec["initContainers"]
    # The figures themselves live in the manifest only (the docs are checked against it below).
    resources = agent["resources"]
    assert set(resources) == {"requests", "limits"} and "cpu" in resources["requests"]
    assert mebibytes(resources["requests"]["memory"]) <= mebibytes(resources["limits"]["memory"])
    # The figures carry a note that they are to be checked against measurements.
    assert re.search(r"measured\s*(#\s*)?RSS", text)
    env = {e["name"]: e["value"] for e in agent["env"]}
    assert fits_budget(env["SECRETS_AGENT_CACHE_MAX_BYTES"], mebibytes(agent["resources"]["limits"]["memory"]))
    assert fits_budget(env["SECRETS_AGENT_CACHE_MAX_BYTES"], mebibytes(agent["resources"]["requests"]["memory"]))

    account = kind("k8s/deployment.yaml", "ServiceAccount")
    role = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert role.startswith(f"arn:aws:iam::{ACCOUNT}:role/")
    assert spec["serviceAccountName"] == account["metadata"]["name"]
    assert "Pod Identity" in text


def test_docs_quote_the_sidecar_memory_the_manifests_set():
    """One source of truth for the sidecars' memory: the manifests. The docs quote them, and the
    README quotes none (issue 22)."""
    spec = pod_spec("k8s/deployment.yaml", "Deployment")
    (agent,) = spec["initContainers"]
    request = agent["resources"]["requests"]["memory"]
    limit = agent["resources"]["limits"]["memory"]
    budget = {e["name"]: e["value"] for e in agent["env"]}["SECRETS_AGENT_CACHE_MAX_BYTES"]
    eks = " ".join(read("docs/eks.md").split())
    assert f"`memory: {request}` with a `{limit}` limit" in eks
    assert f"`SECRETS_AGENT_CACHE_MAX_BYTES`, {int(budget) // 2**20} MiB" in eks

    task = json.loads(read("ecs/task-definition.json"))
    ecs_agent = containers_by_name(task)["secrets-agent"]
    budget = {e["name"]: e["value"] for e in ecs_agent["environment"]}["SECRETS_AGENT_CACHE_MAX_BYTES"]
    ecs = " ".join(read("docs/ecs.md").split())
    assert (
        f"`memoryReservation` ({ecs_agent['memoryReservation']} MiB) and `memory` "
        f"({ecs_agent['memory']} MiB hard limit)"
    ) in ecs
    assert f"`SECRETS_AGENT_CACHE_MAX_BYTES={budget}`" in ecs

    readme = read("README.md")
    assert not re.search(r"\b\d+\s*Mi\b", readme), "the README quotes no manifest's memory figures"


def test_daemonset_variant_and_its_trade_offs():
    text = read("k8s/daemonset.yaml")
    header = text.split("\n---", 1)[0].lower()
    for topic in ["iam", "every pod", "token", "blast radius", "noisy neighbour", "sidecar"]:
        assert topic in header, topic

    spec = pod_spec("k8s/daemonset.yaml", "DaemonSet")
    (agent,) = [c for c in spec["containers"] if c["name"] == "secrets-agent"]
    env = {e["name"]: e["value"] for e in agent["env"]}
    assert fits_budget(
        env["SECRETS_AGENT_CACHE_MAX_BYTES"], mebibytes(agent["resources"]["limits"]["memory"])
    )
    listen = env["SECRETS_AGENT_LISTEN"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    if listen.startswith("unix:"):
        socket = listen[len("unix:") :]
        (mount,) = [m for m in agent["volumeMounts"] if is_under(socket, m["mountPath"])]
        assert "hostPath" in volumes[mount["name"]]
        assert is_under(env["SECRETS_AGENT_TOKEN_FILE"], mount["mountPath"])
    else:
        assert listen == "0.0.0.0"
        assert spec.get("hostNetwork") is True or any(
            p.get("hostPort") for p in agent.get("ports", [])
        )
    assert agent["startupProbe"]["exec"]["command"] == HEALTH_CMD
    assert agent["livenessProbe"]["exec"]["command"] == HEALTH_CMD
    assert agent["securityContext"]["runAsNonRoot"] is True
    assert agent["securityContext"]["capabilities"]["drop"] == ["ALL"]


# --------------------------------------------------------------------------
# Host (systemd)
# --------------------------------------------------------------------------

UNIT = "systemd/secrets-agent.service"


def parse_unit(text):
    """{section: {key: [values...]}}; systemd allows repeated keys."""
    sections, current = {}, None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def unit_with_stand_in_binary(tmp_path):
    """The unit, with the agent binary (not installed here) replaced by /bin/true."""
    text = read(UNIT)
    assert f"ExecStart={BINARY} " in text
    copy = tmp_path / "secrets-agent.service"
    copy.write_text(text.replace(f"ExecStart={BINARY} ", "ExecStart=/bin/true ", 1))
    return copy


@pytest.fixture
def systemd_analyze():
    tool = shutil.which("systemd-analyze")
    if not tool:
        pytest.skip("systemd-analyze is not installed")
    return tool


def test_unit_passes_systemd_analyze_verify(systemd_analyze, tmp_path):
    unit = unit_with_stand_in_binary(tmp_path)
    result = run([systemd_analyze, "verify", str(unit)])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "secrets-agent.service" not in output, output


def test_unit_sandbox_exposure_is_low(systemd_analyze, tmp_path):
    unit = unit_with_stand_in_binary(tmp_path)
    result = run([systemd_analyze, "security", "--offline=yes", "--no-pager", str(unit)])
    if result.returncode != 0 and "offline" in result.stderr:
        pytest.skip("this systemd-analyze has no --offline")
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) < 2.5, result.stdout


def test_unit_key_options():
    unit = parse_unit(read(UNIT))
    service = {key: values[-1] for key, values in unit["Service"].items()}

    assert service["ExecStart"].split()[0] == BINARY
    assert "--config" in service["ExecStart"].split()
    assert service["User"] == "secrets-agent"
    assert service["Group"] == "awssmatokenreader"

    # The token's group restriction comes from its directory: 0750, owned by
    # User:Group, created by systemd at start.
    assert service["RuntimeDirectory"] == "secrets-agent"
    assert service["RuntimeDirectoryMode"] == "0750"
    env = dict(v.split("=", 1) for v in unit["Service"]["Environment"])
    assert is_under(env["SECRETS_AGENT_TOKEN_FILE"], "/run/secrets-agent")
    start_pre = " ".join(unit["Service"]["ExecStartPre"])
    assert f"{env['SECRETS_AGENT_TOKEN_FILE']} /run/awssmatoken" in start_pre

    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
        "Restart": "on-failure",
        "KillSignal": "SIGTERM",
    }
    for key, value in expected.items():
        assert service.get(key) == value, key
    assert 0 < int(service["TimeoutStopSec"]) <= 90
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_sysusers_creates_user_and_token_group(tmp_path):
    tool = shutil.which("systemd-sysusers")
    if not tool:
        pytest.skip("systemd-sysusers is not installed")
    (tmp_path / "etc").mkdir()
    result = run([tool, f"--root={tmp_path}", str(ROOT / "systemd/secrets-agent.sysusers")])
    assert result.returncode == 0, result.stderr
    passwd = (tmp_path / "etc/passwd").read_text().splitlines()
    users = {line.split(":")[0]: line for line in passwd}
    groups = {line.split(":")[0] for line in (tmp_path / "etc/group").read_text().splitlines()}
    assert "awssmatokenreader" in groups
    assert users["secrets-agent"].endswith(":/usr/sbin/nologin")


# Keys of the AWS Secrets Manager Agent's config file, plus ours.
TOML_KEYS = {
    "log_level", "log_to_file", "http_port", "region", "ttl_seconds", "cache_size",
    "ssrf_headers", "ssrf_env_variables", "path_prefix", "max_conn",
    "validate_credentials", "ignore_transient_errors", "token_file",
}


def test_example_toml_config_parses():
    config = tomllib.loads(read("systemd/secrets-agent.toml"))
    assert set(config) <= TOML_KEYS, set(config) - TOML_KEYS
    assert config["http_port"] == 2773
    assert isinstance(config["ttl_seconds"], int)


# --------------------------------------------------------------------------
# Lambda (SAM template and example function)
# --------------------------------------------------------------------------


class CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation short-form tags (!Ref, !GetAtt, ...) as long form."""


def _cfn_tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}


CfnLoader.add_multi_constructor("!", _cfn_tag)


@pytest.fixture(scope="module")
def template():
    return yaml.load(read("template.yaml"), Loader=CfnLoader)


def test_template_passes_cfn_lint():
    result = run([venv_tool("cfn-lint"), str(ROOT / "template.yaml")], cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_template_layers_secret_and_function(template):
    resources = template["Resources"]
    layers = {
        name: r["Properties"]
        for name, r in resources.items()
        if r["Type"] == "AWS::Serverless::LayerVersion"
    }
    by_arch = {tuple(p["CompatibleArchitectures"]): (name, p) for name, p in layers.items()}
    assert set(by_arch) == {("x86_64",), ("arm64",)}
    assert by_arch[("x86_64",)][1]["ContentUri"] == "layer/secrets-agent-x86_64.zip"
    assert by_arch[("arm64",)][1]["ContentUri"] == "layer/secrets-agent-arm64.zip"

    (secret_name,) = [
        n for n, r in resources.items() if r["Type"] == "AWS::SecretsManager::Secret"
    ]
    assert "GenerateSecretString" in resources[secret_name]["Properties"]
    assert "SecretString" not in resources[secret_name]["Properties"]

    functions = [
        r["Properties"] for r in resources.values() if r["Type"] == "AWS::Serverless::Function"
    ]
    (function,) = [f for f in functions if f["Runtime"] == "python3.12"]
    (arch,) = function["Architectures"]
    assert function["Layers"] == [{"Ref": by_arch[(arch,)][0]}]
    module, _, func = function["Handler"].partition(".")
    code = ROOT / function["CodeUri"] / f"{module}.py"
    assert f"def {func}(" in code.read_text()
    variables = function["Environment"]["Variables"]
    assert variables["SECRET_ID"] == {"Ref": secret_name}
    # The exec wrapper is where the layer puts it (layer/check.sh: `secrets-agent-exec` at the
    # zip's root, so /opt/secrets-agent-exec), and the placeholder names the template's secret.
    assert variables["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/secrets-agent-exec"
    assert (ROOT / "layer/secrets-agent-exec").stat().st_mode & 0o111
    assert variables["DB_PASSWORD"] == {"Fn::Sub": "awssm:${%s}#password" % secret_name}

    statements = [s for p in function["Policies"] for s in p["Statement"]]
    assert len(statements) == 1
    (statement,) = statements
    assert statement["Effect"] == "Allow"
    assert sorted(statement["Action"]) == [
        "secretsmanager:DescribeSecret",
        "secretsmanager:GetSecretValue",
    ]
    assert statement["Resource"] == {"Ref": secret_name}

    outputs = {o["Value"].get("Ref") for o in template["Outputs"].values()}
    assert set(layers) <= outputs
    functions_out = [r for r in outputs if r and resources[r]["Type"] == "AWS::Serverless::Function"]
    assert len(functions_out) == 2


def test_template_rust_example_function(template):
    """Issue 23: the Rust example beside the Python one, built by SAM with cargo-lambda."""
    resources = template["Resources"]
    (name,) = [
        n for n, r in resources.items()
        if r["Type"] == "AWS::Serverless::Function"
        and r["Properties"]["CodeUri"].rstrip("/") == "examples/lambda-rust"
    ]
    rust = resources[name]
    assert rust["Metadata"] == {"BuildMethod": "rust-cargolambda"}
    function = rust["Properties"]
    assert function["Runtime"] == "provided.al2023"
    assert function["Handler"] == "bootstrap"
    assert function["Architectures"] == ["x86_64"]
    (layer,) = function["Layers"]
    assert resources[layer["Ref"]]["Properties"]["CompatibleArchitectures"] == ["x86_64"]
    # cargo-lambda builds the crate's binary named `bootstrap`, as Handler says.
    cargo = tomllib.loads(read("examples/lambda-rust/Cargo.toml"))
    assert [b["name"] for b in cargo["bin"]] == ["bootstrap"]
    assert "workspace" in cargo, "the example must stay out of the root crate's build"
    (secret_name,) = [
        n for n, r in resources.items() if r["Type"] == "AWS::SecretsManager::Secret"
    ]
    variables = function["Environment"]["Variables"]
    assert variables["SECRET_ID"] == {"Ref": secret_name}
    assert variables["SECRETS_AGENT_PREFETCH"] == {"Ref": secret_name}
    # Exactly what the settings need (docs/lambda.md, "IAM permissions"): prefetch adds
    # BatchGetSecretValue, which takes no resource-level permission.
    statements = [s for p in function["Policies"] for s in p["Statement"]]
    assert [(sorted(s["Action"]) if isinstance(s["Action"], list) else s["Action"], s["Resource"])
            for s in statements] == [
        (["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"], {"Ref": secret_name}),
        ("secretsmanager:BatchGetSecretValue", "*"),
    ]


EXAMPLE = ROOT / "examples/lambda-python/app.py"


def test_example_function_compiles_and_uses_stdlib_only(tmp_path):
    py_compile.compile(str(EXAMPLE), cfile=str(tmp_path / "app.pyc"), doraise=True)
    tree = ast.parse(EXAMPLE.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported <= sys.stdlib_module_names, imported - sys.stdlib_module_names


SECRET_VALUE = '{"username":"demo","password":"Zq7-never-print-me-4b1d"}'
SESSION_TOKEN = "session-token-for-the-test"


class AgentStub(http.server.BaseHTTPRequestHandler):
    """Answers like the agent's /secretsmanager/get, and records requests."""

    requests = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        url = urllib.parse.urlsplit(self.path)
        token = self.headers.get(TOKEN_HEADER)
        self.requests.append((url.path, urllib.parse.parse_qs(url.query), token))
        if token != SESSION_TOKEN:
            self.reply(403, {"__type": "AccessDenied", "message": "bad token"})
        elif url.path != "/secretsmanager/get":
            self.reply(404, {"__type": "NotFound", "message": "no route"})
        else:
            (secret_id,) = urllib.parse.parse_qs(url.query)["secretId"]
            self.reply(200, {
                "ARN": f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:{secret_id}-AbCdEf",
                "Name": secret_id,
                "VersionId": "11111111-2222-3333-4444-555555555555",
                "SecretString": SECRET_VALUE,
                "VersionStages": ["AWSCURRENT"],
                "CreatedDate": "2024-01-01T00:00:00Z",
            }, cache="miss" if len(self.requests) == 1 else "hit")

    def reply(self, status, body, cache=None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if cache:
            self.send_header("X-Cache", cache)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def agent_stub():
    AgentStub.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), AgentStub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_example_function_reads_secret_without_printing_it(agent_stub):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "SECRET_ID": "demo/secret",
        "AWS_SESSION_TOKEN": SESSION_TOKEN,
        "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(agent_stub),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    script = "import json, app; print(json.dumps(app.handler({}, None)))"
    result = run([sys.executable, "-c", script], cwd=EXAMPLE.parent, env=env)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr

    # One read at init (import), one in the handler, both with the token.
    assert [(path, query["secretId"], token) for path, query, token in AgentStub.requests] == [
        ("/secretsmanager/get", ["demo/secret"], SESSION_TOKEN),
        ("/secretsmanager/get", ["demo/secret"], SESSION_TOKEN),
    ]
    # Neither the value nor any part of it reaches the output.
    assert SECRET_VALUE not in output
    assert "Zq7-never-print-me-4b1d" not in output
    assert json.dumps(SECRET_VALUE) not in output

    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["phase"] for line in lines] == ["init", "invoke", "invoke"]
    assert lines[-1]["length"] == len(SECRET_VALUE)
    assert lines[-1]["versionId"] == "11111111-2222-3333-4444-555555555555"
    assert lines[-1]["cache"] == "hit"


# --------------------------------------------------------------------------
# Documentation
# --------------------------------------------------------------------------


def test_readme_links_resolve():
    """The README is the front page: each page it links to exists."""
    links = re.findall(r"\]\(((?:docs|bench)/[^)#]+)", read("README.md"))
    assert links, "the README links to no docs page"
    for link in links:
        assert (ROOT / link).exists(), link


def test_docs_cover_every_platform():
    doc = "\n".join([read("README.md")] + [p.read_text() for p in sorted((ROOT / "docs").glob("*.md"))])
    headings = re.findall(r"^#+\s+(.*)$", doc, flags=re.M)
    for heading in ["ECS/Fargate", "EKS", "Host (systemd)", "Lambda", "Deploy with SAM"]:
        assert heading in headings, heading
    for command in [
        "aws ecs register-task-definition",
        "kubectl apply",
        "systemctl enable",
        "sam build",
        "sam deploy",
    ]:
        assert command in doc, command
    for path in ["ecs/task-definition.json", "k8s/deployment.yaml", "k8s/daemonset.yaml",
                 "systemd/secrets-agent.service", "template.yaml"]:
        assert path in doc, path
        assert (ROOT / path).exists(), path


# ----------------------------------------------------------------------------------------------
# The admission webhook's deployment (k8s/webhook/)


def test_webhook_configuration_fails_closed_and_spares_its_own_namespace():
    config = kind("k8s/webhook/webhook.yaml", "MutatingWebhookConfiguration")
    (hook,) = config["webhooks"]
    assert hook["failurePolicy"] == "Fail"
    assert hook["sideEffects"] == "None"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert 1 <= hook["timeoutSeconds"] <= 10
    (rule,) = hook["rules"]
    assert rule["operations"] == ["CREATE"] and rule["resources"] == ["pods"]
    excluded = [
        e for e in hook["namespaceSelector"]["matchExpressions"]
        if e["key"] == "kubernetes.io/metadata.name"
    ]
    assert excluded[0]["operator"] == "NotIn"
    assert {"secrets-agent", "kube-system"} <= set(excluded[0]["values"])
    assert hook["objectSelector"]["matchExpressions"]
    # The Service, its port and the webhook path are the ones the Deployment serves.
    service = kind("k8s/webhook/webhook.yaml", "Service")
    ref = hook["clientConfig"]["service"]
    assert (ref["name"], ref["namespace"]) == (
        service["metadata"]["name"], service["metadata"]["namespace"]
    )
    assert ref["path"] == "/mutate" and ref["port"] == service["spec"]["ports"][0]["port"]


def test_webhook_deployment_is_restricted_redundant_and_needs_nothing():
    namespace = kind("k8s/webhook/webhook.yaml", "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    deployment = kind("k8s/webhook/webhook.yaml", "Deployment")
    assert deployment["spec"]["replicas"] >= 2
    spec = deployment["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert {c["topologyKey"] for c in spec["topologySpreadConstraints"]} == {
        "topology.kubernetes.io/zone", "kubernetes.io/hostname"
    }
    (container,) = spec["containers"]
    args = container["args"]
    assert args[0] == "webhook" and "--listen=0.0.0.0:8443" in args
    assert f"--image={container['image']}" in args
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] and sc["capabilities"]["drop"] == ["ALL"]
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    pdb = kind("k8s/webhook/webhook.yaml", "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    policy = kind("k8s/webhook/webhook.yaml", "NetworkPolicy")
    assert policy["spec"]["egress"] == [] and "Egress" in policy["spec"]["policyTypes"]


def test_webhook_certificate_is_the_one_the_deployment_mounts_and_the_ca_injected():
    """kubernetes-validate has no cert-manager schemas: these resources are checked here, field
    by field, against cert-manager.io/v1 as cert-manager documents it."""
    docs = k8s_docs("k8s/webhook/cert-manager.yaml")
    assert all(d["apiVersion"] == "cert-manager.io/v1" for d in docs)
    issuers = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Issuer"}
    certs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Certificate"}
    serving = certs["secrets-agent-webhook"]
    assert serving["spec"]["issuerRef"]["name"] in issuers
    ca = certs["secrets-agent-webhook-ca"]
    assert ca["spec"]["isCA"] is True and ca["spec"]["issuerRef"]["name"] in issuers
    assert issuers["secrets-agent-ca"]["spec"]["ca"]["secretName"] == ca["spec"]["secretName"]
    deployment = kind("k8s/webhook/webhook.yaml", "Deployment")
    (volume,) = deployment["spec"]["template"]["spec"]["volumes"]
    assert volume["secret"]["secretName"] == serving["spec"]["secretName"]
    service = kind("k8s/webhook/webhook.yaml", "Service")
    name, ns = service["metadata"]["name"], service["metadata"]["namespace"]
    assert f"{name}.{ns}.svc" in serving["spec"]["dnsNames"]
    config = kind("k8s/webhook/webhook.yaml", "MutatingWebhookConfiguration")
    assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == f"{ns}/secrets-agent-webhook"
    for d in docs:
        assert d["metadata"]["namespace"] == ns
