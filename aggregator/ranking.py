"""Story ranking: the "hot" score of listings and digests. Pure: values in, a number out.

    hot = (outlets + EXTRA_ARTICLE_WEIGHT * (articles - outlets) + GROWTH_WEIGHT * recent)
          * 2 ** (-age_hours / HALF_LIFE_HOURS)

- ``outlets``: distinct outlets reporting the story, the main signal (independent reports);
- ``articles - outlets``: further articles of those outlets (follow-ups), worth a quarter each;
- ``recent``: growth, the articles published in the GROWTH_WINDOW before ``now``;
- ``age_hours``: hours from the story's last article to ``now`` (never negative), halving the
  score every HALF_LIFE_HOURS (listings; the daily digest passes its own, see digest.py).

With ``now`` fixed, the score never falls when a story gains an article (every term grows or
stays), which keeps cursor pagination over it free of repeats.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

HALF_LIFE_HOURS = 12.0
EXTRA_ARTICLE_WEIGHT = 0.25
GROWTH_WEIGHT = 0.5
GROWTH_WINDOW = timedelta(hours=6)
HOT_WINDOW = timedelta(hours=96)  # older stories score below 1/256 of their mass: not listed


def hot_score(
    *,
    outlets: int,
    articles: int,
    last_seen: datetime,
    now: datetime,
    recent_articles: int = 0,
    half_life_hours: float = HALF_LIFE_HOURS,
) -> float:
    """The hot score of a story from its counts, its last article's time and its growth."""
    mass = (
        max(outlets, 0)
        + EXTRA_ARTICLE_WEIGHT * max(articles - outlets, 0)
        + GROWTH_WEIGHT * max(recent_articles, 0)
    )
    age_hours = max((now - last_seen).total_seconds() / 3600.0, 0.0)
    return mass * math.pow(2.0, -age_hours / half_life_hours)
