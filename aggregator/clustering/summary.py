"""What a story shows of itself: its most representative headline and its keywords."""

from __future__ import annotations

from aggregator.clustering.features import DocVectors
from aggregator.clustering.state import StoryProfile
from aggregator.clustering.vectors import cosine, top_terms

KEYWORDS = 8


def representativeness(vectors: DocVectors, story: StoryProfile) -> float:
    """How close an article is to its story's centre (title and body centroids)."""
    return cosine(vectors.title, story.title) + cosine(vectors.body, story.body)


def story_keywords(story: StoryProfile, count: int = KEYWORDS) -> list[str]:
    """The story's heaviest entities, then title words: readable terms without their prefixes."""
    terms = top_terms(story.entities, count) + top_terms(story.title, count)
    words = dict.fromkeys(term.split(":", 1)[-1] for term in terms)
    return list(words)[:count]
