"""Signatures over published results: HMAC-SHA256 with a key file.

Ed25519 would let anyone verify without the secret, but it needs ``cryptography``, which is not
in this project's environment; HMAC-SHA256 (stdlib) is what the rules of issue 9 allow. The key
file holds 32 random bytes as hex (``generate_key``); its id is the first 16 hex digits of the
SHA-256 of the key, stored beside each signature so a rotated key is recognised.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

ALGORITHM = "hmac-sha256"
KEY_BYTES = 32  # RFC 2104: a key as long as the hash output


class SignatureError(ValueError):
    """A signature does not verify, or a key file is unusable."""


@dataclass(frozen=True)
class SigningKey:
    key_id: str
    secret: bytes = b""

    def sign(self, payload: str) -> str:
        return hmac.new(self.secret, payload.encode("utf-8"), hashlib.sha256).hexdigest()

    def verify(self, payload: str, signature: str, key_id: str | None = None) -> bool:
        if key_id is not None and key_id != self.key_id:
            return False
        return hmac.compare_digest(self.sign(payload), signature)


def generate_key(path: Path) -> SigningKey:
    """Write a new key file (mode 0600); refuses to overwrite one."""
    secret = secrets.token_bytes(KEY_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret.hex() + "\n")
    return _key(secret)


def load_key(path: Path) -> SigningKey:
    try:
        secret = bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError) as exc:
        raise SignatureError(f"cannot read signing key {path}: {exc}") from exc
    if len(secret) < 16:
        raise SignatureError(f"signing key {path} is too short ({len(secret)} bytes)")
    return _key(secret)


def _key(secret: bytes) -> SigningKey:
    return SigningKey(hashlib.sha256(secret).hexdigest()[:16], secret)
