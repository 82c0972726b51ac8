"""TokenVerifier against in-memory keys: what is accepted and every reason for a 401."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from services.gateway.auth import (
    FileKeySource,
    StaticKeySource,
    TokenVerifier,
    Unauthorized,
    VerifierOptions,
    bearer_token,
)
from services.gateway.local_issuer import ensure_keys, mint_token

OPTIONS = VerifierOptions(issuer="iss", audience="aud")


def _claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {"iss": "iss", "aud": "aud", "sub": "u", "iat": now, "exp": now + 60,
                                 "tenant_id": "acme", "scope": "catalog:read events:read"}  # fmt: skip
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _jwk(key_json: str, kid: str, alg: str) -> dict[str, object]:
    jwk: dict[str, object] = json.loads(key_json)
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    return jwk


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_tokens_of_each_allowed_algorithm_verify_and_name_tenant_subject_and_scopes(alg: str) -> None:
    if alg == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = _jwk(RSAAlgorithm.to_jwk(private.public_key()), "k1", alg)
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())  # type: ignore[assignment]
        jwk = _jwk(ECAlgorithm.to_jwk(private.public_key()), "k1", alg)  # type: ignore[arg-type]
    else:
        private = ed25519.Ed25519PrivateKey.generate()  # type: ignore[assignment]
        jwk = _jwk(OKPAlgorithm.to_jwk(private.public_key()), "k1", alg)  # type: ignore[arg-type]
    token = jwt.encode(_claims(client_scope=["7"]), private, algorithm=alg, headers={"kid": "k1"})
    principal = TokenVerifier(StaticKeySource({"keys": [jwk]}), OPTIONS).verify(token)
    assert principal.tenant_id == "acme" and principal.subject == "u"
    assert principal.scopes == {"catalog:read", "events:read"}
    assert principal.clients == {"7"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_alg_none_hmac_and_forged_tokens_are_refused(tmp_path: Path) -> None:
    keys = ensure_keys(tmp_path)
    verifier = TokenVerifier(FileKeySource(keys.jwks_path), OPTIONS)
    payload = _b64(json.dumps(_claims()).encode())
    none = _b64(json.dumps({"alg": "none", "kid": keys.kid}).encode()) + f".{payload}."
    public_pem = keys.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hs_header = _b64(json.dumps({"alg": "HS256", "kid": keys.kid}).encode())
    hs = f"{hs_header}.{payload}." + _b64(
        hmac.new(public_pem, f"{hs_header}.{payload}".encode(), hashlib.sha256).digest()
    )
    other = jwt.encode(
        _claims(), ec.generate_private_key(ec.SECP256R1()), algorithm="ES256", headers={"kid": keys.kid}
    )
    now = int(time.time())
    cases = {
        "none": none,
        "hs256": hs,
        "wrong key": other,
        "expired": jwt.encode(
            _claims(exp=now - 120), keys.private_key, algorithm="ES256", headers={"kid": keys.kid}
        ),
        "future": jwt.encode(
            _claims(nbf=now + 120), keys.private_key, algorithm="ES256", headers={"kid": keys.kid}
        ),
        "issuer": jwt.encode(
            _claims(iss="x"), keys.private_key, algorithm="ES256", headers={"kid": keys.kid}
        ),
        "audience": jwt.encode(
            _claims(aud="x"), keys.private_key, algorithm="ES256", headers={"kid": keys.kid}
        ),
        "no sub": jwt.encode(
            _claims(sub=None), keys.private_key, algorithm="ES256", headers={"kid": keys.kid}
        ),
        "bad tenant": jwt.encode(
            _claims(tenant_id="Not A Slug"), keys.private_key, algorithm="ES256", headers={"kid": keys.kid}
        ),
        "unknown kid": jwt.encode(_claims(), keys.private_key, algorithm="ES256", headers={"kid": "other"}),
    }
    for name, token in cases.items():
        with pytest.raises(Unauthorized):
            verifier.verify(token)
            pytest.fail(f"{name} token was accepted")
    good = mint_token(keys, tenant_id="acme", subject="u", scopes=["sync:write"], issuer="iss", audience="aud",
                      ttl_seconds=60)  # fmt: skip
    assert verifier.verify(good).scopes == {"sync:write"}


def test_the_bearer_scheme_is_required() -> None:
    assert bearer_token("Bearer abc") == "abc"
    for header in (None, "", "Basic abc", "Bearer "):
        with pytest.raises(Unauthorized):
            bearer_token(header)


class _CountingKeys(StaticKeySource):
    def __init__(self, jwks: dict[str, object]) -> None:
        super().__init__(jwks)
        self.lookups = 0

    def key_for(self, kid: str | None, alg: str) -> jwt.PyJWK:
        self.lookups += 1
        return super().key_for(kid, alg)


def test_a_verified_token_is_reused_for_the_cache_time_but_never_past_its_expiry_and_refusals_are_not_cached() -> (
    None
):
    private = ec.generate_private_key(ec.SECP256R1())
    keys = _CountingKeys({"keys": [_jwk(ECAlgorithm.to_jwk(private.public_key()), "k1", "ES256")]})
    clock = [time.time()]
    verifier = TokenVerifier(keys, OPTIONS, now=lambda: clock[0], cache_seconds=30)
    long_lived = jwt.encode(_claims(), private, algorithm="ES256", headers={"kid": "k1"})  # exp in 60 s
    assert verifier.verify(long_lived).tenant_id == "acme"
    assert verifier.verify(long_lived).subject == "u" and keys.lookups == 1, "the second use is cached"
    clock[0] += 31
    verifier.verify(long_lived)
    assert keys.lookups == 2, "verified again after cache_seconds"
    short = jwt.encode(_claims(exp=int(clock[0]) + 5), private, algorithm="ES256", headers={"kid": "k1"})
    verifier.verify(short)
    clock[0] += 6
    verifier.verify(short)  # the real clock still accepts it (leeway); the cache must not have answered
    assert keys.lookups == 4, "a cached principal never outlives the token's exp"
    wrong_audience = jwt.encode(_claims(aud="other"), private, algorithm="ES256", headers={"kid": "k1"})
    for _ in range(2):
        with pytest.raises(Unauthorized):
            verifier.verify(wrong_audience)
    assert keys.lookups == 6, "refusals are verified every time"
    uncached = TokenVerifier(keys, OPTIONS)
    uncached.verify(long_lived)
    uncached.verify(long_lived)
    assert keys.lookups == 8
