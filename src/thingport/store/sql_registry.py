"""The registry (products, devices, subscriptions, API keys) and its change feed, on either SQL engine."""

import time
from collections.abc import Sequence
from typing import Any

import msgspec

from thingport.core.errors import Conflict, NotFound
from thingport.core.model import (
    ApiKey,
    AuthSession,
    Device,
    DeviceCounts,
    HistoryBucket,
    ListedDevice,
    Product,
    Rule,
    RuleAction,
    Subscription,
)
from thingport.core.rule_actions import action_doc, actions_from_docs
from thingport.core.tokens import Superseded, supersede
from thingport.store.database import Database, IntegrityError
from thingport.store.executor import DbExecutor
from thingport.store.keys import KeyRing

_IDS_PER_QUERY = 500  # under SQLite's 999 bound variables of old builds, with room for the rest
_DEVICE_COLUMNS = (
    "d.id, d.product_key, d.device_name, d.secret_sealed, d.enabled, d.token_epoch, d.created_ms,"
    " d.last_auth_ms, d.device_id, d.gateway_id, g.product_key, g.device_name, d.token_ms,"
    " d.superseded_tokens"
)
_DEVICE_SELECT = f"SELECT {_DEVICE_COLUMNS} FROM devices d LEFT JOIN devices g ON g.id = d.gateway_id"
# core.model.is_online in SQL, over devices d joined to their products p; parameters (now_ms, the server's
# default timeout in ms). last_seen_ms is deliberately not indexed: every report batch updates it.
ONLINE_SQL = (
    "(d.enabled = 1 AND COALESCE(d.last_seen_ms, -1) > ? - COALESCE(p.presence_timeout_s * 1000, ?))"
)
LIST_SCAN = 10_000  # the most devices one listing page looks at: a filter few match cannot make a page slow
_PRODUCT_COLUMNS = (
    "product_key, name, node_type, created_ms, model_version, validation, topics, presence_timeout_s,"
    " device_report_rate, device_report_burst, require_sign_type_1"
)
CHANGE_RETENTION_MS = 24 * 3600 * 1000


def _identity(product_key: str, device_name: str) -> str:
    return f"{product_key}/{device_name}"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _delete_alarms(conn: Database, where: str, params: tuple) -> None:
    """A deleted device's alarms go with its running status (their messages stay in the log)."""
    conn.execute(f"DELETE FROM alarm_events WHERE alarm_id IN (SELECT id FROM alarms WHERE {where})", params)
    conn.execute(f"DELETE FROM alarms WHERE {where}", params)


class SqlRegistry:
    def __init__(self, executor: DbExecutor, secret_box: KeyRing) -> None:
        self._db = executor
        self._box = secret_box

    def _device(self, row: tuple) -> Device:
        (device_id, pk, dn, sealed, enabled, epoch, created_ms, last_auth_ms, hw_id, gateway_id, gw_pk, gw_dn,
         token_ms, superseded) = row
        secret = self._box.open(sealed, _identity(pk, dn))
        gateway = (gw_pk, gw_dn) if gateway_id is not None else None
        return Device(device_id, pk, dn, bool(enabled), epoch, created_ms, secret, last_auth_ms, hw_id, gateway_id,
                      gateway, token_ms, _superseded(superseded))

    async def _one_device(self, where: str, params: tuple) -> Device | None:
        def q(conn: Database) -> tuple | None:
            return conn.execute(f"{_DEVICE_SELECT} WHERE {where}", params).fetchone()

        row = await self._db.run(q)
        return self._device(row) if row else None

    async def _devices(self, where: str, params: tuple) -> list[Device]:
        def q(conn: Database) -> list[tuple]:
            return conn.execute(f"{_DEVICE_SELECT} WHERE {where} ORDER BY d.id", params).fetchall()

        return [self._device(row) for row in await self._db.run(q)]

    @staticmethod
    def _changed(conn: Database, device_id: int | None = None, product_key: str | None = None) -> None:
        """Record a change in the same transaction, so every running server sees it on its next poll."""
        now = _now_ms()
        conn.serialize("changes")
        conn.execute(
            "INSERT INTO changes (device_id, product_key, at_ms) VALUES (?, ?, ?)", (device_id, product_key, now)
        )
        conn.execute("DELETE FROM changes WHERE at_ms < ?", (now - CHANGE_RETENTION_MS,))

    async def ping(self) -> None:
        """Raises when the database does not answer."""
        await self._db.run(lambda conn: conn.execute("SELECT 1").fetchone())

    # --- read side (RegistryReader) ---

    async def device_by_id(self, device_id: int) -> Device | None:
        return await self._one_device("d.id = ?", (device_id,))

    async def devices_by_ids(self, device_ids: Sequence[int]) -> list[Device]:
        def q(conn: Database) -> list[tuple]:
            rows: list[tuple] = []
            ids = list(device_ids)
            for start in range(0, len(ids), _IDS_PER_QUERY):
                chunk = ids[start:start + _IDS_PER_QUERY]
                rows += conn.execute(f"{_DEVICE_SELECT} WHERE d.id IN ({','.join('?' * len(chunk))})", chunk).fetchall()
            return rows

        return [self._device(row) for row in await self._db.run(q)]

    async def device_by_name(self, product_key: str, device_name: str) -> Device | None:
        return await self._one_device("d.product_key = ? AND d.device_name = ?", (product_key, device_name))

    async def device_by_device_id(self, device_id: str) -> Device | None:
        """By IoTDA ``device_id``."""
        return await self._one_device("d.device_id = ?", (device_id,))

    async def children(self, gateway_id: int) -> list[Device]:
        return await self._devices("d.gateway_id = ?", (gateway_id,))

    async def changes_since(self, cursor: int) -> tuple[int, list[int], list[str]]:
        def q(conn: Database) -> list[tuple[int, int | None, str | None]]:
            return conn.execute(
                "SELECT id, device_id, product_key FROM changes WHERE id > ? ORDER BY id", (cursor,)
            ).fetchall()

        rows = await self._db.run(q)
        if not rows:
            return cursor, [], []
        devices = sorted({d for _, d, _ in rows if d is not None})
        products = sorted({p for _, _, p in rows if p is not None})
        return rows[-1][0], devices, products

    async def change_cursor(self) -> int:
        def q(conn: Database) -> int:
            return conn.execute("SELECT coalesce(max(id), 0) FROM changes").fetchone()[0]

        return await self._db.run(q)

    # --- management side ---

    async def create_product(self, product: Product) -> None:
        def q(conn: Database) -> None:
            try:
                conn.execute(
                    "INSERT INTO products (product_key, name, node_type, created_ms) VALUES (?, ?, ?, ?)",
                    (product.product_key, product.name, product.node_type, product.created_ms),
                )
            except IntegrityError:
                raise Conflict(f"product {product.product_key} already exists") from None

        await self._db.run(q)

    async def get_product(self, product_key: str) -> Product | None:
        def q(conn: Database) -> tuple | None:
            return conn.execute(
                f"SELECT {_PRODUCT_COLUMNS} FROM products WHERE product_key = ?", (product_key,)
            ).fetchone()

        row = await self._db.run(q)
        return _product(row) if row else None

    async def list_products(self) -> list[Product]:
        def q(conn: Database) -> list[tuple]:
            return conn.execute(
                f"SELECT {_PRODUCT_COLUMNS} FROM products ORDER BY created_ms, product_key"
            ).fetchall()

        return [_product(row) for row in await self._db.run(q)]

    async def _update_product(self, product_key: str, sql: str, params: tuple, extra: str | None = None,
                              extra_params: tuple = ()) -> None:
        def q(conn: Database) -> None:
            with conn.transaction():
                if extra:
                    conn.execute(extra, extra_params)
                if conn.execute(sql, params).rowcount != 1:
                    raise NotFound(f"product {product_key} does not exist")
                self._changed(conn, product_key=product_key)

        await self._db.run(q)

    async def set_thing_model(self, product_key: str, version: str, document: dict, created_ms: int) -> None:
        """Make ``document`` the product's current model (every version stays on record)."""
        await self._update_product(
            product_key,
            "UPDATE products SET model_version = ? WHERE product_key = ?",
            (version, product_key),
            "INSERT INTO thing_models (product_key, version, document, created_ms)"
            " SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM products WHERE product_key = ?) ON CONFLICT DO NOTHING",
            (product_key, version, msgspec.json.encode(document).decode(), created_ms, product_key),
        )

    async def thing_model(self, product_key: str, version: str) -> dict | None:
        def q(conn: Database) -> tuple | None:
            return conn.execute(
                "SELECT document FROM thing_models WHERE product_key = ? AND version = ?", (product_key, version)
            ).fetchone()

        row = await self._db.run(q)
        return msgspec.json.decode(row[0]) if row else None

    async def set_product_topics(self, product_key: str, topics: tuple[tuple[str, str], ...]) -> None:
        await self._update_product(
            product_key, "UPDATE products SET topics = ? WHERE product_key = ?",
            (msgspec.json.encode([list(t) for t in topics]).decode(), product_key),
        )

    async def set_product_validation(self, product_key: str, validation: str) -> None:
        await self._update_product(
            product_key, "UPDATE products SET validation = ? WHERE product_key = ?", (validation, product_key)
        )

    async def create_device(
        self, product_key: str, device_name: str, secret: str, created_ms: int, device_id: str,
        gateway_id: int | None = None,
    ) -> Device:
        sealed = self._box.seal(secret, _identity(product_key, device_name))

        def q(conn: Database) -> int:
            with conn.transaction():
                if not conn.execute("SELECT 1 FROM products WHERE product_key = ?", (product_key,)).fetchone():
                    raise NotFound(f"product {product_key} does not exist")
                for sql, args, what in (
                    ("SELECT 1 FROM devices WHERE product_key = ? AND device_name = ?", (product_key, device_name),
                     f"device {product_key}/{device_name}"),
                    ("SELECT 1 FROM devices WHERE device_id = ?", (device_id,), f"device_id {device_id}"),
                ):
                    if conn.execute(sql, args).fetchone():
                        raise Conflict(f"{what} already exists")
                try:  # the checks above tell which rule; this catches a concurrent twin (PostgreSQL)
                    cur = conn.execute(
                        "INSERT INTO devices"
                        " (product_key, device_name, secret_sealed, created_ms, device_id, gateway_id)"
                        " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                        (product_key, device_name, sealed, created_ms, device_id, gateway_id),
                    )
                except IntegrityError:
                    raise Conflict(
                        f"device {product_key}/{device_name} or device_id {device_id} already exists"
                    ) from None
                new_id = cur.fetchone()[0]
                self._changed(conn, new_id)
                return new_id

        created = await self.device_by_id(await self._db.run(q))
        assert created is not None
        return created

    async def import_devices(
        self, rows: Sequence[tuple[str, str, str, str]], created_ms: int, skip_refused: bool,
        check_only: bool = False,
    ) -> tuple[dict[int, tuple[str, str]], int]:
        """Insert devices, (productKey, deviceName, device_id, secret) each, in one transaction: all or none
        (``check_only``: none, only the report).

        Returns the rows refused by what is stored (index -> (code, reason): ``unknown_product``, ``exists``)
        and how many were inserted. A refused row means nothing is inserted, unless ``skip_refused``: then
        the others are. Inserts go through ``Database.insert_rows`` (executemany in chunks; PostgreSQL's
        COPY); new devices need no change-feed entry (no cache holds a device before it exists)."""
        box = self._box
        sealed = [] if check_only else [box.seal(secret, _identity(pk, dn)) for pk, dn, _, secret in rows]

        def q(conn: Database) -> tuple[dict[int, tuple[str, str]], int]:
            refused: dict[int, tuple[str, str]] = {}
            with conn.transaction():
                products = {pk for pk, _, _, _ in rows}
                missing = {pk for pk in products
                           if not conn.execute("SELECT 1 FROM products WHERE product_key = ?", (pk,)).fetchone()}
                by_name: dict[tuple[str, str], int] = {}
                by_id: dict[str, int] = {}
                for index, (pk, dn, did, _) in enumerate(rows):
                    if pk in missing:
                        refused[index] = ("unknown_product", f"product {pk} does not exist")
                    else:
                        by_name[(pk, dn)] = index
                        by_id[did] = index
                for pk in products - missing:
                    names = [dn for p, dn in by_name if p == pk]
                    for (found,) in conn.select_in(
                        "SELECT device_name FROM devices WHERE product_key = ? AND device_name {}", (pk,), names,
                    ):
                        refused[by_name[(pk, found)]] = ("exists", f"device {pk}/{found} already exists")
                for (found,) in conn.select_in("SELECT device_id FROM devices WHERE device_id {}", (), list(by_id)):
                    refused.setdefault(by_id[found], ("exists", f"device_id {found} already exists"))
                if check_only or (refused and not skip_refused):
                    return refused, 0
                insert = [(pk, dn, sealed[i], created_ms, did) for i, (pk, dn, did, _) in enumerate(rows)
                          if i not in refused]
                try:  # the checks above tell which rule; this catches a concurrent twin (PostgreSQL)
                    conn.insert_rows(
                        "devices", ("product_key", "device_name", "secret_sealed", "created_ms", "device_id"), insert)
                except IntegrityError:
                    raise Conflict("a device of this import was created meanwhile by someone else: nothing was"
                                   " imported; import again") from None
                return refused, len(insert)

        return await self._db.run(q)

    async def delete_product(self, product_key: str, force: bool) -> tuple[int, int]:
        """Delete a product with its thing models, in one transaction; (devices, subscriptions) deleted.

        While it has devices or subscriptions naming it it is refused (Conflict), unless ``force``: then its
        devices go, and so do the subscriptions of it alone (one of several products loses it from its list),
        the devices with their running status and history (their messages stay in the log). Sub-devices of
        another product under one of its gateways refuse it even so. One change-feed entry names the
        product: running servers drop its devices from memory."""

        def q(conn: Database) -> tuple[int, int]:
            with conn.transaction():
                if not conn.execute("SELECT 1 FROM products WHERE product_key = ?", (product_key,)).fetchone():
                    raise NotFound(f"product {product_key} does not exist")
                devices = conn.execute("SELECT count(*) FROM devices WHERE product_key = ?",
                                       (product_key,)).fetchone()[0]
                naming = [(sid, keys.split(",")) for sid, keys in conn.execute(
                    "SELECT id, product_keys FROM subscriptions WHERE product_keys IS NOT NULL").fetchall()
                    if product_key in keys.split(",")]  # every-product subscriptions (NULL) need no change
                subscriptions = len(naming)
                if (devices or subscriptions) and not force:
                    raise Conflict(f"product {product_key} has {devices} devices and {subscriptions} subscriptions:"
                                   " delete them first, or force the deletion (deletes them too)")
                if conn.execute(
                    "SELECT 1 FROM devices c JOIN devices g ON g.id = c.gateway_id"
                    " WHERE g.product_key = ? AND c.product_key <> ? LIMIT 1", (product_key, product_key),
                ).fetchone():
                    raise Conflict(f"devices of other products are sub-devices of product {product_key}'s gateways:"
                                   " delete them first")
                owned = "SELECT id FROM devices WHERE product_key = ?"
                for table in ("latest_values", "history", "alarm_pending"):
                    conn.execute(f"DELETE FROM {table} WHERE device_id IN ({owned})", (product_key,))
                _delete_alarms(conn, "product_key = ?", (product_key,))
                conn.execute("UPDATE devices SET gateway_id = NULL WHERE product_key = ?", (product_key,))
                for sid, keys in naming:  # its own subscriptions go; a list of products loses it
                    rest = [key for key in keys if key != product_key]
                    if rest:
                        conn.execute("UPDATE subscriptions SET product_keys = ? WHERE id = ?", (",".join(rest), sid))
                    else:
                        conn.execute("DELETE FROM subscriptions WHERE id = ?", (sid,))
                for table in ("devices", "thing_models", "alarm_definitions", "products"):
                    conn.execute(f"DELETE FROM {table} WHERE product_key = ?", (product_key,))
                self._changed(conn, product_key=product_key)
                return devices, subscriptions

        return await self._db.run(q)

    async def devices_by_name(self, product_key: str, after_name: str, limit: int) -> list[Device]:
        """A product's devices in deviceName order after ``after_name`` (an export, a page at a time): the
        (productKey, deviceName) index serves it, where ``list_devices``' id order made SQLite sort the
        product's every device for each page."""
        return await self._devices_ordered(
            "d.product_key = ? AND d.device_name > ? ORDER BY d.device_name LIMIT ?", (product_key, after_name, limit))

    async def _devices_ordered(self, where: str, params: tuple) -> list[Device]:
        def q(conn: Database) -> list[tuple]:
            return conn.execute(f"{_DEVICE_SELECT} WHERE {where}", params).fetchall()

        return [self._device(row) for row in await self._db.run(q)]

    async def list_devices(
        self, product_key: str | None, name_prefix: str | None = None, enabled: bool | None = None,
        after_id: int = 0, limit: int = 1_000_000,
    ) -> list[Device]:
        """Devices in id order, filtered, a page at a time (``after_id``: the last id of the previous page)."""
        where: list[str] = ["d.id > ?"]
        params: list[str | int] = [after_id]
        if product_key is not None:
            where.append("d.product_key = ?")
            params.append(product_key)
        if name_prefix:
            where.append("substr(d.device_name, 1, ?) = ?")
            params.extend([len(name_prefix), name_prefix])
        if enabled is not None:
            where.append("d.enabled = ?")
            params.append(int(enabled))

        def q(conn: Database) -> list[tuple]:
            sql = f"{_DEVICE_SELECT} WHERE {' AND '.join(where)} ORDER BY d.id LIMIT ?"
            return conn.execute(sql, (*params, limit)).fetchall()

        return [self._device(row) for row in await self._db.run(q)]

    async def device_page(
        self, now_ms: int, default_timeout_ms: int, product_key: str | None, name_prefix: str | None = None,
        enabled: bool | None = None, online: bool | None = None, after_id: int = 0, limit: int = 100,
    ) -> tuple[list[ListedDevice], int | None]:
        """A page of devices in id order after ``after_id``, filtered, each with its presence; and the
        cursor the next page starts after (None: the listing is done).

        A page looks at no more than ``LIST_SCAN`` devices (the (product_key, id) index walks them), so
        it may hold fewer than ``limit`` and still have a next cursor: a filter that matches few of a
        million devices costs a bounded read per page, never a scan of the product."""
        scope, scope_params = ("d.product_key = ? AND ", [product_key]) if product_key is not None else ("", [])
        where, params = [f"{scope}d.id > ?"], [*scope_params, after_id]
        if name_prefix:
            where.append("substr(d.device_name, 1, ?) = ?")
            params.extend([len(name_prefix), name_prefix])
        if enabled is not None:
            where.append("d.enabled = ?")
            params.append(int(enabled))
        if online is not None:
            where.append(ONLINE_SQL if online else f"NOT {ONLINE_SQL}")
            params.extend([now_ms, default_timeout_ms])

        def q(conn: Database) -> tuple[list[tuple], int | None]:
            # the last device this page may look at, and whether any comes after it
            edges = conn.execute_planned(
                f"SELECT d.id FROM devices d WHERE {scope}d.id > ? ORDER BY d.id LIMIT 2 OFFSET ?",
                (*scope_params, after_id, LIST_SCAN - 1),
            ).fetchall()
            bound = ["d.id <= ?"] if edges else []
            rows = conn.execute_planned(
                f"SELECT {_DEVICE_COLUMNS}, d.last_seen_ms, CASE WHEN {ONLINE_SQL} THEN 1 ELSE 0 END"
                " FROM devices d JOIN products p ON p.product_key = d.product_key"
                " LEFT JOIN devices g ON g.id = d.gateway_id"
                f" WHERE {' AND '.join(where + bound)} ORDER BY d.id LIMIT ?",
                (now_ms, default_timeout_ms, *params, *(edges[0] if edges else ()), limit + 1),
            ).fetchall()
            return rows, edges[0][0] if len(edges) == 2 else None

        rows, edge = await self._db.run(q)
        items = [self._listed(row) for row in rows[:limit]]
        if len(rows) > limit:
            return items, items[-1].device.id
        return items, edge

    def _listed(self, row: tuple) -> ListedDevice:
        """A row of ``_DEVICE_COLUMNS``, last seen, online (0/1)."""
        return ListedDevice(self._device(row[:-2]), bool(row[-1]), row[-2])

    async def listed_children(self, gateway_id: int, now_ms: int, default_timeout_ms: int) -> list[ListedDevice]:
        """A gateway's sub-devices with their presence, in id order."""

        def q(conn: Database) -> list[tuple]:
            return conn.execute(
                f"SELECT {_DEVICE_COLUMNS}, d.last_seen_ms, CASE WHEN {ONLINE_SQL} THEN 1 ELSE 0 END"
                " FROM devices d JOIN products p ON p.product_key = d.product_key"
                " LEFT JOIN devices g ON g.id = d.gateway_id WHERE d.gateway_id = ? ORDER BY d.id",
                (now_ms, default_timeout_ms, gateway_id),
            ).fetchall()

        return [self._listed(row) for row in await self._db.run(q)]

    async def device_counts(
        self, now_ms: int, default_timeout_ms: int, product_key: str | None = None,
    ) -> dict[str, DeviceCounts]:
        """Per product (every one, or ``product_key``'s): its devices, those online, those disabled; one query."""
        scope, params = ("WHERE p.product_key = ?", (product_key,)) if product_key is not None else ("", ())

        def q(conn: Database) -> list[tuple]:
            return conn.execute_planned(
                f"SELECT p.product_key, COUNT(d.id), SUM(CASE WHEN {ONLINE_SQL} THEN 1 ELSE 0 END),"
                " SUM(CASE WHEN d.enabled = 0 THEN 1 ELSE 0 END)"
                f" FROM products p LEFT JOIN devices d ON d.product_key = p.product_key {scope}"
                " GROUP BY p.product_key",
                (now_ms, default_timeout_ms, *params),
            ).fetchall()

        return {key: DeviceCounts(int(total), int(online or 0), int(disabled or 0))
                for key, total, online, disabled in await self._db.run(q)}

    async def revoke_tokens(self, device_id: int) -> None:
        """Every token issued so far dies; the device may authenticate again."""
        await self._update(device_id, "UPDATE devices SET token_epoch = token_epoch + 1 WHERE id = ?", (device_id,))

    # --- subscriptions ---

    _SUBSCRIPTION_COLUMNS = (
        "id, name, product_keys, kinds, topic_filter, sink, options_sealed, cursor, enabled, created_ms, delivered,"
        " state, state_since_ms, last_error"
    )

    def _subscription(self, row: tuple) -> Subscription:
        sid, name, keys, kinds, topic_filter, sink, sealed, cursor, enabled, created_ms, *health = row
        options = msgspec.json.decode(self._box.open(sealed, f"subscription/{name}"))
        products = tuple(keys.split(",")) if keys else ()
        return Subscription(sid, name, products, tuple(kinds.split(",")), topic_filter, sink, options, cursor,
                            bool(enabled), created_ms, *health)

    async def create_subscription(
        self, name: str, products: tuple[str, ...], kinds: tuple[str, ...], topic_filter: str | None, sink: str,
        options: dict, from_start: bool, created_ms: int,
    ) -> Subscription:
        """``products`` empty: every product's messages, those of products created later too."""
        sealed = self._box.seal(msgspec.json.encode(options).decode(), f"subscription/{name}")

        def q(conn: Database) -> int:
            with conn.transaction():
                for product_key in products:
                    if not conn.execute("SELECT 1 FROM products WHERE product_key = ?", (product_key,)).fetchone():
                        raise NotFound(f"product {product_key} does not exist")
                if conn.execute("SELECT 1 FROM subscriptions WHERE name = ?", (name,)).fetchone():
                    raise Conflict(f"subscription {name} already exists")
                newest = f"SELECT coalesce(max(seq), 0) FROM messages WHERE {conn.log_horizon or 'TRUE'}"
                start = 0 if from_start else conn.execute(newest).fetchone()[0]  # a late commit: still delivered
                try:
                    cur = conn.execute(
                        "INSERT INTO subscriptions"
                        " (name, product_keys, kinds, topic_filter, sink, options_sealed, cursor, created_ms,"
                        " delivered)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                        (name, ",".join(products) or None, ",".join(kinds), topic_filter, sink, sealed, start,
                         created_ms, start),
                    )
                except IntegrityError:  # a concurrent twin (PostgreSQL's READ COMMITTED lets both check first)
                    raise Conflict(f"subscription {name} already exists") from None
                return cur.fetchone()[0]

        await self._db.run(q)
        created = await self.get_subscription(name)
        assert created is not None
        return created

    async def get_subscription(self, name: str) -> Subscription | None:
        def q(conn: Database) -> tuple | None:
            return conn.execute(
                f"SELECT {self._SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE name = ?", (name,)
            ).fetchone()

        row = await self._db.run(q)
        return self._subscription(row) if row else None

    async def list_subscriptions(self) -> list[Subscription]:
        def q(conn: Database) -> list[tuple]:
            return conn.execute(f"SELECT {self._SUBSCRIPTION_COLUMNS} FROM subscriptions ORDER BY id").fetchall()

        return [self._subscription(row) for row in await self._db.run(q)]

    async def set_subscription_state(self, subscription_id: int, state: str, since_ms: int, error: str | None) -> None:
        """A push subscription's delivery state, as its forwarder saw it."""

        def q(conn: Database) -> None:
            conn.execute("UPDATE subscriptions SET state = ?, state_since_ms = ?, last_error = ? WHERE id = ?",
                         (state, since_ms, error, subscription_id))

        await self._db.run(q)

    async def _change_named(self, what: str, name: str, sql: str, params: tuple) -> None:
        """One statement on the named subscription or rule; NotFound when it changed no row."""
        def q(conn: Database) -> int:
            return conn.execute(sql, params).rowcount

        if await self._db.run(q) != 1:
            raise NotFound(f"{what} {name} does not exist")

    async def set_subscription_enabled(self, name: str, enabled: bool) -> None:
        await self._change_named("subscription", name, "UPDATE subscriptions SET enabled = ? WHERE name = ?",
                                 (int(enabled), name))

    async def delete_subscription(self, name: str) -> None:
        await self._change_named("subscription", name, "DELETE FROM subscriptions WHERE name = ?", (name,))

    # --- rules ---

    _RULE_COLUMNS = (
        "id, name, statement, actions_sealed, enabled, cursor, created_ms, matched, failed, last_error,"
        " last_error_ms, state, state_since_ms, sink_error"
    )

    def _rule(self, row: tuple) -> Rule:
        rid, name, statement, sealed, enabled, cursor, created_ms, *rest = row
        actions = actions_from_docs(msgspec.json.decode(self._box.open(sealed, f"rule/{name}")))
        return Rule(rid, name, statement, actions, bool(enabled), cursor, created_ms, *rest)

    async def create_rule(self, name: str, statement: str, actions: tuple[RuleAction, ...], enabled: bool,
                          from_start: bool, created_ms: int) -> Rule:
        """A rule whose cursor starts at the newest message (or before the oldest, ``from_start``)."""
        sealed = self._box.seal(msgspec.json.encode([action_doc(a) for a in actions]).decode(), f"rule/{name}")

        def q(conn: Database) -> None:
            with conn.transaction():
                if conn.execute("SELECT 1 FROM rules WHERE name = ?", (name,)).fetchone():
                    raise Conflict(f"rule {name} already exists")
                newest = f"SELECT coalesce(max(seq), 0) FROM messages WHERE {conn.log_horizon or 'TRUE'}"
                start = 0 if from_start else conn.execute(newest).fetchone()[0]  # a late commit: still evaluated
                try:
                    conn.execute(
                        "INSERT INTO rules (name, statement, actions_sealed, enabled, cursor, created_ms)"
                        " VALUES (?, ?, ?, ?, ?, ?)", (name, statement, sealed, int(enabled), start, created_ms))
                except IntegrityError:  # a concurrent twin
                    raise Conflict(f"rule {name} already exists") from None

        await self._db.run(q)
        created = await self.get_rule(name)
        assert created is not None
        return created

    async def get_rule(self, name: str) -> Rule | None:
        def q(conn: Database) -> tuple | None:
            return conn.execute(f"SELECT {self._RULE_COLUMNS} FROM rules WHERE name = ?", (name,)).fetchone()

        row = await self._db.run(q)
        return self._rule(row) if row else None

    async def list_rules(self) -> list[Rule]:
        def q(conn: Database) -> list[tuple]:
            return conn.execute(f"SELECT {self._RULE_COLUMNS} FROM rules ORDER BY id").fetchall()

        return [self._rule(row) for row in await self._db.run(q)]

    async def set_rule_state(self, rule_id: int, state: str, since_ms: int, error: str | None) -> None:
        """How a rule's actions confirm, as its runner saw it."""

        def q(conn: Database) -> None:
            conn.execute("UPDATE rules SET state = ?, state_since_ms = ?, sink_error = ? WHERE id = ?",
                         (state, since_ms, error, rule_id))

        await self._db.run(q)

    async def set_rule_enabled(self, name: str, enabled: bool) -> None:
        await self._change_named("rule", name, "UPDATE rules SET enabled = ? WHERE name = ?", (int(enabled), name))

    async def delete_rule(self, name: str) -> None:
        await self._change_named("rule", name, "DELETE FROM rules WHERE name = ?", (name,))

    async def reseal_all(self) -> int:
        """Seal every stored credential (device secrets, subscription options, rule actions) again with the newest key,
        in one transaction; returns how many were sealed with an older one."""
        box = self._box

        def q(conn: Database) -> int:
            count = 0
            with conn.transaction():
                for device_id, pk, dn, sealed in conn.execute(
                    "SELECT id, product_key, device_name, secret_sealed FROM devices ORDER BY id"
                ).fetchall():
                    if not box.sealed_with_current(sealed):
                        identity = _identity(pk, dn)
                        conn.execute("UPDATE devices SET secret_sealed = ? WHERE id = ?",
                                     (box.seal(box.open(sealed, identity), identity), device_id))
                        count += 1
                for sub_id, name, sealed in conn.execute(
                    "SELECT id, name, options_sealed FROM subscriptions ORDER BY id"
                ).fetchall():
                    if not box.sealed_with_current(sealed):
                        identity = f"subscription/{name}"
                        conn.execute("UPDATE subscriptions SET options_sealed = ? WHERE id = ?",
                                     (box.seal(box.open(sealed, identity), identity), sub_id))
                        count += 1
                for rule_id, name, sealed in conn.execute(
                    "SELECT id, name, actions_sealed FROM rules ORDER BY id"
                ).fetchall():
                    if not box.sealed_with_current(sealed):
                        identity = f"rule/{name}"
                        conn.execute("UPDATE rules SET actions_sealed = ? WHERE id = ?",
                                     (box.seal(box.open(sealed, identity), identity), rule_id))
                        count += 1
            return count

        return await self._db.run(q)

    async def set_product_presence_timeout(self, product_key: str, seconds: float | None) -> None:
        await self._update_product(
            product_key, "UPDATE products SET presence_timeout_s = ? WHERE product_key = ?", (seconds, product_key)
        )

    async def set_product_sign_type_1(self, product_key: str, required: bool | None) -> None:
        await self._update_product(
            product_key, "UPDATE products SET require_sign_type_1 = ? WHERE product_key = ?",
            (None if required is None else int(required), product_key),
        )

    async def set_product_device_rate(self, product_key: str, rate: float | None, burst: float | None) -> None:
        await self._update_product(
            product_key, "UPDATE products SET device_report_rate = ?, device_report_burst = ? WHERE product_key = ?",
            (rate, burst, product_key),
        )

    async def recently_seen(self, since_ms: int, device_ids: Sequence[int] | None = None) -> list[tuple[int, int]]:
        """(device id, last seen) of devices seen since ``since_ms``: every one (presence to resume after a
        restart, a scan), or of ``device_ids`` (the few a presence sweep found silent, by primary key)."""

        def q(conn: Database) -> list[tuple[int, int]]:
            if device_ids is None:
                return conn.execute(
                    "SELECT id, last_seen_ms FROM devices WHERE last_seen_ms >= ?", (since_ms,)
                ).fetchall()
            rows: list[tuple[int, int]] = []
            ids = list(device_ids)
            for start in range(0, len(ids), _IDS_PER_QUERY):
                chunk = ids[start:start + _IDS_PER_QUERY]
                rows += conn.execute(
                    f"SELECT id, last_seen_ms FROM devices WHERE id IN ({','.join('?' * len(chunk))})"
                    " AND last_seen_ms >= ?", (*chunk, since_ms),
                ).fetchall()
            return rows

        return await self._db.run(q)

    # --- API keys ---

    async def create_api_key(self, name: str, role: str, key_hash: bytes, prefix: str, created_ms: int) -> ApiKey:
        def q(conn: Database) -> int:
            cur = conn.execute(
                "INSERT INTO api_keys (name, role, key_hash, prefix, created_ms) VALUES (?, ?, ?, ?, ?) RETURNING id",
                (name, role, key_hash, prefix, created_ms),
            )
            return cur.fetchone()[0]

        return ApiKey(await self._db.run(q), name, role, prefix, created_ms)

    async def api_key_by_hash(self, key_hash: bytes) -> ApiKey | None:
        def q(conn: Database) -> tuple | None:
            return conn.execute(
                "SELECT id, name, role, prefix, created_ms FROM api_keys WHERE key_hash = ?", (key_hash,)
            ).fetchone()

        row = await self._db.run(q)
        return ApiKey(*row) if row else None

    async def list_api_keys(self) -> list[ApiKey]:
        def q(conn: Database) -> list[tuple]:
            return conn.execute("SELECT id, name, role, prefix, created_ms FROM api_keys ORDER BY id").fetchall()

        return [ApiKey(*row) for row in await self._db.run(q)]

    async def delete_api_key(self, key_id: int) -> None:
        def q(conn: Database) -> int:
            return conn.execute("DELETE FROM api_keys WHERE id = ?", (key_id,)).rowcount

        if await self._db.run(q) != 1:
            raise NotFound(f"API key {key_id} does not exist")

    async def _update(self, device_id: int, sql: str, params: tuple) -> None:
        def q(conn: Database) -> None:
            with conn.transaction():
                if conn.execute(sql, params).rowcount != 1:
                    raise NotFound("device does not exist")
                self._changed(conn, device_id)

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
        def q(conn: Database) -> tuple | None:
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
        """Delete the device with its running status and history (its messages stay in the log)."""

        def q(conn: Database) -> None:
            with conn.transaction():
                if conn.execute("SELECT 1 FROM devices WHERE gateway_id = ? LIMIT 1", (device_id,)).fetchone():
                    raise Conflict("the gateway still has sub-devices: delete them first")
                if conn.execute("DELETE FROM devices WHERE id = ?", (device_id,)).rowcount != 1:
                    raise NotFound("device does not exist")
                conn.execute("DELETE FROM latest_values WHERE device_id = ?", (device_id,))
                conn.execute("DELETE FROM history WHERE device_id = ?", (device_id,))
                conn.execute("DELETE FROM alarm_pending WHERE device_id = ?", (device_id,))
                _delete_alarms(conn, "device_id = ?", (device_id,))
                self._changed(conn, device_id)

        await self._db.run(q)

    # --- running status and history ---

    async def online_by_product(self, now_ms: int, default_timeout_ms: int) -> list[tuple[str, int]]:
        """Online as the device status says it (``ONLINE_SQL``), counted per product in one query; for
        /metrics (a scan of the devices, once a scrape)."""

        def q(conn: Database) -> list[tuple[str, int]]:
            return conn.execute(
                "SELECT p.product_key, COUNT(d.id) FROM products p LEFT JOIN devices d"
                f" ON d.product_key = p.product_key AND {ONLINE_SQL}"
                " GROUP BY p.product_key ORDER BY p.product_key",
                (now_ms, default_timeout_ms),
            ).fetchall()

        return [(key, int(count)) for key, count in await self._db.run(q)]

    async def device_status(self, device_id: int) -> tuple[int | None, dict[str, tuple[Any, int]]]:
        """(last seen, identifier -> (latest value, its time))."""

        def q(conn: Database) -> tuple[tuple | None, list[tuple]]:
            seen = conn.execute("SELECT last_seen_ms FROM devices WHERE id = ?", (device_id,)).fetchone()
            rows = conn.execute(
                "SELECT identifier, value, time_ms FROM latest_values WHERE device_id = ?", (device_id,)
            ).fetchall()
            return seen, rows

        seen, rows = await self._db.run(q)
        latest = {name: (msgspec.json.decode(value), at) for name, value, at in rows}
        return (seen[0] if seen else None), latest

    async def history(
        self, device_id: int, identifier: str, from_ms: int | None, to_ms: int | None, limit: int
    ) -> list[tuple[int, Any, int]]:
        """(time, value, messageId) of one property, newest first, within [from_ms, to_ms].

        History rows hold every value a message gave at one time; the ones naming this property are picked
        from the device's rows in the window (a rarely reported property costs a longer walk)."""

        def q(conn: Database) -> list[tuple]:
            return conn.execute(
                "SELECT time_ms, samples, message_id FROM history WHERE device_id = ? AND time_ms >= ?"
                f" AND time_ms <= ? AND {conn.has_json_key('samples')} ORDER BY time_ms DESC, message_id DESC LIMIT ?",
                (device_id, from_ms if from_ms is not None else -(2**63),
                 to_ms if to_ms is not None else 2**63 - 1, identifier, limit),
            ).fetchall()

        return [(at, msgspec.json.decode(samples)[identifier], mid) for at, samples, mid in await self._db.run(q)]

    async def history_after(
        self, device_id: int, identifier: str, after: tuple[int, int], to_ms: int, limit: int
    ) -> list[tuple[int, Any, int]]:
        """(time, value, messageId) oldest first after ``after`` (time, messageId): keyset pages on the
        history's primary key, so an export of millions of rows walks the index once."""

        def q(conn: Database) -> list[tuple]:
            return conn.execute(
                "SELECT time_ms, samples, message_id FROM history WHERE device_id = ?"
                f" AND (time_ms, message_id) > (?, ?) AND time_ms <= ? AND {conn.has_json_key('samples')}"
                " ORDER BY time_ms, message_id LIMIT ?",
                (device_id, after[0], after[1], to_ms, identifier, limit),
            ).fetchall()

        return [(at, msgspec.json.decode(samples)[identifier], mid) for at, samples, mid in await self._db.run(q)]

    async def history_buckets(
        self, device_id: int, identifier: str, from_ms: int, to_ms: int, width_ms: int
    ) -> list[HistoryBucket]:
        """Slices of ``width_ms`` from ``from_ms`` with their count, numeric min/max/mean and newest value,
        newest first: one pass over the device's rows in the window (the primary key's range), grouped in
        the database; a window function picks each slice's newest row, whose samples alone are decoded."""

        def q(conn: Database) -> list[tuple]:
            return conn.execute(
                "WITH points AS ("
                " SELECT (time_ms - ?) / ? AS bucket, time_ms, message_id, samples,"
                f" {conn.json_number('samples')} AS num"
                " FROM history WHERE device_id = ? AND time_ms >= ? AND time_ms <= ?"
                f" AND {conn.has_json_key('samples')}),"
                " ranked AS (SELECT bucket, time_ms, message_id, samples, num, ROW_NUMBER() OVER"
                " (PARTITION BY bucket ORDER BY time_ms DESC, message_id DESC) AS newest FROM points)"
                " SELECT bucket, COUNT(*), MIN(num), MAX(num), AVG(num), MIN(time_ms),"
                " MAX(CASE WHEN newest = 1 THEN time_ms END), MAX(CASE WHEN newest = 1 THEN message_id END),"
                " MAX(CASE WHEN newest = 1 THEN samples END)"
                " FROM ranked GROUP BY bucket ORDER BY bucket DESC",
                (from_ms, width_ms, identifier, device_id, from_ms, to_ms, identifier),
            ).fetchall()

        return [
            HistoryBucket(from_ms + int(bucket) * width_ms, int(count), _real(low), _real(high), _real(mean),
                          int(first), int(last), int(mid), msgspec.json.decode(samples)[identifier])
            for bucket, count, low, high, mean, first, last, mid, samples in await self._db.run(q)
        ]


def _product(row: tuple[Any, ...]) -> Product:
    """A row of ``_PRODUCT_COLUMNS``."""
    key, name, node_type, created_ms, model_version, validation, topics, presence_timeout_s, rate, burst, sign_1 = row
    return Product(
        key, name, node_type, created_ms, model_version, validation,
        tuple((t, op) for t, op in msgspec.json.decode(topics)), presence_timeout_s, rate, burst,
        None if sign_1 is None else bool(sign_1),
    )


def _real(value: Any) -> float | None:
    """An aggregate as a float (PostgreSQL's AVG of a double is one already; SQLite's MIN of integers is not)."""
    return None if value is None else float(value)


def _superseded(column: str | None) -> Superseded:
    return tuple((issued, at) for issued, at in msgspec.json.decode(column)) if column else ()


def record_sessions(conn: Database, sessions: list[AuthSession]) -> None:
    """Write authentication sessions inside the caller's transaction (the log writer's batch).

    A superseding (IoTDA) session also enters the change feed: every instance then learns that the
    device's previous token now has 30 s to live.
    """
    conn.executemany(
        "UPDATE devices SET last_auth_ms = ?, last_client_id = ?, last_source = ?,"
        " last_seen_ms = CASE WHEN coalesce(last_seen_ms, 0) < ? THEN ? ELSE last_seen_ms END WHERE id = ?",
        [(s.at_ms, s.client_id, s.source, s.at_ms, s.at_ms, s.device_id) for s in sessions],
    )
    superseding = [s for s in sessions if s.supersedes]
    if superseding:
        # the caller's transaction holds these device rows locked: read, supersede, write back
        ids = sorted({s.device_id for s in superseding})
        marks = ",".join("?" * len(ids))
        state = {
            device_id: (token_ms, _superseded(column))
            for device_id, token_ms, column in conn.execute(
                f"SELECT id, token_ms, superseded_tokens FROM devices WHERE id IN ({marks})", ids
            ).fetchall()
        }
        for s in superseding:
            if s.device_id in state:
                state[s.device_id] = supersede(*state[s.device_id], s.at_ms)
        conn.executemany(  # prev_token_ms: what thingport before schema 4 reads, kept right for a downgrade
            "UPDATE devices SET token_ms = ?, superseded_tokens = ?, prev_token_ms = ? WHERE id = ?",
            [(newest, msgspec.json.encode(older).decode(), older[-1][0] if older else None, device_id)
             for device_id, (newest, older) in state.items()],
        )
        conn.serialize("changes")
        conn.executemany(
            "INSERT INTO changes (device_id, at_ms) VALUES (?, ?)", [(s.device_id, s.at_ms) for s in superseding]
        )
