"""Alembic environment: runs migrations on the engine handed over by aggregator.db."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

import aggregator.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from aggregator.queries import is_search_object

LOCK_KEY = 0x6E657773  # "news"


def run_migrations_online() -> None:
    engine: Engine = context.config.attributes["engine"]
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=SQLModel.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            include_object=is_search_object,
        )
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # Processes starting together (API, workers, beat) migrate one at a time.
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
            context.run_migrations()
        connection.commit()


run_migrations_online()
