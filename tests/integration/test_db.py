"""Migrations and constraints on SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel, select

from aggregator import store
from aggregator.db import make_engine, session_scope, upgrade_database
from aggregator.models import Article, Source
from aggregator.queries import is_search_object

NOW = datetime(2025, 12, 4, 12, 0, tzinfo=UTC)
TABLES = {"sources", "articles", "stories", "cluster_terms", "subscribers", "digest_deliveries"}


def _article(source_id: int, guid: str, url: str) -> Article:
    return Article(source_id=source_id, guid=guid, url=url, canonical_url=url, discovered_at=NOW)


def test_migrations_create_every_table_and_run_twice(engine: Engine) -> None:
    upgrade_database(engine)  # a second run is a no-op
    assert set(inspect(engine).get_table_names()) >= TABLES


def test_feed_url_is_unique(engine: Engine) -> None:
    with session_scope(engine) as session:
        first, created = store.add_source(session=session, url="https://a.example/rss", now=NOW)
        again, created_again = store.add_source(
            session=session, url="https://a.example/rss", now=NOW
        )
    assert created and not created_again and first.id == again.id
    with pytest.raises(IntegrityError), session_scope(engine) as session:
        session.add(Source(url="https://a.example/rss", created_at=NOW, next_poll_at=NOW))


def test_article_keys_are_unique_and_inserts_race_safely(engine: Engine) -> None:
    with session_scope(engine) as session:
        source, _ = store.add_source(session=session, url="https://a.example/rss", now=NOW)
        source_id = source.id or 0
        assert store.insert_article(
            session=session, article=_article(source_id, "g1", "https://a.example/1")
        )
        # same GUID in the same source, and same canonical URL: both refused, the session lives on
        assert (
            store.insert_article(
                session=session, article=_article(source_id, "g1", "https://a.example/2")
            )
            is None
        )
        assert (
            store.insert_article(
                session=session, article=_article(source_id, "g2", "https://a.example/1")
            )
            is None
        )
        assert store.insert_article(
            session=session, article=_article(source_id, "g3", "https://a.example/3")
        )
    with session_scope(engine) as session:
        assert len(session.exec(select(Article)).all()) == 2


def test_times_come_back_in_utc(engine: Engine) -> None:
    paris = timezone(timedelta(hours=1))
    with session_scope(engine) as session:
        source, _ = store.add_source(
            session=session, url="https://a.example/rss", now=NOW.astimezone(paris)
        )
        source_id = source.id
    with session_scope(engine) as session:
        loaded = session.get(Source, source_id)
        assert loaded is not None
        assert loaded.created_at == NOW and loaded.created_at.tzinfo is not None
        assert store.due_source_ids(session=session, now=NOW, limit=10) == [source_id]
        assert store.due_source_ids(session=session, now=NOW - timedelta(seconds=1), limit=10) == []


def test_naive_datetimes_are_refused(engine: Engine) -> None:
    with pytest.raises(Exception, match="naive datetime"), session_scope(engine) as session:
        store.add_source(session=session, url="https://a.example/rss", now=datetime(2025, 1, 1))


def _upgrade(database_url: str) -> None:
    upgrade_database(make_engine(database_url))


def test_processes_starting_together_migrate_one_at_a_time(database_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_upgrade, args=(database_url,)) for _ in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0, 0, 0, 0]
    engine = make_engine(database_url)
    assert set(inspect(engine).get_table_names()) >= TABLES
    engine.dispose()


def test_migrations_match_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_object": is_search_object})
        differences = compare_metadata(context, SQLModel.metadata)
    assert differences == []


def test_search_vectors_are_kept_in_their_rows_on_postgresql(postgres_url: str) -> None:
    """Migration 0009: a search reads hundreds of vectors, and each one kept out of its row
    costs a look-up in the TOAST table."""
    engine = make_engine(postgres_url)
    upgrade_database(engine)
    with engine.connect() as connection:
        storage = connection.execute(
            text(
                "SELECT attstorage FROM pg_attribute "
                "WHERE attrelid = 'articles'::regclass AND attname = 'search_vector'"
            )
        ).scalar_one()
    engine.dispose()
    assert storage == "m"
