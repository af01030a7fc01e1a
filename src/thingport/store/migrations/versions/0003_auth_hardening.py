"""IoTDA authentication (SQLite schema version 4): every superseded token keeps its own 30 s of grace
(``devices.superseded_tokens``), and a product may require time-checked auth (``products.require_sign_type_1``).

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE devices ADD COLUMN superseded_tokens TEXT")
    op.execute("ALTER TABLE products ADD COLUMN require_sign_type_1 INTEGER")


def downgrade() -> None:
    op.execute("ALTER TABLE products DROP COLUMN require_sign_type_1")
    op.execute("ALTER TABLE devices DROP COLUMN superseded_tokens")
