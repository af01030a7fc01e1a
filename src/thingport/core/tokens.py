"""Self-verifying device tokens.

A token carries who it is for and until when, and a MAC over that, so any instance holding the key can
check it from memory: no database round trip on the hot path. Revocation is by the device's
``token_epoch`` (bumped on disable, secret reset...), which the registry cache keeps current.

Layout (42 bytes, 56 base64url characters, within the 64 that device SDKs accept):
``version u8 | dialect u8 | device_id u64 | epoch u32 | issued_ms u64 | expires_s u32 | mac[16]``.
"""

import base64
import binascii
import hashlib
import hmac
import struct
from collections.abc import Callable, Sequence

import msgspec

from thingport.core.errors import TokenExpired, TokenInvalid

_VERSION = 1
_BODY = struct.Struct(">BBQIQI")
_MAC_LEN = 16
_TOKEN_LEN = 56  # base64url of _BODY.size + _MAC_LEN bytes, unpadded

DIALECT_ALIYUN = 1
DIALECT_HUAWEI = 2


class TokenClaims(msgspec.Struct, frozen=True, gc=False):
    """Untracked by Python's cyclic garbage collector (it holds only ints): the memo of verified tokens keeps
    one per device signed in, and at 100,000 devices tracked claims made every full collection longer."""

    dialect: int
    device_id: int
    epoch: int
    issued_ms: int
    expires_s: int


def _mac(key: bytes, body: bytes) -> bytes:
    return hmac.digest(key, body, hashlib.sha256)[:_MAC_LEN]


class TokenCodec:
    """Issues tokens with the newest HMAC-SHA256 key and verifies them with any key of the ring.

    ``keys`` is a key, or a callable giving the keys newest first (so a key rotation reaches the codec
    without rebuilding it).
    """

    __slots__ = ("_keys",)

    def __init__(self, keys: bytes | Callable[[], Sequence[bytes]]) -> None:
        if isinstance(keys, bytes):
            fixed = [keys]
            self._keys: Callable[[], Sequence[bytes]] = lambda: fixed
        else:
            self._keys = keys
        if any(len(k) < 32 for k in self._keys()):
            raise ValueError("token keys must be at least 32 bytes")

    def issue(self, claims: TokenClaims) -> str:
        body = _BODY.pack(
            _VERSION, claims.dialect, claims.device_id, claims.epoch, claims.issued_ms, claims.expires_s
        )
        return base64.urlsafe_b64encode(body + _mac(self._keys()[0], body)).rstrip(b"=").decode()

    def verify(self, token: str, now_s: float) -> TokenClaims:
        """Claims of an authentic, unexpired token; TokenInvalid or TokenExpired otherwise.

        Revocation (epoch, device state) is the caller's check: the codec knows only the key.
        """
        if len(token) != _TOKEN_LEN:
            raise TokenInvalid("token is malformed")
        try:
            raw = base64.urlsafe_b64decode(token + "==")
        except (binascii.Error, ValueError):
            raise TokenInvalid("token is malformed") from None
        if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != token:  # one spelling per token: no aliases
            raise TokenInvalid("token is malformed")
        body, mac = raw[: _BODY.size], raw[_BODY.size :]
        if not any(hmac.compare_digest(mac, _mac(key, body)) for key in self._keys()):
            raise TokenInvalid("token signature does not match")
        version, dialect, device_id, epoch, issued_ms, expires_s = _BODY.unpack(body)
        if version != _VERSION:
            raise TokenInvalid("token version is not supported")
        if now_s >= expires_s:
            raise TokenExpired("token is expired")
        return TokenClaims(dialect, device_id, epoch, issued_ms, expires_s)


# --- IoTDA supersession: a device's previous tokens live on 30 s after a newer one is issued ---

SUPERSEDED_TOKEN_GRACE_MS = 30_000
MAX_SUPERSEDED_TOKENS = 16  # per device: more tokens superseded within 30 s lose their grace, oldest first

Superseded = tuple[tuple[int, int], ...]  # (issued_ms, superseded_ms) of each token still in its grace


def supersede(newest_ms: int | None, superseded: Superseded, issued_ms: int) -> tuple[int, Superseded]:
    """A device's (newest token's issue time, superseded tokens) once a token issued at ``issued_ms`` exists.

    Each superseded token keeps 30 s from the moment the next one was issued, whatever came after (three
    tokens back to back: the first lives until the second's issue + 30 s). A token issued before the newest
    (by an instance whose clock is behind) is superseded by it at once. Bounded: tokens past their grace
    are dropped, and at most ``MAX_SUPERSEDED_TOKENS`` are kept."""
    pairs = list(superseded)
    if newest_ms is None:
        newest = issued_ms
    elif issued_ms >= newest_ms:
        if issued_ms != newest_ms:
            pairs.append((newest_ms, issued_ms))
        newest = issued_ms
    else:
        pairs.append((issued_ms, newest_ms))
        newest = newest_ms
    live = sorted(
        {(issued, at) for issued, at in pairs if at + SUPERSEDED_TOKEN_GRACE_MS > newest}, key=lambda p: (p[1], p[0])
    )
    return newest, tuple(live[-MAX_SUPERSEDED_TOKENS:])


def superseded_token_alive(superseded: Superseded, issued_ms: int, now_ms: float) -> bool:
    """Whether the superseded token issued at ``issued_ms`` is still in its 30 s of grace."""
    return any(issued == issued_ms and now_ms < at + SUPERSEDED_TOKEN_GRACE_MS for issued, at in superseded)
