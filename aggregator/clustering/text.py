"""Turn an article's title and body into the term bags the clusterer compares.

Three bags per article:

* ``title``: lower-cased words of the headline, with a trailing site name removed;
* ``body``: lower-cased words of the body text (and the headline);
* ``entities``: proper-noun-like words (capitalised and never written in lower case in the
  article) and numbers of two or more digits.

Every term carries a one-letter prefix (``w:`` for words, ``e:`` for entities) so the three
bags can share one document-frequency table. The calendar dates the text names come along
(dates.py).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from aggregator.clustering.dates import DateMention, date_mentions

_WORD = re.compile(r"[^\W_]+(?:['’][^\W\d_]+)?")
_SITE_SUFFIX = re.compile(r"\s+(?:[-|–—]|::)\s+[^-|–—:]{1,60}$")
_MAX_BODY_CHARS = 6000
# cluster_terms.term holds 64 characters, prefix ("w:", "e:#") included: a longer word (a hash,
# a run of Thai or Japanese written without spaces) is cut, or PostgreSQL refuses the term.
MAX_WORD_CHARS = 60

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
        "one",
        "two",
        "new",
        "like",
        "get",
        "got",
        "may",
        "might",
        "must",
        "shall",
        "since",
        "still",
        "upon",
        "us",
        "via",
        "yet",
        "however",
        "although",
        "though",
        "many",
        "much",
        "even",
        "well",
        "back",
        "first",
        "last",
        "year",
        "years",
        "day",
        "days",
        "week",
        "weeks",
        "time",
        "mr",
        "mrs",
        "ms",
        "dr",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
        "today",
        "yesterday",
        "tomorrow",
        "am",
        "pm",
        "news",
        "read",
        "more",
        "photo",
        "video",
        "image",
        "copyright",
        "reserved",
        "rights",
        "click",
        "share",
        "comments",
        "comment",
        "email",
        "please",
        "enable",
        "javascript",
        "watch",
        "advertisement",
    ]
)


@dataclass(frozen=True)
class TermBags:
    title: Counter[str]
    body: Counter[str]
    entities: Counter[str]
    dates: frozenset[DateMention] = frozenset()  # the calendar dates the text names

    def all_terms(self) -> set[str]:
        return set(self.title) | set(self.body) | set(self.entities)


YEAR_RANGE = range(1900, 2100)
NUMBER_PREFIX = "e:#"  # entity terms that are numbers; the others are names


def names_among(entities: Iterable[str]) -> list[str]:
    """The entity terms that are names, not numbers."""
    return [term for term in entities if not term.startswith(NUMBER_PREFIX)]


def mentioned_years(entities: Counter[str]) -> frozenset[int]:
    """The years (four-digit numbers 1900-2099) among an article's entity terms."""
    numbers = (term[3:] for term in entities if term.startswith(NUMBER_PREFIX) and len(term) == 7)
    return frozenset(year for year in map(int, numbers) if year in YEAR_RANGE)


def clean_title(title: str) -> str:
    """Drop a trailing ' - Site Name' / ' | Site' / ' :: Site' suffix from a headline."""
    stripped = _SITE_SUFFIX.sub("", title.strip())
    return stripped if len(stripped) >= 15 else title.strip()


def _tokens(text: str) -> list[str]:
    return _WORD.findall(text)


def _normalise(token: str) -> str:
    word = token.lower().replace("’", "'")
    if word.endswith("'s"):
        word = word[:-2]
    return word[:MAX_WORD_CHARS]


def _is_word(word: str) -> bool:
    return len(word) > 1 and not word.isdigit() and word not in STOPWORDS


def _is_capitalised(token: str) -> bool:
    return token[0].isupper()


def _mostly_capitalised(tokens: list[str]) -> bool:
    alpha = [t for t in tokens if t[0].isalpha()]
    return len(alpha) > 2 and sum(_is_capitalised(t) for t in alpha) > 0.6 * len(alpha)


def _entities(tokens: list[str], lower_words: set[str]) -> Counter[str]:
    found: Counter[str] = Counter()
    for token in tokens:
        word = _normalise(token)
        if token.isdigit():
            if len(token) >= 2:
                found[NUMBER_PREFIX + word] += 1
        elif _is_capitalised(token) and _is_word(word) and word not in lower_words:
            found["e:" + word] += 1
    return found


def extract_terms(title: str, text: str) -> TermBags:
    """Build the title, body and entity bags of one article."""
    title_tokens = _tokens(clean_title(title))
    body_tokens = _tokens(text[:_MAX_BODY_CHARS])
    lower_words = {t for t in title_tokens + body_tokens if t[0].islower()}
    lower_words = {_normalise(t) for t in lower_words}
    title_words = [_normalise(t) for t in title_tokens]
    body_words = [_normalise(t) for t in body_tokens]
    entities = _entities(body_tokens, lower_words)
    title_entity_tokens = title_tokens
    if _mostly_capitalised(title_tokens):
        title_entity_tokens = [t for t in title_tokens if "e:" + _normalise(t) in entities]
    entities.update(_entities(title_entity_tokens, lower_words))
    return TermBags(
        title=Counter("w:" + w for w in title_words if _is_word(w)),
        body=Counter("w:" + w for w in body_words + title_words if _is_word(w)),
        entities=entities,
        dates=date_mentions(f"{title}\n{text[:_MAX_BODY_CHARS]}"),
    )
