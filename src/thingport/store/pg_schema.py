"""The PostgreSQL schema's migrations, run by alembic (``thingport db upgrade``, or ``serve --db-upgrade``).

The embedded SQLite store migrates itself when opened (zero configuration); a shared PostgreSQL schema
changes only when an operator asks, because several hosts run against it.
"""

from collections.abc import Callable
from pathlib import Path

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


def upgrade(url: str, revision: str = "head") -> tuple[str | None, str]:
    """Migrate to ``revision``; returns (from, to)."""
    return _migrate(url, command.upgrade, revision)


def downgrade(url: str, revision: str) -> tuple[str | None, str]:
    """Migrate back to ``revision`` (before running an older thingport); returns (from, to)."""
    return _migrate(url, command.downgrade, revision)


def _migrate(url: str, step: Callable[[Config, str], None], revision: str) -> tuple[str | None, str]:
    engine = _engine(url)
    try:
        with engine.begin() as connection:
            before = MigrationContext.configure(connection).get_current_revision()
            config = _config()
            config.attributes["connection"] = connection
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
