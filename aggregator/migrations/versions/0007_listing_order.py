"""listing order: stories by size with ties by id, on PostgreSQL

`GET /stories?sort=size` pages over (article_count, id). SQLite's ix_stories_article_count already
ends with the rowid, so it needs nothing more; PostgreSQL needs both columns in one index, or it
sorts every story for each page. Outside the SQLModel metadata, like the search objects (see
aggregator.queries.is_search_object).

Revision ID: 0007_listing_order
Revises: 0006_retention
Create Date: 2026-11-28
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007_listing_order"
down_revision: str | None = "0006_retention"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_index("ix_stories_size_order", "stories", ["article_count", "id"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_stories_size_order", table_name="stories")
