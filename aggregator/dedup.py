"""Exact-duplicate detection: a content fingerprint over normalised text."""

from __future__ import annotations

import hashlib
import re
import unicodedata

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
