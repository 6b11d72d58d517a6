"""Starts moto on 127.0.0.1 on free ports, prints "PORT <n>" (plain HTTP), then
"TLS_PORT <n> <ca.pem>" (HTTPS with a certificate of a test CA, tls_moto.py), and runs until its
standard input closes (the test process that started it has exited). One state behind both."""
import logging
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from tls_moto import Moto  # noqa: E402

# One access-log line per AWS call is noise in `make run` and in test output.
logging.getLogger("werkzeug").setLevel(logging.WARNING)
with tempfile.TemporaryDirectory(prefix="moto-tls-") as folder:
    server = Moto(Path(folder))
    print(f"PORT {server.port}", flush=True)
    print(f"TLS_PORT {server.tls_port} {server.ca}", flush=True)
    sys.stdin.read()
    server.stop()
