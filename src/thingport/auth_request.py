"""A ready authentication request for one device, in either dialect: what ``thingport device auth-request``
prints so a person can try a device with curl instead of writing HMAC code.

The body comes from the device SDK's own ``auth_request`` (``AliyunCore``, ``HuaweiCore``), so the
signing lives in one place (``core/signing.py``) and what is printed is exactly what a device sends.
"""

import json
import shlex
import time
from dataclasses import dataclass
from typing import Any

from thingport.core.identity import default_device_id
from thingport.device.aliyun import AliyunCore
from thingport.device.huawei import HuaweiCore
from thingport.device.protocol import Request

DIALECTS = ("aliyun", "iotda")


@dataclass(frozen=True, slots=True)
class AuthRequest:
    dialect: str
    request: Request

    @property
    def body(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.request.body)
        return doc

    def body_text(self) -> str:
        return self.request.body.decode()

    def curl(self, endpoint: str, cacert: str | None) -> str:
        """A shell command that sends it (``-sS``: the reply alone on stdout, errors on stderr)."""
        words = ["curl", "-sS"]
        if cacert is not None:
            words += ["--cacert", cacert]
        words += [endpoint.rstrip("/") + self.request.path]
        for name, value in self.request.headers.items():
            words += ["-H", f"{name}: {value}"]
        words += ["-d", self.body_text()]
        return shlex.join(words)


def auth_request(dialect: str, product_key: str, device_name: str, secret: str, *, device_id: str | None = None,
                 client_id: str | None = None, sign_method: str = "hmacsha256", sign_type: int = 0,
                 now: float | None = None) -> AuthRequest:
    """The device's authentication request at ``now`` (default: the current time, so its timestamp is
    fresh): an Alibaba ``/auth`` body signed with ``sign_method``, or an IoTDA ``/v5/device-auth`` body for
    ``device_id`` (default: the device's default IoTDA id)."""
    at = time.time() if now is None else now
    if dialect == "aliyun":
        core = AliyunCore(product_key, device_name, secret, client_id=client_id, sign_method=sign_method)
        return AuthRequest(dialect, core.auth_request(at))
    if dialect == "iotda":
        huawei = HuaweiCore(device_id or default_device_id(product_key, device_name), secret, sign_type=sign_type)
        return AuthRequest(dialect, huawei.auth_request(at))
    raise ValueError(f"dialect must be one of {', '.join(DIALECTS)}")
