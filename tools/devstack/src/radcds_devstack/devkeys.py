"""Development keys for CDS Client JWTs (CDS Hooks 2.0, "Trusting CDS Clients").

For tests and ``make run`` only: generates a signing key for a pretend CDS Client (EHR), signs the
``Authorization: Bearer`` JWT the client sends, and writes a trusted-issuers file that
:func:`radcds_referral.adapters.security.load_trusted_issuers` reads. Real deployments trust the EHR's published JWKS.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

__all__ = [
    "DEV_ISSUERS_FILE_NAME",
    "DEV_KEY_FILE_NAME",
    "generate_es384_key",
    "generate_rs384_key",
    "jwk_thumbprint",
    "sign_client_jwt",
    "write_dev_issuer",
]

DEV_KEY_FILE_NAME = "cds-client-key.pem"
DEV_ISSUERS_FILE_NAME = "trusted-issuers.json"

# RFC 7638 §3.2: the members that make up the thumbprint of each key type.
_THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """Return the RFC 7638 SHA-256 thumbprint of a public EC or RSA JWK, base64url without padding."""
    members = _THUMBPRINT_MEMBERS.get(str(jwk.get("kty")))
    if members is None:
        raise ValueError(f"no RFC 7638 thumbprint for kty {jwk.get('kty')!r}")
    canonical = json.dumps({name: jwk[name] for name in members}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _private_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def _public_jwk(public_jwk: dict[str, Any], alg: str) -> dict[str, Any]:
    jwk = {**public_jwk, "use": "sig", "alg": alg}
    jwk["kid"] = jwk_thumbprint(jwk)
    return jwk


def generate_es384_key() -> tuple[bytes, dict[str, Any]]:
    """Generate a P-384 key: (PKCS#8 private key PEM, public JWK with ``kid`` = its RFC 7638 thumbprint)."""
    private_key = ec.generate_private_key(ec.SECP384R1())
    return _private_pem(private_key), _public_jwk(ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True), "ES384")


def generate_rs384_key(key_size: int = 2048) -> tuple[bytes, dict[str, Any]]:
    """Generate an RSA key: (PKCS#8 private key PEM, public JWK with ``kid`` = its RFC 7638 thumbprint)."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    return _private_pem(private_key), _public_jwk(RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True), "RS384")


def sign_client_jwt(
    private_pem: bytes,
    *,
    kid: str,
    iss: str,
    aud: str,
    jti: str | None = None,
    lifetime_s: int = 300,
    extra: Mapping[str, Any] | None = None,
    alg: str = "ES384",
    headers: Mapping[str, Any] | None = None,
    issued_at: float | None = None,
) -> str:
    """Sign the JWT a CDS Client sends as ``Authorization: Bearer`` (CDS Hooks 2.0 "Trusting CDS Clients").

    ``extra`` adds or overrides claims (``sub``, ``tenant``, ``nbf``, even ``iat``/``exp`` for tests);
    ``headers`` adds header parameters such as ``jku``; ``issued_at`` defaults to now.
    """
    iat = int(time.time() if issued_at is None else issued_at)
    claims: dict[str, Any] = {
        "iss": iss,
        "aud": aud,
        "iat": iat,
        "exp": iat + lifetime_s,
        "jti": jti if jti is not None else str(uuid.uuid4()),
    }
    claims.update(extra or {})
    return jwt.encode(claims, private_pem, algorithm=alg, headers={"typ": "JWT", "kid": kid, **(headers or {})})


def write_dev_issuer(directory: Path, iss: str) -> tuple[Path, Path]:
    """Write a new ES384 private key (mode 0600) and a trusted-issuers JSON file with its public JWKS inline.

    Returns (key path, issuers file path); both are overwritten if present.
    """
    directory.mkdir(parents=True, exist_ok=True)
    private_pem, public_jwk = generate_es384_key()
    key_path = directory / DEV_KEY_FILE_NAME
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as key_file:
        os.fchmod(key_file.fileno(), 0o600)  # an existing file keeps its old mode through O_CREAT
        key_file.write(private_pem)
    issuers_path = directory / DEV_ISSUERS_FILE_NAME
    issuers = [{"iss": iss, "jwks": {"keys": [public_jwk]}}]
    issuers_path.write_text(json.dumps(issuers, indent=2) + "\n", encoding="utf-8")
    return key_path, issuers_path
