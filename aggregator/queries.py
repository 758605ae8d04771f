"""Queries of the HTTP API: story and article listings, full-text search, sources and their
counts. Store-style: functions take ``session=`` keyword-only and never commit.

Listings page with opaque cursors (see ``encode_cursor``): the cursor holds the sort key and id of
the last item shown, so a page starts right after it however many items arrived in between.
Full-text search uses the database's own engine (migration 0004_search): SQLite FTS5 over
``articles_fts``, PostgreSQL ``articles.search_vector`` (tsvector, GIN index). Both match every
word of the query (no stemming) among the newest SEARCH_WINDOW matching articles, and rank by
relevance, then recency.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from sqlalchemy import (
    ARRAY,
    BindParameter,
    ColumnElement,
    DateTime,
    Executable,
    Integer,
    and_,
    any_,
    bindparam,
    delete,
    func,
    literal,
    or_,
    text,
)
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Connection
from sqlmodel import Session, SQLModel, col, select

from aggregator import ranking
from aggregator.models import Article, ExtractionStatus, Source, SourceHealth, Story
from aggregator.store import RETIRED_UNTIL

# Full-text search objects made by migration 0004_search, outside the SQLModel metadata.
SEARCH_TABLE_PREFIX = "articles_fts"
SEARCH_COLUMN = "search_vector"
SEARCH_INDEX = "ix_articles_search"
# Indexes made by migration 0007_listing_order on PostgreSQL only, outside the SQLModel metadata.
POSTGRES_LISTING_INDEXES = frozenset({"ix_stories_size_order"})
SEARCH_WINDOW = 500  # a search looks at the newest this many matching articles
MAX_QUERY_WORDS = 16
EXCERPT_CHARS = 280
TAG = re.compile(r"<[^>]*>")
HIDDEN_STATUSES = (ExtractionStatus.BOILERPLATE.value,)

Key = tuple[float | int, ...]
T = TypeVar("T")


def is_search_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic ``include_object`` hook: False for the objects that migrations make outside the
    SQLModel metadata, the full-text search objects and PostgreSQL's listing indexes."""
    if type_ == "table" and name is not None and name.startswith(SEARCH_TABLE_PREFIX):
        return False
    if type_ == "column" and name == SEARCH_COLUMN:
        return False
    return not (type_ == "index" and name in {SEARCH_INDEX, *POSTGRES_LISTING_INDEXES})


class CursorError(ValueError):
    """A cursor that this API did not hand out (or for another sort)."""


def encode_cursor(sort: str, key: Key) -> str:
    """An opaque cursor: URL-safe base64 of the sort name and the last item's sort key and id."""
    raw = json.dumps([sort, *key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, *, sort: str, length: int) -> Key:
    """The key in a cursor made by ``encode_cursor`` for `sort`; CursorError otherwise."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise CursorError("malformed cursor") from exc
    if not isinstance(value, list) or len(value) != length + 1 or value[0] != sort:
        raise CursorError(f"not a cursor of this listing (sort={sort})")
    key = value[1:]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in key):
        raise CursorError("malformed cursor")
    if not all(abs(v) < 2**62 for v in key):
        raise CursorError("malformed cursor")
    return tuple(key)


def search_words(q: str) -> list[str]:
    """The words of a search query, lower-cased, at most MAX_QUERY_WORDS."""
    return re.findall(r"\w+", q.lower())[:MAX_QUERY_WORDS]


def _fts5_query(words: Sequence[str]) -> str:
    return " ".join(f'"{word}"' for word in words)  # \w+ words hold no quote: all literal


FTS5_NEWEST = (
    "SELECT rowid AS id, {rel} AS rel FROM articles_fts "
    "WHERE articles_fts MATCH :fts ORDER BY rowid DESC LIMIT :window"
)
FTS5_MATCHES = "SELECT m.id, NULL, m.rel FROM ({newest}) AS m"
FTS5_MATCHES_IN_STORIES = (
    "SELECT m.id, a.story_id, m.rel FROM ({newest}) AS m JOIN articles AS a ON a.id = m.id"
)
FTS5_BM25 = "-bm25(articles_fts, 10.0, 3.0, 1.0)"


class Match(NamedTuple):
    """An article that matches a search, its story, and its relevance (when ranked)."""

    id: int
    story_id: int | None
    rel: float | None = None


def search_matches(
    *, session: Session, words: Sequence[str], ranked: bool = True, stories: bool = True
) -> list[Match]:
    """The newest SEARCH_WINDOW articles that contain every word, newest first, with their
    relevance (higher is better: BM25 on SQLite, ts_rank on PostgreSQL; the title weighs most,
    then the summary, then the text) and their story. Unranked unless `ranked`, which spares
    the cost of ranking to searches that only filter; story ids may be left out on SQLite unless
    `stories` (reading them costs a lookup per article there). Bounding the window keeps a
    search on a common word as cheap as one on a rare word, however large the store."""
    if _is_sqlite(session):
        newest = FTS5_NEWEST.format(rel=FTS5_BM25 if ranked else "NULL")
        sql = (FTS5_MATCHES_IN_STORIES if stories else FTS5_MATCHES).format(newest=newest)
        params = {"fts": _fts5_query(words), "window": SEARCH_WINDOW}
        return [Match(*row) for row in session.connection().execute(text(sql), params).all()]
    return _postgres_matches(session.connection(), " ".join(words), ranked=ranked)


def _among(session: Session, column: Any, values: Sequence[int]) -> ColumnElement[bool]:
    """`column` IN `values`, the values bound as one parameter (a JSON array on SQLite, an array
    on PostgreSQL): hundreds of parameters take longer to compile than the query takes to run."""
    if _is_sqlite(session):
        listed = func.json_each(literal(json.dumps(list(values)))).table_valued("value")
        return column.in_(sa_select(listed.c.value))  # type: ignore[no-any-return]
    return column == any_(literal(list(values), ARRAY(Integer)))  # type: ignore[no-any-return]


# How common the words are among the newest articles picks the plan. Common: walk the primary key
# backwards until the window is full. Otherwise the GIN index, ANDed with a range of the newest
# ids, so that only the matches in the range are read from the table (each read costs more than
# anything else here). The range starts at most FIRST_RANGE ids wide (a small sample misjudges
# shares), then takes the width that the matches found so far call for, until the window is
# full or the range holds every article. (The planner cannot choose: it misjudges word
# combinations.)
SEARCH_SAMPLE = 500
COMMON_SHARE = 0.2
FIRST_RANGE = 8 * SEARCH_WINDOW
RANGE_MARGIN = 1.3
RANGE_GROWTH = 8
RANK = "ts_rank(search_vector, plainto_tsquery('simple', :words))"
SAMPLE = (
    "SELECT id, story_id, search_vector @@ plainto_tsquery('simple', :words) FROM articles "
    "ORDER BY id DESC LIMIT :sample"
)
# The newest matches, ranked (or not: NULL) in the same statement, once the window is cut.
NEWEST_MATCHES = (
    "SELECT id, story_id, {rank} FROM (SELECT id, story_id, search_vector FROM articles "
    "WHERE search_vector @@ plainto_tsquery('simple', :words) AND id > :floor "
    "ORDER BY id DESC LIMIT :window) AS newest"
)
RANKED_MATCHES = NEWEST_MATCHES.format(rank=RANK)
UNRANKED_MATCHES = NEWEST_MATCHES.format(rank="NULL")
PLANNER_SWITCHES = "SELECT set_config(:first, :value, true), set_config(:second, :value, true)"


def _postgres_matches(connection: Connection, words: str, *, ranked: bool) -> list[Match]:
    """The newest matches, with their ranks when `ranked`."""
    params = {"words": words, "sample": SEARCH_SAMPLE, "window": SEARCH_WINDOW}
    newest = connection.execute(text(SAMPLE), params).all()
    hits = [Match(aid, story_id) for aid, story_id, hit in newest if hit]
    if len(hits) >= SEARCH_WINDOW and not ranked:
        return hits[:SEARCH_WINDOW]
    statement = text(RANKED_MATCHES if ranked else UNRANKED_MATCHES)
    share = len(hits) / max(len(newest), 1)
    if share >= COMMON_SHARE:
        with _planner_without(connection, ("seqscan", "bitmapscan")):
            return _match_rows(connection, statement, {**params, "floor": 0})
    top = newest[0][0] if newest else 0
    span = min(FIRST_RANGE, _range_for(share)) if share else FIRST_RANGE
    with _planner_without(connection, ("seqscan", "indexscan")):
        while True:
            found = _match_rows(connection, statement, {**params, "floor": top - span})
            if len(found) == SEARCH_WINDOW or span >= top:
                return found
            span = max(2 * span, _range_for(len(found) / span)) if found else RANGE_GROWTH * span


def _range_for(share: float) -> int:
    """How many of the newest ids likely hold a window of matches, at this share of matches."""
    return int(SEARCH_WINDOW * RANGE_MARGIN / share)


def _match_rows(
    connection: Connection, statement: Executable, params: dict[str, Any]
) -> list[Match]:
    """The newest matches above params["floor"]."""
    return [Match(*row) for row in connection.execute(statement, params).all()]


@contextmanager
def _planner_without(connection: Connection, scans: tuple[str, str]) -> Iterator[None]:
    """The planner without two kinds of scan (``enable_<scan>``), inside the block."""
    _planner_switches(connection, scans, on=False)
    try:
        yield
    finally:
        _planner_switches(connection, scans, on=True)


def _planner_switches(connection: Connection, scans: tuple[str, str], *, on: bool) -> None:
    """Turn two planner scans (``enable_<scan>``) on or off for the rest of this transaction."""
    first, second = (f"enable_{scan}" for scan in scans)
    params = {"first": first, "second": second, "value": "on" if on else "off"}
    connection.execute(text(PLANNER_SWITCHES), params)


# --- stories -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoryFilters:
    since: datetime | None = None  # the story's last article at or after
    until: datetime | None = None  # the story's first article at or before
    q: str | None = None
    source: int | None = None
    language: str | None = None
    min_sources: int | None = None
    topic: str | None = None


@dataclass
class ArticleBrief:
    id: int
    story_id: int | None
    source_id: int
    outlet: str
    title: str
    url: str
    published_at: datetime | None
    excerpt: str
    extraction_status: str
    duplicate_of_id: int | None


class Reported(Protocol):
    """What choosing a story's outlets and representative needs of an article."""

    @property
    def id(self) -> int: ...
    @property
    def source_id(self) -> int: ...
    @property
    def outlet(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def duplicate_of_id(self) -> int | None: ...


R = TypeVar("R", bound=Reported)


class ArticleStub(NamedTuple):
    """The few columns of an article that listings read for every article of a story."""

    id: int
    story_id: int
    source_id: int
    outlet: str
    title: str
    duplicate_of_id: int | None


def outlets_of(articles: Sequence[Reported]) -> list[tuple[int, str]]:
    """The distinct outlets of articles in time order, in the order they first reported."""
    seen: dict[int, str] = {}
    for article in articles:
        seen.setdefault(article.source_id, article.outlet)
    return list(seen.items())


def first_original(articles: Sequence[R]) -> R | None:
    """The first article that copies none (the first article when all are copies)."""
    originals = _originals(articles)
    return originals[0] if originals else None


def representative_of(headline: str, articles: Sequence[R]) -> R | None:
    """The first original whose title is the story's headline, else the first original."""
    originals = _originals(articles)
    return next((a for a in originals if a.title == headline), first_original(originals))


def _originals(articles: Sequence[R]) -> Sequence[R]:
    """The articles that copy none; all of them when every one is a copy."""
    return [a for a in articles if a.duplicate_of_id is None] or articles


@dataclass(frozen=True, slots=True)
class StoryRow:
    """The columns of a story that listings and story pages show."""

    id: int
    headline: str
    language: str | None
    first_seen: datetime
    last_seen: datetime
    article_count: int
    source_count: int
    keywords: list[str]


@dataclass
class StoryView:
    """A story with its outlets and representative article; on story pages, with its articles
    in time order too (listings leave them out)."""

    story: StoryRow
    outlets: list[tuple[int, str]]
    representative: ArticleBrief | None
    articles: list[ArticleBrief] = field(default_factory=list)
    hot: float | None = None

    @property
    def first_report(self) -> ArticleBrief | None:
        return first_original(self.articles)


@dataclass
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def list_stories(
    *,
    session: Session,
    filters: StoryFilters,
    sort: str,
    limit: int,
    cursor: str | None,
    now: datetime,
) -> Page[StoryView]:
    """One page of stories (merged stories never), filtered and sorted, with their articles."""
    words = search_words(filters.q) if filters.q is not None else None
    if words is not None and not words:
        return Page([], None)
    if sort == "relevance":
        if not words:
            raise CursorError("sort=relevance needs a q")
        ids, next_cursor, _ = _stories_by_relevance(session, filters, words, limit, cursor)
        scores: dict[int, float] = {}
    elif sort == "hot":
        ids, next_cursor, scores = _stories_by_hot(session, filters, words, limit, cursor, now)
    else:
        ids, next_cursor = _stories_by_column(session, filters, words, sort, limit, cursor)
        scores = {}
    views = story_cards(session=session, story_ids=ids)
    for view in views:
        view.hot = scores.get(view.story.id)
    return Page(views, next_cursor)


def _story_conditions(
    session: Session, filters: StoryFilters, words: Sequence[str] | None
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [col(Story.merged_into_id).is_(None)]
    if filters.since is not None:
        conditions.append(col(Story.last_seen) >= filters.since)
    if filters.until is not None:
        conditions.append(col(Story.first_seen) <= filters.until)
    if filters.language is not None:
        conditions.append(col(Story.language) == filters.language)
    if filters.min_sources is not None:
        conditions.append(col(Story.source_count) >= filters.min_sources)
    if filters.source is not None:
        by_source = select(Article.story_id).where(col(Article.source_id) == filters.source)
        conditions.append(col(Story.id).in_(by_source))
    if filters.topic is not None:
        conditions.append(_has_keyword(session, filters.topic.lower()))
    if words:
        matches = search_matches(session=session, words=words, ranked=False)
        matching = {m.story_id for m in matches if m.story_id is not None}
        conditions.append(_among(session, col(Story.id), sorted(matching)))
    return conditions


def _has_keyword(session: Session, keyword: str) -> ColumnElement[bool]:
    if session.get_bind().dialect.name == "sqlite":
        clause = text(
            "EXISTS (SELECT 1 FROM json_each(stories.keywords) WHERE json_each.value = :kw)"
        )
    else:
        clause = text("CAST(stories.keywords AS jsonb) ? :kw")
    return and_(clause.bindparams(kw=keyword))


def _column_key(value: datetime | int) -> float | int:
    return value.timestamp() if isinstance(value, datetime) else value


def _stories_by_column(
    session: Session,
    filters: StoryFilters,
    words: Sequence[str] | None,
    sort: str,
    limit: int,
    cursor: str | None,
) -> tuple[list[int], str | None]:
    """Keyset paging in SQL over (last_seen, id) for recent, (article_count, id) for size."""
    column: Any = col(Story.last_seen) if sort == "recent" else col(Story.article_count)
    query = sa_select(col(Story.id), column).where(*_story_conditions(session, filters, words))
    if cursor is not None:
        value, last_id = decode_cursor(cursor, sort=sort, length=2)
        bound = _cursor_time(value) if sort == "recent" else value
        after = or_(column < bound, and_(column == bound, col(Story.id) < int(last_id)))
        query = query.where(column <= bound, after)  # the first bound lets an index seek
    query = query.order_by(column.desc(), col(Story.id).desc()).limit(limit + 1)
    rows = [(int(sid), key) for sid, key in _rows(session, query)]
    next_cursor = None
    if len(rows) > limit:
        last_id, key = rows[limit - 1]
        next_cursor = encode_cursor(sort, (_column_key(key), last_id))
    return [sid for sid, _ in rows[:limit]], next_cursor


def _page_by_key(
    keyed: list[tuple[Key, int]], sort: str, limit: int, cursor: str | None, length: int
) -> tuple[list[int], str | None]:
    """Keyset paging done in Python over (key, id) pairs, largest first."""
    keyed.sort(reverse=True)
    if cursor is not None:
        after = decode_cursor(cursor, sort=sort, length=length)
        keyed = [item for item in keyed if (*item[0], item[1]) < after]
    page = keyed[:limit]
    next_cursor = None
    if len(keyed) > limit:
        key, last_id = page[-1]
        next_cursor = encode_cursor(sort, (*key, last_id))
    return [story_id for _, story_id in page], next_cursor


def _stories_by_hot(
    session: Session,
    filters: StoryFilters,
    words: Sequence[str] | None,
    limit: int,
    cursor: str | None,
    now: datetime,
) -> tuple[list[int], str | None, dict[int, float]]:
    """Stories by hot score as of the first page's time (kept in the cursor), scored in SQL
    with ranking.hot_score's formula over the stories of the hot window."""
    as_of = now
    if cursor is not None:
        as_of_ts, last_score, last_id = decode_cursor(cursor, sort="hot", length=3)
        as_of = _cursor_time(as_of_ts)
    growth = _recent_article_counts(as_of)
    score = _hot_expression(session, as_of, func.coalesce(growth.c.recent, 0)).label("hot")
    conditions = _story_conditions(session, filters, words)
    conditions.append(col(Story.last_seen) >= _hot_window_start(session, as_of))
    query = (
        sa_select(col(Story.id), score)
        .outerjoin(growth, growth.c.story_id == col(Story.id))
        .where(*conditions)
    )
    if cursor is not None:
        query = query.where(
            or_(score < last_score, and_(score == last_score, col(Story.id) < int(last_id)))
        )
    rows = _rows(session, query.order_by(score.desc(), col(Story.id).desc()).limit(limit + 1))
    ranked = [(int(story_id), float(hot)) for story_id, hot in rows]
    next_cursor = None
    if len(ranked) > limit:
        story_id, hot = ranked[limit - 1]
        next_cursor = encode_cursor("hot", (as_of.timestamp(), hot, story_id))
    return [sid for sid, _ in ranked[:limit]], next_cursor, dict(ranked[:limit])


def _hot_window_start(session: Session, as_of: datetime) -> Any:
    """HOT_WINDOW before `as_of`, or before the newest story when the store has gone quiet
    (an idle store still lists its latest stories, by the same formula). On PostgreSQL, an
    expression that the listing's statement computes (a round trip less)."""
    newest = sa_select(func.max(col(Story.last_seen))).where(col(Story.merged_into_id).is_(None))
    if not _is_sqlite(session):
        as_of_value = literal(as_of, DateTime(timezone=True))
        return func.least(as_of_value, newest.scalar_subquery()) - ranking.HOT_WINDOW
    last = session.execute(newest).scalar_one()
    if isinstance(last, str):  # SQLite hands back aggregates of timestamps as text
        last = datetime.fromisoformat(last)
    if last is not None and last.tzinfo is None:
        last = last.replace(tzinfo=UTC)
    return min(as_of, last or as_of) - ranking.HOT_WINDOW


def _cursor_time(value: float | int) -> datetime:
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise CursorError("malformed cursor") from exc


def _hot_expression(session: Session, as_of: datetime, recent: Any) -> Any:
    """ranking.hot_score as SQL (see its docstring), for the stories table."""
    outlets = col(Story.source_count)
    articles = col(Story.article_count)
    extra = (
        func.max(articles - outlets, 0)
        if _is_sqlite(session)
        else func.greatest(articles - outlets, 0)
    )
    mass = outlets + ranking.EXTRA_ARTICLE_WEIGHT * extra + ranking.GROWTH_WEIGHT * recent
    if _is_sqlite(session):
        hours = (
            func.julianday(as_of.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"))
            - func.julianday(col(Story.last_seen))
        ) * 24.0
        age: Any = func.max(hours, 0.0)
    else:
        hours = func.extract("epoch", literal(as_of) - col(Story.last_seen)) / 3600.0
        age = func.greatest(hours, 0.0)
    return mass * func.power(2.0, -age / ranking.HALF_LIFE_HOURS)


def _is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def _recent_article_counts(as_of: datetime) -> Any:
    """A subquery: story_id, recent = its articles published in the growth window."""
    published = col(Article.published_at)
    return (
        sa_select(col(Article.story_id).label("story_id"), func.count().label("recent"))
        .where(
            published > as_of - ranking.GROWTH_WINDOW,
            published <= as_of,
            col(Article.story_id).is_not(None),
        )
        .group_by(col(Article.story_id))
        .subquery("growth")
    )


def _stories_by_relevance(
    session: Session,
    filters: StoryFilters,
    words: Sequence[str],
    limit: int,
    cursor: str | None,
) -> tuple[list[int], str | None, dict[int, float]]:
    """Stories by their best matching article's relevance, then recency."""
    best: dict[int, float] = {}
    for match in search_matches(session=session, words=words):
        if match.story_id is not None and match.rel is not None:
            best[match.story_id] = max(match.rel, best.get(match.story_id, match.rel))
    query = sa_select(col(Story.id), col(Story.last_seen)).where(
        _among(session, col(Story.id), sorted(best)), *_story_conditions(session, filters, None)
    )
    keyed: list[tuple[Key, int]] = [
        ((round(best[sid], 9), seen.timestamp()), int(sid)) for sid, seen in _rows(session, query)
    ]
    ids, next_cursor = _page_by_key(keyed, "relevance", limit, cursor, 3)
    return ids, next_cursor, {}


# Listings and story pages read through these statements, built once (bound to `ids` when run):
# building and compiling a statement costs more than running it on a page of stories.
STORIES = SQLModel.metadata.tables["stories"]
ARTICLES = SQLModel.metadata.tables["articles"]
SOURCES = SQLModel.metadata.tables["sources"]
VISIBLE = ARTICLES.c.extraction_status.not_in(HIDDEN_STATUSES)
IN_TIME_ORDER = (ARTICLES.c.published_at, ARTICLES.c.id)
# An article's ids, its outlet (the source's title and feed URL) and its title.
ARTICLE_HEAD = (
    ARTICLES.c.id,
    ARTICLES.c.story_id,
    ARTICLES.c.source_id,
    SOURCES.c.title,
    SOURCES.c.url,
    ARTICLES.c.title,
)
BRIEFS = (
    sa_select(
        *ARTICLE_HEAD,
        ARTICLES.c.url,
        ARTICLES.c.published_at,
        ARTICLES.c.summary,
        func.substr(ARTICLES.c.text, 1, EXCERPT_CHARS * 2),
        ARTICLES.c.extraction_status,
        ARTICLES.c.duplicate_of_id,
    )
    .join(SOURCES, SOURCES.c.id == ARTICLES.c.source_id)
    .where(VISIBLE)
)


class ById(NamedTuple):
    """The statements that read rows by a list of ids, bound as `ids`."""

    story_rows: Executable
    stubs_of_stories: Executable
    briefs_by_id: Executable
    briefs_of_stories: Executable


def _by_id(among: Callable[[Any], ColumnElement[bool]]) -> ById:
    """The statements, with `among(column)` true for the listed ids."""
    return ById(
        story_rows=sa_select(*(STORIES.c[name] for name in StoryRow.__dataclass_fields__)).where(
            among(STORIES.c.id)
        ),
        stubs_of_stories=(
            sa_select(*ARTICLE_HEAD, ARTICLES.c.duplicate_of_id)
            .join(SOURCES, SOURCES.c.id == ARTICLES.c.source_id)
            .where(among(ARTICLES.c.story_id), VISIBLE)
            .order_by(*IN_TIME_ORDER)
        ),
        briefs_by_id=BRIEFS.where(among(ARTICLES.c.id)).order_by(*IN_TIME_ORDER),
        briefs_of_stories=BRIEFS.where(among(ARTICLES.c.story_id)).order_by(*IN_TIME_ORDER),
    )


# SQLite: an IN list. PostgreSQL: one array parameter (= ANY), so a statement's text is the same
# however many ids it reads, and it is parsed, planned and rendered once (psycopg prepares it).
EXPANDING_IDS: BindParameter[list[int]] = bindparam("ids", expanding=True)
ARRAY_IDS: BindParameter[Any] = bindparam("ids", type_=ARRAY(Integer))
BY_ID = {
    "sqlite": _by_id(lambda column: column.in_(EXPANDING_IDS)),
    "postgresql": _by_id(lambda column: column == any_(ARRAY_IDS)),
}


def _by_id_of(session: Session) -> ById:
    return BY_ID[session.get_bind().dialect.name]


def _rows(session: Session, statement: Executable, **params: Any) -> Sequence[Any]:
    """The rows of a Core statement, run on the session's connection (no ORM on the way)."""
    return session.connection().execute(statement, params).all()


def _story_rows(session: Session, story_ids: Sequence[int]) -> dict[int, StoryRow]:
    return {
        row.id: StoryRow(*row)
        for row in _rows(session, _by_id_of(session).story_rows, ids=list(story_ids))
    }


def story_cards(*, session: Session, story_ids: Sequence[int]) -> list[StoryView]:
    """The stories (in the given order) as listings show them: their outlets, from a lean read
    of their articles, and their representative article with its excerpt."""
    if not story_ids:
        return []
    stories = _story_rows(session, story_ids)
    stubs: dict[int, list[ArticleStub]] = {sid: [] for sid in stories}
    for stub in _article_stubs(session, story_ids):
        stubs.get(stub.story_id, []).append(stub)  # a story gone meanwhile is left out
    chosen = {sid: representative_of(stories[sid].headline, stubs[sid]) for sid in stories}
    wanted = [stub.id for stub in chosen.values() if stub]
    briefs = {
        b.id: b for b in map(_brief, _rows(session, _by_id_of(session).briefs_by_id, ids=wanted))
    }
    return [
        _card(stories[sid], stubs[sid], chosen[sid], briefs) for sid in story_ids if sid in stories
    ]


def _card(
    story: StoryRow,
    stubs: list[ArticleStub],
    chosen: ArticleStub | None,
    briefs: dict[int, ArticleBrief],
) -> StoryView:
    return StoryView(story, outlets_of(stubs), briefs.get(chosen.id) if chosen else None)


def _article_stubs(session: Session, story_ids: Sequence[int]) -> list[ArticleStub]:
    """The visible articles of the stories, in time order, as stubs."""
    return [
        ArticleStub(aid, story_id, source_id, outlet or feed, title, dup)
        for aid, story_id, source_id, outlet, feed, title, dup in _rows(
            session, _by_id_of(session).stubs_of_stories, ids=list(story_ids)
        )
    ]


def stories_with_articles(*, session: Session, story_ids: Sequence[int]) -> list[StoryView]:
    """The stories (in the given order) with their articles in time order, excerpts included."""
    if not story_ids:
        return []
    stories = _story_rows(session, story_ids)
    articles: dict[int, list[ArticleBrief]] = {sid: [] for sid in stories}
    for row in _rows(session, _by_id_of(session).briefs_of_stories, ids=list(story_ids)):
        brief = _brief(row)
        articles.get(brief.story_id or 0, []).append(brief)
    return [_story_view(stories[sid], articles[sid]) for sid in story_ids if sid in stories]


def _story_view(story: StoryRow, articles: list[ArticleBrief]) -> StoryView:
    representative = representative_of(story.headline, articles)
    return StoryView(story, outlets_of(articles), representative, articles)


def article_briefs(
    *,
    session: Session,
    condition: ColumnElement[bool],
    order: Sequence[Any] | None = None,
    limit: int | None = None,
) -> list[ArticleBrief]:
    """Visible articles (without their full text) that meet `condition`, oldest first by
    default."""
    query = BRIEFS.where(condition).order_by(*(order or IN_TIME_ORDER)).limit(limit)
    return [_brief(row) for row in _rows(session, query)]


def _brief(row: Any) -> ArticleBrief:
    (aid, story_id, source_id, outlet, feed, title, url, published, summary, head, status, dup) = (
        row
    )
    return ArticleBrief(
        id=aid,
        story_id=story_id,
        source_id=source_id,
        outlet=outlet or feed,
        title=title,
        url=url,
        published_at=published,
        excerpt=excerpt(summary or head or ""),
        extraction_status=status,
        duplicate_of_id=dup,
    )


def excerpt(body: str, limit: int = EXCERPT_CHARS) -> str:
    """The start of a text, whitespace collapsed, cut at a word boundary with an ellipsis."""
    flat = " ".join((TAG.sub(" ", body) if "<" in body else body).split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit].rsplit(" ", 1)[0] or flat[:limit]
    return cut.rstrip(" ,;:.") + "…"


# --- articles ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArticleFilters:
    story: int | None = None
    source: int | None = None
    q: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    status: str | None = None


def list_articles(
    *, session: Session, filters: ArticleFilters, limit: int, cursor: str | None
) -> Page[ArticleBrief]:
    """Articles newest first (by id, i.e. discovery), or by relevance then recency with `q`."""
    conditions: list[ColumnElement[bool]] = []
    if filters.story is not None:
        conditions.append(col(Article.story_id) == filters.story)
    if filters.source is not None:
        conditions.append(col(Article.source_id) == filters.source)
    if filters.since is not None:
        conditions.append(col(Article.published_at) >= filters.since)
    if filters.until is not None:
        conditions.append(col(Article.published_at) <= filters.until)
    if filters.status is not None:
        conditions.append(col(Article.extraction_status) == filters.status)
    if filters.q is not None:
        return _articles_by_relevance(session, conditions, search_words(filters.q), limit, cursor)
    if cursor is not None:
        (last_id,) = decode_cursor(cursor, sort="id", length=1)
        conditions.append(col(Article.id) < int(last_id))
    briefs = article_briefs(
        session=session,
        condition=and_(True, *conditions),
        order=(col(Article.id).desc(),),
        limit=limit + 1,
    )
    return _article_page(briefs, limit, lambda b: (b.id,), "id")


def _articles_by_relevance(
    session: Session,
    conditions: list[ColumnElement[bool]],
    words: Sequence[str],
    limit: int,
    cursor: str | None,
) -> Page[ArticleBrief]:
    if not words:
        return Page([], None)
    matches = search_matches(session=session, words=words, stories=False)
    rels = {m.id: m.rel or 0.0 for m in matches}
    visible = col(Article.extraction_status).not_in(HIDDEN_STATUSES)
    query = sa_select(col(Article.id), col(Article.published_at)).where(
        _among(session, col(Article.id), sorted(rels)), visible, *conditions
    )
    keyed: list[tuple[Key, int]] = [
        ((round(rels[aid], 9), _epoch(published)), int(aid))
        for aid, published in _rows(session, query)
    ]
    ids, next_cursor = _page_by_key(keyed, "relevance", limit, cursor, 3)
    briefs = {b.id: b for b in article_briefs(session=session, condition=col(Article.id).in_(ids))}
    return Page([briefs[i] for i in ids if i in briefs], next_cursor)


def _epoch(moment: datetime | None) -> float:
    return moment.timestamp() if moment is not None else 0.0


def _article_page(
    briefs: list[ArticleBrief], limit: int, key: Callable[[ArticleBrief], Key], sort: str
) -> Page[ArticleBrief]:
    page = briefs[:limit]
    next_cursor = encode_cursor(sort, key(page[-1])) if len(briefs) > limit else None
    return Page(page, next_cursor)


def article_full(*, session: Session, article_id: int) -> tuple[Article, Source] | None:
    """An article with its source, full text included."""
    row = session.exec(
        select(Article, Source)
        .join(Source, col(Source.id) == col(Article.source_id))
        .where(col(Article.id) == article_id)
    ).first()
    return (row[0], row[1]) if row else None


# --- sources -------------------------------------------------------------------------------


@dataclass
class SourceView:
    source: Source
    article_count: int
    last_article_at: datetime | None


def list_sources(
    *, session: Session, health: str | None, limit: int, cursor: str | None
) -> Page[SourceView]:
    """Sources by id, with their article counts."""
    query = select(Source)
    if health is not None:
        query = query.where(col(Source.health) == health)
    if cursor is not None:
        (last_id,) = decode_cursor(cursor, sort="id", length=1)
        query = query.where(col(Source.id) > int(last_id))
    sources = list(session.exec(query.order_by(col(Source.id)).limit(limit + 1)).all())
    views = source_views(session=session, sources=sources[:limit])
    next_cursor = encode_cursor("id", (views[-1].source.id or 0,)) if len(sources) > limit else None
    return Page(views, next_cursor)


def source_views(*, session: Session, sources: Sequence[Source]) -> list[SourceView]:
    ids = [s.id for s in sources]
    if not ids:
        return []
    counts = {
        sid: (count, last)
        for sid, count, last in session.exec(
            select(Article.source_id, func.count(), func.max(col(Article.published_at)))
            .where(col(Article.source_id).in_(ids))
            .group_by(col(Article.source_id))
        ).all()
    }
    return [SourceView(s, *_count_and_last(counts.get(s.id or 0, (0, None)))) for s in sources]


def _count_and_last(pair: tuple[int, Any]) -> tuple[int, datetime | None]:
    count, last = pair
    if isinstance(last, str):  # SQLite hands back aggregates of timestamps as text
        last = datetime.fromisoformat(last)
    if last is not None and last.tzinfo is None:
        last = last.replace(tzinfo=UTC)
    return count, last


def update_source(
    *,
    session: Session,
    source: Source,
    url: str | None,
    title: str | None,
    poll_now: bool,
    now: datetime,
) -> None:
    """Change a source's feed URL or title, or make it due now."""
    if url is not None and url != source.url:
        source.url = url
        source.etag = None
        source.last_modified = None
    if title is not None:
        source.title = title
    if poll_now:
        source.next_poll_at = now
    session.add(source)
    session.flush()


def remove_source(*, session: Session, source: Source) -> bool:
    """Delete a source without articles (True); retire one with articles (False): marked dead
    and never polled again, its articles and stories kept."""
    if session.exec(select(Article.id).where(Article.source_id == source.id).limit(1)).first():
        source.health = SourceHealth.DEAD.value
        source.next_poll_at = RETIRED_UNTIL
        session.add(source)
        session.flush()
        return False
    session.execute(delete(Source).where(col(Source.id) == source.id))
    return True


def story_count(*, session: Session) -> int:
    return session.exec(
        select(func.count()).select_from(Story).where(col(Story.merged_into_id).is_(None))
    ).one()


def counts_by(*, session: Session, column: Any) -> dict[str, int]:
    """Row counts grouped by one column (e.g. articles by extraction status)."""
    table = column.class_
    rows = session.exec(select(column, func.count()).select_from(table).group_by(column)).all()
    return {str(value): count for value, count in rows}


def sources_polled_since(*, session: Session, since: datetime) -> int:
    return session.exec(
        select(func.count()).select_from(Source).where(col(Source.last_polled_at) >= since)
    ).one()


def failing_sources_by_health(*, session: Session) -> dict[str, int]:
    query = (
        select(Source.health, func.count())
        .where(col(Source.consecutive_errors) > 0)
        .group_by(col(Source.health))
    )
    return {health: count for health, count in session.exec(query).all()}
