"""A pull subscription remembers the highest log seq it handed to a consumer (SQLite schema version 4):
an acknowledgement may never go beyond it, so nobody can acknowledge messages nobody received. And a
table /readyz writes a row to (and deletes it) while writes fail, to learn when they work again.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE subscriptions ADD COLUMN delivered BIGINT NOT NULL DEFAULT 0")
    op.execute("UPDATE subscriptions SET delivered = cursor")
    op.execute("CREATE TABLE write_probe (id BIGINT PRIMARY KEY, at_ms BIGINT NOT NULL, pad BYTEA NOT NULL)")


def downgrade() -> None:
    op.execute("DROP TABLE write_probe")
    op.execute("ALTER TABLE subscriptions DROP COLUMN delivered")
