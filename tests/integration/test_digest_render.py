"""The HTML digest as a mail client would show it: rendered by headless Chromium (Debian's
`chromium`, installed by .ci/run) into a screenshot kept in the test's output folder
(pytest's tmp_path, whose name pytest cuts to 30 characters:
/tmp/pytest-of-$USER/pytest-N/test_digest_renders_in_chromiu0/digest.png)."""

from __future__ import annotations

import shutil
import subprocess
import zlib
from datetime import UTC, date, datetime
from pathlib import Path

from aggregator.digest import CandidateStory, DigestPage, Outlet, digest_story, render_digest
from tests.digest_stories import LEAD

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _distinct_rows(data: bytes) -> int:
    """How many different scanlines the (uncompressed) image data holds: a blank page has one."""
    chunks, at = [], 8
    while at < len(data):
        length = int.from_bytes(data[at : at + 4], "big")
        if data[at + 4 : at + 8] == b"IDAT":
            chunks.append(data[at + 8 : at + 8 + length])
        at += 12 + length
    raw = zlib.decompress(b"".join(chunks))
    _, height = _png_size(data)
    stride = len(raw) // height
    return len({raw[i * stride + 1 : (i + 1) * stride] for i in range(height)})


def test_digest_renders_in_chromium(tmp_path: Path) -> None:
    assert CHROMIUM, "Debian's chromium package is needed (.ci/run installs it)"
    stories = [
        digest_story(
            CandidateStory(
                id=i,
                headline=headline,
                last_seen=datetime(2025, 12, 4, 6, tzinfo=UTC),
                article_count=3,
                outlet_count=2,
                outlets=(
                    Outlet(1, "Northgate Wire", "https://wire.example/a"),
                    Outlet(2, "The Baltic Ledger", "https://ledger.example/b"),
                ),
            ),
            [LEAD],
        )
        for i, headline in enumerate(
            [
                "Harbour bridge closes for a year after cracks found in two piers",
                '<script>alert("x")</script>Ferries to run every ten minutes',
                "Residents brace for longer commutes",
            ],
            start=1,
        )
    ]
    page = DigestPage(
        day=date(2025, 12, 4),
        timezone="Europe/Paris",
        unsubscribe_url="https://news.example/unsubscribe?token=t",
        site_url="https://news.example/",
        recipient="reader@example.org",
    )
    html_file = tmp_path / "digest.html"
    html_file.write_text(render_digest(stories, page).html, "utf-8")
    screenshot = tmp_path / "digest.png"
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=700,1100",
            f"--screenshot={screenshot}",
            html_file.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    data = screenshot.read_bytes()
    assert _png_size(data) == (700, 1100)
    assert _distinct_rows(data) > 100  # text and boxes, not a blank page


def test_digest_fits_a_phone_screen() -> None:
    """The 600px layout shrinks (max-width) instead of scrolling sideways on a phone."""
    html = render_digest(
        [],
        DigestPage(
            date(2025, 12, 4), "UTC", "https://n.example/u", "https://n.example/", "r@x.example"
        ),
    ).html
    assert 'style="width:100%; max-width:600px;' in html
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
