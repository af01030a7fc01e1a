"""A subscription takes a list of products or every product (SQLite schema version 7): its one
``product_key`` (NOT NULL, a foreign key to products) becomes ``product_keys``, comma-separated, NULL for
every product (those created later too).

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE subscriptions DROP CONSTRAINT IF EXISTS subscriptions_product_key_fkey")
    op.execute("ALTER TABLE subscriptions RENAME COLUMN product_key TO product_keys")
    op.execute("ALTER TABLE subscriptions ALTER COLUMN product_keys DROP NOT NULL")


def downgrade() -> None:
    # an older thingport knows one product per subscription: refuse rather than guess what the others meant
    op.execute("""
        DO $$ BEGIN
            IF EXISTS (SELECT 1 FROM subscriptions WHERE product_keys IS NULL OR product_keys LIKE '%,%') THEN
                RAISE EXCEPTION 'subscriptions of every product or of several products exist: delete them first';
            END IF;
        END $$
    """)
    op.execute("ALTER TABLE subscriptions RENAME COLUMN product_keys TO product_key")
    op.execute("ALTER TABLE subscriptions ALTER COLUMN product_key SET NOT NULL")
    op.execute("ALTER TABLE subscriptions ADD CONSTRAINT subscriptions_product_key_fkey"
               " FOREIGN KEY (product_key) REFERENCES products(product_key)")
