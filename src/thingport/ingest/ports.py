"""The device side's seam: what a dialect gives the ingest use case, and the port it calls it through.

A dialect decodes an HTTP request into these terms (a ``Credential``; a token, an address and ``ReportRules``),
calls the use case through ``Ingest`` and encodes what comes back (a ``Session``; the stored messages with their
``Verdict``) in its own format. It never imports the use case's class.
"""

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from thingport.core.model import Device, Product, StoredMessage
from thingport.core.product_runtime import ProductRuntime
from thingport.core.thingmodel import ThingModel
from thingport.core.validation import Verdict
from thingport.metrics import DeviceMetrics
from thingport.settings import Settings

Address = TypeVar("Address", contravariant=True)
Route = TypeVar("Route")
BodyReader = Callable[[], Awaitable[bytes]]


def auth_bucket(product_key: str, device_name: str) -> str:
    """A device's one authentication bucket, whichever dialect names it (two would double its allowance)."""
    return f"{product_key}/{device_name}"


@dataclass(frozen=True, slots=True)
class TokenScheme:
    """One dialect's tokens: the number stamped in them (unique per dialect, ``core/tokens.py``) and whether a
    new one retires the device's previous ones (after a grace: IoTDA's re-authentication)."""

    kind: int
    supersedes: bool = False


@dataclass(frozen=True, slots=True)
class Session:
    """An authenticated device's token, and the seconds it has left."""

    token: str
    expires_in: int


class KnownDevices(Protocol):
    """Devices in memory, without I/O."""

    def known_by_device_id(self, device_id: str) -> Device | None: ...


class DeviceLookup(Protocol):
    """The registry's device look-ups (authentication reads fresh rows: it is not the hot path)."""

    async def device_by_name(self, product_key: str, device_name: str) -> Device | None: ...

    async def device_by_device_id(self, device_id: str) -> Device | None: ...


class Credential(Protocol):
    """What one dialect's device presents to authenticate: the dialect's credential *scheme* is its methods.

    The use case runs the sequence (rate bucket, clock, look-up, signature, state, policy, session, token);
    each step that differs between schemes asks the credential. Checks raise ``AuthFailed``."""

    @property
    def tokens(self) -> TokenScheme: ...

    @property
    def client_id(self) -> str:
        """Recorded with the session."""
        ...

    def bucket(self, known: KnownDevices) -> str:
        """The authentication bucket to charge before any database round trip (``auth_bucket`` of the device
        when it is known from the credential alone)."""
        ...

    def check_time(self, now_s: float, settings: Settings) -> None:
        """Refuse a signed time too far from ``now_s`` (replay)."""
        ...

    async def find(self, devices: DeviceLookup) -> Device | None: ...

    def check_secret(self, secret: str) -> None:
        """Refuse a signature or password not made with ``secret`` (compared in constant time)."""
        ...

    def admit(self, product: Product, settings: Settings) -> None:
        """Refuse a scheme the device's product (or the server) does not allow; after the signature, so a
        refusal tells only the device's owner."""
        ...

    def ttl_s(self, settings: Settings) -> int: ...


@dataclass(slots=True)
class Part:
    """One message a report stores: a device report is one, an IoTDA gateway report one per sub-device."""

    topic: str
    kind: str
    payload: bytes
    validated: bool = False  # judged against the thing model (``ReportRules.judge``)
    document: Any = None  # the dialect's parsed form, for its ``judge`` and ``reply``
    device_id: str | None = None  # the sub-device a gateway reports for (None: the reporting device)


class ReportRules(Protocol[Address, Route]):
    """One dialect's reports, for the use case that runs them: who may report where, and what the payload says.

    Its methods are pure and raise the core's errors (``TopicDenied``, ``ParamError``...)."""

    @property
    def dialect(self) -> str:
        """The stored messages' ``dialect``."""
        ...

    @property
    def tokens(self) -> TokenScheme: ...

    def route(self, device: Device, product: ProductRuntime, address: Address) -> Route:
        """Where ``device`` reports to, or why it may not (the ACL): before the throttle and the body."""
        ...

    def decode(self, route: Route, payload: bytes) -> Iterable[Part]:
        """The messages the body carries, in order (a generator may refuse a malformed part only when the
        use case reaches it, after the parts before it were looked up and judged)."""
        ...

    def judge(self, part: Part, model: ThingModel, received_ms: int) -> tuple[dict[int, dict[str, Any]], Sequence[Any]]:
        """(accepted values by time, refusals) of a validated part; ParamError when its structure is wrong."""
        ...

    def reply(self, part: Part, verdict: Verdict[Any]) -> bytes | None:
        """The reply document stored with a validated part; raising refuses the whole report (nothing is
        stored)."""
        ...


Stored = tuple[StoredMessage, Verdict[Any] | None]


class Ingest(Protocol):
    """The device-side use case, as dialects see it."""

    @property
    def settings(self) -> Settings: ...

    @property
    def metrics(self) -> DeviceMetrics: ...

    async def authenticate(self, credential: Credential, source: str) -> Session:
        """A token for the device that made ``credential``; AuthFailed (or Throttled) otherwise."""
        ...

    async def report(
        self, token: str, rules: ReportRules[Address, Route], address: Address, read_body: BodyReader
    ) -> list[Stored]:
        """Token -> ACL -> throttle -> body (read only then) -> validate -> store (once, every part together)."""
        ...
