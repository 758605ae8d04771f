"""fetch retries: when an article's next fetch attempt is due

A page fetch that waits (a busy host, a transient error, a server's Retry-After) records when its
retry is due, so that the sweep for lost tasks (workers.tasks.resend_stalled_articles) does not
send a second fetch for an article whose retry is only waiting.

Revision ID: 0010_fetch_retry_at
Revises: 0009_search_inline
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import aggregator.models

revision: str = "0010_fetch_retry_at"
down_revision: str | None = "0009_search_inline"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "articles",
        sa.Column("fetch_retry_at", aggregator.models.UTCDateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    with op.batch_alter_table("articles") as batch:
        batch.drop_column("fetch_retry_at")
