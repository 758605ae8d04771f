"""retention: tombstones of purged articles

Revision ID: 0006_retention
Revises: 0005_digest
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import aggregator.models

revision: str = "0006_retention"
down_revision: str | None = "0005_digest"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = aggregator.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tombstones",
        sa.Column("canonical_url", sa.Text(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("guid", sa.Text(), nullable=False),
        sa.Column("purged_at", UTC_TIME, nullable=False),
        sa.Column("last_seen_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("canonical_url"),
    )
    op.create_index("ix_tombstones_source_guid", "tombstones", ["source_id", "guid"])
    op.create_index("ix_tombstones_last_seen_at", "tombstones", ["last_seen_at"])


def downgrade() -> None:
    op.drop_index("ix_tombstones_last_seen_at", table_name="tombstones")
    op.drop_index("ix_tombstones_source_guid", table_name="tombstones")
    op.drop_table("tombstones")
