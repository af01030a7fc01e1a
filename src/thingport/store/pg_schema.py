"""The PostgreSQL schema's migrations, run by alembic (``thingport db upgrade``, or ``serve --db-upgrade``).

The embedded SQLite store migrates itself when opened (zero configuration); a shared PostgreSQL schema
changes only when an operator asks, because several hosts run against it.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from thingport.extras import missing_extra

try:
    import sqlalchemy
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
except ImportError as exc:  # an optional backend
    raise missing_extra("postgres", exc) from None

from thingport.core.errors import StoreUnavailable

_SCRIPTS = Path(__file__).parent / "migrations"


class StepProgress(Protocol):
    """Where migrations say how far they are (``cli_output.Progress``): ``update`` may be dropped when
    too soon after the last; ``done`` is always shown."""

    def update(self, line: str) -> None: ...

    def done(self, line: str) -> None: ...


class _Silent:
    def update(self, line: str) -> None:
        pass

    def done(self, line: str) -> None:
        pass


def step_progress() -> StepProgress:
    """For a migration step that rewrites data: the progress display ``upgrade`` was given (or a silent one)."""
    from alembic import context

    return context.config.attributes.get("progress") or _Silent()


def _engine(url: str) -> sqlalchemy.Engine:
    scheme, rest = url.split("://", 1)
    if scheme in ("postgres", "postgresql"):
        scheme = "postgresql+psycopg"
    return sqlalchemy.create_engine(f"{scheme}://{rest}", poolclass=sqlalchemy.pool.NullPool)


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    return config


def head() -> str:
    return ScriptDirectory.from_config(_config()).get_current_head() or ""


def current(url: str) -> str | None:
    """The revision the database is at (None: never migrated)."""
    engine = _engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def upgrade(url: str, revision: str = "head", progress: StepProgress | None = None) -> tuple[str | None, str]:
    """Migrate to ``revision``; returns (from, to). ``progress`` hears of each step applied (and how long it
    took) and, from steps that rewrite data, how far they are."""
    return _migrate(url, command.upgrade, revision, progress)


def downgrade(url: str, revision: str, progress: StepProgress | None = None) -> tuple[str | None, str]:
    """Migrate back to ``revision`` (before running an older thingport); returns (from, to)."""
    return _migrate(url, command.downgrade, revision, progress)


def _migrate(url: str, step: Callable[[Config, str], None], revision: str,
             progress: StepProgress | None) -> tuple[str | None, str]:
    engine = _engine(url)
    try:
        with engine.begin() as connection:
            before = MigrationContext.configure(connection).get_current_revision()
            config = _config()
            config.attributes["connection"] = connection
            config.attributes["progress"] = progress
            step(config, revision)
            after = MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
    return before, after or ""


def require_current(url: str) -> None:
    """Refuse to run on a schema this version of thingport does not know."""
    try:
        at = current(url)
    except sqlalchemy.exc.OperationalError as exc:
        raise StoreUnavailable(f"PostgreSQL is unreachable: {exc.orig}") from None
    if at != head():
        raise StoreUnavailable(
            f"the PostgreSQL schema is at {at or 'nothing'}, this thingport needs {head()}: "
            "run `thingport db upgrade` (or start with --db-upgrade)"
        )
