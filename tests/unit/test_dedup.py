import pytest

from aggregator.dedup import (
    NEAR_DUPLICATE_JACCARD,
    boilerplate_reason,
    content_hash,
    estimated_jaccard,
    lsh_bands,
    minhash_signature,
    normalise_text,
)

BODY = "Putin said several elements of the plan were unacceptable. " * 10


def test_normalise_text_folds_case_punctuation_and_space() -> None:
    assert normalise_text("  Hello,\n\nWORLD! ") == "hello world"


def test_same_body_with_different_markup_and_case_hashes_the_same() -> None:
    assert content_hash("A", BODY) == content_hash("B", BODY.upper().replace(".", " ."))


def test_one_changed_word_changes_the_hash() -> None:
    assert content_hash("A", BODY) != content_hash("A", BODY.replace("several", "some", 1))


def test_short_bodies_are_told_apart_by_title() -> None:
    assert content_hash("Storm hits Odesa", "Read more") != content_hash("Rates cut", "Read more")


REPORT = (
    "Russian President Vladimir Putin said on Thursday that several points of the American plan to end "
    "the war in Ukraine were unacceptable to Moscow, after a five-hour meeting in the Kremlin with the "
    "US envoys Steve Witkoff and Jared Kushner. He said the proposal now had 27 points in four packages "
    "and that Russia would take all of the Donetsk region, while Trump said his envoys believed Putin "
    "wanted a deal and European leaders doubted it."
)


def test_identical_texts_have_identical_signatures() -> None:
    assert estimated_jaccard(minhash_signature(REPORT), minhash_signature(REPORT)) == 1.0
    assert lsh_bands(minhash_signature(REPORT)) == lsh_bands(minhash_signature(REPORT))


def test_a_lightly_edited_copy_is_a_near_duplicate() -> None:
    copy = "From our wire service. " + REPORT.replace("on Thursday", "late on Thursday").replace(
        "doubted it.", "remained sceptical."
    )
    similarity = estimated_jaccard(minhash_signature(REPORT), minhash_signature(copy))
    assert similarity >= NEAR_DUPLICATE_JACCARD
    assert set(lsh_bands(minhash_signature(REPORT))) & set(lsh_bands(minhash_signature(copy)))


def test_another_report_of_the_same_event_is_not() -> None:
    other = (
        "The Kremlin has rejected parts of Washington's peace proposal. Speaking to an Indian "
        "broadcaster before his trip to New Delhi, the Russian leader described the talks with "
        "Witkoff and Kushner as useful but difficult, and repeated his demand for the whole of Donetsk."
    )
    assert estimated_jaccard(minhash_signature(REPORT), minhash_signature(other)) < 0.2


VIDEO_NOTICE = "Please enable JavaScript to watch this video.\n\n"
# A news site's author-alert widget, standing where the article failed to load.
ALERT_WIDGET = (
    "Close Get email notifications on Jane Roe daily!\n\nYour notification has been saved.\n\n"
    "There was a problem saving your notification.\n\nWhenever Jane Roe posts new content, "
    "you'll get an email delivered to your inbox with a link.\n\nEmail notifications are only "
    "sent once a day, and only if there are new matching items."
)
SHORT_NEWS = (
    "Three people were taken to hospital on Saturday night after two cars collided outside the "
    "city stadium, police said. The drivers, both under 25, had left a concert minutes earlier. "
    "Witnesses told officers that one car ran a red light on Route 9. Detectives asked anyone "
    "with dashboard camera footage to come forward."
)


@pytest.mark.parametrize(
    ("title", "text", "wall"),
    [
        (
            "Page not found",
            "Sorry, the page you are looking for could not be found. Error 404.",
            True,
        ),
        ("Subscribe", "Subscribe now to continue reading. Already a subscriber? Sign in.", True),
        ("Just a moment", "Please verify you are a human to continue. Captcha.", True),
        (
            "Before you continue",
            "We use cookies. Accept all cookies or manage cookie settings.",
            True,
        ),
        ("Kremlin rejects plan", REPORT, False),
        ("Stadium crash", VIDEO_NOTICE + SHORT_NEWS, False),  # a player notice on a short report
        ("Saints lose Bush", SHORT_NEWS + " Bush ran for 404 yards this season.", False),
        ("Cookies", "We use cookies. " + VIDEO_NOTICE, True),  # notices and nothing else
        ("Council votes", "Subscribe to continue reading. " + SHORT_NEWS[:200], True),  # teaser
        ("Shooting victim identified", ALERT_WIDGET, True),  # an alert widget, no article
        ("Stadium crash", ALERT_WIDGET + "\n\n" + SHORT_NEWS, False),  # the widget above a report
        ("Stadium crash", SHORT_NEWS + " Sign up for our daily newsletter.", False),
        (
            "Cookies and cake",
            "A 404-word essay on cookies. " + "Baking is a craft of patience. " * 40,
            False,
        ),
    ],
)
def test_walls_and_error_pages_are_recognised(title: str, text: str, wall: bool) -> None:
    assert (boilerplate_reason(title, text) is not None) is wall
