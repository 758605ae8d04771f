"""The first streaming story clusterer: a TF-IDF centroid per story and one similarity threshold.

Pure: document frequencies and candidate stories come in as values; the caller stores the updated
centroid. IDF is computed from the articles seen so far, as the stream grows.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

CENTROID_TERMS = 200
TITLE_WEIGHT = 2
_WORD = re.compile(r"[^\W\d_][\w'-]*[\w]|[^\W\d_]", re.UNICODE)
STOPWORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "also",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
        "said",
        "says",
        "say",
        "told",
        "according",
        "new",
        "one",
        "two",
        "three",
        "year",
        "years",
        "week",
        "day",
        "days",
        "time",
        "also",
        "would",
        "could",
        "may",
        "might",
        "must",
    ]
)


@dataclass(frozen=True)
class StoryVector:
    story_id: int
    centroid: Mapping[str, float]
    article_count: int


@dataclass(frozen=True)
class Match:
    story_id: int | None  # None: start a new story
    score: float


def article_terms(title: str, text: str) -> Counter[str]:
    """Term counts of an article; title words count more than body words."""
    counts = Counter(tokenize(text))
    for term in tokenize(title):
        counts[term] += TITLE_WEIGHT
    return counts


def tokenize(text: str) -> list[str]:
    words = (word.lower().strip("'-") for word in _WORD.findall(text))
    return [w for w in words if len(w) > 1 and w not in STOPWORDS]


def tfidf_vector(
    counts: Mapping[str, int], document_frequency: Mapping[str, int], documents: int
) -> dict[str, float]:
    """L2-normalised TF-IDF weights (sublinear TF, smoothed IDF)."""
    weights = {
        term: (1.0 + math.log(count)) * _idf(document_frequency.get(term, 0), documents)
        for term, count in counts.items()
    }
    return _normalised(weights)


def _idf(df: int, documents: int) -> float:
    return math.log((1 + documents) / (1 + df)) + 1.0


def cosine(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    small, large = (a, b) if len(a) <= len(b) else (b, a)
    return sum(weight * large.get(term, 0.0) for term, weight in small.items())


def best_match(
    vector: Mapping[str, float], candidates: Sequence[StoryVector], *, threshold: float
) -> Match:
    """The most similar story, if it clears the threshold."""
    scored = [(cosine(vector, story.centroid), story.story_id) for story in candidates]
    score, story_id = max(scored, default=(0.0, None))
    return Match(story_id if score >= threshold else None, score)


def updated_centroid(
    centroid: Mapping[str, float], article_count: int, vector: Mapping[str, float]
) -> dict[str, float]:
    """The story's centroid with one more article, renormalised and cut to its top terms."""
    summed = Counter({term: weight * article_count for term, weight in centroid.items()})
    summed.update(vector)
    top = dict(summed.most_common(CENTROID_TERMS))
    return _normalised(top)


def _normalised(weights: Mapping[str, float]) -> dict[str, float]:
    norm = math.sqrt(sum(w * w for w in weights.values()))
    return {t: round(w / norm, 6) for t, w in weights.items()} if norm else {}
