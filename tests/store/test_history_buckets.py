"""History downsampling and export pages in the stores, on SQLite and PostgreSQL: JSON types the numeric
aggregates must skip, keys a JSON path would misread, and ties of time across messages."""

from pathlib import Path

import pytest

from tests.store.test_sql_stores import run
from thingport.core.model import StoredMessage, ValuesAt
from thingport.manage import service
from thingport.manage.service import Management

ODD = 'a."b"$[0]'  # a schemaless product's key: no JSON path would read it as given


def message(mid: int, device_id: int, *samples: tuple[int, dict]) -> StoredMessage:
    return StoredMessage(mid, device_id, "pk01", "dev-1", "aliyun", "/t", b"", 10_000, "property_post",
                         properties=tuple(ValuesAt(at, values) for at, values in samples))


def test_buckets_skip_non_numbers_in_the_aggregates_and_keep_the_newest_value(data_dir: Path, engine: dict) -> None:
    async def act(m: Management, stores):  # type: ignore[no-untyped-def]
        await m.create_product("p", "pk01")
        d = await m.create_device("pk01", "dev-1")
        await stores.log.append_many((
            message(1, d.id, (1000, {"on": True, ODD: 1.5, "v": "text"}), (1500, {"on": False, ODD: 2})),
            message(2, d.id, (1500, {"on": True, ODD: 4, "v": {"x": 1}})),  # the same time, a later message
            message(3, d.id, (2500, {ODD: -1, "v": 7})),
        ))
        buckets = stores.registry.history_buckets
        on = await buckets(d.id, "on", 1000, 2999, 1000)
        assert [(b.start_ms, b.size, b.min, b.max, b.avg, b.last_value, b.last_message_id) for b in on] == [
            (1000, 3, None, None, None, True, 2)]  # JSON true/false are no numbers; the later message wins the tie
        odd = await buckets(d.id, ODD, 1000, 2999, 1000)
        assert [(b.start_ms, b.size, b.min, b.max, b.avg, b.first_ms, b.last_ms, b.last_value) for b in odd] == [
            (2000, 1, -1.0, -1.0, -1.0, 2500, 2500, -1),
            (1000, 3, 1.5, 4.0, pytest.approx(7.5 / 3), 1000, 1500, 4)]
        mixed = await buckets(d.id, "v", 0, 2999, 3000)
        assert [(b.size, b.min, b.max, b.last_value) for b in mixed] == [(3, 7.0, 7.0, 7)]
        assert await buckets(d.id, "v", 3000, 9000, 10) == []

    run(data_dir, act, engine)


def test_export_pages_walk_ties_of_time_without_losing_or_repeating_a_value(
    data_dir: Path, engine: dict, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(service, "HISTORY_EXPORT_PAGE", 2)

    async def act(m: Management, stores):  # type: ignore[no-untyped-def]
        await m.create_product("p", "pk01")
        d = await m.create_device("pk01", "dev-1")
        await stores.log.append_many(tuple(message(mid, d.id, (1000 * (mid // 3), {"t": mid})) for mid in range(1, 10)))
        pages = [page async for page in await m.device_history_export("pk01", "dev-1", "t", None, None)]
        assert [len(p) for p in pages] == [2, 2, 2, 2, 1]
        assert [v for p in pages for _, v, _ in p] == list(range(1, 10))
        window = [page async for page in await m.device_history_export("pk01", "dev-1", "t", 1000, 2000)]
        assert [v for p in window for _, v, _ in p] == [3, 4, 5, 6, 7, 8]

    run(data_dir, act, engine)
