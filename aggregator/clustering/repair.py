"""Story repair: decisions about stories the streaming pass got wrong, made after the fact.

The streaming clusterer decides once per article and never looks back. Two mistakes follow:

* **split events**: reports of one event that arrived before the story had a clear centroid
  started two stories. :func:`merge_pairs` finds such pairs among recent stories; the smaller
  story merges into the larger one and :func:`merged_profile` is their union.
* **drift**: a story that absorbed a chain of reports, each close to the last, can end up holding
  two events. :func:`split_members` re-clusters a story's members (with vectors recomputed under
  the current document frequencies, see :func:`weigh`) and names the groups that leave;
  :func:`twin_split` divides a story that holds two events of one kind by the names they carry.

(A third repair, moving the article of a one-article story to the story it would join now,
asks the clusterer's model and lives in the pipeline.)

Everything here is pure: profiles and vectors in, decisions and profiles out. A wrong merge is
worse than a missed one (it hides an event), so the merge rules are strict; a split needs a
coherent core and members far from it.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TypeVar

from aggregator.clustering.clusterer import ClusterLimits, fold_article, index_keys, merged_years
from aggregator.clustering.features import DocVectors
from aggregator.clustering.state import StoryProfile
from aggregator.clustering.text import TermBags, mentioned_years
from aggregator.clustering.vectors import SparseVector, add_pruned, cosine, tfidf_vector, top_terms

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class MergeRules:
    """When two stories are one event: all of these hold (see the module docstring)."""

    body: float = 0.6  # cosine of the body centroids
    entities: float = 0.6  # cosine of the entity centroids
    title: float = 0.3  # cosine of the title centroids
    max_gap: timedelta = timedelta(hours=36)  # between the stories' date ranges


@dataclass(frozen=True)
class SplitRules:
    """When members leave a story: groups of members are formed by joining the two most similar
    groups while their centroids' :func:`affinity` reaches ``link``; the largest group is the
    core, every other group leaves, provided the core has ``min_core`` members."""

    link: float = 0.15
    min_members: int = 3  # smaller stories are never split
    min_core: int = 2  # a story that falls apart into singletons is loose, not drifted
    # A lone article far from the rest stays: a raw cosine cut does not tell a short lead from
    # an off-topic report (on neus_raw, all three such splits were wrong), and the repair's
    # lone-article step, which asks the model, would move it back at once.
    min_leaving: int = 2
    max_members: int = 200  # bigger stories are not examined (cost grows with the square)


# ---------------------------------------------------------------- merging


def merge_pairs(
    stories: Sequence[StoryProfile],
    *,
    rules: MergeRules = MergeRules(),
    limits: ClusterLimits = ClusterLimits(),  # noqa: B008 - frozen
    settled: Collection[str] = (),
) -> list[tuple[str, str]]:
    """The merges to apply, in order, as (loser key, survivor key).

    Stories are merged best pair first; a merged story is compared again as the union, so one
    pass reaches a state with no pair left to merge. ``stories`` are given oldest first: of two
    stories of one size the earlier-published one survives, then the one given first. Two
    ``settled`` stories are never merged (the pair model has kept them apart: see regroup.py).
    """
    live = {story.key: story for story in stories}
    rank = {story.key: position for position, story in enumerate(stories)}
    scores = {
        pair: score
        for pair in _candidate_pairs(list(live.values()))
        if not (pair[0] in settled and pair[1] in settled)
        and (score := event_score(live[pair[0]], live[pair[1]], rules)) is not None
    }
    merges: list[tuple[str, str]] = []
    while scores:
        best = max(scores, key=lambda pair: (scores[pair], pair))
        survivor, loser = _survivor_first(live[best[0]], live[best[1]], rank)
        merges.append((loser.key, survivor.key))
        del live[loser.key]
        merged = live[survivor.key] = merged_profile(survivor, loser, limits)
        scores = {pair: s for pair, s in scores.items() if not set(pair) & set(best)}
        for other in _sharing_keys(merged, live.values()):
            if merged.key in settled and other.key in settled:
                continue
            score = event_score(merged, other, rules)
            if score is not None:
                scores[_pair(merged.key, other.key)] = score
    return merges


def event_score(a: StoryProfile, b: StoryProfile, rules: MergeRules) -> float | None:
    """The body similarity of two stories if they are one event by ``rules``, else None."""
    gap = story_gap(a, b)
    if a.language != b.language or gap is None or gap > rules.max_gap:
        return None  # undated stories are never merged: time is what tells twin events apart
    body = cosine(a.body, b.body)
    if body < rules.body or cosine(a.entities, b.entities) < rules.entities:
        return None
    return body if cosine(a.title, b.title) >= rules.title else None


def story_gap(a: StoryProfile, b: StoryProfile) -> timedelta | None:
    """Time between two stories' date ranges (zero if they overlap); None if either is undated."""
    if None in (a.first_published, a.last_published, b.first_published, b.last_published):
        return None
    assert a.first_published and a.last_published and b.first_published and b.last_published
    later_start = max(a.first_published, b.first_published)
    earlier_end = min(a.last_published, b.last_published)
    return max(later_start - earlier_end, timedelta(0))


def merged_profile(a: StoryProfile, b: StoryProfile, limits: ClusterLimits) -> StoryProfile:
    """``b`` folded into ``a`` (whose key and language stay): centroids summed and pruned, as the
    clusterer folds in an article, sizes added, the date range widened, index keys recomputed."""
    merged = _profile(
        a.key,
        a.language,
        size=a.size + b.size,
        dates=[a.first_published, a.last_published, b.first_published, b.last_published],
        title=add_pruned(a.title, b.title, limits.title_terms),
        body=add_pruned(a.body, b.body, limits.body_terms),
        entities=add_pruned(a.entities, b.entities, limits.entity_terms),
        limits=limits,
    )
    members = [*a.members, *b.members]
    if len(members) > limits.members:  # as the clusterer keeps them: the first and the latest
        members = [members[0], *members[len(members) - limits.members + 1 :]]
    sources = list(dict.fromkeys([*a.sources, *b.sources]))[: limits.sources]
    years = merged_years(a.years, b.years, limits.years)
    return replace(merged, members=members, sources=sources, years=years)


def _survivor_first(
    a: StoryProfile, b: StoryProfile, rank: Mapping[str, int]
) -> tuple[StoryProfile, StoryProfile]:
    return (a, b) if _outranks(a, b, rank) else (b, a)


def _outranks(a: StoryProfile, b: StoryProfile, rank: Mapping[str, int]) -> bool:
    """The larger story survives; of equal ones the earlier-published, then the one given first."""
    if a.size != b.size:
        return a.size > b.size
    first_a, first_b = a.first_published, b.first_published
    if first_a is not None and first_b is not None and first_a != first_b:
        return first_a < first_b
    return rank[a.key] < rank[b.key]


def _candidate_pairs(stories: Sequence[StoryProfile]) -> set[tuple[str, str]]:
    """Pairs that share an index key (which carries the language): the only ones worth scoring."""
    posting: dict[str, list[str]] = {}
    for story in stories:
        for key in set(story.index_keys):
            posting.setdefault(key, []).append(story.key)
    return {
        _pair(left, right)
        for keys in posting.values()
        for i, left in enumerate(keys)
        for right in keys[i + 1 :]
    }


def _sharing_keys(story: StoryProfile, others: Iterable[StoryProfile]) -> list[StoryProfile]:
    keys = set(story.index_keys)
    return [o for o in others if o.key != story.key and keys.intersection(o.index_keys)]


def _pair(left: str, right: str) -> tuple[str, str]:
    return (left, right) if left < right else (right, left)


# ---------------------------------------------------------------- drift and splitting


def weigh(
    bags: TermBags,
    frequencies: Mapping[str, int],
    documents: int,
    *,
    published: datetime | None,
    language: str | None,
) -> DocVectors:
    """An article's vectors under the given document frequencies (the clusterer's weighting,
    without counting the article again)."""
    return DocVectors(
        title=tfidf_vector(bags.title, frequencies, documents),
        body=tfidf_vector(bags.body, frequencies, documents),
        entities=tfidf_vector(bags.entities, frequencies, documents),
        published=published,
        language=language,
        years=mentioned_years(bags.entities),
    )


def affinity(a: DocVectors | _Group, b: DocVectors | _Group) -> float:
    """How alike two articles or groups are: the mean of their body and entity cosines."""
    return (cosine(a.body, b.body) + cosine(a.entities, b.entities)) / 2


@dataclass
class _Group:
    members: list[int]  # positions in the story's member order
    body: SparseVector = field(default_factory=dict)
    entities: SparseVector = field(default_factory=dict)


def split_members(
    members: Mapping[K, DocVectors],
    *,
    rules: SplitRules = SplitRules(),
) -> list[list[K]]:
    """The groups of members that leave the story, each in member order (empty: none leave).

    ``members`` are in story order (earliest first). They are grouped bottom-up, the two most
    similar groups first, while the groups' centroids stay similar (``rules.link``). The largest
    group is the story's core and keeps it (of equal groups, the one with the earliest member);
    the other groups of ``rules.min_leaving`` members or more leave, each to be a story of its
    own.
    """
    if not rules.min_members <= len(members) <= rules.max_members:
        return []
    keys = list(members)
    groups = _agglomerate([members[k] for k in keys], rules.link)
    core = min(groups, key=lambda g: (-len(g.members), g.members[0]))
    if len(core.members) < rules.min_core:
        return []
    leaving = sorted(
        (g for g in groups if g is not core and len(g.members) >= rules.min_leaving),
        key=lambda g: g.members[0],
    )
    return [[keys[i] for i in group.members] for group in leaving]


def _agglomerate(vectors: Sequence[DocVectors], link: float) -> list[_Group]:
    groups = [_Group([i], dict(v.body), dict(v.entities)) for i, v in enumerate(vectors)]
    scores = {
        (i, j): affinity(groups[i], groups[j])
        for i in range(len(groups))
        for j in range(i + 1, len(groups))
    }
    alive = set(range(len(groups)))
    while scores:
        (i, j), best = max(scores.items(), key=lambda item: (item[1], -item[0][0], -item[0][1]))
        if best < link:
            break
        groups[i] = _join(groups[i], groups[j])
        alive.discard(j)
        scores = {pair: s for pair, s in scores.items() if j not in pair and i not in pair}
        for other in alive - {i}:
            scores[(min(i, other), max(i, other))] = affinity(groups[i], groups[other])
    return [groups[i] for i in sorted(alive)]


def _join(a: _Group, b: _Group) -> _Group:
    body = dict(a.body)
    for term, value in b.body.items():
        body[term] = body.get(term, 0.0) + value
    entities = dict(a.entities)
    for term, value in b.entities.items():
        entities[term] = entities.get(term, 0.0) + value
    return _Group(sorted(a.members + b.members), body, entities)


# ---------------------------------------------------------------- twin events


@dataclass(frozen=True)
class TwinRules:
    """When a story holds two events of one kind (two fires, two deaths of Watergate figures):
    two names of its own divide its articles, every article but a few naming exactly one of
    them, each side with ``min_side`` articles or more. A name is the story's own if at least
    ``own_share`` of the articles in the whole stream that have it are in the story (a month, a
    country or a party appears all over the stream and divides nothing; nor do the victims and
    the suspect of one shooting, named in different reports, if they are named elsewhere too)."""

    # Share of the story's articles that name exactly one of the two. Looser splits one-event
    # stories: on ecbplus_dev's final stories, 0.9 split 2 (both one gold event), 0.8 split 8
    # (1 right).
    cover: float = 0.95
    min_side: int = 3
    own_share: float = 2 / 3
    max_members: int = 200  # cost grows with the square of the number of candidate names


def twin_split(
    names: Mapping[K, Iterable[str]],
    document_frequency: Mapping[str, int],
    *,
    rules: TwinRules = TwinRules(),
) -> list[K]:
    """The members that leave a story holding two events (empty: it holds one).

    ``names`` are each member's names (entity terms), in story order; ``document_frequency``
    counts the articles of the whole stream that have each name. Of the pairs of the story's
    own names that no article shares, the one naming most articles divides the story (on a tie,
    the pair first in name order); the side with fewer articles leaves (of equal sides, the one
    whose first article came later). Articles naming neither stay.
    """
    keys = list(names)
    if not 2 * rules.min_side <= len(keys) <= rules.max_members:
        return []
    having: dict[str, set[int]] = {}
    for position, key in enumerate(keys):
        for name in set(names[key]):
            having.setdefault(name, set()).add(position)
    own = sorted(
        name
        for name, members in having.items()
        if rules.min_side <= len(members) <= len(keys) - rules.min_side
        and len(members) >= rules.own_share * document_frequency.get(name, len(members))
    )
    best: tuple[int, set[int], set[int]] | None = None
    for i, first in enumerate(own):
        for second in own[i + 1 :]:
            a, b = having[first], having[second]
            if a.isdisjoint(b) and (best is None or len(a) + len(b) > best[0]):
                best = (len(a) + len(b), a, b)
    if best is None or best[0] < rules.cover * len(keys):
        return []
    _, a, b = best
    core = max((a, b), key=lambda side: (len(side), -min(side)))
    leaving = b if core is a else a
    return [keys[position] for position in sorted(leaving)]


def profile_of(
    key: str, language: str | None, members: Sequence[DocVectors], limits: ClusterLimits
) -> StoryProfile:
    """A story profile built from its members' vectors, folded in order as the clusterer does."""
    story = StoryProfile(key=key, language=language)
    for vectors in members:
        story = fold_article(story, vectors, limits)
    return story


def _profile(
    key: str,
    language: str | None,
    *,
    size: int,
    dates: Sequence[datetime | None],
    title: SparseVector,
    body: SparseVector,
    entities: SparseVector,
    limits: ClusterLimits,
) -> StoryProfile:
    known = [moment for moment in dates if moment is not None]
    count = limits.index_terms
    terms = top_terms(entities, count) + top_terms(title, count) + top_terms(body, count)
    return StoryProfile(
        key=key,
        language=language,
        size=size,
        first_published=min(known, default=None),
        last_published=max(known, default=None),
        title=title,
        body=body,
        entities=entities,
        index_keys=index_keys(language, terms),
    )
