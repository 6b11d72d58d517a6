"""`secrets-agent webhook` over real HTTPS: the AdmissionReview fixtures in cases.yaml, each
returned patch applied with a JSON Patch library and the patched pod checked with
`kubernetes-validate --strict`, a second review of the patched pod (no patch: idempotent),
malformed bodies, the metrics, and the certificate replaced on disk while it runs.

Run by `make webhook-test` (part of `make test`) with the debug binary `cargo test` built
(or SECRETS_AGENT_BIN). The webhook fetches no secret, so no AWS peer is needed here; the pods
it patches run against moto in tests/containers/test_webhook_pods.py.
"""

import base64
import copy
import datetime
import hashlib
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import jsonpatch
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[2]
CASES = yaml.safe_load((Path(__file__).parent / "cases.yaml").read_text())
IMAGE = "registry.example.com/secrets-agent:0.1.0"


def agent_binary():
    if os.environ.get("SECRETS_AGENT_BIN"):
        return Path(os.environ["SECRETS_AGENT_BIN"])
    built = ROOT / "target" / "debug" / "secrets-agent"
    assert built.exists(), "no target/debug/secrets-agent: run cargo test first (make test does)"
    return built


# ----------------------------------------------------------------------------------------------
# A test CA and certificates signed by it


def new_key():
    return ec.generate_private_key(ec.SECP256R1())


def pem_key(key):
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def certificate(subject, key, issuer=None, issuer_key=None, ca=False, dns=()):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer or subject)])
        )
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if dns:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False
        )
    return builder.sign(issuer_key or key, hashes.SHA256())


class CA:
    def __init__(self, folder):
        self.key = new_key()
        self.cert = certificate("secrets-agent test CA", self.key, ca=True)
        self.file = folder / "ca.crt"
        self.file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, cert_file, key_file, name="localhost"):
        """Writes a server certificate for `name` and its key as cert-manager does: each file
        replaced whole (a rename), never written in place."""
        key = new_key()
        cert = certificate(
            name, key, issuer="secrets-agent test CA", issuer_key=self.key, dns=[name]
        )
        for path, data in (
            (key_file, pem_key(key)),
            (cert_file, cert.public_bytes(serialization.Encoding.PEM)),
        ):
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Webhook:
    def __init__(self, tmp_path):
        self.dir = tmp_path
        self.ca = CA(tmp_path)
        self.cert_file = tmp_path / "tls.crt"
        self.key_file = tmp_path / "tls.key"
        self.fingerprint = self.ca.issue(self.cert_file, self.key_file)
        self.port = free_port()
        self.log = open(tmp_path / "webhook.log", "w+")
        self.proc = subprocess.Popen(
            [
                str(agent_binary()), "webhook",
                "--cert", str(self.cert_file), "--key", str(self.key_file),
                "--listen", f"127.0.0.1:{self.port}",
                "--image", IMAGE, "--namespace", "secrets-agent",
            ],
            stdout=self.log, stderr=subprocess.STDOUT,
            env={"PATH": os.environ["PATH"], "SECRETS_AGENT_LOG_LEVEL": "debug"},
        )
        self.context = ssl.create_default_context(cafile=str(self.ca.file))
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.get("/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert self.proc.poll() is None, self.logs()
            assert time.monotonic() < deadline, "webhook did not answer /healthz"
            time.sleep(0.1)

    def logs(self):
        if not self.log.closed:
            self.log.flush()
        return (self.dir / "webhook.log").read_text()

    def connection(self):
        return http.client.HTTPSConnection(
            "localhost", self.port, context=self.context, timeout=10
        )

    def get(self, path):
        c = self.connection()
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode()

    def post(self, body, path="/mutate"):
        c = self.connection()
        c.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, r.read().decode()

    def peer_fingerprint(self):
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as raw:
            with self.context.wrap_socket(raw, server_hostname="localhost") as tls:
                return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=15)
        self.log.close()
        return code


@pytest.fixture(scope="module")
def webhook(tmp_path_factory):
    w = Webhook(tmp_path_factory.mktemp("webhook"))
    yield w
    if w.proc.poll() is None:
        w.stop()


# ----------------------------------------------------------------------------------------------
# Reviews


def admission_review(obj, namespace="default", kind=None, operation="CREATE", uid="uid-1"):
    obj = copy.deepcopy(obj)
    obj.setdefault("apiVersion", "v1")
    obj.setdefault("kind", "Pod")
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": kind or {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "operation": operation,
            "namespace": namespace,
            "object": obj,
        },
    }


def send(webhook, review):
    status, body = webhook.post(json.dumps(review))
    assert status == 200, body
    answer = json.loads(body)
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["kind"] == "AdmissionReview"
    assert answer["response"]["uid"] == review["request"]["uid"]
    return answer["response"]


def patched(pod, response):
    """The pod with the response's patch applied by a JSON Patch library."""
    if "patch" not in response:
        return pod
    assert response["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(response["patch"]))
    return jsonpatch.JsonPatch(ops).apply(copy.deepcopy(pod))


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
        if expect == "denied":
            assert response["allowed"] is False, case["name"]
            assert "patch" not in response
            assert case["message"] in response["status"]["message"], response["status"]
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
    for name, c in by_name(before["spec"].get("initContainers")).items():
        assert init[name] == c
    for c in (init[n] for n in ours):
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
        if case["name"] == "sidecar":
            assert agent["resources"]["limits"]["memory"] == "64Mi"
            assert {"name": "AWS_REGION", "value": "eu-west-1"} in agent["env"]
            # The pod's user runs what we add.
            assert agent["securityContext"]["runAsUser"] == 1000
    else:
        assert "secrets-agent" not in init
    if "env" in modes:
        assert init["secrets-agent-install"]["command"][1:] == ["install", "/run/secrets-agent-bin"]
        for name, app in apps.items():
            original = original_apps[name]
            head = ["/run/secrets-agent-bin/secrets-agent", "exec"]
            if case["pod"]["metadata"]["annotations"].get("secrets-agent.io/ignore-missing-secrets") == "true":
                head.append("--ignore-missing")
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
