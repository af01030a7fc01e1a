"""What the CLI prints when a command fails: one ``error: ...`` line on stderr and exit status 1, never a
traceback. Usage errors (a missing or malformed option) stay click's own, with exit status 2.

``GuardedGroup`` is the CLI's top group: it turns every exception a command raises into that line, in one
place. ``explain`` knows the expected ones (a missing data dir, a wrong master key, an unreachable or
unmigrated database, bad settings, a file that cannot be read); anything else is a bug, shown as one line
too, with the way to see its traceback (``THINGPORT_DEBUG=1`` or ``thingport --debug``).
"""

import os
import sys
from typing import Any

import click

from thingport.urls import redact_text

DEBUG_ENV = "THINGPORT_DEBUG"


class CliError(click.ClickException):
    """An expected failure: ``error: <message>`` on stderr, exit status 1."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def _first_line(text: str) -> str:
    return redact_text(" ".join(str(text).split("\n", 1)[0].split()))


def _settings_message(exc: Any) -> str:
    """A pydantic ValidationError in one line, without the input values (a URL's password, say)."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ())) or "settings"
        problems.append(f"{where}: {error.get('msg', 'invalid')}".replace("Value error, ", ""))
    return "invalid settings: " + "; ".join(problems)


def explain(exc: BaseException) -> str | None:
    """The one line for an expected failure, None for an unexpected one. A driver's module is looked up
    in sys.modules, never imported: an exception can only come from a module that was loaded."""
    from thingport.core.errors import ThingportError
    from thingport.store.database import DatabaseError
    from thingport.store.keys import MasterKeyError, UnknownKey

    if isinstance(exc, ThingportError):
        return _first_line(str(exc))
    if isinstance(exc, MasterKeyError):
        return _first_line(str(exc))
    if isinstance(exc, UnknownKey):
        return _first_line(f"wrong master key: a secret was {exc}")
    if isinstance(exc, DatabaseError):
        return _first_line(f"database: {exc}")
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(exc, pydantic.ValidationError):
        return _first_line(_settings_message(exc))
    tomllib = sys.modules.get("tomllib")
    if tomllib is not None and isinstance(exc, tomllib.TOMLDecodeError):
        return _first_line(f"the settings file is not valid TOML: {exc}")
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        return _first_line(f"{exc.strerror or exc}{where}")
    sqlite3 = sys.modules.get("sqlite3")
    if sqlite3 is not None and isinstance(exc, sqlite3.Error):
        return _first_line(f"SQLite: {exc}")
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(exc, psycopg.Error):
        return _first_line(f"PostgreSQL: {exc}")
    sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
    if sqlalchemy_exc is not None and isinstance(exc, sqlalchemy_exc.SQLAlchemyError):
        return _first_line(f"PostgreSQL: {getattr(exc, 'orig', None) or exc}")
    return None


class GuardedGroup(click.Group):
    """The top group: a command's exception becomes one ``error:`` line (exit 1), unless debugging."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            if ctx.meta.get(DEBUG_ENV) or os.environ.get(DEBUG_ENV):
                raise
            message = explain(exc)
            if message is None:
                message = (f"unexpected {type(exc).__name__}: {_first_line(str(exc))} (this is a bug; "
                           f"{DEBUG_ENV}=1 or `thingport --debug ...` shows the traceback)")
            raise CliError(message) from None
