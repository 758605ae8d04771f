import pytest

from aggregator.clustering.text import clean_title, extract_terms


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
