"""Duplicates and non-articles: exact fingerprints, MinHash near-duplicates, wall pages."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence

from datasketch import MinHash

_NON_WORD = re.compile(r"\W+")


def normalise_text(text: str) -> str:
    """Case, accents-composition, punctuation and white space folded away."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _NON_WORD.sub(" ", folded).strip()


def content_hash(title: str, text: str) -> str:
    """SHA-256 of the normalised body (the title too when the body is short)."""
    body = normalise_text(text)
    basis = body if len(body) >= 200 else f"{normalise_text(title)}\n{body}"
    return hashlib.sha256(basis.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- near duplicates (MinHash + LSH)

SHINGLE_WORDS = 5
MINHASH_PERMUTATIONS = 128
LSH_BANDS = 32  # 32 bands of 4 rows: pairs with Jaccard 0.5 become candidates 87 % of the time
NEAR_DUPLICATE_JACCARD = 0.5  # wire copies measure 0.7+; independent reports of one event < 0.05
_MINHASH_SEED = 20251204


def shingles(text: str, *, size: int = SHINGLE_WORDS) -> set[bytes]:
    """Overlapping word n-grams of the normalised text."""
    words = normalise_text(text).split()
    if len(words) <= size:
        return {" ".join(words).encode()} if words else set()
    return {" ".join(words[i : i + size]).encode() for i in range(len(words) - size + 1)}


def minhash_signature(text: str) -> list[int]:
    """A MinHash signature of the text's shingles (datasketch, fixed seed: comparable forever)."""
    sketch = MinHash(num_perm=MINHASH_PERMUTATIONS, seed=_MINHASH_SEED)
    sketch.update_batch(list(shingles(text)))
    return [int(value) for value in sketch.hashvalues]


def lsh_bands(signature: Sequence[int]) -> list[str]:
    """One hash per band of rows: articles that share any band are near-duplicate candidates."""
    rows = len(signature) // LSH_BANDS
    return [
        hashlib.blake2b(
            repr(signature[b * rows : (b + 1) * rows]).encode(), digest_size=8
        ).hexdigest()
        for b in range(LSH_BANDS)
    ]


def estimated_jaccard(a: Sequence[int], b: Sequence[int]) -> float:
    if not a or len(a) != len(b):
        return 0.0
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)


# ---------------------------------------------------------------- pages that are not articles

# Wording that makes a short page a wall or an error page: the article is not there.
_WALL = re.compile(
    r"page (?:was )?not found|\b(?:error|http) ?404\b|\b404 (?:error|not found|page)\b|"
    r"no longer available|access denied|are you a robot|"
    r"verify (?:that )?you are (?:a )?human|captcha|"
    r"subscribe (?:now )?to (?:continue|read)|subscribers? only|already a subscriber|"
    r"sign in to (?:continue|read)|create a free account|log in to continue|paywall|"
    r"this content is not available in your (?:region|country)",
    re.IGNORECASE,
)
# Notices that sit on real articles too ("Please enable JavaScript to watch this video", cookie
# banners, e-mail alert and newsletter widgets): a page is a wall for them only if little else
# is on it.
_NOTICE = re.compile(
    r"enable (?:javascript|cookies)|(?:accept|manage) (?:all )?cookies|"
    r"cookie (?:policy|settings|consent)|"
    r"e-?mail (?:notifications|alerts)|your notification|delivered to your inbox|"
    r"(?:sign up|subscribe) (?:for|to) (?:our|the) (?:\w+ )?newsletter",
    re.IGNORECASE,
)
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n+")
BOILERPLATE_MAX_WORDS = 150
ARTICLE_MIN_WORDS = 50  # beside the notices, a lede and a paragraph of news


def boilerplate_reason(title: str, text: str) -> str | None:
    """Why the page is a wall or an error page rather than an article, if it is one: a short
    text with paywall, captcha or not-found wording, or with a cookie or JavaScript notice and
    little else."""
    words = len(text.split())
    if words > BOILERPLATE_MAX_WORDS:
        return None
    page = f"{title}\n{text}"
    hit = _WALL.search(page)
    if hit is None:
        hit = _NOTICE.search(page)
        if hit is None or _words_beside(_NOTICE, text) >= ARTICLE_MIN_WORDS:
            return None
    return f"not an article ({hit.group(0).lower()}, {words} words)"


def _words_beside(pattern: re.Pattern[str], text: str) -> int:
    """The words of the text's sentences and lines in which `pattern` does not occur."""
    parts = _SENTENCE_BREAK.split(text)
    return sum(len(part.split()) for part in parts if not pattern.search(part))
