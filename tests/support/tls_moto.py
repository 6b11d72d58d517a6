"""moto behind TLS, as AWS is: a test CA (written to a folder, to be trusted the way a user adds a
corporate CA: SSL_CERT_FILE or AWS_CA_BUNDLE) issues a server certificate for 127.0.0.1 and
localhost, and one moto serves plain HTTP and HTTPS on two ports with one state (moto's backends
are process-wide), so a test creates its secrets over either and reads them over TLS.

Used by tests/support/moto_server.py (the Rust tests) and tests/containers/conftest.py."""

import datetime
import ipaddress
import threading

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

CA_NAME = "secrets-agent test CA (moto)"


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def write_test_ca(folder):
    """Writes ca.pem (the CA to trust), server.pem and server.key (127.0.0.1, localhost) into
    `folder`; returns their paths."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(CA_NAME))
        .issuer_name(_name(CA_NAME))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(_name("moto"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            ]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = (folder / "ca.pem", folder / "server.pem", folder / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


class Moto:
    """moto on 127.0.0.1: `url` (plain HTTP), `tls_url` (HTTPS, certificate from `ca`)."""

    def __init__(self, folder):
        self.ca, cert, key = write_test_ca(folder)
        app = DomainDispatcherApplication(create_backend_app)
        self._servers = [
            make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler),
            make_server(
                "127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler,
                ssl_context=(str(cert), str(key)),
            ),
        ]
        for s in self._servers:
            threading.Thread(target=s.serve_forever, daemon=True).start()
        self.port = self._servers[0].server_address[1]
        self.tls_port = self._servers[1].server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.tls_url = f"https://127.0.0.1:{self.tls_port}"

    def stop(self):
        for s in self._servers:
            s.shutdown()
