"""Text the database can store: PostgreSQL refuses NUL in text, and no driver encodes a lone
surrogate. Feeds (character references such as &#0;) and pages (JSON-LD "\\u0000") bring both."""

from __future__ import annotations

import re

UNSTORABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")


def storable_text(value: object) -> str:
    """The value as text without C0 control characters (but tab, newline and carriage return)
    and lone surrogates; None (or any false value) is the empty text."""
    return UNSTORABLE.sub("", str(value or ""))
