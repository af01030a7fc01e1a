"""A product's devices in id order (device listings page by id): an index on devices (product_key, id),
where the (product_key, device_name) one left PostgreSQL to sort all of a product's devices for a page.
Self-contained (SQLite schema step 9), safe to run again. It is built inside the upgrade's transaction (not
CONCURRENTLY), so writes to devices, the log writer's last-seen updates among them, wait while it builds:
on a big fleet, upgrade at a quiet moment.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX IF NOT EXISTS devices_by_product ON devices (product_key, id)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS devices_by_product")
