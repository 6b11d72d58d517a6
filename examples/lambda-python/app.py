"""Example Lambda function that reads a secret through the secrets-agent extension.

The extension listens on localhost:2773 (PARAMETERS_SECRETS_EXTENSION_HTTP_PORT)
before any function code runs, so the secret can be read both during init (at
import time, once per execution environment) and in the handler (served from
the extension's cache until its TTL expires).

Every request carries the function's AWS_SESSION_TOKEN in the
X-Aws-Parameters-Secrets-Token header: that is the token the extension expects
in Lambda. Standard library only (urllib), no dependencies to package.

With AWS_LAMBDA_EXEC_WRAPPER=/opt/secrets-agent-exec (template.yaml sets it),
DB_PASSWORD holds `awssm:<secret>#password` in the function's configuration and
the password itself in the process: the layer's wrapper resolved it before the
runtime started.

The secret value itself is never printed or returned: only its length and
version id are, which is enough to see that the read worked.
"""

import json
import os
import urllib.parse
import urllib.request

AGENT_PORT = os.environ.get("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", "2773")
AGENT_URL = f"http://localhost:{AGENT_PORT}"
SECRET_ID = os.environ["SECRET_ID"]


def get_secret(secret_id):
    """Return (GetSecretValue response dict, X-Cache header) for secret_id."""
    query = urllib.parse.urlencode({"secretId": secret_id})
    request = urllib.request.Request(
        f"{AGENT_URL}/secretsmanager/get?{query}",
        headers={"X-Aws-Parameters-Secrets-Token": os.environ["AWS_SESSION_TOKEN"]},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response), response.headers.get("X-Cache")


def describe(secret, cache):
    """What may be logged about a secret: never its value."""
    value = secret.get("SecretString") or secret.get("SecretBinary") or ""
    return {
        "name": secret.get("Name"),
        "versionId": secret.get("VersionId"),
        "length": len(value),
        "cache": cache,
    }


# Init phase: the extension is already listening.
_secret, _cache = get_secret(SECRET_ID)
print(json.dumps({"phase": "init", **describe(_secret, _cache)}))
del _secret


def handler(event, context):
    secret, cache = get_secret(SECRET_ID)
    summary = {"phase": "invoke", **describe(secret, cache)}
    # Resolved by the exec wrapper: a placeholder left here would mean it did not run.
    db_password = os.environ.get("DB_PASSWORD", "")
    summary["dbPasswordFromEnv"] = {
        "length": len(db_password),
        "resolved": not db_password.startswith("awssm:"),
    }
    print(json.dumps(summary))
    return summary
