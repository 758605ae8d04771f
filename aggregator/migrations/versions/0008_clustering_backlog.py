"""clustering backlog: extracted originals without a story, in publication order

The clustering consumer takes the oldest such article first (aggregator.pipeline.cluster_next);
a partial index keeps that look-up small however large the store grows.

Revision ID: 0008_clustering_backlog
Revises: 0007_listing_order
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_clustering_backlog"
down_revision: str | None = "0007_listing_order"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AWAITING_STORY = sa.text(
    "story_id IS NULL AND duplicate_of_id IS NULL AND extraction_status IN ('extracted', 'summary')"
)


def upgrade() -> None:
    op.create_index(
        "ix_articles_awaiting_story",
        "articles",
        ["published_at", "id"],
        sqlite_where=AWAITING_STORY,
        postgresql_where=AWAITING_STORY,
    )


def downgrade() -> None:
    op.drop_index("ix_articles_awaiting_story", table_name="articles")
