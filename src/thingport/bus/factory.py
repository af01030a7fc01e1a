"""Sink types by name: the one list of them (the CLI's choices, the API's schema and subscription checks
read it). Broker clients are imported only when a subscription uses them."""

import functools
import importlib
from collections.abc import Mapping
from typing import Any

from thingport.bus.base import Sink, SinkConfigError
from thingport.extras import MissingExtra

PULL = "http"  # the embedded default: applications pull from the API (or follow its SSE stream)
PUSH_MODULES = {
    "rabbitmq": "thingport.bus.rabbitmq",
    "nats": "thingport.bus.nats",
    "mqtt": "thingport.bus.mqtt",
    "webhook": "thingport.bus.webhook",
}
SINK_TYPES = (PULL, *PUSH_MODULES)


@functools.cache
def sink_class(kind: str) -> type[Sink]:
    """The push sink class ``kind``; SinkConfigError when there is none or its client is not installed."""
    module_name = PUSH_MODULES.get(kind)
    if module_name is None:
        raise SinkConfigError(f"sink must be one of {', '.join(PUSH_MODULES)} (or {PULL}, which is pulled)")
    try:
        module = importlib.import_module(module_name)
    except MissingExtra as exc:
        raise SinkConfigError(str(exc)) from None
    for value in vars(module).values():
        if isinstance(value, type) and issubclass(value, Sink) and value.kind == kind:
            return value
    raise SinkConfigError(f"no {kind} sink in {module_name}")  # pragma: no cover - a packaging error


def create_sink(kind: str, options: Mapping[str, Any]) -> Sink:
    """The push sink ``kind`` with ``options``; SinkConfigError when either is unusable."""
    return sink_class(kind)(options)


def options_type(kind: str) -> type | None:
    """The dataclass declaring the options of sink ``kind``; None for the pull sink (it takes none) and for
    a sink whose client library is not installed here."""
    try:
        return sink_class(kind).options_type if kind in PUSH_MODULES else None
    except SinkConfigError:
        return None
