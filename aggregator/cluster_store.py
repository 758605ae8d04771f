"""The clusterer's state in the database: the ClusterState protocol over SQL tables.

- document frequencies: `cluster_terms` (the row with the empty term counts documents);
- stories: `stories.profile` (a StoryProfile as JSON) under `stories.cluster_key`;
- the inverted index: `story_index` (key, story, last publication time).

All calls run in the caller's session and transaction; clustering transactions are serialised by
store.lock_clustering, so the state one article sees is the state the previous one left.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import Select, delete, insert, or_, union_all
from sqlmodel import Session, col, select

from aggregator import store
from aggregator.clustering.state import StoryProfile
from aggregator.models import ClusterTerm, Story, StoryIndexEntry

SCAN_LIMIT = 200  # stories read per index key, as InMemoryClusterState's scan_limit


class SqlClusterState:
    """ClusterState backed by the store; `now` stamps stories it creates."""

    def __init__(self, session: Session, *, now: datetime) -> None:
        self._session = session
        self._now = now
        self._documents: int | None = None
        self._frequencies: dict[str, int] = {}

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
        self, keys: Sequence[str], *, active_since: datetime | None, limit: int
    ) -> list[StoryProfile]:
        """Stories under the most of `keys`, reading at most SCAN_LIMIT of the most recently
        active stories per key, so the cost stays flat however large the store grows."""
        postings = [self._recent_posting(key, active_since) for key in dict.fromkeys(keys)]
        if not postings:
            return []
        hits: Counter[int] = Counter(self._session.execute(union_all(*postings)).scalars())
        ranked = [i for i, _ in sorted(hits.items(), key=lambda h: (-h[1], -h[0]))[:limit]]
        rows = self._session.exec(select(Story).where(col(Story.id).in_(ranked))).all()
        stories = {row.id: row for row in rows if row.profile}
        return [_profile(stories[i]) for i in ranked if i in stories]

    def _recent_posting(self, key: str, active_since: datetime | None) -> Select[tuple[int]]:
        entry = StoryIndexEntry
        query = select(entry.story_id).where(entry.key == key)
        if active_since is not None:
            recent = col(entry.last_published) >= active_since
            query = query.where(or_(recent, col(entry.last_published).is_(None)))
        posting = query.order_by(col(entry.last_published).desc()).limit(SCAN_LIMIT).subquery()
        return select(posting.c.story_id)

    def story(self, key: str) -> StoryProfile | None:
        row = self.story_row(key)
        return _profile(row) if row is not None and row.profile else None

    def save_story(self, story: StoryProfile) -> None:
        row = self.story_row(story.key) or self._new_story_row(story)
        row.profile = story.to_json()
        row.language = story.language
        self._session.add(row)
        self._session.flush()
        self._reindex(row.id or 0, story)

    def story_row(self, key: str) -> Story | None:
        return self._session.exec(select(Story).where(Story.cluster_key == key)).first()

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


def _profile(row: Story) -> StoryProfile:
    return StoryProfile.from_json(row.profile)
