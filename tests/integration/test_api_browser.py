"""The pages for people in a real browser: headless Chromium opens `/` and a story page served
by uvicorn on loopback, over a store filled by the real pipeline; screenshots go to tmp_path."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import lxml.html
import pytest
import uvicorn

from aggregator.api.app import create_app
from tests.conftest import make_test_settings
from tests.integration.test_api import fill_with_demo_corpus

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "chromium"


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("browser")
    settings = make_test_settings(folder / "data", f"sqlite:///{folder / 'store.db'}")
    fill_with_demo_corpus(settings)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def chromium(url: str, *args: str) -> str:
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--window-size=412,915", *args, url,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=90, check=True)
    return done.stdout


def seen_in_browser(url: str, screenshot: Path) -> lxml.html.HtmlElement:
    """The page's DOM as Chromium built it, and a phone-sized screenshot of it."""
    chromium(url, f"--screenshot={screenshot}")
    assert screenshot.stat().st_size > 1000
    return lxml.html.fromstring(chromium(url, "--dump-dom"))


def test_a_reader_sees_the_top_stories_and_follows_them(base_url: str, tmp_path: Path) -> None:
    stories = httpx.get(f"{base_url}/stories", params={"limit": 100}).json()["items"]
    home = seen_in_browser(f"{base_url}/", tmp_path / "home.png")
    headlines = [a.text_content().strip() for a in home.xpath("//a[@class='headline']")]
    assert headlines == [s["headline"] for s in stories][: len(headlines)]
    assert len(headlines) >= 13
    outlets_shown = " ".join(span.text_content() for span in home.xpath("//span[@class='outlets']"))
    assert all(o["name"] in outlets_shown for s in stories for o in s["outlets"])
    assert home.xpath("//form[@role='search']//input[@name='q']")
    for link in home.xpath("//a[@class='headline']"):  # every headline opens its story page
        assert httpx.get(base_url + link.get("href")).status_code == 200

    widest = max(stories, key=lambda s: s["article_count"])
    page = seen_in_browser(f"{base_url}/s/{widest['id']}", tmp_path / "story.png")
    assert page.xpath("//h1[@class='headline']")[0].text_content().strip() == widest["headline"]
    sections = [h.text_content().strip() for h in page.xpath("//section[@class='outlet']/h2")]
    assert sorted(sections) == sorted(o["name"] for o in widest["outlets"])
    detail = httpx.get(f"{base_url}/stories/{widest['id']}").json()
    urls = {a["url"] for a in detail["articles"]} | {
        d["url"] for a in detail["articles"] for d in a["duplicates"]
    }
    assert {a.get("href") for a in page.xpath("//div[@class='article']/a")} == urls
    json_link = page.xpath("//a[starts-with(@href, '/stories/')]")[0].get("href")
    assert httpx.get(base_url + json_link).json()["id"] == widest["id"]


def test_a_search_from_the_box_finds_the_story(base_url: str, tmp_path: Path) -> None:
    found = seen_in_browser(f"{base_url}/?q=Putin+peace+plan", tmp_path / "search.png")
    headlines = [a.text_content() for a in found.xpath("//a[@class='headline']")]
    assert headlines and "Putin" in headlines[0]
    assert found.xpath("//input[@name='q']")[0].get("value") == "Putin peace plan"
