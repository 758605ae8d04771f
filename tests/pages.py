"""Small builders for fixture pages and feeds served by the tests' HTTP server."""

from __future__ import annotations

from html import escape


def article_page(
    title: str, paragraphs: list[str], *, published: str = "2025-12-04T09:00:00Z"
) -> str:
    body = "".join(f"<p>{escape(p)}</p>" for p in paragraphs)
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<meta property="article:published_time" content="{published}"></head><body>
<nav><a href="/">Home</a> <a href="/world">World</a> <a href="/sport">Sport</a></nav>
<article><h1>{escape(title)}</h1>{body}</article>
<aside><h3>Related</h3><ul><li><a href="/x">Something else entirely</a></li></ul></aside>
<footer>Copyright 2025 Fixture Media. All rights reserved.</footer></body></html>"""


def rss_feed(title: str, items: list[tuple[str, str, str]]) -> str:
    """items: (guid, link, title)"""
    entries = "".join(
        f"<item><guid>{escape(g)}</guid><link>{escape(link)}</link><title>{escape(t)}</title>"
        f"<description>{escape(t)} (summary)</description>"
        f"<pubDate>Thu, 04 Dec 2025 09:{i:02d}:00 +0000</pubDate></item>"
        for i, (g, link, t) in enumerate(items)
    )
    return f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>{escape(title)}</title>{entries}</channel></rss>'
