"""Sink options as typed structs: every sink declares a dataclass of its options (name, type, default) and
marks the ones that hold credentials with ``secret()``. What the options are called, which are text (the
CLI keeps ``secret=1.50`` a string), and which are shown as ``***`` are all read from that struct, so an
option added to a sink needs no other list changed."""

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any

MASK = "***"


def secret(default: Any = dataclasses.MISSING) -> Any:
    """A field holding a credential (a password, an HMAC key, a URL that may carry either): never shown."""
    return dataclasses.field(default=default, metadata={"secret": True})


def option_names(struct: type) -> tuple[str, ...]:
    """The options, in declaration order (the order error messages list them in)."""
    return tuple(f.name for f in dataclasses.fields(struct))


def secret_options(struct: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(struct) if f.metadata.get("secret"))


def text_options(struct: type) -> frozenset[str]:
    """The options typed ``str`` (or ``str | None``): given as text, they stay text."""
    hints = typing.get_type_hints(struct)
    return frozenset(name for name in option_names(struct) if _is_text(hints[name]))


def _is_text(hint: Any) -> bool:
    if hint is str:
        return True
    return isinstance(hint, types.UnionType) and str in hint.__args__ and all(
        arg in (str, type(None)) for arg in hint.__args__)


def masked(struct: type | None, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` fit to show: secret ones as ``***``. Without a struct (the sink's client library is not
    installed here, or the sink takes no options) every value is hidden: what is not known to be safe is not
    shown."""
    hidden = secret_options(struct) if struct is not None else None
    return {k: (MASK if hidden is None or k in hidden else v) for k, v in options.items()}
