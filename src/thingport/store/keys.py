"""Key material kept outside the database: device secrets are encrypted with it, tokens signed with it.

The master keys come from env ``THINGPORT_MASTER_KEY`` (base64 keys of 32 bytes, comma-separated, newest
first) or from ``master.key`` in the data dir (one base64 key a line, newest first), created on first use
with mode 0600. A copy of the database alone therefore hands over no device secret. Instances that share a
deployment must share the keys.

Rotation: the newest key seals and signs; older keys still open what they sealed and verify what they
signed. ``thingport keys rotate`` adds a key and re-seals everything; ``thingport keys prune`` drops the old
keys (tokens signed with them die: devices authenticate again). A running server reloads the file when it
changes.
"""

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from thingport.private_files import narrow_existing, private_dir

MASTER_KEY_ENV = "THINGPORT_MASTER_KEY"
MASTER_KEY_FILE = "master.key"
_NONCE_LEN = 12
_KID_LEN = 8
_FORMAT = b"\x01"


class MasterKeyError(ValueError):
    """The master keys are missing (and may not be created here) or malformed."""


class UnknownKey(ValueError):
    """A value was sealed with a key this ring does not have (pruned, or from another deployment)."""


def _derive(master: bytes, purpose: bytes) -> bytes:
    """A 32-byte subkey per purpose (HKDF-Expand with one block, which is all 32 bytes need)."""
    prk = hmac.digest(b"thingport", master, hashlib.sha256)
    return hmac.digest(prk, purpose + b"\x01", hashlib.sha256)


def _parse(lines: list[str], source: str) -> list[bytes]:
    try:
        keys = [base64.b64decode(line.strip(), validate=True) for line in lines if line.strip()]
    except binascii.Error:
        keys = []
    if not keys or any(len(k) != 32 for k in keys):
        raise MasterKeyError(f"{source} must hold base64-encoded 32-byte keys")
    return keys


def _write_ring(path: Path, keys: list[bytes]) -> None:
    """Replace the key file atomically (mode 0600)."""
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(base64.b64encode(k).decode() + "\n" for k in keys))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class KeyRing:
    """The master keys of a deployment, newest first, and what is derived from them."""

    def __init__(self, data_dir: Path | None = None, masters: list[bytes] | None = None, create: bool = True) -> None:
        """``create``: make the key file when there is none (False: a command that only reads, or that must
        not seal anything with a key the servers do not have)."""
        self._path = None if data_dir is None else data_dir / MASTER_KEY_FILE
        self._mtime: float | None = None
        self.generation = 0  # counts (re)loads, whoever made them
        self.masters: list[bytes] = masters or []
        if not self.masters:
            self._load(create=create)
        self._derive()

    @property
    def from_env(self) -> bool:
        return bool(os.environ.get(MASTER_KEY_ENV))

    def _load(self, create: bool = False) -> None:
        env = os.environ.get(MASTER_KEY_ENV)
        if env:
            self.masters = _parse(env.split(","), MASTER_KEY_ENV)
            return
        assert self._path is not None
        if not self._path.exists():
            if not create:
                raise MasterKeyError(f"no master key: {self._path} does not exist and {MASTER_KEY_ENV} is not set")
            private_dir(self._path.parent)
            tmp = self._path.with_suffix(f".new{os.getpid()}")
            _write_ring(tmp, [secrets.token_bytes(32)])
            try:
                os.link(tmp, self._path)  # fails if another process created it first: theirs wins
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
        narrow_existing(self._path)  # an older thingport's file, or one copied in
        self._mtime = self._path.stat().st_mtime
        self.masters = _parse(self._path.read_text().splitlines(), str(self._path))

    def _derive(self) -> None:
        self._aeads: dict[bytes, AESGCM] = {}
        self._kids: list[bytes] = []
        for master in self.masters:
            key = _derive(master, b"device-secret")
            kid = hashlib.sha256(key).digest()[:_KID_LEN]
            self._kids.append(kid)
            self._aeads[kid] = AESGCM(key)
        self.token_keys: list[bytes] = [_derive(m, b"token") for m in self.masters]
        self.generation += 1

    @property
    def token_key(self) -> bytes:
        """The key new tokens are signed with."""
        return self.token_keys[0]

    @property
    def current_kid(self) -> str:
        return self._kids[0].hex()

    def maybe_reload(self) -> bool:
        """Reload the key file when it changed (a rotation by another process); True if it did."""
        if self._path is None or self.from_env:
            return False
        try:
            mtime = self._path.stat().st_mtime
        except FileNotFoundError:
            return False
        if mtime == self._mtime:
            return False
        self._load()
        self._derive()
        return True

    # --- sealing device secrets (and other credentials) ---

    def seal(self, secret: str, identity: str) -> bytes:
        """AES-GCM with the newest key, bound to ``identity`` so rows cannot be swapped."""
        nonce = secrets.token_bytes(_NONCE_LEN)
        kid = self._kids[0]
        return _FORMAT + kid + nonce + self._aeads[kid].encrypt(nonce, secret.encode(), identity.encode())

    def open(self, sealed: bytes, identity: str) -> str:
        kid = sealed[1 : 1 + _KID_LEN]
        aead = self._aeads.get(kid)
        if aead is None and self.maybe_reload():
            aead = self._aeads.get(kid)
        if aead is None or sealed[:1] != _FORMAT:
            raise UnknownKey("sealed with a key this server does not have (was it pruned?)")
        body = sealed[1 + _KID_LEN :]
        return aead.decrypt(body[:_NONCE_LEN], body[_NONCE_LEN:], identity.encode()).decode()

    def sealed_with_current(self, sealed: bytes) -> bool:
        return sealed[1 : 1 + _KID_LEN] == self._kids[0]

    # --- rotation (writes the key file) ---

    def rotate(self) -> None:
        """A new newest key; the old ones stay for opening and verifying until pruned."""
        if self.from_env:
            raise ValueError(f"the keys come from {MASTER_KEY_ENV}: rotate by putting a new key first there")
        assert self._path is not None
        self.masters = [secrets.token_bytes(32), *self.masters]
        _write_ring(self._path, self.masters)
        self._mtime = self._path.stat().st_mtime
        self._derive()

    def prune(self) -> int:
        """Keep only the newest key; returns how many were dropped."""
        if self.from_env:
            raise ValueError(f"the keys come from {MASTER_KEY_ENV}: prune by removing old keys there")
        assert self._path is not None
        dropped = len(self.masters) - 1
        self.masters = self.masters[:1]
        _write_ring(self._path, self.masters)
        self._mtime = self._path.stat().st_mtime
        self._derive()
        return dropped

