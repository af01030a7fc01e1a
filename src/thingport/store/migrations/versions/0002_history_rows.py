"""History as one row per message and time, holding every value given then as one JSON object (SQLite
schema version 3): a 20-property report writes one row instead of 20, each with an index entry.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_UPGRADE = """
CREATE TABLE history_v2 (
    device_id  BIGINT NOT NULL,
    time_ms    BIGINT NOT NULL,
    message_id BIGINT NOT NULL,
    samples    TEXT NOT NULL,
    CONSTRAINT history_v2_pkey PRIMARY KEY (device_id, time_ms, message_id)
);
INSERT INTO history_v2 (device_id, time_ms, message_id, samples)
    SELECT device_id, time_ms, message_id, jsonb_object_agg(identifier, value::jsonb)::text
    FROM history GROUP BY device_id, time_ms, message_id;
DROP TABLE history;
ALTER TABLE history_v2 RENAME TO history;
ALTER TABLE history RENAME CONSTRAINT history_v2_pkey TO history_pkey
"""

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
    _run(_UPGRADE)


def downgrade() -> None:
    _run(_DOWNGRADE)
