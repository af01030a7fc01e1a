"""Device signatures of both dialects' authentication requests.

Alibaba ``/auth``: ``sign`` = HMAC(deviceSecret, content) in hex, where content is the protocol's signed
parameters present (``clientId``, ``deviceName``, ``productKey``, ``timestamp``), sorted by name, each
written as name then value, joined with no separator. Comparison is case-insensitive (v3 SDKs send lower
case, 4.x upper). Nothing else in the body is signed: were every field signed, with no separator, a
captured body with ``"timestamp":"1793772361231"`` rewritten as ``"timestam":"p1793772361231"`` would sign
the same and dodge the freshness check.

IoTDA ``/v5/device-auth``: ``password`` = HMAC-SHA256 with the **timestamp** (``YYYYMMDDHH``) as key
and the **secret** as message, lower-case hex.

Every comparison is constant-time.
"""

import hashlib
import hmac
from collections.abc import Mapping

SIGN_METHODS = {"hmacmd5": hashlib.md5, "hmacsha1": hashlib.sha1, "hmacsha256": hashlib.sha256}
DEFAULT_SIGN_METHOD = "hmacmd5"
SIGNED_PARAMS = ("clientId", "deviceName", "productKey", "timestamp")  # sorted by name, as they are signed


def sign_content(params: Mapping[str, str]) -> str:
    """The string the device signs: ``name+value`` of each signed parameter present, in name order."""
    return "".join(name + params[name] for name in SIGNED_PARAMS if name in params)


def aliyun_sign(secret: str, params: Mapping[str, str], method: str = DEFAULT_SIGN_METHOD) -> str:
    """Lower-case hex signature of ``params`` with ``secret`` (``method`` from SIGN_METHODS)."""
    digest = SIGN_METHODS[method]
    return hmac.new(secret.encode(), sign_content(params).encode(), digest).hexdigest()


def aliyun_sign_matches(secret: str, params: Mapping[str, str], method: str, sign: str) -> bool:
    """Constant-time check of a device's ``sign``, in any letter case."""
    expected = aliyun_sign(secret, params, method)
    return hmac.compare_digest(expected.encode(), sign.lower().encode())


def huawei_password(secret: str, timestamp: str) -> str:
    return hmac.new(timestamp.encode(), secret.encode(), hashlib.sha256).hexdigest()


def huawei_password_matches(secret: str, timestamp: str, password: str) -> bool:
    return hmac.compare_digest(huawei_password(secret, timestamp).encode(), password.lower().encode())
