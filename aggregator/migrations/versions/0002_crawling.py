"""crawling: poll lease, permanent-redirect tracking, unconditional-fetch time, entry hashes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import aggregator.models

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sources", schema=None) as batch_op:
        # The lease of a poll in flight: claimed with a conditional UPDATE, cleared on finish.
        batch_op.add_column(
            sa.Column("poll_started_at", aggregator.models.UTCDateTime(timezone=True))
        )
        # A permanent redirect seen on consecutive polls; the URL moves after 3 in a row.
        batch_op.add_column(sa.Column("moved_to_url", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("moved_count", sa.Integer(), nullable=False, server_default="0")
        )
        # The last fetch sent without validators (servers with broken ETags get one every 12 h).
        batch_op.add_column(
            sa.Column("last_unconditional_at", aggregator.models.UTCDateTime(timezone=True))
        )
        batch_op.add_column(sa.Column("poll_interval_seconds", sa.Integer(), nullable=True))
        batch_op.create_index("ix_sources_poll_started_at", ["poll_started_at"], unique=False)

    with op.batch_alter_table("articles", schema=None) as batch_op:
        # Hash of the feed entry (title, summary, link): tells an updated entry from a new one.
        batch_op.add_column(sa.Column("entry_hash", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("articles", schema=None) as batch_op:
        batch_op.drop_column("entry_hash")
    with op.batch_alter_table("sources", schema=None) as batch_op:
        batch_op.drop_index("ix_sources_poll_started_at")
        batch_op.drop_column("poll_interval_seconds")
        batch_op.drop_column("last_unconditional_at")
        batch_op.drop_column("moved_count")
        batch_op.drop_column("moved_to_url")
        batch_op.drop_column("poll_started_at")
