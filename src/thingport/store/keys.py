"""Key material kept outside the database: device secrets are encrypted with it, tokens signed with it.

The master key comes from env ``THINGPORT_MASTER_KEY`` (base64, 32 bytes) or from ``master.key`` in the
data dir, created on first use with mode 0600. A copy of the database alone therefore hands over no
device secret. Instances that share a deployment must share the master key.
"""

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MASTER_KEY_ENV = "THINGPORT_MASTER_KEY"
MASTER_KEY_FILE = "master.key"
_NONCE_LEN = 12


def _derive(master: bytes, purpose: bytes) -> bytes:
    """A 32-byte subkey per purpose (HKDF-Expand with one block, which is all 32 bytes need)."""
    prk = hmac.digest(b"thingport", master, hashlib.sha256)
    return hmac.digest(prk, purpose + b"\x01", hashlib.sha256)


def load_master_key(data_dir: Path) -> bytes:
    env = os.environ.get(MASTER_KEY_ENV)
    if env:
        key = base64.b64decode(env)
        if len(key) != 32:
            raise ValueError(f"{MASTER_KEY_ENV} must be 32 bytes, base64-encoded")
        return key
    path = data_dir / MASTER_KEY_FILE
    try:
        return base64.b64decode(path.read_bytes())
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(base64.b64encode(key))
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)  # fails if another process created it first: theirs wins
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return base64.b64decode(path.read_bytes())


@dataclass(frozen=True)
class Keys:
    token_key: bytes
    secret_box: "SecretBox"

    @classmethod
    def from_master(cls, master: bytes) -> "Keys":
        return cls(_derive(master, b"token"), SecretBox(_derive(master, b"device-secret")))


class SecretBox:
    """AES-GCM around device secrets, bound to the device's identity so rows cannot be swapped."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, secret: str, identity: str) -> bytes:
        nonce = secrets.token_bytes(_NONCE_LEN)
        return nonce + self._aead.encrypt(nonce, secret.encode(), identity.encode())

    def open(self, sealed: bytes, identity: str) -> str:
        return self._aead.decrypt(sealed[:_NONCE_LEN], sealed[_NONCE_LEN:], identity.encode()).decode()
