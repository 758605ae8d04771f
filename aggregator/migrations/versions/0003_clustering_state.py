"""clustering state

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import aggregator.models

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "story_index",
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("story_id", sa.Integer(), nullable=False),
        sa.Column("last_published", aggregator.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["story_id"],
            ["stories.id"],
        ),
        sa.PrimaryKeyConstraint("key", "story_id"),
    )
    with op.batch_alter_table("story_index", schema=None) as batch_op:
        batch_op.create_index("ix_story_index_key_last", ["key", "last_published"], unique=False)
        batch_op.create_index(batch_op.f("ix_story_index_story_id"), ["story_id"], unique=False)

    op.create_table(
        "article_bands",
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("band", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["article_id"],
            ["articles.id"],
        ),
        sa.PrimaryKeyConstraint("article_id", "band"),
    )
    with op.batch_alter_table("article_bands", schema=None) as batch_op:
        batch_op.create_index("ix_article_bands_hash", ["hash"], unique=False)

    with op.batch_alter_table("articles", schema=None) as batch_op:
        batch_op.add_column(sa.Column("minhash", sa.JSON(), nullable=True))
        batch_op.create_index("ix_articles_duplicate_of_id", ["duplicate_of_id"], unique=False)

    with op.batch_alter_table("stories", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("keywords", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
        batch_op.add_column(sa.Column("cluster_key", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("headline_score", sa.Float(), nullable=False, server_default=sa.text("0"))
        )
        batch_op.add_column(
            sa.Column("profile", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
        batch_op.create_unique_constraint("uq_stories_cluster_key", ["cluster_key"])
        batch_op.drop_column("centroid")


def downgrade() -> None:

    with op.batch_alter_table("stories", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("centroid", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
        batch_op.drop_constraint("uq_stories_cluster_key", type_="unique")
        batch_op.drop_column("profile")
        batch_op.drop_column("headline_score")
        batch_op.drop_column("cluster_key")
        batch_op.drop_column("keywords")

    with op.batch_alter_table("articles", schema=None) as batch_op:
        batch_op.drop_index("ix_articles_duplicate_of_id")
        batch_op.drop_column("minhash")

    with op.batch_alter_table("article_bands", schema=None) as batch_op:
        batch_op.drop_index("ix_article_bands_hash")

    op.drop_table("article_bands")
    with op.batch_alter_table("story_index", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_story_index_story_id"))
        batch_op.drop_index("ix_story_index_key_last")

    op.drop_table("story_index")
