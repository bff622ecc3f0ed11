"""subscribers: a fuller consent record (how it was confirmed, from where, detail)

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("consent_detail", sa.Text(), nullable=False,
                                      server_default=""))
        batch_op.add_column(sa.Column("confirm_method", sa.String(length=32), nullable=False,
                                      server_default=""))
        batch_op.add_column(sa.Column("confirm_ip", sa.String(length=64), nullable=False,
                                      server_default=""))
        batch_op.add_column(sa.Column("confirmation_sent_at", sa.DateTime(timezone=True),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.drop_column("confirmation_sent_at")
        batch_op.drop_column("confirm_ip")
        batch_op.drop_column("confirm_method")
        batch_op.drop_column("consent_detail")
