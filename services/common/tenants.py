"""The tenant registry every service can read: the ids of the poller's tenants TOML file.

The poller's tenants file (services/poller/tenants.py) names every tenant the deployment serves.
The mapper and the writer read the same file through `load_tenant_ids` to refuse input for a
tenant nobody configured (docs/design.md#ground-rules: "unknown tenant" goes to the dead-letter topic).

Guarantees:
- Only each `[[tenants]]` table's `id` is read: no site, no credential reference, no secret
  (secrets are never resolved here; a file's other keys are not validated either - that is the
  poller's job, and it refuses to start on an invalid file).
- Deterministic and pure apart from reading the file: the same file gives the same set.
- An unreadable file, invalid TOML, a missing/invalid/duplicate id or an empty list raises
  `TenantRegistryError` (a service must not start with a registry it cannot trust); the message
  names the file and the problem, never a secret (none is read).
- `tenant_registry(None, ...)` means "checks off": it returns None and logs one WARNING.
"""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from schemas.envelope import TENANT_ID_PATTERN

log = logging.getLogger(__name__)

_TENANT_RE = re.compile(TENANT_ID_PATTERN)


class TenantRegistryError(ValueError):
    """The tenants file cannot give a trustworthy set of tenant ids."""


def tenant_ids_of(document: Mapping[str, Any]) -> frozenset[str]:
    """The tenant ids of a parsed tenants TOML document (pure); raises `TenantRegistryError`."""
    tenants = document.get("tenants", [])
    if not isinstance(tenants, list):
        raise TenantRegistryError("[[tenants]] must be an array of tables")
    ids: set[str] = set()
    for index, tenant in enumerate(tenants):
        if not isinstance(tenant, Mapping):
            raise TenantRegistryError(f"tenants[{index}] is not a table")
        tenant_id = tenant.get("id")
        if not isinstance(tenant_id, str) or not _TENANT_RE.match(tenant_id):
            raise TenantRegistryError(f"tenants[{index}].id is missing or not a lower-case slug")
        if tenant_id in ids:
            raise TenantRegistryError(f"tenant id {tenant_id!r} appears twice")
        ids.add(tenant_id)
    if not ids:
        raise TenantRegistryError("no [[tenants]] configured")
    return frozenset(ids)


def read_tenants_document(path: Path | str, error: type[ValueError] = TenantRegistryError) -> dict[str, Any]:
    """The parsed tenants TOML file at `path` (shared with the poller's full loader); an
    unreadable file or invalid TOML raises `error` naming the file, never its content."""
    file = Path(path)
    try:
        return tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as failure:
        raise error(f"cannot read tenants file {file}: {failure.strerror}") from None
    except tomllib.TOMLDecodeError as failure:
        raise error(f"tenants file {file} is not valid TOML: {failure}") from None


def load_tenant_ids(path: Path | str) -> frozenset[str]:
    """The tenant ids of the tenants TOML file at `path`; raises `TenantRegistryError`."""
    document = read_tenants_document(path)
    try:
        return tenant_ids_of(document)
    except TenantRegistryError as error:
        raise TenantRegistryError(f"tenants file {path}: {error}") from None


def tenant_registry(path: Path | str | None, service: str) -> frozenset[str] | None:
    """The configured tenant ids, or None (checks off, one WARNING logged) when `path` is None.

    Raises `TenantRegistryError` when a file is named but unusable."""
    if path is None:
        log.warning(
            "%s: no tenants file configured: input for unknown tenants is not refused "
            "(set %s_TENANTS_FILE to the poller's tenants TOML file)",
            service,
            service.upper(),
        )
        return None
    ids = load_tenant_ids(path)
    log.info(
        "%s: tenant checks on: %d tenants configured", service, len(ids), extra={"tenants_file": str(path)}
    )
    return ids
