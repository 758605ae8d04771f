import pytest

from aggregator.clustering.text import clean_title, extract_terms, mentioned_years


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Man shot in Hawthorne - KSLA News 12 Shreveport", "Man shot in Hawthorne"),
        ("Police name victim :: WRAL.com", "Police name victim"),
        ("Parliament passes budget | Reuters", "Parliament passes budget"),
        ("Short - Site", "Short - Site"),
        ("No suffix in this headline", "No suffix in this headline"),
    ],
)
def test_clean_title(title: str, expected: str) -> None:
    assert clean_title(title) == expected


def test_extract_terms_finds_entities_and_numbers() -> None:
    bags = extract_terms(
        "Fire Destroys Warehouse In Springfield",
        "The fire destroyed the Acme warehouse in Springfield. Police said 40 people left.",
    )
    assert "e:springfield" in bags.entities
    assert "e:acme" in bags.entities
    assert "e:#40" in bags.entities
    assert "e:fire" not in bags.entities  # written in lower case in the body
    assert "w:warehouse" in bags.title
    assert "w:the" not in bags.body


def test_mentioned_years_are_four_digit_numbers_of_the_last_two_centuries() -> None:
    bags = extract_terms(
        "Frigate captures pirates in 2008",
        "The navy said 1,500 sailors and 2,011 tonnes of cargo were involved, as in 1999 and "
        "in 2008; the 12 pirates face trial in 2009, or by 2150.",
    )
    assert mentioned_years(bags.entities) == {1999, 2008, 2009}


def test_the_dates_a_title_or_text_names_come_with_the_bags() -> None:
    bags = extract_terms("Gunman sentenced for June 5 shooting", "He was arrested on Aug. 2, 2014.")
    assert bags.dates == {(None, 6, 5), (2014, 8, 2)}
