"""The registry (products, devices) and its change feed on SQLite."""

import sqlite3
import time

from thingport.core.errors import Conflict, NotFound
from thingport.core.model import AuthSession, Device, Product
from thingport.store.keys import SecretBox
from thingport.store.sqlite_executor import SqliteExecutor

_DEVICE_COLUMNS = (
    "id, product_key, device_name, secret_sealed, enabled, token_epoch, created_ms, last_auth_ms"
)
CHANGE_RETENTION_MS = 24 * 3600 * 1000


def _identity(product_key: str, device_name: str) -> str:
    return f"{product_key}/{device_name}"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class SqliteRegistry:
    def __init__(self, executor: SqliteExecutor, secret_box: SecretBox) -> None:
        self._db = executor
        self._box = secret_box

    def _device(self, row: tuple) -> Device:
        device_id, pk, dn, sealed, enabled, epoch, created_ms, last_auth_ms = row
        secret = self._box.open(sealed, _identity(pk, dn))
        return Device(device_id, pk, dn, bool(enabled), epoch, created_ms, secret, last_auth_ms)

    @staticmethod
    def _changed(conn: sqlite3.Connection, device_id: int) -> None:
        """Record a change in the same transaction, so every running server sees it on its next poll."""
        now = _now_ms()
        conn.execute("INSERT INTO changes (device_id, at_ms) VALUES (?, ?)", (device_id, now))
        conn.execute("DELETE FROM changes WHERE at_ms < ?", (now - CHANGE_RETENTION_MS,))

    # --- read side (DeviceDirectory) ---

    async def device_by_id(self, device_id: int) -> Device | None:
        def q(conn: sqlite3.Connection) -> tuple | None:
            return conn.execute(f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE id = ?", (device_id,)).fetchone()

        row = await self._db.run(q)
        return self._device(row) if row else None

    async def device_by_name(self, product_key: str, device_name: str) -> Device | None:
        def q(conn: sqlite3.Connection) -> tuple | None:
            return conn.execute(
                f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE product_key = ? AND device_name = ?",
                (product_key, device_name),
            ).fetchone()

        row = await self._db.run(q)
        return self._device(row) if row else None

    async def changes_since(self, cursor: int) -> tuple[int, list[int]]:
        def q(conn: sqlite3.Connection) -> list[tuple[int, int]]:
            return conn.execute(
                "SELECT id, device_id FROM changes WHERE id > ? ORDER BY id", (cursor,)
            ).fetchall()

        rows = await self._db.run(q)
        if not rows:
            return cursor, []
        return rows[-1][0], sorted({device_id for _, device_id in rows})

    async def change_cursor(self) -> int:
        def q(conn: sqlite3.Connection) -> int:
            return conn.execute("SELECT coalesce(max(id), 0) FROM changes").fetchone()[0]

        return await self._db.run(q)

    # --- management side ---

    async def create_product(self, product: Product) -> None:
        def q(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO products (product_key, name, node_type, created_ms) VALUES (?, ?, ?, ?)",
                    (product.product_key, product.name, product.node_type, product.created_ms),
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"product {product.product_key} already exists") from None

        await self._db.run(q)

    async def get_product(self, product_key: str) -> Product | None:
        def q(conn: sqlite3.Connection) -> tuple | None:
            return conn.execute(
                "SELECT product_key, name, node_type, created_ms FROM products WHERE product_key = ?",
                (product_key,),
            ).fetchone()

        row = await self._db.run(q)
        return Product(*row) if row else None

    async def list_products(self) -> list[Product]:
        def q(conn: sqlite3.Connection) -> list[tuple]:
            return conn.execute(
                "SELECT product_key, name, node_type, created_ms FROM products ORDER BY created_ms, product_key"
            ).fetchall()

        return [Product(*row) for row in await self._db.run(q)]

    async def create_device(self, product_key: str, device_name: str, secret: str, created_ms: int) -> Device:
        sealed = self._box.seal(secret, _identity(product_key, device_name))

        def q(conn: sqlite3.Connection) -> int:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if not conn.execute("SELECT 1 FROM products WHERE product_key = ?", (product_key,)).fetchone():
                    raise NotFound(f"product {product_key} does not exist")
                cur = conn.execute(
                    "INSERT INTO devices (product_key, device_name, secret_sealed, created_ms) VALUES (?, ?, ?, ?)",
                    (product_key, device_name, sealed, created_ms),
                )
                device_id = cur.lastrowid
                self._changed(conn, device_id)
                conn.execute("COMMIT")
                return device_id
            except sqlite3.IntegrityError:
                conn.execute("ROLLBACK")
                raise Conflict(f"device {product_key}/{device_name} already exists") from None
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        device_id = await self._db.run(q)
        return Device(device_id, product_key, device_name, True, 0, created_ms, secret)

    async def list_devices(self, product_key: str | None) -> list[Device]:
        def q(conn: sqlite3.Connection) -> list[tuple]:
            if product_key is None:
                return conn.execute(f"SELECT {_DEVICE_COLUMNS} FROM devices ORDER BY id").fetchall()
            return conn.execute(
                f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE product_key = ? ORDER BY id", (product_key,)
            ).fetchall()

        return [self._device(row) for row in await self._db.run(q)]

    async def _update(self, device_id: int, sql: str, params: tuple) -> None:
        def q(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if conn.execute(sql, params).rowcount != 1:
                    raise NotFound("device does not exist")
                self._changed(conn, device_id)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        await self._db.run(q)

    async def set_device_enabled(self, device_id: int, enabled: bool) -> None:
        # Disabling also bumps the epoch: tokens issued before stay dead after re-enabling.
        bump = 0 if enabled else 1
        await self._update(
            device_id,
            "UPDATE devices SET enabled = ?, token_epoch = token_epoch + ? WHERE id = ?",
            (int(enabled), bump, device_id),
        )

    async def reset_device_secret(self, device_id: int, secret: str) -> None:
        def q(conn: sqlite3.Connection) -> tuple | None:
            return conn.execute("SELECT product_key, device_name FROM devices WHERE id = ?", (device_id,)).fetchone()

        row = await self._db.run(q)
        if row is None:
            raise NotFound("device does not exist")
        sealed = self._box.seal(secret, _identity(*row))
        await self._update(
            device_id,
            "UPDATE devices SET secret_sealed = ?, token_epoch = token_epoch + 1 WHERE id = ?",
            (sealed, device_id),
        )

    async def delete_device(self, device_id: int) -> None:
        await self._update(device_id, "DELETE FROM devices WHERE id = ?", (device_id,))


def record_sessions(conn: sqlite3.Connection, sessions: list[AuthSession]) -> None:
    """Write authentication sessions inside the caller's transaction (the log writer's batch)."""
    conn.executemany(
        "UPDATE devices SET last_auth_ms = ?, last_client_id = ?, last_source = ? WHERE id = ?",
        [(s.at_ms, s.client_id, s.source, s.device_id) for s in sessions],
    )
