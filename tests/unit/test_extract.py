"""Article extraction on small hand-written pages (tests/fixtures/pages), and `aggregator extract`."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from aggregator.cli import main
from aggregator.extract import article_language, covers_little, extract_article, word_count

PAGES = Path(__file__).resolve().parent.parent / "fixtures" / "pages"
URL = "https://fixture.example/news/2025/story"


@dataclass(frozen=True)
class Case:
    page: str
    title: str
    language: str
    author: str | None = None
    published: datetime | None = None
    image_url: str | None = None
    contains: list[str] = field(default_factory=list)
    excludes: list[str] = field(default_factory=list)


CASES = [
    Case(
        "article_with_boilerplate.html",
        title="Harbour bridge reopens after two years of repairs",
        language="en",  # from lang="en-GB"
        author="Mara Lindqvist",  # from the byline in the body: no author meta
        published=datetime(2025, 11, 18, 6, 30, tzinfo=UTC),  # +01:00 converted to UTC
        contains=[
            "The old harbour bridge reopened to traffic on Tuesday morning",
            "a weight limit of 40 tonnes would apply",
        ],
        excludes=[
            "cookies",  # the consent banner
            "Weather",  # the navigation
            "My commute was a nightmare",  # a reader's comment
            "Read more: Council approves",  # a teaser line inside the article
            "Ferry strike",  # the "Most read" box
            "All rights reserved",  # the footer
        ],
    ),
    Case(
        "og_image_author.html",
        title="Volunteers count a record number of nesting turtles",
        language="en",
        author="Priya Raman",
        published=datetime(2025, 8, 14, 6, 0, tzinfo=UTC),
        image_url="https://fixture.example/images/2025/turtles-beach.jpg",  # made absolute
        contains=["1,214 loggerhead turtle nests"],
        excludes=["Coastal Times"],
    ),
    Case(
        "german_article.html",
        title="Stadtrat beschließt neue Straßenbahnlinie",
        language="de",
        author="Katrin Vogelsang",
        published=datetime(2025, 10, 2, 12, 5, tzinfo=UTC),
        contains=["neuen Straßenbahnlinie zwischen dem Hauptbahnhof"],
        excludes=["Impressum"],
    ),
    Case(
        "portuguese_declared_english.html",  # a theme's default lang="en-US" on a Portuguese page
        title="Chuva forte deixa bairros sem energia no litoral",
        language="pt",
        contains=["doze bairros sem energia elétrica"],
        excludes=["Todos os direitos reservados"],
    ),
    Case(
        "japanese_article.html",  # no declared language; short, and written without spaces
        title="市立図書館が夜間開館を開始",
        language="ja",
        published=None,  # "著作権 2025" in the footer is not a publication date
        contains=["午後九時まで延長する"],
        excludes=["ホーム"],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.page for case in CASES])
def test_extract_article(case: Case) -> None:
    extracted = extract_article((PAGES / case.page).read_bytes(), url=URL)
    assert extracted is not None
    assert extracted.title == case.title
    assert extracted.language == case.language
    assert extracted.author == case.author
    assert extracted.published == case.published
    assert extracted.image_url == case.image_url
    assert not extracted.text.startswith(case.title)  # the headline is not repeated as text
    for snippet in case.contains:
        assert snippet in extracted.text
    for snippet in case.excludes:
        assert snippet not in extracted.text


def test_page_without_an_article_gives_none() -> None:
    assert extract_article((PAGES / "not_found.html").read_bytes(), url=URL) is None


def test_text_and_bytes_give_the_same_article() -> None:
    html = (PAGES / "german_article.html").read_bytes()
    assert extract_article(html.decode("utf-8"), url=URL) == extract_article(html, url=URL)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", 0),
        ("Three plain words", 3),
        ("It's 40 tonnes, isn't it?", 7),
        ("市立中央図書館は来月から", 6),  # 12 characters without spaces: two a word
        ("The 図書館 opens", 3),
    ],
)
def test_word_count(text: str, words: int) -> None:
    assert word_count(text) == words


@pytest.mark.parametrize(
    ("text_chars", "page_chars", "retry"),
    [
        (260, 3600, True),  # a reprint notice instead of the article: try the balanced extraction
        (1500, 3600, False),  # most of the page's paragraphs
        (2900, 20000, True),
        (3000, 50000, False),  # long enough to be an article whatever the page holds
        (0, 0, False),  # a page without paragraphs
    ],
)
def test_covers_little(text_chars: int, page_chars: int, retry: bool) -> None:
    assert covers_little("x" * text_chars, page_chars=page_chars) is retry


ENGLISH = "The council said the bridge would reopen to traffic next week after two years. " * 4
GERMAN = "Der Stadtrat hat am Mittwoch den Bau einer neuen Straßenbahnlinie beschlossen. " * 4
# A news transcript in capitals with a lower-case cue: read as Nigerian Pidgin (0.05) as it is.
TRANSCRIPT = (
    "COMING UP NEXT. MARTHA? GOOD EVENING, THREE PEOPLE ARE IN HOSPITAL TONIGHT AFTER A CRASH "
    "OUTSIDE A STADIUM. IT HAPPENED AFTER TWO CARS RACED DOWN ROUTE 9. PETER LANG HAS BEEN "
    "FOLLOWING THIS STORY AND HE JOINS US LIVE FROM THE SCENE. PETER, IT'S ALWAYS HARD TO SEE "
    "THIS. Reporter: ABSOLUTELY, MARTHA, AND ALL OF THE DRIVERS, WE ARE TOLD, ARE UNDER 25 YEARS "
    "OLD. THEY WERE HERE FOR A CONCERT, SO AS YOU SAID, A LOT OF YOUNG FANS WERE STILL AROUND."
)
GALLERY_MARKUP = "photo_prev_inline|article-gallery-5845524|0 photo_next_inline|gallery|0 " * 3


@pytest.mark.parametrize(
    ("declared", "text", "language"),
    [
        ("en", ENGLISH, "en"),  # agreement
        (None, GERMAN, "de"),  # nothing declared: detected
        ("en", GERMAN, "de"),  # declared, but clearly another language
        ("de", "Kurzer Text.", "de"),  # too little text to overrule the page
        (None, "", None),  # nothing to go by
        (None, TRANSCRIPT, "en"),  # capitals and lower case mixed
        ("en", TRANSCRIPT, "en"),
        (None, GALLERY_MARKUP, None),  # no language at all: no confident guess
    ],
)
def test_article_language(declared: str | None, text: str, language: str | None) -> None:
    assert article_language(declared, text) == language


# ---------------------------------------------------------------- aggregator extract


def test_cli_prints_a_header_and_the_text_per_file() -> None:
    files = [str(PAGES / "og_image_author.html"), str(PAGES / "not_found.html")]
    result = CliRunner().invoke(main, ["extract", "--url", URL, *files])
    assert result.exit_code == 0, result.output
    first, second = result.output.split("==> ")[1:]
    assert first.startswith(
        f"{files[0]} <==\nVolunteers count a record number of nesting turtles\n"
    )
    assert "author: Priya Raman\n" in first
    assert "image_url: https://fixture.example/images/2025/turtles-beach.jpg\n" in first
    assert "1,214 loggerhead turtle nests" in first
    assert second == f"{files[1]} <==\n(no article text found on the page)\n\n"  # blank line after


def test_cli_jsonl_reads_gzip_and_reports_pages_without_articles() -> None:
    files = [str(PAGES / "german_article.html.gz"), str(PAGES / "not_found.html")]
    result = CliRunner().invoke(main, ["extract", "--jsonl", *files])
    assert result.exit_code == 0, result.output
    german, missing = (json.loads(line) for line in result.output.splitlines())
    assert german["file"] == files[0]
    assert german["title"] == "Stadtrat beschließt neue Straßenbahnlinie"
    assert german["language"] == "de"
    assert german["author"] == "Katrin Vogelsang"
    assert german["published"] == "2025-10-02T12:05:00+00:00"
    assert "neuen Straßenbahnlinie" in german["text"]
    assert "error" not in german
    assert missing == {
        "file": files[1],
        "title": None,
        "text": None,
        "error": "no article text found on the page",
    }


def test_cli_gzip_and_plain_copies_extract_alike() -> None:
    files = [str(PAGES / "german_article.html.gz"), str(PAGES / "german_article.html")]
    result = CliRunner().invoke(main, ["extract", "--jsonl", "--url", URL, *files])
    gz, plain = (json.loads(line) for line in result.output.splitlines())
    assert {**gz, "file": None} == {**plain, "file": None}


@pytest.mark.parametrize("jsonl", [False, True])
def test_cli_unreadable_files_fail_clearly_but_the_others_are_extracted(
    tmp_path: Path, jsonl: bool
) -> None:
    broken = tmp_path / "truncated.html.gz"
    broken.write_bytes(gzip.compress((PAGES / "german_article.html").read_bytes())[:40])
    missing = tmp_path / "missing.html"
    good = PAGES / "german_article.html"
    args = ["extract", *(["--jsonl"] if jsonl else []), str(missing), str(broken), str(good)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert f"aggregator extract: {missing}: cannot read: No such file or directory" in result.stderr
    assert f"aggregator extract: {broken}: cannot read:" in result.stderr
    assert "Stadtrat beschließt neue Straßenbahnlinie" in result.stdout
    if jsonl:
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        assert [row["file"] for row in rows] == [str(missing), str(broken), str(good)]
        assert rows[0]["error"].startswith("cannot read") and rows[1]["error"].startswith("cannot")


STRIKE_PARAGRAPHS = "".join(
    f"<p>Paragraph {n}: a missile struck the city overnight, wounding six people including"
    " a girl, regional officials said on Thursday; buildings and a school were damaged.</p>"
    for n in range(3)
)


def test_structured_data_cannot_smuggle_a_nul_into_the_article() -> None:
    """JSON-LD decodes \\u0000 to a NUL, which PostgreSQL refuses in text: the article's fetch
    would fail on every attempt (a feed's entries seldom name their author)."""
    data = (
        '{"@context": "https://schema.org", "@type": "NewsArticle", "headline": "Strike\\u0000 hits",'
        ' "author": {"@type": "Person", "name": "Jane\\u0000 Doe"}}'
    )
    page = (
        f'<html lang="en"><head><script type="application/ld+json">{data}</script></head>'
        f"<body><article>{STRIKE_PARAGRAPHS}</article></body></html>"
    )
    extracted = extract_article(page, url=URL)
    assert extracted is not None
    assert (extracted.title, extracted.author) == ("Strike hits", "Jane Doe")


@pytest.mark.parametrize("image", ["http://[fixture.example/a.jpg", "http://[::1/a.jpg"])
def test_an_image_url_that_is_no_url_is_no_image(image: str) -> None:
    """urljoin raised ValueError on it, out of extract_article: the fetch failed every time."""
    page = (
        f'<html lang="en"><head><meta property="og:image" content="{image}"></head>'
        f"<body><article>{STRIKE_PARAGRAPHS}</article></body></html>"
    )
    extracted = extract_article(page, url=URL)
    assert extracted is not None and extracted.image_url is None
