"""One exception hierarchy for both dialects, so device code handles failures by what to do about them
(re-authenticate, slow down, fix the request, retry later) rather than by each platform's codes.

Every error carries the platform's ``code`` (an ``int`` for the Alibaba dialect, an ``"IOTDA.xxxxxx"``
string for IoTDA, ``None`` when there is none), its ``message`` and the HTTP ``status`` when a reply came.
"""

from __future__ import annotations

import ssl


class DeviceError(Exception):
    """Base of every error the device SDK raises."""

    def __init__(self, message: str, code: int | str | None = None, status: int | None = None) -> None:
        super().__init__(message if code is None else f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class TransportError(DeviceError):
    """No reply: connection refused or reset, TLS failure, timeout. Raised once the retries are used up
    (``attempts`` says how many were made), or at once when retrying cannot help (``retryable`` False:
    the server's certificate did not verify)."""

    def __init__(self, message: str, *, retryable: bool = True, attempts: int = 1) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.attempts = attempts

    @classmethod
    def from_exception(cls, exc: BaseException) -> TransportError:
        """Wrap an HTTP client's error; certificate failures are marked not retryable."""
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, ssl.SSLCertVerificationError):
                return cls(f"TLS certificate verification failed: {cause.verify_message or cause} "
                           "(pass ca_file= for a self-signed server)", retryable=False)
            cause = cause.__cause__ or cause.__context__
        return cls(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


class AuthError(DeviceError):
    """Authentication refused (Alibaba 20000, IoTDA 401 IOTDA.000002): unknown or disabled device, wrong
    secret, clock too far off. Retrying with the same credentials will not help."""


class TokenError(AuthError):
    """The token was refused (Alibaba 20001/20002/20003, IoTDA 403 IOTDA.000004). The SDK re-authenticates
    and resends once by itself; this is raised only if the fresh token is refused too."""


class ThrottledError(DeviceError):
    """Rate limit reached (Alibaba 40000, IoTDA IOTDA.021101/021102): slow down and try later."""


class RejectedError(DeviceError):
    """The request itself was refused (Alibaba 10001/30001, IoTDA IOTDA.000006/021103/021104/021105):
    bad field, topic not allowed, body too large, not a sub-device... Sending it again will not help.
    Client-side checks raise it too, with the code the server would have used and no ``status``."""


class ServerError(DeviceError):
    """The server failed (Alibaba 10000/20004, IoTDA 500 IOTDA.000001) or replied with something that is
    not the protocol (e.g. a proxy's error page): try again later."""


ALIYUN_ERRORS: dict[int, type[DeviceError]] = {
    10000: ServerError,
    10001: RejectedError,
    20000: AuthError,
    20001: TokenError,
    20002: TokenError,
    20003: TokenError,
    20004: ServerError,
    30001: RejectedError,
    40000: ThrottledError,
}

IOTDA_ERRORS: dict[str, type[DeviceError]] = {
    "IOTDA.000001": ServerError,
    "IOTDA.000002": AuthError,
    "IOTDA.000004": TokenError,
    "IOTDA.000006": RejectedError,
    "IOTDA.021101": ThrottledError,
    "IOTDA.021102": ThrottledError,
    "IOTDA.021103": RejectedError,
    "IOTDA.021104": RejectedError,
    "IOTDA.021105": RejectedError,
}


def aliyun_error(code: int, message: str) -> DeviceError:
    """The exception for an Alibaba reply's non-zero ``code`` (unknown codes: ServerError)."""
    return ALIYUN_ERRORS.get(code, ServerError)(message, code, 200)


def iotda_error(status: int, code: str | None, message: str) -> DeviceError:
    """The exception for an IoTDA error reply; without a known code, the HTTP status decides."""
    kind = IOTDA_ERRORS.get(code or "")
    if kind is None:
        kind = {401: AuthError, 429: ThrottledError}.get(status, RejectedError if 400 <= status < 500 else ServerError)
    return kind(message, code, status)
