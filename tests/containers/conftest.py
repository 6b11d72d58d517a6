"""The container tests' fixtures: one moto (with the shared secret) over plain HTTP and over
TLS, and one application image for the whole run."""

import shutil
import sys

import boto3
import pytest

from pods import IMAGE, ROOT, RUN_ID, SECRET_ID, SECRET_VALUE, podman

sys.path.insert(0, str(ROOT / "tests" / "support"))
from tls_moto import Moto  # noqa: E402


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    """moto with one state behind `url` (HTTP) and `tls_url` (HTTPS, certificate from the test
    CA in `ca`)."""
    server = Moto(tmp_path_factory.mktemp("moto-tls"))
    boto3.client(
        "secretsmanager",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_secret(Name=SECRET_ID, SecretString=SECRET_VALUE)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto(moto_server):
    """moto's plain-HTTP URL, for the tests of something other than the path to AWS."""
    return moto_server.url


@pytest.fixture(scope="session")
def app_image(tmp_path_factory):
    """The application: FROM scratch with Debian's static busybox (sh, cat, wget)."""
    assert podman("image", "exists", IMAGE, check=False).returncode == 0, (
        f"{IMAGE} is not built: run make image"
    )
    ctx = tmp_path_factory.mktemp("app")
    shutil.copy("/bin/busybox", ctx / "busybox")
    (ctx / "Containerfile").write_text(
        "FROM scratch\nCOPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
    )
    tag = f"localhost/{RUN_ID}-app:latest"
    podman("build", "-q", "--layers=false", "-t", tag, str(ctx))
    yield tag
    podman("rmi", "-f", tag, check=False)

