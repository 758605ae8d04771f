from aggregator.dedup import content_hash, normalise_text

BODY = "Putin said several elements of the plan were unacceptable. " * 10


def test_normalise_text_folds_case_punctuation_and_space() -> None:
    assert normalise_text("  Hello,\n\nWORLD! ") == "hello world"


def test_same_body_with_different_markup_and_case_hashes_the_same() -> None:
    assert content_hash("A", BODY) == content_hash("B", BODY.upper().replace(".", " ."))


def test_one_changed_word_changes_the_hash() -> None:
    assert content_hash("A", BODY) != content_hash("A", BODY.replace("several", "some", 1))


def test_short_bodies_are_told_apart_by_title() -> None:
    assert content_hash("Storm hits Odesa", "Read more") != content_hash("Rates cut", "Read more")
