"""The protocol logic shared by the sync and asyncio clients, with no I/O (sans-I/O).

Each operation is a *flow*: a generator that yields what it needs done — a :class:`Request` to send,
a :class:`Sleep` before a retry, :class:`AuthLock` steps around authentication — and receives the
:class:`Response` back (or has the transport's :class:`~thingport.device.errors.TransportError` thrown
in). Authentication, the token cache, re-authentication with one resend, and bounded retries with
backoff are written once, here and in the dialect cores (``aliyun.AliyunCore``, ``huawei.HuaweiCore``);
a transport (``transport.py``) only moves bytes, sleeps and locks, with ``httpx.Client`` or
``httpx.AsyncClient``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Protocol, TypeVar

from thingport.device.errors import TokenError, TransportError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request, relative to the device's endpoint."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Sleep:
    """Pause before the next attempt (the transport decides how: ``time.sleep`` or ``asyncio.sleep``)."""

    seconds: float


class AuthLock(Enum):
    """Enter or leave the device's authentication critical section (a ``threading.Lock`` or an
    ``asyncio.Lock`` held by the transport, which also releases it if the flow fails inside). It makes
    authentication single-flight: fifty concurrent reports on a fresh device cost one auth request, not
    fifty (the server rate-limits auth attempts, and each IoTDA token supersedes the previous one)."""

    ACQUIRE = "acquire"
    RELEASE = "release"


Step = Request | Sleep | AuthLock
Flow = Generator[Step, Response | None, T]


@dataclass(frozen=True, slots=True)
class Retry:
    """How often a request is tried when no reply comes (connection refused or reset, timeout).

    ``attempts`` counts every try, the first included, so a dead server costs a bounded time: pauses of
    ``backoff_s``, doubling, at most ``max_backoff_s``, each shortened by a random part of up to
    ``jitter`` so that a fleet reconnecting after an outage does not retry in lockstep. Replies that
    are errors are not retried here (see the exception classes). A request whose reply was lost may
    have been stored: delivery is at least once.
    """

    attempts: int = 4
    backoff_s: float = 0.25
    max_backoff_s: float = 5.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.backoff_s < 0 or self.max_backoff_s < 0 or not 0 <= self.jitter <= 1:
            raise ValueError("backoff must be >= 0 and jitter within 0..1")

    def delay(self, failures: int) -> float:
        """The pause after the ``failures``-th failed attempt."""
        base = min(self.max_backoff_s, self.backoff_s * 2.0 ** (failures - 1))
        return base * (1 - self.jitter * random.random())


@dataclass(frozen=True, slots=True)
class Credential:
    """A token and when to stop using it (monotonic seconds; None: until the server refuses it)."""

    token: str
    expires_at: float | None = None

    def usable(self, now: float) -> bool:
        return self.expires_at is None or now < self.expires_at


class Dialect(Protocol):
    """How one dialect authenticates: the request to send, and the credential its reply grants."""

    def auth_request(self, now: float) -> Request:
        """The auth request signed for wall-clock time ``now`` (seconds since the epoch)."""
        ...

    def credential(self, response: Response, now: float) -> Credential:
        """The credential from an auth reply received at monotonic ``now``; raises the typed error."""
        ...


class Session:
    """The token cache and the retry policy around one dialect, as flows. Safe to share between threads
    or tasks (authentication is single-flight, see :class:`AuthLock`)."""

    def __init__(
        self,
        dialect: Dialect,
        retry: Retry,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dialect = dialect
        self.retry = retry
        self._clock = clock
        self._monotonic = monotonic
        self._credential: Credential | None = None

    @property
    def token(self) -> str | None:
        """The cached token, if any."""
        return self._credential.token if self._credential else None

    def authenticate(self) -> Flow[str]:
        """Authenticate now, whatever is cached, and cache the token."""
        yield AuthLock.ACQUIRE
        credential = yield from self._authenticate()
        yield AuthLock.RELEASE
        return credential.token

    def call(self, build: Callable[[str], Request], parse: Callable[[Response], T]) -> Flow[T]:
        """Send ``build(token)`` and ``parse`` the reply, authenticating first when no usable token is
        cached. When the server refuses the token (expired, revoked, superseded), authenticate again and
        resend once: a report whose token was refused was not stored, so the resend cannot duplicate it."""
        credential = self._credential
        if credential is None or not credential.usable(self._monotonic()):
            credential = yield from self._fresh(credential)
        try:
            return parse((yield from self.exchange(build(credential.token))))
        except TokenError:
            self._drop(credential)
        credential = yield from self._fresh(credential)
        try:
            return parse((yield from self.exchange(build(credential.token))))
        except TokenError:
            self._drop(credential)
            raise

    def exchange(self, request: Request) -> Flow[Response]:
        """Send ``request`` until a reply comes, at most ``retry.attempts`` times, with backoff."""
        failures = 0
        while True:
            try:
                response = yield request
            except TransportError as exc:
                failures += 1
                exc.attempts = failures
                if not exc.retryable or failures >= self.retry.attempts:
                    raise
                yield Sleep(self.retry.delay(failures))
                continue
            assert response is not None, "a transport must send back a Response"
            return response

    def _fresh(self, stale: Credential | None) -> Flow[Credential]:
        """A usable credential other than ``stale``: the one another caller got while this one waited
        for the lock, or a new one."""
        yield AuthLock.ACQUIRE
        current = self._credential
        if current is None or current is stale or not current.usable(self._monotonic()):
            current = yield from self._authenticate()
        yield AuthLock.RELEASE
        return current

    def _drop(self, refused: Credential) -> None:
        if self._credential is refused:  # unless another caller already replaced it
            self._credential = None

    def _authenticate(self) -> Flow[Credential]:
        response = yield from self.exchange(self.dialect.auth_request(self._clock()))
        self._credential = self.dialect.credential(response, self._monotonic())
        return self._credential
