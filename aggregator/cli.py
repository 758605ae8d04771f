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

from aggregator import queries, store
from aggregator.db import make_engine, session_scope, upgrade_database
from aggregator.models import Source, Story, Subscriber
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
    """Add a feed by its URL, or by the URL of a page of its site (a retired one comes back)."""
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


@sources.command("poll")
@click.argument("source_ids", nargs=-1, required=True, type=int)
def sources_poll(source_ids: tuple[int, ...]) -> None:
    """Make sources due for a poll now (by id, as `sources list` shows it): a running worker
    polls them within a minute, `aggregator crawl` at once. A retired source is polled again."""
    with session_scope(_engine(get_settings())) as session:
        found = {source_id: session.get(Source, source_id) for source_id in source_ids}
        missing = [f"#{source_id}" for source_id, source in found.items() if source is None]
        if missing:
            raise click.ClickException(f"no such source: {', '.join(missing)} (nothing changed)")
        for source in found.values():
            assert source is not None
            queries.update_source(
                session=session, source=source, url=None, title=None, poll_now=True, now=_now()
            )
            click.echo(f"due now  #{source.id}  {source.url}")


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


@main.command()
def repair() -> None:
    """Repair recent stories now, as beat does every 30 minutes: regroup the articles of recent
    stories all at once, merge stories of one event, split drifted ones, move lone articles to
    the story they now fit, elect headlines."""
    from aggregator.pipeline import repair_stories

    settings = get_settings()
    with session_scope(_engine(settings)) as session:
        report = repair_stories(session=session, settings=settings, now=_now())
        headlines = {i: row.headline for i in report.headlines if (row := session.get(Story, i))}
    for loser, survivor in report.merged:
        click.echo(f"story #{loser} merged into #{survivor}")
    for story, split_off in report.split:
        click.echo(f"story #{story}: articles split off into #{split_off}")
    for lone, joined in report.rejoined:
        click.echo(f"story #{lone}: its one article moved to #{joined}")
    for story_id in report.headlines:
        click.echo(f"story #{story_id}: new headline {headlines.get(story_id, '')!r}")
    click.echo(
        f"articles regrouped {len(report.regrouped)}, merged {len(report.merged)}, "
        f"split {len(report.split)}, lone articles moved {len(report.rejoined)}, "
        f"new headlines {len(report.headlines)}"
    )


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--beat/--no-beat", default=True, show_default=True, help="Embed the scheduler.")
@click.pass_context
def worker(ctx: click.Context, beat: bool) -> None:
    """Start a Celery worker on all queues (extra arguments go to celery)."""
    from aggregator.queues import QUEUES
    from workers.celery_app import app

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
@click.option("--workers", default=1, type=click.IntRange(1, 64), help="Worker processes.")
def serve(host: str | None, port: int | None, workers: int) -> None:
    """Serve the HTTP API (and the pages for people)."""
    from aggregator.api.serve import serve as serve_api

    settings = get_settings()
    _engine(settings).dispose()  # migrate once, before the workers start
    serve_api(host=host or settings.api_host, port=port or settings.api_port, workers=workers)


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


# ---------------------------------------------------------------- subscribers and the digest


@main.group()
def subscribers() -> None:
    """Readers of the daily digest."""


def _split_words(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(part.strip() for value in values for part in value.split(",") if part.strip())


@subscribers.command("add")
@click.argument("email")
@click.option("--timezone", "timezone_", default="UTC", show_default=True, help="IANA name.")
@click.option("--hour", default=7, show_default=True, type=click.IntRange(0, 23))
@click.option("--keywords", multiple=True, help="Words or phrases (repeat, or comma-separated).")
@click.option("--include-source", multiple=True, type=int, help="Only stories of source ids.")
@click.option("--exclude-source", multiple=True, type=int, help="Never these source ids.")
@click.option("--max-stories", default=None, type=click.IntRange(1, 50))
def subscribers_add(
    email: str,
    timezone_: str,
    hour: int,
    keywords: tuple[str, ...],
    include_source: tuple[int, ...],
    exclude_source: tuple[int, ...],
    max_stories: int | None,
) -> None:
    """Add a reader (confirmed: an operator vouches for the address), or update one."""
    from aggregator.subscribers import InvalidSubscriber, SubscriberFields, add_subscriber

    settings = get_settings()
    fields = SubscriberFields(
        email, timezone_, hour, _split_words(keywords), include_source, exclude_source, max_stories
    )
    try:
        with session_scope(_engine(settings)) as session:
            subscriber, created = add_subscriber(
                fields, session=session, settings=settings, now=_now(), confirmed=True
            )
    except InvalidSubscriber as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(f"{'added' if created else 'updated'}  #{subscriber.id}  {subscriber.email}")


@subscribers.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per subscriber and line.")
def subscribers_list(as_json: bool) -> None:
    """Every subscriber with their preferences and state."""
    from aggregator.digest_store import list_subscribers

    with session_scope(_engine(get_settings())) as session:
        rows = list_subscribers(session=session)
    for s in rows:
        state = _subscriber_state(s)
        if as_json:
            row = s.model_dump(mode="json", exclude={"id"})
            click.echo(json.dumps({"id": s.id, "state": state, **row}))
        else:
            words = f"  keywords: {', '.join(s.keywords)}" if s.keywords else ""
            click.echo(
                f"#{s.id:<4} {state:<12} {s.email}  {s.timezone} {s.send_hour:02d}:00  "
                f"max {s.max_stories}{words}"
            )


def _subscriber_state(subscriber: Subscriber) -> str:
    if not subscriber.active:
        return "unsubscribed"
    if subscriber.confirmed_at is None:
        return "unconfirmed"
    return "paused" if subscriber.paused_at else "receiving"


@subscribers.command("remove")
@click.argument("email")
def subscribers_remove(email: str) -> None:
    """Delete a reader and their delivery records."""
    from aggregator.digest_store import delete_subscriber, subscriber_by_email

    with session_scope(_engine(get_settings())) as session:
        subscriber = subscriber_by_email(session=session, email=email)
        if subscriber is None or subscriber.id is None:
            raise click.ClickException(f"no subscriber {email}")
        delete_subscriber(session=session, subscriber_id=subscriber.id)
    click.echo(f"removed  {email}")


@main.group()
def digest() -> None:
    """The daily digest email."""


def _subscriber(email: str, *, session: Session) -> Subscriber:
    from aggregator.digest_store import subscriber_by_email

    subscriber = subscriber_by_email(session=session, email=email)
    if subscriber is None:
        raise click.ClickException(f"no subscriber {email} (add one with `subscribers add`)")
    return subscriber


@digest.command("send")
@click.option("--email", required=True, help="The subscriber's address.")
def digest_send(email: str) -> None:
    """Send the reader's digest for their current local day now (once a day: a second run
    sends nothing and says why)."""
    from aggregator import delivery
    from aggregator.digest import local_day
    from aggregator.subscribers import DigestConfigError

    settings = get_settings()
    engine = _engine(settings)
    now = _now()
    with session_scope(engine) as session:
        subscriber = _subscriber(email, session=session)
    day = local_day(subscriber.timezone, now)
    try:
        outcome = delivery.send_digest(
            subscriber.id or 0, day, engine=engine, settings=settings, now=now
        )
    except DigestConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    except delivery.SendLater as exc:
        raise click.ClickException(f"not sent, will retry: {exc}") from exc
    if outcome.status != "sent" or not outcome.now:
        raise click.ClickException(f"nothing sent: {outcome.reason}")
    click.echo(f"{outcome.reason} to {email} for {day}, Message-ID {outcome.message_id}")


@digest.command("preview")
@click.option("--email", required=True, help="The subscriber's address.")
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
)
def digest_preview(email: str, output_dir: Path) -> None:
    """Write the reader's digest as it would go out now to an HTML and a text file (nothing is
    sent or recorded; the minimum number of stories does not apply)."""
    from aggregator import delivery
    from aggregator.digest import local_day
    from aggregator.subscribers import DigestConfigError

    settings = get_settings()
    now = _now()
    try:
        with session_scope(_engine(settings)) as session:
            subscriber = _subscriber(email, session=session)
            built = delivery.build_digest(
                subscriber,
                session=session,
                settings=settings,
                now=now,
                day=local_day(subscriber.timezone, now),
                min_stories=1,
            )
    except DigestConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    if built.rendered is None:
        raise click.ClickException(f"no digest: {built.selection.skip_reason}")
    output_dir.mkdir(parents=True, exist_ok=True)
    stem = f"digest-{email.replace('@', '_at_')}"
    html_file, text_file = output_dir / f"{stem}.html", output_dir / f"{stem}.txt"
    html_file.write_text(built.rendered.html, "utf-8")
    text_file.write_text(built.rendered.text, "utf-8")
    click.echo(f"{built.rendered.subject}\nwrote {html_file} and {text_file}")


# ---------------------------------------------------------------- operations


@main.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
def status(as_json: bool) -> None:
    """Sources by health, queue depths, articles and stories of the last hour and day, and the
    publication-to-storage delay of recent articles."""
    from dataclasses import asdict

    from aggregator.queues import queue_depths
    from aggregator.status import collect_status, format_status

    settings = get_settings()
    with session_scope(_engine(settings)) as session:
        report = collect_status(session=session, now=_now(), queues=queue_depths(settings))
    click.echo(json.dumps(asdict(report)) if as_json else format_status(report))


# ---------------------------------------------------------------- retention


@main.command("purge")
@click.option("--dry-run", is_flag=True, help="Only count what would be purged.")
def purge(dry_run: bool) -> None:
    """Purge articles and stories older than the retention period, leaving tombstones (the
    workers do this hourly)."""
    from aggregator import retention

    settings = get_settings()
    engine = _engine(settings)
    now = _now()
    since = f"older than {retention.retention_cutoff(settings, now):%Y-%m-%d %H:%M} UTC"
    if dry_run:
        with session_scope(engine) as session:
            articles, stories = retention.preview_purge(session=session, settings=settings, now=now)
        click.echo(f"would purge {articles} articles and {stories} stories {since}")
        return
    reports: list[retention.PurgeReport] = []
    while not reports or reports[-1].more:
        with session_scope(engine) as session:
            reports.append(retention.purge_batch(session=session, settings=settings, now=now))
    articles, stories = sum(r.articles for r in reports), sum(r.stories for r in reports)
    tombstones = sum(r.tombstones_expired for r in reports)
    click.echo(f"purged {articles} articles and {stories} stories {since}")
    click.echo(f"removed {tombstones} tombstones no feed has shown for the retention period")


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
    if report.digest_file is not None:
        click.echo(f"The demo day's digest email: {report.digest_file}")
    click.echo("See them again with `aggregator stories`, or browse with `aggregator serve`.")


if __name__ == "__main__":
    main()
