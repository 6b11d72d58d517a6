"""The container tests' fixtures: one moto (with the shared secret) and one application image
for the whole run."""

import shutil

import boto3
import pytest
from moto.server import ThreadedMotoServer

from pods import IMAGE, RUN_ID, SECRET_ID, SECRET_VALUE, podman


@pytest.fixture(scope="session")
def moto():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{server.get_host_and_port()[1]}"
    boto3.client(
        "secretsmanager",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_secret(Name=SECRET_ID, SecretString=SECRET_VALUE)
    yield url
    server.stop()


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

