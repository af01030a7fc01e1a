"""thingport's device SDK: a Python device for either dialect, sync or asyncio.

``AliyunDevice`` / ``AsyncAliyunDevice`` speak the Alibaba Cloud IoT HTTPS dialect, ``HuaweiDevice`` /
``AsyncHuaweiDevice`` the Huawei IoTDA one, against thingport or the platforms themselves. They sign and
authenticate, cache the token, re-authenticate and resend once when it is refused, retry lost requests
with bounded backoff and keep connections alive. The protocol logic is written once, without I/O
(``protocol.py``, ``aliyun.AliyunCore``, ``huawei.HuaweiCore``), and driven by ``httpx.Client`` or
``httpx.AsyncClient`` (``transport.py``).
"""

from thingport.device.aliyun import AliyunDevice, AsyncAliyunDevice
from thingport.device.errors import (
    AuthError,
    DeviceError,
    RejectedError,
    ServerError,
    ThrottledError,
    TokenError,
    TransportError,
)
from thingport.device.huawei import MAX_SUB_DEVICES, AsyncHuaweiDevice, HuaweiDevice
from thingport.device.protocol import Retry
from thingport.device.values import Receipt, Service, Timed

__all__ = [
    "MAX_SUB_DEVICES",
    "AliyunDevice",
    "AsyncAliyunDevice",
    "AsyncHuaweiDevice",
    "AuthError",
    "DeviceError",
    "HuaweiDevice",
    "Receipt",
    "RejectedError",
    "Retry",
    "ServerError",
    "Service",
    "ThrottledError",
    "Timed",
    "TokenError",
    "TransportError",
]
