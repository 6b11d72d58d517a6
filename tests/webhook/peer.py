"""A `secrets-agent webhook` process over real HTTPS for the tests: a test CA issuing its
certificate (replaced on disk as cert-manager does), and AdmissionReviews sent to it with the
returned patches applied by a JSON Patch library. Used by tests/webhook and by the pods in
tests/containers/test_webhook_pods.py."""

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
import time
from pathlib import Path

import jsonpatch
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[2]
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
    def __init__(self, tmp_path, image=IMAGE):
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
                "--image", image, "--namespace", "secrets-agent",
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
