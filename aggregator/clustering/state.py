"""What the clusterer remembers between articles, behind a small storage protocol.

The clusterer needs five things from its state:

* document frequencies of terms over all articles seen so far (for IDF weights);
* the stories, each as a :class:`StoryProfile` (plain numbers and sparse vectors);
* an inverted index from keys (language-prefixed terms) to stories, so that the candidates for a
  new article are found without scanning every story;
* the time each story was last active, so that candidates come only from a recent window;
* the stream's background similarity statistics (see background.py).

:class:`InMemoryClusterState` implements the protocol with dicts; a database-backed state can
implement the same methods with tables (``term_df``, ``story``, ``story_key``).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, Protocol, cast

from aggregator.clustering.background import Background
from aggregator.clustering.vectors import SparseVector, norm


@dataclass
class MemberVectors:
    """Pruned vectors of one member article, kept so an article can match its nearest member."""

    title: SparseVector = field(default_factory=dict)
    body: SparseVector = field(default_factory=dict)
    entities: SparseVector = field(default_factory=dict)

    def to_json(self, digits: int | None = None) -> dict[str, Any]:
        return {
            "title": _rounded(self.title, digits),
            "body": _rounded(self.body, digits),
            "entities": _rounded(self.entities, digits),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MemberVectors:
        return cls(
            title=_vector(data.get("title", {})),
            body=_vector(data.get("body", {})),
            entities=_vector(data.get("entities", {})),
        )


def _rounded(vector: SparseVector, digits: int | None) -> SparseVector:
    """The vector with its weights rounded to ``digits`` decimals (None: as it is). Shorter
    numbers make a stored profile quicker to parse."""
    return vector if digits is None else {term: round(w, digits) for term, w in vector.items()}


def _vector(data: dict[str, Any]) -> SparseVector:
    """A vector read back from JSON: to_json() wrote str keys and float values, which JSON
    keeps as they are, so the dict is used as it is (no per-term copy)."""
    return cast(SparseVector, data)


@dataclass
class StoryProfile:
    """One story as the clusterer sees it; JSON-serialisable through to_json()/from_json().

    ``members`` holds a few member articles' vectors (the first and the most recent ones) and
    ``sources`` the distinct outlets seen so far; both are bounded by the clusterer's limits.
    """

    key: str
    language: str | None
    size: int = 0
    first_published: datetime | None = None
    last_published: datetime | None = None
    title: SparseVector = field(default_factory=dict)
    body: SparseVector = field(default_factory=dict)
    entities: SparseVector = field(default_factory=dict)
    index_keys: list[str] = field(default_factory=list)
    members: list[MemberVectors] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    years: list[int] = field(default_factory=list)

    @cached_property
    def lengths(self) -> tuple[float, float, float]:
        """The Euclidean lengths of the title, body and entity centroids (computed once: a
        profile is never changed in place, folding an article makes a new one)."""
        return norm(self.title), norm(self.body), norm(self.entities)

    def to_json(self, digits: int | None = None) -> dict[str, Any]:
        """The profile as JSON, with vector weights rounded to ``digits`` decimals if given."""
        return {
            "key": self.key,
            "language": self.language,
            "size": self.size,
            "first_published": _iso(self.first_published),
            "last_published": _iso(self.last_published),
            "title": _rounded(self.title, digits),
            "body": _rounded(self.body, digits),
            "entities": _rounded(self.entities, digits),
            "index_keys": self.index_keys,
            "members": [member.to_json(digits) for member in self.members],
            "sources": self.sources,
            "years": self.years,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StoryProfile:
        return cls(
            key=str(data["key"]),
            language=data["language"],
            size=int(data["size"]),
            first_published=_parse_iso(data["first_published"]),
            last_published=_parse_iso(data["last_published"]),
            title=_vector(data["title"]),
            body=_vector(data["body"]),
            entities=_vector(data["entities"]),
            index_keys=[str(k) for k in data["index_keys"]],
            members=[MemberVectors.from_json(item) for item in data.get("members", [])],
            sources=[str(source) for source in data.get("sources", [])],
            years=[int(year) for year in data.get("years", [])],
        )


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _parse_iso(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def is_active(story: StoryProfile, since: datetime | None) -> bool:
    """True if the story had an article at or after ``since`` (undated stories always count)."""
    if since is None or story.last_published is None:
        return True
    return story.last_published >= since


class ClusterState(Protocol):
    """Storage the clusterer reads and writes; one article's calls form one unit of work."""

    def document_count(self) -> int:
        """Number of articles added with add_document()."""
        ...

    def document_frequencies(self, terms: Iterable[str]) -> dict[str, int]:
        """Number of articles containing each term (0 for unseen terms)."""
        ...

    def add_document(self, terms: Iterable[str]) -> None:
        """Count one more article containing each of the (distinct) terms."""
        ...

    def candidate_stories(
        self, keys: Mapping[str, float], *, active_since: datetime | None, limit: int
    ) -> list[StoryProfile]:
        """Up to ``limit`` active stories with the largest total weight of ``keys`` they are
        indexed under, best first (ties: the most recently updated first)."""
        ...

    def story(self, key: str) -> StoryProfile | None:
        """The story with this key, if any."""
        ...

    def save_story(self, story: StoryProfile) -> None:
        """Insert or replace a story and re-index it under its ``index_keys``."""
        ...

    def background(self) -> Background | None:
        """The stream's background similarity statistics, None before the first save."""
        ...

    def save_background(self, background: Background) -> None:
        """Replace the background statistics."""
        ...


class InMemoryClusterState:
    """ClusterState in dicts. Posting lists keep the most recently updated stories last.

    ``scan_limit`` bounds how many stories are read per posting list, so the cost of a lookup
    stays flat however many stories the state holds; ``posting_limit`` bounds memory per key.
    """

    def __init__(self, *, scan_limit: int = 200, posting_limit: int = 2000) -> None:
        self._documents = 0
        self._df: Counter[str] = Counter()
        self._stories: dict[str, StoryProfile] = {}
        self._postings: dict[str, dict[str, None]] = {}
        self._scan_limit = scan_limit
        self._posting_limit = posting_limit
        self._background: Background | None = None
        self._updates: dict[str, int] = {}  # story key -> number of the save that last touched it
        self._saves = 0

    def document_count(self) -> int:
        return self._documents

    def document_frequencies(self, terms: Iterable[str]) -> dict[str, int]:
        return {term: self._df[term] for term in terms}

    def add_document(self, terms: Iterable[str]) -> None:
        self._documents += 1
        self._df.update(set(terms))

    def candidate_stories(
        self, keys: Mapping[str, float], *, active_since: datetime | None, limit: int
    ) -> list[StoryProfile]:
        hits: dict[str, float] = {}
        for key, weight in keys.items():
            posting = self._postings.get(key)
            for story_key in self._recent_active(posting or {}, active_since):
                hits[story_key] = hits.get(story_key, 0.0) + weight
        best = heapq.nlargest(limit, hits, key=lambda key: (hits[key], self._updates[key]))
        return [self._stories[story_key] for story_key in best]

    def _recent_active(self, posting: dict[str, None], since: datetime | None) -> list[str]:
        found: list[str] = []
        for scanned, story_key in enumerate(reversed(posting)):
            if scanned >= self._scan_limit:
                break
            if is_active(self._stories[story_key], since):
                found.append(story_key)
        return found

    def story(self, key: str) -> StoryProfile | None:
        return self._stories.get(key)

    def save_story(self, story: StoryProfile) -> None:
        old = self._stories.pop(story.key, None)
        if old is not None:
            for key in set(old.index_keys) - set(story.index_keys):
                self._postings.get(key, {}).pop(story.key, None)
        self._stories[story.key] = story  # dict order = update order, kept by to_json()
        self._saves += 1
        self._updates[story.key] = self._saves
        for key in story.index_keys:
            posting = self._postings.setdefault(key, {})
            posting.pop(story.key, None)
            posting[story.key] = None
            if len(posting) > self._posting_limit:
                del posting[next(iter(posting))]

    def background(self) -> Background | None:
        return self._background

    def save_background(self, background: Background) -> None:
        self._background = background

    def to_json(self) -> dict[str, Any]:
        return {
            "documents": self._documents,
            "df": dict(self._df),
            "stories": [story.to_json() for story in self._stories.values()],
            "background": None if self._background is None else self._background.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InMemoryClusterState:
        state = cls()
        state._documents = int(data["documents"])
        state._df = Counter({str(k): int(v) for k, v in data["df"].items()})
        for item in data["stories"]:
            state.save_story(StoryProfile.from_json(item))
        if data.get("background"):
            state.save_background(Background.from_json(data["background"]))
        return state
