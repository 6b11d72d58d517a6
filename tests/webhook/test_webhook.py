"""`secrets-agent webhook` over real HTTPS: the AdmissionReview fixtures in cases.yaml, each
returned patch applied with a JSON Patch library and the patched pod checked with
`kubernetes-validate --strict`, a second review of the patched pod (no patch: idempotent),
malformed bodies, the metrics, and the certificate replaced on disk while it runs.

Run by `make webhook-test` (part of `make test`) with the debug binary `cargo test` built
(or SECRETS_AGENT_BIN). The webhook fetches no secret, so no AWS peer is needed here; the pods
it patches run against moto in tests/containers/test_webhook_pods.py.
"""

import copy
import json
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from peer import CA, IMAGE, Webhook, admission_review, agent_binary, patched, send

CASES = yaml.safe_load((Path(__file__).parent / "cases.yaml").read_text())


@pytest.fixture(scope="module")
def webhook(tmp_path_factory):
    w = Webhook(tmp_path_factory.mktemp("webhook"))
    yield w
    if w.proc.poll() is None:
        w.stop()


# ----------------------------------------------------------------------------------------------
# Reviews


def validate_strict(pods, folder):
    from kubernetes_validate.utils import latest_version

    path = folder / "pods.yaml"
    path.write_text(yaml.safe_dump_all(pods))
    result = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "-k", latest_version(), "--strict", str(path)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (result.stdout + result.stderr).count("passed") == len(pods)


def by_name(items):
    return {c["name"]: c for c in items or []}


def full_pod(case):
    pod = copy.deepcopy(case["pod"])
    pod.setdefault("apiVersion", "v1")
    pod.setdefault("kind", "Pod")
    return pod


def test_every_case_answers_as_expected_and_patched_pods_are_valid(webhook, tmp_path):
    valid = []
    for case in CASES:
        pod = full_pod(case)
        review = admission_review(
            pod, namespace=case.get("namespace", "default"), kind=case.get("kind"),
            uid=f"uid-{case['name']}",
        )
        response = send(webhook, review)
        expect = case["expect"]
        warnings = response.get("warnings", [])
        # The API server may truncate a warning over 256 characters.
        assert all(len(w) <= 256 for w in warnings), warnings
        for want in case.get("warnings", []):
            assert any(want in w for w in warnings), (case["name"], want, warnings)
        if not case.get("warnings"):
            assert warnings == [], (case["name"], warnings)
        if expect == "denied":
            assert response["allowed"] is False, case["name"]
            assert "patch" not in response
            messages = case["message"] if isinstance(case["message"], list) else [case["message"]]
            for m in messages:
                assert m in response["status"]["message"], (case["name"], response["status"])
            continue
        assert response["allowed"] is True, (case["name"], response)
        if expect == "unchanged":
            assert "patch" not in response, case["name"]
            continue
        assert "patch" in response, case["name"]
        after = patched(pod, response)
        valid.append(after)
        assert after["metadata"]["annotations"]["secrets-agent.io/status"] == "injected"
        # A second review of the patched pod changes nothing.
        again = send(webhook, admission_review(after, uid=f"again-{case['name']}"))
        assert again["allowed"] is True and "patch" not in again, case["name"]
        check_modes(case, pod, after)
    validate_strict(valid, tmp_path)
    assert len(valid) == sum(1 for c in CASES if c["expect"] == "mutated")


def check_modes(case, before, after):
    """What each mode adds, seen in the patched pod."""
    modes = set(case["modes"])
    spec = after["spec"]
    init = by_name(spec.get("initContainers"))
    apps = by_name(spec["containers"])
    original_apps = by_name(before["spec"]["containers"])
    assert set(apps) == set(original_apps)
    volumes = by_name(spec.get("volumes"))
    ours = [n for n in init if n.startswith("secrets-agent")]
    # Ours come first, the pod's own init containers after them, unchanged.
    assert list(init)[: len(ours)] == ours
    # Env mode wraps the containers that reach placeholders (`wrapped`, default all of them).
    wrapped = set(case.get("wrapped", original_apps)) if "env" in modes else set()
    head = ["/run/secrets-agent-bin/secrets-agent", "exec"]
    if case["pod"]["metadata"]["annotations"].get("secrets-agent.io/ignore-missing-secrets") == "true":
        head.append("--ignore-missing")
    if "secrets-agent.io/on-rotation" in case["pod"]["metadata"]["annotations"]:
        head.append("--on-rotation=" + case["pod"]["metadata"]["annotations"]["secrets-agent.io/on-rotation"])
    if "secrets-agent.io/aws-region" in case["pod"]["metadata"]["annotations"]:
        head.append("--region=" + case["pod"]["metadata"]["annotations"]["secrets-agent.io/aws-region"])
    for name, c in by_name(before["spec"].get("initContainers")).items():
        # The pod's own init containers keep what they run (under exec when they reach
        # placeholders) and see what the app sees.
        command = head + ["--"] + c["command"] if name in wrapped else c["command"]
        assert (init[name]["image"], init[name]["command"]) == (c["image"], command)
        mounts = by_name(init[name].get("volumeMounts"))
        assert ("secrets-agent-token" in mounts) == ("sidecar" in modes)
        assert ("secrets-agent-files" in mounts) == ("files" in modes)
    for key, value in case.get("patched_annotations", {}).items():
        assert after["metadata"]["annotations"].get(key) == value, (case["name"], key)
    for c in (init[n] for n in ours):
        if "ours_run_as" in case:
            sc = c["securityContext"]
            assert [sc.get("runAsUser"), sc.get("runAsGroup")] == case["ours_run_as"], c["name"]
        assert c["image"] == IMAGE
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["runAsNonRoot"] is True
        assert sc["capabilities"]["drop"] == ["ALL"]
    if "sidecar" in modes:
        agent = init["secrets-agent"]
        assert agent["restartPolicy"] == "Always"
        assert agent["startupProbe"]["exec"]["command"][-1] == "health"
        assert volumes["secrets-agent-token"]["emptyDir"]["medium"] == "Memory"
        for app in apps.values():
            env = {e["name"]: e.get("value") for e in app["env"]}
            assert env["SECRETS_AGENT_TOKEN_FILE"] == "/run/secrets-agent/token"
            mounts = by_name(app["volumeMounts"])
            assert mounts["secrets-agent-token"]["readOnly"] is True
        if case["name"] == "irsa":
            # The identity the EKS webhook gave the app is the one ours run with.
            app_env = by_name(original_apps["app"]["env"])
            for c in (init[n] for n in ours):
                env = by_name(c["env"])
                assert env["AWS_ROLE_ARN"] == app_env["AWS_ROLE_ARN"]
                assert env["AWS_WEB_IDENTITY_TOKEN_FILE"] == app_env["AWS_WEB_IDENTITY_TOKEN_FILE"]
                assert "aws-iam-token" in by_name(c["volumeMounts"])
                assert c["securityContext"]["runAsUser"] == 1000
                assert c["securityContext"]["runAsGroup"] == 1000
        if case["name"] == "sidecar":
            assert agent["resources"]["limits"]["memory"] == "64Mi"
            assert {"name": "AWS_REGION", "value": "eu-west-1"} in agent["env"]
            # The pod's user runs what we add.
            assert agent["securityContext"]["runAsUser"] == 1000
    else:
        assert "secrets-agent" not in init
    if wrapped:
        assert init["secrets-agent-install"]["command"][1:] == ["install", "/run/secrets-agent-bin"]
    else:
        assert "secrets-agent-install" not in init
    if "env" in modes:
        for name, app in apps.items():
            original = original_apps[name]
            if name not in wrapped:
                assert app.get("command") == original.get("command"), name
                assert "secrets-agent-bin" not in by_name(app.get("volumeMounts")), name
                continue
            assert app["command"] == head + ["--"] + original["command"], app["command"]
            assert app.get("args") == original.get("args")
            # How the environment is fed is left as it was: exec resolves what arrives.
            assert app.get("env", []) == original.get("env", []) or "sidecar" in modes
            assert app.get("envFrom") == original.get("envFrom")
            if "livenessProbe" in original:
                assert app["livenessProbe"]["exec"]["command"] == head + ["--"] + original["livenessProbe"]["exec"]["command"]
    else:
        for name, app in apps.items():
            assert app.get("command") == original_apps[name].get("command")
    if "files" in modes:
        files_path = case["pod"]["metadata"]["annotations"].get(
            "secrets-agent.io/files-path", "/run/secrets/app"
        )
        render = init["secrets-agent-render"]
        assert render["command"][1:3] == ["render", "--once"]
        assert volumes["secrets-agent-files"]["emptyDir"]["medium"] == "Memory"
        assert "downwardAPI" in volumes["secrets-agent-podinfo"]
        for app in apps.values():
            mount = by_name(app["volumeMounts"])["secrets-agent-files"]
            assert mount == {"name": "secrets-agent-files", "mountPath": files_path, "readOnly": True}
        watcher = init.get("secrets-agent-files")
        if "sidecar" in modes:
            assert watcher["restartPolicy"] == "Always"
            assert "--once" not in watcher["command"]
        else:
            assert watcher is None


def test_other_operations_and_objects_are_allowed_unchanged(webhook):
    pod = full_pod(CASES[0])
    for operation in ("UPDATE", "DELETE", "CONNECT"):
        response = send(webhook, admission_review(pod, operation=operation))
        assert response["allowed"] is True and "patch" not in response


@pytest.mark.parametrize(
    "body, says",
    [
        (b"{not json", "not JSON"),
        (b'{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x"}}',
         "admissionReviewVersions"),
        (b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}', "no request object"),
        (b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":7}}', "request.uid"),
    ],
)
def test_malformed_reviews_get_400_saying_what_is_wrong(webhook, body, says):
    status, text = webhook.post(body)
    assert status == 400
    assert says in text


def test_an_oversized_review_gets_413_not_a_dropped_connection(webhook):
    """Issue 30, item 9: a 5 MiB AdmissionReview (over the 4 MiB the webhook reads) is answered
    413 with the reason, over the same TLS connection, which then still serves."""
    pod = full_pod(CASES[0])
    pod["metadata"]["annotations"]["filler"] = "x" * (5 << 20)
    body = json.dumps(admission_review(pod)).encode()
    c = webhook.connection()
    c.request("POST", "/mutate", body=body, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    text = r.read().decode()
    assert r.status == 413, text
    assert "larger than 4194304 bytes" in text
    c.request("GET", "/healthz")
    assert c.getresponse().read() == b"ok\n"


def test_routes_and_metrics(webhook):
    assert webhook.get("/healthz") == (200, "ok\n")
    status, text = webhook.get("/nope")
    assert status == 404 and "POST /mutate" in text
    status, text = webhook.get("/mutate")
    assert status == 405 and "POST /mutate" in text
    status, metrics = webhook.get("/metrics")
    assert status == 200
    lines = dict(
        line.rsplit(" ", 1) for line in metrics.splitlines() if line and not line.startswith("#")
    )
    total = sum(
        int(v) for k, v in lines.items() if k.startswith("secrets_agent_webhook_admissions_total")
    )
    assert int(lines["secrets_agent_webhook_admission_duration_seconds_count"]) == total
    assert int(lines['secrets_agent_webhook_admission_duration_seconds_bucket{le="+Inf"}']) == total
    # Earlier tests in this module sent denied, mutated and malformed reviews.
    assert 'secrets_agent_webhook_admissions_total{result="mutated",mode="sidecar,env,files"}' in lines
    assert any('result="denied"' in k for k in lines)
    assert any('result="invalid"' in k for k in lines)


def test_a_client_that_trusts_another_ca_is_refused(webhook, tmp_path):
    other = CA(tmp_path)
    context = ssl.create_default_context(cafile=str(other.file))
    with pytest.raises(ssl.SSLCertVerificationError):
        with socket.create_connection(("127.0.0.1", webhook.port), timeout=10) as raw:
            context.wrap_socket(raw, server_hostname="localhost")


def test_a_replaced_certificate_is_served_on_the_next_connection(webhook):
    assert webhook.peer_fingerprint() == webhook.fingerprint
    renewed = webhook.ca.issue(webhook.cert_file, webhook.key_file)
    assert renewed != webhook.fingerprint
    assert webhook.peer_fingerprint() == renewed
    # A half-written pair (a key that is not PEM) keeps the last good certificate.
    webhook.key_file.write_text("not a key\n")
    assert webhook.peer_fingerprint() == renewed
    assert "keeping the previous certificate" in webhook.logs()
    webhook.fingerprint = webhook.ca.issue(webhook.cert_file, webhook.key_file)
    assert webhook.peer_fingerprint() == webhook.fingerprint


def test_bad_settings_fail_at_start_with_a_clear_message(tmp_path):
    binary = str(agent_binary())
    missing = subprocess.run(
        [binary, "webhook", "--cert", str(tmp_path / "no.crt"), "--key", str(tmp_path / "no.key")],
        capture_output=True, text=True, timeout=30,
    )
    assert missing.returncode == 64
    assert "no.crt" in missing.stderr and "--cert and --key" in missing.stderr
    ca = CA(tmp_path)
    ca.issue(tmp_path / "a.crt", tmp_path / "a.key")
    ca.issue(tmp_path / "b.crt", tmp_path / "b.key")
    mismatch = subprocess.run(
        [binary, "webhook", "--cert", str(tmp_path / "a.crt"), "--key", str(tmp_path / "b.key")],
        capture_output=True, text=True, timeout=30,
    )
    assert mismatch.returncode == 64 and "do not belong together" in mismatch.stderr
    listen = subprocess.run(
        [binary, "webhook", "--cert", str(tmp_path / "a.crt"), "--key", str(tmp_path / "a.key"),
         "--listen", "localhost"],
        capture_output=True, text=True, timeout=30,
    )
    assert listen.returncode == 64 and "is not ADDR:PORT" in listen.stderr


def test_sigterm_stops_the_webhook_cleanly(tmp_path):
    w = Webhook(tmp_path)
    assert w.stop() == 0
    assert "webhook stopped" in w.logs()


def test_install_copies_the_binary(tmp_path):
    result = subprocess.run([str(agent_binary()), "install", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    copy_ = tmp_path / "secrets-agent"
    assert copy_.stat().st_mode & 0o777 == 0o755
    assert subprocess.run([str(copy_), "--version"], capture_output=True).returncode == 0
    missing = subprocess.run([str(agent_binary()), "install", str(tmp_path / "none")], capture_output=True, text=True)
    assert missing.returncode == 64 and "is not a folder" in missing.stderr
