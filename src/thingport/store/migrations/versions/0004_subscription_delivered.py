"""A pull subscription remembers the highest log seq it handed to a consumer (SQLite schema version 5):
an acknowledgement may never go beyond it, so nobody can acknowledge messages nobody received. Push
subscriptions keep their delivery state (running, retrying, failing), since when and the last error. And a
table /readyz writes a row to (and deletes it) while writes fail, to learn when they work again.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE subscriptions ADD COLUMN delivered BIGINT NOT NULL DEFAULT 0")
    op.execute("UPDATE subscriptions SET delivered = cursor")
    op.execute("ALTER TABLE subscriptions ADD COLUMN state TEXT NOT NULL DEFAULT 'running'")
    op.execute("ALTER TABLE subscriptions ADD COLUMN state_since_ms BIGINT")
    op.execute("ALTER TABLE subscriptions ADD COLUMN last_error TEXT")
    op.execute("CREATE TABLE write_probe (id BIGINT PRIMARY KEY, at_ms BIGINT NOT NULL, pad BYTEA NOT NULL)")


def downgrade() -> None:
    op.execute("DROP TABLE write_probe")
    for column in ("last_error", "state_since_ms", "state", "delivered"):
        op.execute(f"ALTER TABLE subscriptions DROP COLUMN {column}")
