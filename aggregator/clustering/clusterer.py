"""Streaming story clustering: each article joins an existing story or starts a new one.

For one article:

1. extract its title, body and entity terms; count them in the document frequencies;
2. weight them into TF-IDF vectors with the frequencies seen so far;
3. fetch candidate stories from the inverted index (language-prefixed top terms, each weighted
   by its weight in the article), limited to stories active within ``window`` of the article's
   date, and keep the ``shortlist`` of them with the highest centroid cosines;
4. score every shortlisted candidate with the pair model (centroid and nearest-member
   similarities as z-scores against the stream's background, shared entities, time gap,
   outlet, size, margins over the other candidates); the shortlist's tail updates the
   background; join the best candidate if its score reaches the model's threshold, otherwise
   start a new story;
5. fold the article's vectors into the story's centroids, keep a few member articles' pruned
   vectors (the first and the most recent ones) and re-index the story.

The story repair later asks the same question of a one-article story's article with the stories
as they then stand (:meth:`StoryClusterer.home_elsewhere`).

There is no look-ahead, no clock and no I/O: time comes with the article, storage is the
:class:`ClusterState` passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from aggregator.clustering.background import Background
from aggregator.clustering.dates import resolved_dates
from aggregator.clustering.features import (
    DocVectors,
    Features,
    candidate_features,
    shortlist,
)
from aggregator.clustering.model import ClusterModel
from aggregator.clustering.state import ClusterState, MemberVectors, StoryProfile
from aggregator.clustering.text import TermBags, extract_terms, mentioned_years
from aggregator.clustering.vectors import (
    SparseVector,
    add_pruned,
    idf,
    normalised,
    tfidf_vector,
    top_terms,
)

DEFAULT_WINDOW = timedelta(days=365)


@dataclass(frozen=True)
class ClusterDoc:
    key: str
    title: str
    text: str
    published: datetime | None
    source: str
    language: str | None


@dataclass(frozen=True)
class Assignment:
    story_key: str
    is_new: bool
    score: float


@dataclass(frozen=True)
class ScoredCandidate:
    story: StoryProfile
    features: Features
    score: float


@dataclass(frozen=True)
class ClusterLimits:
    """Sizes that bound the work per article and the size of a story profile."""

    candidates: int = 40
    shortlist: int = 10
    query_terms: int = 12
    index_terms: int = 12
    title_terms: int = 40
    body_terms: int = 150
    entity_terms: int = 60
    members: int = 4
    member_title_terms: int = 12
    member_body_terms: int = 40
    member_entity_terms: int = 20
    sources: int = 30
    years: int = 20


class StoryClusterer:
    def __init__(
        self,
        state: ClusterState,
        model: ClusterModel,
        *,
        window: timedelta = DEFAULT_WINDOW,
        limits: ClusterLimits | None = None,
    ) -> None:
        self.state = state
        self.model = model
        self.window = window
        self.limits = limits or ClusterLimits()

    def assign(self, doc: ClusterDoc) -> Assignment:
        vectors = self.vectorise(doc)
        return self.place(doc.key, vectors, self.score_candidates(vectors))

    def score_candidates(self, vectors: DocVectors) -> list[ScoredCandidate]:
        """Every candidate story with its pair features and model score."""
        return self._scored(*self.candidate_rows(vectors))

    def home_elsewhere(self, vectors: DocVectors, *, current: str) -> ScoredCandidate | None:
        """The story other than ``current`` that the article would join if it arrived now, or
        None if it would start a story. The stream's background is read, not updated: the
        article was counted in it when it arrived."""
        others = [story for story in self.candidates(vectors) if story.key != current]
        stories = shortlist(vectors, others, self.limits.shortlist)
        rows = candidate_features(vectors, stories, self.background())
        best = max(self._scored(stories, rows), key=lambda c: c.score, default=None)
        return best if best is not None and best.score >= self.model.threshold else None

    def _scored(
        self, stories: Sequence[StoryProfile], rows: Sequence[Features]
    ) -> list[ScoredCandidate]:
        return [
            ScoredCandidate(story, features, self.model.score(features))
            for story, features in zip(stories, rows, strict=True)
        ]

    def background(self) -> Background:
        """The stream's background statistics (the model's prior until the stream has some)."""
        return self.state.background() or self.model.background

    def candidate_rows(self, vectors: DocVectors) -> tuple[list[StoryProfile], list[Features]]:
        """The shortlisted candidates and their features; the shortlist's tail (all but the
        top-ranked candidate) updates the stream's background statistics."""
        stories = shortlist(vectors, self.candidates(vectors), self.limits.shortlist)
        background = self.background()
        rows = candidate_features(vectors, stories, background)
        if len(rows) > 1:
            self.state.save_background(background.updated(rows[1:]))
        return stories, rows

    def place(self, doc_key: str, vectors: DocVectors, scored: list[ScoredCandidate]) -> Assignment:
        """Join the best candidate if it reaches the threshold, else start a new story."""
        best = max(scored, key=lambda candidate: candidate.score, default=None)
        if best is None or best.score < self.model.threshold:
            story = StoryProfile(key=f"story-{doc_key}", language=vectors.language)
            self.add_to_story(story, vectors)
            return Assignment(story.key, is_new=True, score=best.score if best else 0.0)
        self.add_to_story(best.story, vectors)
        return Assignment(best.story.key, is_new=False, score=best.score)

    def vectorise(self, doc: ClusterDoc) -> DocVectors:
        """Count the article's terms in the state and weight them with the updated IDF."""
        bags = extract_terms(doc.title, doc.text)
        self.state.add_document(bags.all_terms())
        return self.weigh(doc, bags)

    def weigh(self, doc: ClusterDoc, bags: TermBags | None = None) -> DocVectors:
        """The article's vectors under the state's document frequencies, counting nothing (for
        an article counted when it arrived)."""
        bags = bags or extract_terms(doc.title, doc.text)
        terms = bags.all_terms()
        frequencies = self.state.document_frequencies(terms)
        documents = self.state.document_count()
        return DocVectors(
            title=tfidf_vector(bags.title, frequencies, documents),
            body=tfidf_vector(bags.body, frequencies, documents),
            entities=tfidf_vector(bags.entities, frequencies, documents),
            published=doc.published,
            language=doc.language,
            source=doc.source,
            entity_idf={term: idf(frequencies.get(term, 0), documents) for term in bags.entities},
            idf_ceiling=idf(0, documents),
            years=mentioned_years(bags.entities),
            dates=_named_dates(bags, doc.published),
        )

    def candidates(self, vectors: DocVectors) -> list[StoryProfile]:
        since = None if vectors.published is None else vectors.published - self.window
        stories = self.state.candidate_stories(
            query_keys(vectors, self.limits.query_terms),
            active_since=since,
            limit=self.limits.candidates,
        )
        return [story for story in stories if story.language == vectors.language]

    def add_to_story(self, story: StoryProfile, vectors: DocVectors) -> StoryProfile:
        """Save and return a copy of ``story`` with the article folded in."""
        updated = fold_article(story, vectors, self.limits)
        self.state.save_story(updated)
        return updated


def fold_article(story: StoryProfile, vectors: DocVectors, limits: ClusterLimits) -> StoryProfile:
    """A copy of ``story`` with the article folded in: centroids, members, sources, dates, keys."""
    title = add_pruned(story.title, vectors.title, limits.title_terms)
    body = add_pruned(story.body, vectors.body, limits.body_terms)
    entities = add_pruned(story.entities, vectors.entities, limits.entity_terms)
    count = limits.index_terms
    terms = top_terms(entities, count) + top_terms(title, count) + top_terms(body, count)
    member = MemberVectors(
        title=_pruned(vectors.title, limits.member_title_terms),
        body=_pruned(vectors.body, limits.member_body_terms),
        entities=_pruned(vectors.entities, limits.member_entity_terms),
    )
    members = [*story.members, member]
    if len(members) > limits.members:  # keep the first member and the most recent ones
        members = [members[0], *members[len(members) - limits.members + 1 :]]
    sources = story.sources
    if vectors.source and vectors.source not in sources and len(sources) < limits.sources:
        sources = [*sources, vectors.source]
    first, last = story.first_published, story.last_published
    if vectors.published is not None:
        first = _earliest(first, vectors.published)
        last = _latest(last, vectors.published)
    return replace(
        story,
        size=story.size + 1,
        first_published=first,
        last_published=last,
        title=title,
        body=body,
        entities=entities,
        index_keys=index_keys(story.language, terms),
        members=members,
        sources=sources,
        years=merged_years(story.years, vectors.years, limits.years),
    )


def _named_dates(bags: TermBags, published: datetime | None) -> frozenset[date]:
    """The dates the text names; placed in a year only if the article has a date itself."""
    return frozenset() if published is None else resolved_dates(bags.dates, published.date())


def merged_years(years: Iterable[int], more: Iterable[int], limit: int) -> list[int]:
    """The distinct years of both in the order first seen, at most ``limit`` (a story's own
    years come first; later articles' passing mentions are the ones left out)."""
    return list(dict.fromkeys([*years, *sorted(more)]))[:limit]


def query_keys(vectors: DocVectors, count: int) -> dict[str, float]:
    """Index keys of the article's heaviest entity, title and body terms, each weighted by the
    term's summed weight in those vectors (a shared rare name counts more than a common word)."""
    prefix = vectors.language or "-"
    weights: dict[str, float] = {}
    for vector in (vectors.entities, vectors.title, vectors.body):
        for term in top_terms(vector, count):
            key = f"{prefix}|{term}"
            weights[key] = weights.get(key, 0.0) + vector[term]
    return weights


def index_keys(language: str | None, terms: list[str]) -> list[str]:
    """Inverted-index keys: terms prefixed with the language, so languages never meet."""
    prefix = language or "-"
    return list(dict.fromkeys(f"{prefix}|{term}" for term in terms))


def _pruned(vector: SparseVector, size: int) -> SparseVector:
    """The ``size`` heaviest terms, re-normalised to unit length."""
    return normalised({term: vector[term] for term in top_terms(vector, size)})


def _earliest(current: datetime | None, new: datetime) -> datetime:
    return new if current is None or new < current else current


def _latest(current: datetime | None, new: datetime) -> datetime:
    return new if current is None or new > current else current
