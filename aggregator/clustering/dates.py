"""Calendar dates an article's text names: "on June 5", "March 3, 2014", "5. Juni", "5 de junio".

A report weeks or months after an event (an arrest, a trial, a sentencing) usually says when the
event happened. The time gap between the report and the event's story is then better measured
from the dates the text names than from the day it was published (see features.days_apart).

Two pure steps: :func:`date_mentions` finds (year or None, month, day) in a text;
:func:`resolved_dates` turns them into dates, placing a mention without a year in the latest
year that puts it no more than ``AHEAD`` after the article's publication: reports look back
("Dec. 28" in a January report is last December's, "June 5" in it last June's), and forward
only to what is scheduled soon ("the trial opens March 3" in a February one).

Month names are matched in English (also abbreviated, "Sept. 5", and day first, "5 June"),
German, French, Spanish, Italian, Portuguese and Dutch, day first as those languages write
them. All-numeric dates (05/06/2014) are left out: which of the two is the month differs
between countries.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, timedelta

DateMention = tuple[int | None, int, int]  # (year if the text gives it, month, day)

AHEAD = timedelta(days=90)
MAX_MENTIONS = 20  # a text naming more dates than this (a calendar, a timeline) keeps its first

_ENGLISH = {
    "jan": 1,
    "january": 1,
    "feb": 2,
    "february": 2,
    "mar": 3,
    "march": 3,
    "apr": 4,
    "april": 4,
    "may": 5,
    "jun": 6,
    "june": 6,
    "jul": 7,
    "july": 7,
    "aug": 8,
    "august": 8,
    "sep": 9,
    "sept": 9,
    "september": 9,
    "oct": 10,
    "october": 10,
    "nov": 11,
    "november": 11,
    "dec": 12,
    "december": 12,
}
_OTHERS = {
    # German
    "januar": 1,
    "jänner": 1,
    "februar": 2,
    "märz": 3,
    "mai": 5,
    "juni": 6,
    "juli": 7,
    "oktober": 10,
    "dezember": 12,
    # French
    "janvier": 1,
    "février": 2,
    "mars": 3,
    "avril": 4,
    "juin": 6,
    "juillet": 7,
    "août": 8,
    "septembre": 9,
    "octobre": 10,
    "novembre": 11,
    "décembre": 12,
    # Spanish
    "enero": 1,
    "febrero": 2,
    "marzo": 3,
    "abril": 4,
    "mayo": 5,
    "junio": 6,
    "julio": 7,
    "agosto": 8,
    "septiembre": 9,
    "setiembre": 9,
    "octubre": 10,
    "noviembre": 11,
    "diciembre": 12,
    # Italian
    "gennaio": 1,
    "febbraio": 2,
    "aprile": 4,
    "maggio": 5,
    "giugno": 6,
    "luglio": 7,
    "settembre": 9,
    "ottobre": 10,
    "dicembre": 12,
    # Portuguese
    "janeiro": 1,
    "fevereiro": 2,
    "março": 3,
    "maio": 5,
    "junho": 6,
    "julho": 7,
    "setembro": 9,
    "outubro": 10,
    "dezembro": 12,
    # Dutch
    "januari": 1,
    "februari": 2,
    "maart": 3,
    "mei": 5,
    "augustus": 8,
}
_DAY_FIRST_MONTHS = {**{k: v for k, v in _ENGLISH.items() if len(k) > 3}, "may": 5, **_OTHERS}


def _alternatives(names: Iterable[str]) -> str:
    return "|".join(sorted(names, key=len, reverse=True))


_YEAR = r"(?P<year>(?:19|20)\d{2})"
# English month first, capitalised as English writes it: "June 5", "Sept. 5th, 2014".
_MONTH_FIRST = re.compile(
    rf"\b(?P<month>{_alternatives(name.capitalize() for name in _ENGLISH)})\.?\s+"
    rf"(?P<day>\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+{_YEAR}\b)?"
)
# Day first, any case: "5 June 2014", "5. Juni", "1er mars", "5 de junio de 2014".
_DAY_FIRST = re.compile(
    rf"\b(?P<day>\d{{1,2}})(?:\.|er|º|st|nd|rd|th)?\s+(?:de\s+|of\s+)?"
    rf"(?P<month>{_alternatives(_DAY_FIRST_MONTHS)})\b(?:,?\s+(?:de\s+)?{_YEAR}\b)?",
    re.IGNORECASE,
)


def date_mentions(text: str) -> frozenset[DateMention]:
    """The calendar dates ``text`` names, at most ``MAX_MENTIONS``, each as (year or None,
    month, day); impossible ones (February 30) are dropped."""
    found: dict[DateMention, None] = {}
    for pattern, months in ((_MONTH_FIRST, _ENGLISH), (_DAY_FIRST, _DAY_FIRST_MONTHS)):
        for match in pattern.finditer(text):
            if match["month"] == "may":
                continue  # "5 may" is a number and a verb; "5 May" is a date
            year = int(match["year"]) if match["year"] else None
            mention = (year, months[match["month"].lower()], int(match["day"]))
            if _valid(mention):
                found[mention] = None
    return frozenset(list(found)[:MAX_MENTIONS])


def resolved_dates(mentions: Iterable[DateMention], published: date) -> frozenset[date]:
    """The dates the mentions stand for, a mention without a year in the latest year that puts
    it at most ``AHEAD`` after ``published`` (see the module's docstring)."""
    dates = set()
    for year, month, day in mentions:
        if year is not None:
            dates.add(date(year, month, day))
            continue
        years = (published.year + n for n in (1, 0, -1, -2, -3, -4))  # Feb. 29: a leap year
        options = (moment for y in years if (moment := _date(y, month, day)) is not None)
        dates.add(next(moment for moment in options if moment <= published + AHEAD))
    return frozenset(dates)


def _valid(mention: DateMention) -> bool:
    year, month, day = mention
    return _date(2000 if year is None else year, month, day) is not None  # 2000: a leap year


def _date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None
