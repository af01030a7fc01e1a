"""The dialect seam: what a device protocol is to the endpoint, and the path table that picks one per request."""

from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from thingport.dialects.http import DeviceRequest, Reply
from thingport.ingest.ports import Ingest


class Dialect(Protocol):
    """One device protocol over HTTP, built once per process with the use case's port (``DialectFactory``).

    Answers one request: decodes it into the use case's terms (``ingest.ports``: a ``Credential``, or a token,
    an address and its ``ReportRules``), calls ``Ingest``, and encodes the outcome (or the error) in its own
    format: a ``Reply`` (status and JSON body; the endpoint frames it), or None for a client that went away."""

    async def __call__(self, request: DeviceRequest) -> Reply | None: ...


DialectFactory = Callable[[Ingest], Dialect]


class DialectTable:
    """Path -> dialect. A path ending in "/" is a prefix, any other an exact path: ``"/auth"`` is not
    ``"/authx"``. Built once; ``find`` tries the prefixes first (the reports' paths: a ``startswith`` or two)
    and then one dict look-up, so no exact path may lie under a prefix."""

    __slots__ = ("_exact", "_prefixes")

    def __init__(self, ingest: Ingest, table: Mapping[DialectFactory, Iterable[str]]) -> None:
        self._exact: dict[str, Dialect] = {}
        prefixes: dict[str, Dialect] = {}
        for factory, paths in table.items():
            dialect = factory(ingest)
            for path in paths:
                if path in self._exact or path in prefixes:
                    raise ValueError(f"two dialects answer {path}")
                if path.endswith("/"):
                    prefixes[path] = dialect
                else:
                    self._exact[path] = dialect
        for path in self._exact:
            for prefix in prefixes:
                if path.startswith(prefix):
                    raise ValueError(f"{path} lies under the prefix {prefix}")
        self._prefixes = tuple(prefixes.items())

    def find(self, path: str) -> Dialect | None:
        for prefix, dialect in self._prefixes:
            if path.startswith(prefix):
                return dialect
        return self._exact.get(path)
