"""The secured local stack's Kafka identities: one SCRAM-SHA-512 user per service principal of
`services.common.kafka_acls` plus the `admin` super user, their passwords, and the client settings
`stack env` prints for them.

    <dir>/kafka/credentials.json   {user name: password} (0600), generated once per stack directory

Guarantees: passwords are random (`secrets.token_urlsafe`, 32 bytes) and stable for the directory
(the broker's SCRAM credentials are created from them when its storage is formatted); the file is
never world-readable. `client_env` is pure.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from devtools.stack.kafka import ADMIN_USER, SCRAM_MECHANISM
from services.common.kafka_acls import PRINCIPAL_PREFIX, SERVICES

CREDENTIALS_FILE = "credentials.json"


def service_user(service: str) -> str:
    """The SCRAM user name of a service: its ACL principal without `User:`."""
    return f"{PRINCIPAL_PREFIX}{service}"


def _new_password() -> str:
    # token_urlsafe's alphabet is [A-Za-z0-9_-]: safe in JAAS strings and `--add-scram` arguments
    return secrets.token_urlsafe(32)


def ensure_credentials(path: Path) -> dict[str, str]:
    """{user: password} for `admin` and every service user, read from `path` or created there (0600);
    users missing from an existing file are added (their credential then needs a new format)."""
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        stored = {}
    wanted = [ADMIN_USER, *(service_user(service) for service in SERVICES)]
    credentials = {user: str(stored.get(user) or _new_password()) for user in wanted}
    if credentials != stored:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(credentials, handle, indent=2, sort_keys=True)
        tmp.replace(path)
    return credentials


def client_env(credentials: dict[str, str], cafile: Path) -> dict[str, str]:
    """The Kafka client settings of a secured stack (pure): `KAFKA_*` for the admin principal (tools,
    `topics ensure`, tests) and `<SERVICE>_KAFKA_SASL_USERNAME` / `_PASSWORD` per service, which the
    local pipeline hands to each service as its `KAFKA_SASL_*`."""
    env = {
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": SCRAM_MECHANISM,
        "KAFKA_SSL_CAFILE": str(cafile),
        "KAFKA_SASL_USERNAME": ADMIN_USER,
        "KAFKA_SASL_PASSWORD": credentials[ADMIN_USER],
    }
    for service in SERVICES:
        user = service_user(service)
        env[f"{service.upper()}_KAFKA_SASL_USERNAME"] = user
        env[f"{service.upper()}_KAFKA_SASL_PASSWORD"] = credentials[user]
    return env
