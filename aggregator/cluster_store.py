"""The clusterer's state in the database: the ClusterState protocol over SQL tables.

- document frequencies: `cluster_terms` (the row with the empty term counts documents);
- stories: `stories.profile` (a StoryProfile as JSON) under `stories.cluster_key`;
- the inverted index: `story_index` (key, story, last publication time);
- the background similarity statistics: `cluster_terms` rows named ``~bg:<statistic>``, in
  millionths (term rows are always ``w:``/``e:``-prefixed, so the names never collide).

All calls run in the caller's session and transaction; clustering transactions are serialised by
store.lock_clustering, so the state one article sees is the state the previous one left.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import CompoundSelect, bindparam, delete, insert, literal_column, or_, union_all
from sqlalchemy import select as sql_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from aggregator import store
from aggregator.clustering.background import Background
from aggregator.clustering.state import StoryProfile
from aggregator.models import ClusterTerm, Story, StoryIndexEntry

SCAN_LIMIT = 200  # stories read per index key, as InMemoryClusterState's scan_limit
PROFILE_DIGITS = 5  # decimals of the stored profiles' weights (shorter JSON, quicker to load)
KEY_BATCH = 12  # lookups bind their keys in statements of a multiple of this many keys
NO_KEY = ""  # fills unused key slots; index keys always hold a "|"
BACKGROUND_PREFIX = "~bg:"
BACKGROUND_SCALE = 1_000_000


class SqlClusterState:
    """ClusterState backed by the store; `now` stamps stories it creates."""

    def __init__(self, session: Session, *, now: datetime) -> None:
        self._session = session
        self._now = now
        self._documents: int | None = None
        self._frequencies: dict[str, int] = {}
        self._rows: dict[str, Story] = {}  # story rows read or written, by cluster key
        # profiles written, by cluster key, with the JSON written (valid while the row holds it)
        self._saved: dict[str, tuple[StoryProfile, dict[str, Any]]] = {}

    # ------------------------------------------------------------ document frequencies

    def document_count(self) -> int:
        if self._documents is None:
            row = self._session.get(ClusterTerm, store.DOCUMENT_COUNT_TERM)
            self._documents = row.document_count if row else 0
        return self._documents

    def document_frequencies(self, terms: Iterable[str]) -> dict[str, int]:
        wanted = [t for t in set(terms) if t not in self._frequencies]
        if wanted:
            query = select(ClusterTerm).where(col(ClusterTerm.term).in_(wanted))
            self._frequencies |= {row.term: row.document_count for row in self._session.exec(query)}
        return {term: self._frequencies.get(term, 0) for term in terms}

    def add_document(self, terms: Iterable[str]) -> None:
        self._documents, self._frequencies = store.add_document(session=self._session, terms=terms)

    # ------------------------------------------------------------ stories and their index

    def candidate_stories(
        self, keys: Mapping[str, float], *, active_since: datetime | None, limit: int
    ) -> list[StoryProfile]:
        """Stories with the largest total weight of `keys`, reading at most SCAN_LIMIT of the
        most recently active stories per key, so the cost stays flat however large the store
        grows. Ties go to the story created last."""
        if not keys:
            return []
        names = list(keys)
        width = -(-len(names) // KEY_BATCH) * KEY_BATCH  # a few statement shapes, each cached
        params: dict[str, Any] = {f"key_{i}": NO_KEY for i in range(width)}
        params |= {f"key_{i}": key for i, key in enumerate(names)}
        if active_since is not None:
            params["since"] = active_since
        statement = _postings_statement(width, windowed=active_since is not None)
        hits: dict[int, float] = {}
        for slot, story_id in self._session.execute(statement, params):
            hits[story_id] = hits.get(story_id, 0.0) + keys[names[slot]]
        ranked = sorted(hits, key=lambda i: (-hits[i], -i))[:limit]
        rows = self._session.exec(select(Story).where(col(Story.id).in_(ranked))).all()
        self._rows |= {row.cluster_key: row for row in rows if row.cluster_key}
        stories = {row.id: row for row in rows if row.profile}
        return [_profile(stories[i]) for i in ranked if i in stories]

    def story(self, key: str) -> StoryProfile | None:
        row = self.story_row(key)
        if row is None or not row.profile:
            return None
        saved, written = self._saved.get(key, (None, None))
        return saved if saved is not None and row.profile is written else _profile(row)

    def save_story(self, story: StoryProfile) -> None:
        row = self.story_row(story.key) or self._new_story_row(story)
        self._rows[story.key] = row
        row.profile = story.to_json(PROFILE_DIGITS)
        self._saved[story.key] = (story, row.profile)
        row.language = story.language
        self._session.add(row)
        self._session.flush()
        self._reindex(row.id or 0, story)

    def background(self) -> Background | None:
        names = [BACKGROUND_PREFIX + name for name in Background.default().to_json()]
        query = select(ClusterTerm).where(col(ClusterTerm.term).in_(names))
        rows = self._session.exec(query).all()
        if not rows:
            return None
        return Background.from_json(
            {
                row.term.removeprefix(BACKGROUND_PREFIX): row.document_count / BACKGROUND_SCALE
                for row in rows
            }
        )

    def save_background(self, background: Background) -> None:
        dialect = self._session.get_bind().dialect.name
        upsert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = upsert(ClusterTerm).values(
            term=bindparam("term"), document_count=bindparam("value")
        )
        statement = statement.on_conflict_do_update(
            index_elements=["term"], set_={"document_count": statement.excluded.document_count}
        )
        values = [
            {"term": BACKGROUND_PREFIX + name, "value": round(value * BACKGROUND_SCALE)}
            for name, value in background.to_json().items()
        ]
        self._session.execute(statement, values)

    def story_row(self, key: str) -> Story | None:
        """The story row with this cluster key (read once per state)."""
        if key not in self._rows:
            row = self._session.exec(select(Story).where(Story.cluster_key == key)).first()
            if row is None:
                return None
            self._rows[key] = row
        return self._rows[key]

    def _new_story_row(self, story: StoryProfile) -> Story:
        seen = story.first_published or self._now
        return Story(cluster_key=story.key, first_seen=seen, last_seen=seen)

    def _reindex(self, story_id: int, story: StoryProfile) -> None:
        self._session.execute(
            delete(StoryIndexEntry).where(col(StoryIndexEntry.story_id) == story_id)
        )
        rows = [
            {"key": key, "story_id": story_id, "last_published": story.last_published}
            for key in dict.fromkeys(story.index_keys)
        ]
        if rows:
            self._session.execute(insert(StoryIndexEntry), rows)


@cache
def _postings_statement(width: int, *, windowed: bool) -> CompoundSelect[tuple[int, int]]:
    """(slot, story id) for the SCAN_LIMIT most recently active stories under each of the keys
    bound as ``key_<slot>`` (and active since ``since`` if ``windowed``): one statement built
    once per shape, so neither building nor compiling it costs anything per article."""
    entry = StoryIndexEntry
    postings = []
    for slot in range(width):
        query = sql_select(col(entry.story_id)).where(col(entry.key) == bindparam(f"key_{slot}"))
        if windowed:
            recent = col(entry.last_published) >= bindparam("since")
            query = query.where(or_(recent, col(entry.last_published).is_(None)))
        posting = query.order_by(col(entry.last_published).desc()).limit(SCAN_LIMIT).subquery()
        postings.append(sql_select(literal_column(str(slot)), posting.c.story_id))
    return union_all(*postings)


def _profile(row: Story) -> StoryProfile:
    return StoryProfile.from_json(row.profile)
