"""Calendar dates named in a text (aggregator.clustering.dates). Values in, values out."""

from datetime import date

import pytest

from aggregator.clustering.dates import MAX_MENTIONS, date_mentions, resolved_dates


@pytest.mark.parametrize(
    ("text", "mention"),
    [
        ("The shooting on June 5 left two dead.", (None, 6, 5)),
        ("He was charged on Sept. 12th, 2014, police said.", (2014, 9, 12)),
        ("Arrested Dec 3 2013 in Memphis", (2013, 12, 3)),
        ("The 5 May 2014 attack", (2014, 5, 5)),
        ("on the 21st of March", (None, 3, 21)),
        ("Am 5. Juni 2015 brannte es.", (2015, 6, 5)),
        ("Le 1er mars, la police a arrêté deux hommes.", (None, 3, 1)),
        ("El 5 de junio de 2013 hubo un incendio.", (2013, 6, 5)),
        ("Il 12 settembre a Roma", (None, 9, 12)),
        ("Op 3 maart 2016 in Utrecht", (2016, 3, 3)),
    ],
)
def test_dates_are_found_in_the_ways_languages_write_them(
    text: str, mention: tuple[int | None, int, int]
) -> None:
    assert date_mentions(text) == {mention}


@pytest.mark.parametrize(
    "text",
    [
        "Up to 5 may be charged.",  # a number and a verb
        "On February 30 nothing happened.",  # no such day
        "He served 12 years; 3 men were shot on Main Street.",
        "The 05/06/2014 hearing",  # which number is the month differs between countries
        "Mayday, Marchers and Junes",
    ],
)
def test_what_is_not_a_date_is_not_taken_for_one(text: str) -> None:
    assert date_mentions(text) == frozenset()


def test_a_timeline_keeps_its_first_dates() -> None:
    timeline = " ".join(f"On January {day} it rained." for day in range(1, 31))
    mentions = date_mentions(timeline)
    assert len(mentions) == MAX_MENTIONS
    assert (None, 1, 1) in mentions


def test_a_date_without_a_year_is_placed_in_the_latest_year_that_fits() -> None:
    """Reports look back; they look ahead only to what comes within AHEAD (90 days)."""
    published = date(2015, 2, 20)

    def placed(month: int, day: int) -> date:
        (moment,) = resolved_dates({(None, month, day)}, published)
        return moment

    assert placed(2, 18) == date(2015, 2, 18)
    assert placed(12, 28) == date(2014, 12, 28)  # last December
    assert placed(3, 3) == date(2015, 3, 3)  # next month: the trial opens March 3
    assert placed(6, 5) == date(2014, 6, 5)  # too far ahead: last June
    assert placed(2, 29) == date(2012, 2, 29)  # the last leap year
    assert resolved_dates({(2009, 6, 5)}, published) == {date(2009, 6, 5)}
