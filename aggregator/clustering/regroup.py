"""Regrouping: the articles of recent stories clustered again all at once, with the pair model.

Streaming decides for each article once, against the stories as they stood when it came: the
first reports of an event can start two stories, and an article can join a story of a similar
event before the reports that tell them apart have arrived. Once the reports are in, the same
pair model can be asked about every pair of them:

1. every article stands as a one-article story; each article's candidates are the articles
   sharing an index key with it (its language first), shortlisted by centroid cosines, and
   scored with the pair model (margins over its other candidates, z-scores against the
   stream's background, the time gap between the two articles);
2. a pair's affinity is the mean of its two directions' scores (a pair one side never
   shortlisted counts 0 from that side);
3. groups are joined by average linkage, the pair of groups with the highest mean affinity
   first, while it reaches the threshold. Average linkage asks a group to hang together as a
   whole, so a chain of reports, each close to the last, does not join two events.

Everything here is pure: vectors in, groups out. Which articles to regroup and how the groups
become stories again (keeping story ids stable) is :func:`matched_groups`' and the pipeline's
business.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

from aggregator.clustering.background import Background
from aggregator.clustering.clusterer import ClusterLimits, fold_article, query_keys
from aggregator.clustering.features import DocVectors, candidate_features, shortlist
from aggregator.clustering.model import ClusterModel
from aggregator.clustering.state import StoryProfile

K = TypeVar("K", bound=Hashable)


def pair_affinities(
    vectors: Mapping[K, DocVectors],
    model: ClusterModel,
    background: Background,
    limits: ClusterLimits = ClusterLimits(),  # noqa: B008 - frozen
) -> dict[tuple[K, K], float]:
    """The affinity of every pair that either side shortlists, keyed (earlier, later) in the
    order of ``vectors``."""
    keys = list(vectors)
    position = {key: n for n, key in enumerate(keys)}
    profiles = {
        key: fold_article(StoryProfile(key=str(n), language=vectors[key].language), v, limits)
        for n, (key, v) in enumerate(vectors.items())
    }
    postings: dict[str, list[K]] = {}
    for key, profile in profiles.items():
        for index_key in profile.index_keys:
            postings.setdefault(index_key, []).append(key)
    directed: dict[tuple[K, K], float] = {}
    for key in keys:
        others = _candidates(key, vectors[key], postings, limits)
        stories = shortlist(vectors[key], [profiles[o] for o in others], limits.shortlist)
        rows = candidate_features(vectors[key], stories, background)
        for story, row in zip(stories, rows, strict=True):
            directed[(key, keys[int(story.key)])] = model.score(row)
    affinities: dict[tuple[K, K], float] = {}
    for (a, b), score in directed.items():
        pair = (a, b) if position[a] < position[b] else (b, a)
        if pair not in affinities:
            affinities[pair] = (score + directed.get((b, a), 0.0)) / 2
    return affinities


def _candidates(
    key: K, vectors: DocVectors, postings: Mapping[str, list[K]], limits: ClusterLimits
) -> list[K]:
    """The other articles sharing the most weight of the article's query keys, as the
    clusterer's index finds candidate stories (the language is part of every key)."""
    hits: dict[K, float] = {}
    for index_key, weight in query_keys(vectors, limits.query_terms).items():
        for other in postings.get(index_key, ()):
            if other != key:
                hits[other] = hits.get(other, 0.0) + weight
    return heapq.nlargest(limits.candidates, hits, key=hits.__getitem__)


def average_linkage(
    keys: Sequence[K], affinities: Mapping[tuple[K, K], float], threshold: float
) -> list[list[K]]:
    """Groups of ``keys`` (each in the given order, the groups by their first key), joined by
    average linkage while the best pair of groups has a mean affinity of ``threshold`` or more
    (a pair without an affinity counts 0). Ties join the pair whose keys come first."""
    position = {key: n for n, key in enumerate(keys)}
    members: dict[int, list[int]] = {n: [n] for n in range(len(keys))}
    links: dict[int, dict[int, float]] = {n: {} for n in range(len(keys))}
    for (a, b), value in affinities.items():
        i, j = position[a], position[b]
        links[i][j] = links[j][i] = links[i].get(j, 0.0) + value
    heap = [
        (-value, i, j) for i, row in links.items() for j, value in row.items() if i < j and value
    ]
    heapq.heapify(heap)
    while heap:
        negative, i, j = heapq.heappop(heap)
        if i not in members or j not in members:
            continue  # one side was joined into another group since
        mean = links[i].get(j, 0.0) / (len(members[i]) * len(members[j]))
        if abs(-negative - mean) > 1e-12:
            continue  # a stale entry: the groups changed since it was pushed
        if mean < threshold:
            break
        _join(i, j, members, links, heap)
    return [[keys[n] for n in sorted(group)] for _, group in sorted(members.items())]


def _join(
    i: int,
    j: int,
    members: dict[int, list[int]],
    links: dict[int, dict[int, float]],
    heap: list[tuple[float, int, int]],
) -> None:
    """Group j joins group i: summed links to every other group, fresh heap entries."""
    members[i] += members.pop(j)
    joined = links.pop(j)
    joined.pop(i, None)
    links[i].pop(j, None)
    for other, value in joined.items():
        links[other].pop(j, None)
        total = links[i].get(other, 0.0) + value
        links[i][other] = links[other][i] = total
    for other, total in links[i].items():
        mean = total / (len(members[i]) * len(members[other]))
        heapq.heappush(heap, (-mean, min(i, other), max(i, other)))


MIN_NEW_STORY = 2  # a lone article left without a story stays where it is (see matched_groups)


def matched_groups(
    groups: Sequence[Sequence[K]], stories: Mapping[K, str]
) -> list[tuple[str | None, list[K]]]:
    """Each group with the story it becomes: the groups and stories sharing the most articles
    are matched first, one story to one group; a group left without one gets None (a new
    story), unless it has fewer than ``MIN_NEW_STORY`` articles: a lone article stays in its
    story (the repair's lone-article step would move it back at once if the model put it
    there, and a story whose mean affinity a report lowers is not a reason to part them).
    ``stories`` gives each article's story now. Ties go to the group and story given first."""
    story_order = {story: n for n, story in enumerate(dict.fromkeys(stories.values()))}
    overlaps = []
    for number, group in enumerate(groups):
        for story, count in Counter(stories[key] for key in group).items():
            overlaps.append((-count, number, story_order[story], story))
    matched: dict[int, str] = {}
    taken: set[str] = set()
    for _, number, _, story in sorted(overlaps):
        if number not in matched and story not in taken:
            matched[number] = story
            taken.add(story)
    return [
        (matched.get(number), list(group))
        for number, group in enumerate(groups)
        if number in matched or len(group) >= MIN_NEW_STORY
    ]
