"""Optional backends are extras of the package: their clients are imported only where they are used, and a
missing one says which extra brings it instead of a bare ImportError deep in a stack.

``pip install thingport`` is the device SDK alone (httpx); ``thingport[server]`` the server on the embedded
default; ``[postgres]``, ``[redis]``, ``[rabbitmq]``, ``[nats]``, ``[mqtt]`` its production backends, and
``[all]`` everything (what ``scripts/serve`` and ``scripts/test`` install).
"""

EXTRAS = ("server", "postgres", "redis", "rabbitmq", "nats", "mqtt")


class MissingExtra(ImportError):
    """A backend was asked for whose client library is not installed."""


def missing_extra(extra: str, error: ImportError) -> MissingExtra:
    """The error to raise from ``except ImportError`` around an optional import (``raise ... from None``)."""
    assert extra in EXTRAS, extra
    module = error.name or "a module"
    return MissingExtra(f"{module} is not installed: this needs thingport's {extra!r} extra "
                        f"(pip install 'thingport[{extra}]')", name=error.name)
