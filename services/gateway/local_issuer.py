"""The local stack's token issuer: an ES256 key pair under `.stack/gateway/` and tokens signed with it.

`ensure_keys(dir)` creates the key pair once (private key mode 0600) and writes the public half as
`jwks.json`, the file the gateway verifies against (`GATEWAY_JWKS_FILE`); later calls reuse it.
`mint_token` signs the claims the gateway expects. For development and tests only: in a cluster
the operator's identity provider issues tokens (docs/gateway.md).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

REPO_ROOT = Path(__file__).resolve().parents[2]
PRIVATE_KEY_FILE = "signing-key.pem"
JWKS_FILE = "jwks.json"
ALGORITHM = "ES256"


def default_keys_dir() -> Path:
    """`$CONTRACT_SYNC_STACK_DIR/gateway`, else `<repo>/.stack/gateway` (the local stack's directory)."""
    base = os.environ.get("CONTRACT_SYNC_STACK_DIR") or str(REPO_ROOT / ".stack")
    return Path(base).expanduser().resolve() / "gateway"


@dataclass(frozen=True)
class LocalKeys:
    private_key: ec.EllipticCurvePrivateKey
    kid: str
    jwks_path: Path


def _jwk_of(public_key: ec.EllipticCurvePublicKey, kid: str) -> dict[str, object]:
    jwk: dict[str, object] = json.loads(ECAlgorithm.to_jwk(public_key))
    jwk.update({"kid": kid, "alg": ALGORITHM, "use": "sig"})
    return jwk


def thumbprint(public_key: ec.EllipticCurvePublicKey) -> str:
    """The RFC 7638 JWK thumbprint (SHA-256, base64url): a stable key id."""
    jwk = ECAlgorithm.to_jwk(public_key, as_dict=True)
    canonical = json.dumps(
        {k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True
    )
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def ensure_keys(directory: Path) -> LocalKeys:
    """The local key pair in `directory`, created on first use; `jwks.json` always matches it."""
    directory.mkdir(parents=True, exist_ok=True)
    key_path = directory / PRIVATE_KEY_FILE
    if not key_path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(pem)
    loaded = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path} is not an EC private key")
    public = loaded.public_key()
    kid = thumbprint(public)
    jwks_path = directory / JWKS_FILE
    document = {"keys": [_jwk_of(public, kid)]}
    text = json.dumps(document, indent=2) + "\n"
    if not jwks_path.exists() or jwks_path.read_text() != text:
        jwks_path.write_text(text)
    return LocalKeys(loaded, kid, jwks_path)


def mint_token(
    keys: LocalKeys,
    *,
    tenant_id: str,
    subject: str,
    scopes: list[str],
    issuer: str,
    audience: str,
    ttl_seconds: int,
    tenant_claim: str = "tenant_id",
    client_scope: list[str] | None = None,
    now: float | None = None,
) -> str:
    """A compact ES256 JWS with `iss`, `aud`, `sub`, `iat`, `nbf`, `exp`, `jti`, the tenant claim and
    `scope` (space-separated). `client_scope` (optional) is carried as the `client_scope` claim."""
    issued = int(now if now is not None else time.time())
    claims: dict[str, object] = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl_seconds,
        "jti": str(uuid.uuid4()),
        tenant_claim: tenant_id,
        "scope": " ".join(scopes),
    }
    if client_scope:
        claims["client_scope"] = client_scope
    return jwt.encode(claims, keys.private_key, algorithm=ALGORITHM, headers={"kid": keys.kid})
