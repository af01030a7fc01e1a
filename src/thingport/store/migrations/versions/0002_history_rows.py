"""History as one row per message and time, holding every value given then as one JSON object (SQLite
schema version 3): a 20-property report writes one row instead of 20, each with an index entry.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

from thingport.store.pg_schema import step_progress

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_CREATE = """
CREATE TABLE history_v2 (
    device_id  BIGINT NOT NULL,
    time_ms    BIGINT NOT NULL,
    message_id BIGINT NOT NULL,
    samples    TEXT NOT NULL,
    CONSTRAINT history_v2_pkey PRIMARY KEY (device_id, time_ms, message_id)
)
"""
# a batch: the devices after the previous batch's last one, up to (and with) the one ROWS_PER_BATCH rows on
_COPY = """
INSERT INTO history_v2 (device_id, time_ms, message_id, samples)
    SELECT device_id, time_ms, message_id, jsonb_object_agg(identifier, value::jsonb)::text
    FROM history WHERE device_id > %(after)s AND device_id <= %(upto)s GROUP BY device_id, time_ms, message_id
"""
_SWAP = """
DROP TABLE history;
ALTER TABLE history_v2 RENAME TO history;
ALTER TABLE history RENAME CONSTRAINT history_v2_pkey TO history_pkey
"""
ROWS_PER_BATCH = 200_000

_DOWNGRADE = """
CREATE TABLE history_v1 (
    device_id  BIGINT NOT NULL,
    identifier TEXT NOT NULL,
    time_ms    BIGINT NOT NULL,
    value      TEXT NOT NULL,
    message_id BIGINT NOT NULL
);
INSERT INTO history_v1 (device_id, identifier, time_ms, value, message_id)
    SELECT h.device_id, s.key, h.time_ms, s.value::text, h.message_id FROM history h, jsonb_each(h.samples::jsonb) s;
DROP TABLE history;
ALTER TABLE history_v1 RENAME TO history;
CREATE INDEX history_by_series ON history (device_id, identifier, time_ms)
"""


def _run(script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            op.execute(statement)


def upgrade() -> None:
    """Rewritten a batch of devices at a time, saying how far it is (the history may be large)."""
    bind = op.get_bind()
    progress = step_progress()
    _run(_CREATE)
    first, last, total = bind.exec_driver_sql("SELECT min(device_id), max(device_id), count(*) FROM history").one()
    after, written = (first - 1 if first is not None else 0), 0
    while last is not None and after < last:
        edge = bind.exec_driver_sql(
            "SELECT device_id FROM history WHERE device_id > %(after)s ORDER BY device_id"
            " OFFSET %(rows)s LIMIT 1", {"after": after, "rows": ROWS_PER_BATCH}).scalar()
        upto = last if edge is None else edge
        written += bind.exec_driver_sql(_COPY, {"after": after, "upto": upto}).rowcount
        done = 100 * (upto - first + 1) // (last - first + 1)
        progress.update(f"0002: history of devices up to id {upto} of {last} rewritten ({done}%,"
                        f" {written} rows from {total})")
        after = upto
    _run(_SWAP)


def downgrade() -> None:
    _run(_DOWNGRADE)
