"""the daily digest: subscriber preferences, double opt-in, bounces; delivery leases

Subscribers stored before double opt-in existed were added by an operator: they count as
confirmed from their creation.

Revision ID: 0005_digest
Revises: 0004_search
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import aggregator.models

revision: str = "0005_digest"
down_revision: str | None = "0004_search"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = aggregator.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        for name in ("include_sources", "exclude_sources"):
            batch_op.add_column(
                sa.Column(name, sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
            )
        for name in ("confirmed_at", "confirmation_sent_at", "unsubscribed_at", "paused_at"):
            batch_op.add_column(sa.Column(name, UTC_TIME, nullable=True))
        batch_op.add_column(
            sa.Column("bounce_count", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch_op.add_column(sa.Column("pause_reason", sa.Text(), nullable=True))
    op.execute("UPDATE subscribers SET confirmed_at = created_at")

    with op.batch_alter_table("digest_deliveries", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("story_outlets", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
        batch_op.add_column(sa.Column("claimed_at", UTC_TIME, nullable=True))
        batch_op.add_column(
            sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch_op.create_index("ix_digest_deliveries_local_day", ["local_day"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("digest_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_digest_deliveries_local_day")
        batch_op.drop_column("attempts")
        batch_op.drop_column("claimed_at")
        batch_op.drop_column("story_outlets")

    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        for name in (
            "pause_reason",
            "bounce_count",
            "paused_at",
            "unsubscribed_at",
            "confirmation_sent_at",
            "confirmed_at",
            "exclude_sources",
            "include_sources",
        ):
            batch_op.drop_column(name)
