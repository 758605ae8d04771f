"""Stream statistics of candidate similarities, for scores that mean the same on every stream.

How similar two unrelated articles look depends on the stream: short leads about national
politics share many words and names, long local reports about different shootings share few.
The clusterer keeps an exponential moving average of the mean and mean square of each
similarity feature over *background* pairs (every shortlisted candidate except the top-ranked
one, i.e. almost always a different story) and gives the model each similarity as a z-score
against that background as well as raw.

The average starts from a prior (the training streams' background, stored with the model) and
follows the stream at ``RATE`` per pair, so it adapts within a few hundred articles and keeps
adapting as the stream's topics drift.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

NORMALISED: tuple[str, ...] = (
    "body_cos",
    "body_max",
    "entity_cos",
    "entity_cover",
    "title_cos",
    "title_max",
)
RATE = 0.005
MIN_SD = 0.02
DEFAULT_MEAN = 0.1
DEFAULT_SD = 0.1


@dataclass(frozen=True)
class Background:
    """Running mean and mean square of each normalised feature over background pairs."""

    means: Mapping[str, float]
    squares: Mapping[str, float]

    @classmethod
    def default(cls) -> Background:
        square = DEFAULT_MEAN**2 + DEFAULT_SD**2
        return cls(dict.fromkeys(NORMALISED, DEFAULT_MEAN), dict.fromkeys(NORMALISED, square))

    def z(self, name: str, value: float) -> float:
        mean = self.means.get(name, DEFAULT_MEAN)
        variance = self.squares.get(name, mean**2 + DEFAULT_SD**2) - mean**2
        return (value - mean) / max(math.sqrt(max(variance, 0.0)), MIN_SD)

    def updated(self, rows: Iterable[Mapping[str, float]], rate: float = RATE) -> Background:
        means, squares = dict(self.means), dict(self.squares)
        for row in rows:
            for name in NORMALISED:
                value = row[name]
                means[name] = means.get(name, DEFAULT_MEAN) + rate * (
                    value - means.get(name, DEFAULT_MEAN)
                )
                old = squares.get(name, DEFAULT_MEAN**2 + DEFAULT_SD**2)
                squares[name] = old + rate * (value * value - old)
        return Background(means, squares)

    def to_json(self) -> dict[str, float]:
        return {
            **{f"mean:{name}": value for name, value in self.means.items()},
            **{f"square:{name}": value for name, value in self.squares.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, float]) -> Background:
        means = {k.split(":", 1)[1]: float(v) for k, v in data.items() if k.startswith("mean:")}
        squares = {k.split(":", 1)[1]: float(v) for k, v in data.items() if k.startswith("square:")}
        return cls(means, squares)


def mean_background(items: Iterable[Background]) -> Background:
    """The average of several streams' backgrounds (the prior shipped with a model)."""
    listed = list(items)
    if not listed:
        return Background.default()
    means = {n: sum(b.means.get(n, DEFAULT_MEAN) for b in listed) / len(listed) for n in NORMALISED}
    squares = {
        n: sum(b.squares.get(n, DEFAULT_MEAN**2 + DEFAULT_SD**2) for b in listed) / len(listed)
        for n in NORMALISED
    }
    return Background(means, squares)
