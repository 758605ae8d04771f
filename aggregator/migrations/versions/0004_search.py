"""full-text search and listing indexes

SQLite: an FTS5 external-content table over articles (title, summary, text) kept in step by
triggers. PostgreSQL: a stored generated tsvector column with a GIN index. Neither is part of the
SQLModel metadata (see aggregator.queries.is_search_object, used to leave them out of compares).

Revision ID: 0004_search
Revises: 0003
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004_search"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE_UP = [
    "CREATE VIRTUAL TABLE articles_fts USING fts5("
    "title, summary, text, content='articles', content_rowid='id', "
    "tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER articles_fts_insert AFTER INSERT ON articles BEGIN "
    "INSERT INTO articles_fts(rowid, title, summary, text) "
    "VALUES (new.id, new.title, new.summary, new.text); END",
    "CREATE TRIGGER articles_fts_delete AFTER DELETE ON articles BEGIN "
    "INSERT INTO articles_fts(articles_fts, rowid, title, summary, text) "
    "VALUES ('delete', old.id, old.title, old.summary, old.text); END",
    "CREATE TRIGGER articles_fts_update AFTER UPDATE OF title, summary, text ON articles BEGIN "
    "INSERT INTO articles_fts(articles_fts, rowid, title, summary, text) "
    "VALUES ('delete', old.id, old.title, old.summary, old.text); "
    "INSERT INTO articles_fts(rowid, title, summary, text) "
    "VALUES (new.id, new.title, new.summary, new.text); END",
    "INSERT INTO articles_fts(articles_fts) VALUES ('rebuild')",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS articles_fts_update",
    "DROP TRIGGER IF EXISTS articles_fts_delete",
    "DROP TRIGGER IF EXISTS articles_fts_insert",
    "DROP TABLE IF EXISTS articles_fts",
]
POSTGRES_UP = [
    "ALTER TABLE articles ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ("
    "setweight(to_tsvector('simple', coalesce(title, '')), 'A') || "
    "setweight(to_tsvector('simple', coalesce(summary, '')), 'B') || "
    "setweight(to_tsvector('simple', left(coalesce(text, ''), 200000)), 'C')) STORED",
    "CREATE INDEX ix_articles_search ON articles USING gin (search_vector)",
]
POSTGRES_DOWN = [
    "DROP INDEX IF EXISTS ix_articles_search",
    "ALTER TABLE articles DROP COLUMN IF EXISTS search_vector",
]


def upgrade() -> None:
    for statement in SQLITE_UP if op.get_bind().dialect.name == "sqlite" else POSTGRES_UP:
        op.execute(statement)
    op.create_index("ix_stories_article_count", "stories", ["article_count"])
    op.create_index("ix_stories_language_last_seen", "stories", ["language", "last_seen"])
    op.create_index("ix_articles_source_published", "articles", ["source_id", "published_at"])
    op.create_index("ix_articles_extraction_status", "articles", ["extraction_status"])


def downgrade() -> None:
    op.drop_index("ix_articles_extraction_status", table_name="articles")
    op.drop_index("ix_articles_source_published", table_name="articles")
    op.drop_index("ix_stories_language_last_seen", table_name="stories")
    op.drop_index("ix_stories_article_count", table_name="stories")
    for statement in SQLITE_DOWN if op.get_bind().dialect.name == "sqlite" else POSTGRES_DOWN:
        op.execute(statement)
