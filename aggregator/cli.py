"""The `aggregator` command: thin wrappers that read arguments, open the store and call one
function."""

from __future__ import annotations

import gzip
import json
import sys
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click
from sqlalchemy.engine import Engine
from sqlmodel import Session

from aggregator import store
from aggregator.db import make_engine, session_scope, upgrade_database
from aggregator.models import Source, Story
from aggregator.settings import Settings, get_settings
from aggregator.sources import SourceEntry, SourceListError, parse_source_list, render_opml

if TYPE_CHECKING:
    from aggregator.extract import Extracted


def _now() -> datetime:
    return datetime.now(UTC)


def _engine(settings: Settings) -> Engine:
    """The configured store, migrated to the current schema."""
    engine = make_engine(settings.effective_database_url)
    upgrade_database(engine)
    return engine


@click.group()
def main() -> None:
    """Multi-source news aggregation: feeds in, stories out."""


# ---------------------------------------------------------------- db


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply all migrations."""
    settings = get_settings()
    _engine(settings)
    click.echo(f"database at head: {settings.effective_database_url}")


# ---------------------------------------------------------------- sources


@main.group()
def sources() -> None:
    """Manage the feeds that are polled."""


@sources.command("add")
@click.argument("url")
@click.option("--title", default="", help="A name for the source.")
@click.option(
    "--discover/--no-discover",
    default=True,
    show_default=True,
    help="Fetch the URL and, when it is a page, find the site's feed.",
)
def sources_add(url: str, title: str, discover: bool) -> None:
    """Add a feed by its URL, or by the URL of a page of its site."""
    try:
        (entry,) = parse_source_list(
            f"[[source]]\nurl = {json.dumps(url)}\ntitle = {json.dumps(title)}\n".encode(),
            filename="cli.toml",
        )
    except SourceListError as exc:
        raise click.UsageError(str(exc)) from exc
    if discover:
        entry = SourceEntry(_discover(entry.url), entry.title)
    _add_sources([entry])


def _discover(url: str) -> str:
    from aggregator.feeds import FeedError
    from aggregator.fetch import Fetcher, FetchError
    from aggregator.pipeline import discover_feed

    settings = get_settings()
    fetcher = Fetcher(settings)
    try:
        found = discover_feed(url, fetcher=fetcher, settings=settings)
    except (FetchError, FeedError) as exc:
        raise click.ClickException(f"{exc} (add it as it is with --no-discover)") from exc
    finally:
        fetcher.close()
    if found != url:
        click.echo(f"found the feed {found}", err=True)
    return found


@sources.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def sources_import(file: Path) -> None:
    """Add every feed listed in a TOML ([[source]] url=…) or OPML file."""
    try:
        entries = parse_source_list(file.read_bytes(), filename=file.name)
    except SourceListError as exc:
        raise click.ClickException(f"{file}: {exc}") from exc
    _add_sources(entries)


def _add_sources(entries: Sequence[SourceEntry]) -> None:
    with session_scope(_engine(get_settings())) as session:
        for entry in entries:
            source, created = store.add_source(
                session=session, url=entry.url, title=entry.title, now=_now()
            )
            click.echo(f"{'added' if created else 'exists'}  #{source.id}  {source.url}")


@sources.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per source and line.")
def sources_list(as_json: bool) -> None:
    """Sources with their health and next poll time."""
    with session_scope(_engine(get_settings())) as session:
        rows = store.list_sources(session=session)
    for source in rows:
        if as_json:
            click.echo(json.dumps(_source_json(source)))
        else:
            error = f"  error: {source.last_error}" if source.last_error else ""
            if source.last_error_at and source.last_error:
                error += f" (at {source.last_error_at:%Y-%m-%d %H:%M}Z)"
            click.echo(
                f"#{source.id:<4} {source.health:<11} errors={source.consecutive_errors} "
                f"next={source.next_poll_at:%Y-%m-%d %H:%M}Z  {source.title or '-'}  "
                f"{source.url}{error}"
            )


def _source_json(source: Source) -> dict[str, object]:
    return {
        "id": source.id,
        "url": source.url,
        "title": source.title,
        "health": source.health,
        "last_error": source.last_error,
        "last_error_at": source.last_error_at.isoformat() if source.last_error_at else None,
        "consecutive_errors": source.consecutive_errors,
        "last_polled_at": source.last_polled_at.isoformat() if source.last_polled_at else None,
        "last_success_at": source.last_success_at.isoformat() if source.last_success_at else None,
        "poll_interval_seconds": source.poll_interval_seconds,
        "next_poll_at": source.next_poll_at.isoformat(),
    }


@sources.command("export")
@click.option("--opml", "as_opml", is_flag=True, required=True, help="Write OPML 2.0.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
def sources_export(as_opml: bool, output: Path | None) -> None:
    """Write the source list as OPML (to stdout, or a file)."""
    with session_scope(_engine(get_settings())) as session:
        entries = [SourceEntry(s.url, s.title) for s in store.list_sources(session=session)]
    document = render_opml(entries)
    if output:
        output.write_bytes(document)
    else:
        sys.stdout.buffer.write(document)


# ---------------------------------------------------------------- pipeline


@main.command()
def crawl() -> None:
    """Poll every due source once, fetch, extract and cluster in this process, then exit."""
    from workers.celery_app import build_runtime, use_runtime
    from workers.inprocess import crawl_due_sources

    settings = get_settings()
    _engine(settings)
    use_runtime(build_runtime(settings))
    report = crawl_due_sources(progress=_print_progress)
    click.echo(f"polled {report.sources_polled} sources, {report.new_articles} new articles")


def _print_progress(source: Source, new_articles: int) -> None:
    status = source.last_error if source.health not in ("ok", "new") else source.health
    click.echo(f"  {source.title or source.url}: {new_articles} new ({status})", err=True)


@main.command()
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per story and line.")
def stories(limit: int, as_json: bool) -> None:
    """The latest stories."""
    with session_scope(_engine(get_settings())) as session:
        for story in store.latest_stories(session=session, limit=limit):
            summary = _story_summary(story, session=session)
            click.echo(json.dumps(summary) if as_json else _story_text(summary))


def _story_summary(story: Story, *, session: Session) -> dict[str, object]:
    rows = store.story_articles(session=session, story_id=story.id or 0)
    outlets = sorted({source.title or source.url for _, source in rows})
    return {
        "id": story.id,
        "headline": story.headline,
        "article_count": story.article_count,
        "source_count": story.source_count,
        "outlets": outlets,
        "first_seen": story.first_seen.isoformat(),
        "last_seen": story.last_seen.isoformat(),
    }


def _story_text(summary: dict[str, object]) -> str:
    outlets = ", ".join(str(o) for o in summary["outlets"])  # type: ignore[attr-defined]
    count = summary["article_count"]
    noun = "article" if count == 1 else "articles"
    return f"#{summary['id']} {summary['headline']}\n    {count} {noun} from {outlets}"


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--beat/--no-beat", default=True, show_default=True, help="Embed the scheduler.")
@click.pass_context
def worker(ctx: click.Context, beat: bool) -> None:
    """Start a Celery worker on all queues (extra arguments go to celery)."""
    from workers.celery_app import QUEUES, app

    _engine(get_settings())
    argv = ["worker", "-Q", ",".join(QUEUES), "--loglevel", "INFO", *ctx.args]
    app.worker_main([*argv, "--beat"] if beat else argv)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def beat(ctx: click.Context) -> None:
    """Start the Celery beat scheduler (run exactly one)."""
    from workers.celery_app import app

    _engine(get_settings())
    app.start(["beat", "--loglevel", "INFO", *ctx.args])


@main.command()
@click.option("--host", default=None, help="Address to listen on (default from settings).")
@click.option("--port", default=None, type=int, help="Port (default from settings).")
def serve(host: str | None, port: int | None) -> None:
    """Serve the HTTP API."""
    import uvicorn

    from aggregator.api.app import create_app

    settings = get_settings()
    uvicorn.run(
        create_app(settings), host=host or settings.api_host, port=port or settings.api_port
    )


@main.command("eval-clusters")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--predictions",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help='Write one line {"id": …, "cluster": …} per article.',
)
def eval_clusters(file: Path, predictions: Path | None) -> None:
    """Stream a labelled JSONL file through the production clustering stage and score it."""
    from aggregator.cluster_eval import evaluate_rows, read_rows, write_predictions

    try:
        rows = read_rows(file)
    except ValueError as exc:
        raise click.ClickException(f"{file}: not a labelled JSONL file: {exc}") from exc
    report, predicted = evaluate_rows(rows, get_settings())
    if predictions is not None:
        write_predictions(predictions, predicted)
    click.echo(json.dumps(report))


# ---------------------------------------------------------------- extraction

_GZIP_MAGIC = b"\x1f\x8b"
_NO_ARTICLE = "no article text found on the page"


@main.command("extract")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--jsonl", is_flag=True, help="One JSON object per file and line.")
@click.option(
    "--url", default=None, help="The pages' original address (default: each file's file:// URI)."
)
def extract(files: tuple[Path, ...], jsonl: bool, url: str | None) -> None:
    """Extract the article from saved pages (HTML, plain or gzip-compressed), as the pipeline
    does. Exits with status 1 if a file cannot be read."""
    from aggregator.extract import extract_article

    unreadable = 0
    for file in files:
        try:
            html = _read_page(file)
        except (OSError, EOFError, zlib.error) as exc:
            unreadable += 1
            error = f"cannot read: {_reason(exc)}"
            click.echo(f"aggregator extract: {file}: {error}", err=True)
            if jsonl:
                click.echo(json.dumps(_failed_json(file, error)))
            continue
        extracted = extract_article(html, url=url or file.resolve().as_uri())
        row = _extracted_json(file, extracted)
        click.echo(json.dumps(row, ensure_ascii=False) if jsonl else _extracted_text(row))
    if unreadable:
        sys.exit(1)


def _read_page(file: Path) -> bytes:
    data = file.read_bytes()
    return gzip.decompress(data) if data.startswith(_GZIP_MAGIC) else data


def _failed_json(file: Path, error: str) -> dict[str, object]:
    return {"file": str(file), "title": None, "text": None, "error": error}


def _extracted_json(file: Path, extracted: Extracted | None) -> dict[str, object]:
    if extracted is None:
        return _failed_json(file, _NO_ARTICLE)
    published = extracted.published.isoformat() if extracted.published else None
    return {
        "file": str(file),
        "title": extracted.title,
        "text": extracted.text,
        "author": extracted.author,
        "published": published,
        "language": extracted.language,
        "image_url": extracted.image_url,
    }


def _reason(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def _extracted_text(row: dict[str, object]) -> str:
    lines = [f"==> {row['file']} <=="]
    if row.get("error"):
        return "\n".join([*lines, f"({row['error']})", ""])
    lines.append(str(row["title"]))
    for key in ("author", "published", "language", "image_url"):
        if row[key]:
            lines.append(f"{key}: {row[key]}")
    return "\n".join([*lines, "", str(row["text"]), ""])


# ---------------------------------------------------------------- demo


@main.command()
@click.option("--reset", is_flag=True, help="Empty a store that holds other data first.")
def demo(reset: bool) -> None:
    """Serve the offline corpus on loopback, crawl it, and print its stories and their score."""
    from workers.inprocess import StoreNotEmpty, run_demo

    settings = get_settings()
    click.echo("Serving the demo outlets on 127.0.0.x and crawling them…", err=True)
    try:
        report = run_demo(settings, reset=reset, progress=_print_progress)
    except StoreNotEmpty as exc:
        raise click.ClickException(str(exc)) from exc
    with session_scope(_engine(settings)) as session:
        summaries = [_story_summary(s, session=session) for s in report.stories]
    click.echo(f"\n{len(summaries)} stories from {report.articles} articles:\n")
    for summary in summaries:
        click.echo(_story_text(summary))
    pairwise, bcubed = report.pairwise, report.bcubed
    click.echo(
        f"\nAgainst seeds/demo/gold.json: pairwise precision {pairwise.precision:.3f}, "
        f"recall {pairwise.recall:.3f}, F1 {pairwise.f1:.3f}; B-cubed F1 {bcubed.f1:.3f}"
    )
    click.echo(f"Store: {settings.effective_database_url}")
    click.echo("See them again with `aggregator stories`, or browse with `aggregator serve`.")


if __name__ == "__main__":
    main()
