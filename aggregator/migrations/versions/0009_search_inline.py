"""search vectors kept in the row, on PostgreSQL

A search reads `articles.search_vector` of hundreds of rows (matching the newest articles, then
ranking the matches). Most vectors are a little over the 2 kB at which PostgreSQL moves a value
out of the row, and do not compress, so each read was a lookup in the TOAST table: more than half
of a search's time in the database. Storage MAIN keeps a vector in its row unless the row would
not fit in a page. Rows written before this migration keep their vectors out of line until they
are rewritten (an update of the article, or ``VACUUM FULL articles``). SQLite: nothing to do.

Revision ID: 0009_search_inline
Revises: 0008_clustering_backlog
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009_search_inline"
down_revision: str | None = "0008_clustering_backlog"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE articles ALTER COLUMN search_vector SET STORAGE MAIN")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE articles ALTER COLUMN search_vector SET STORAGE EXTENDED")
