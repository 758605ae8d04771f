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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Float, Integer, and_, delete, func, literal, or_, text
from sqlalchemy import select as sa_select
from sqlalchemy.orm import defer
from sqlalchemy.sql import Select
from sqlmodel import Session, col, select

from aggregator import ranking
from aggregator.models import Article, ExtractionStatus, Source, SourceHealth, Story

# Full-text search objects made by migration 0004_search, outside the SQLModel metadata.
SEARCH_TABLE_PREFIX = "articles_fts"
SEARCH_COLUMN = "search_vector"
SEARCH_INDEX = "ix_articles_search"
SEARCH_WINDOW = 500  # a search looks at the newest this many matching articles
MAX_QUERY_WORDS = 16
EXCERPT_CHARS = 280
HIDDEN_STATUSES = (ExtractionStatus.BOILERPLATE.value,)
RETIRED_UNTIL = datetime(9999, 1, 1, tzinfo=UTC)

Key = tuple[float | int, ...]
T = TypeVar("T")


def is_search_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic ``include_object`` hook: False for the full-text search objects."""
    if type_ == "table" and name is not None and name.startswith(SEARCH_TABLE_PREFIX):
        return False
    if type_ == "column" and name == SEARCH_COLUMN:
        return False
    return not (type_ == "index" and name == SEARCH_INDEX)


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


def search_matches(*, session: Session, words: Sequence[str]) -> Any:
    """A subquery (id, rel) of the newest SEARCH_WINDOW articles that contain every word, with
    their relevance (higher is better: BM25 on SQLite, ts_rank on PostgreSQL; the title weighs
    most, then the summary, then the text). Bounding the window keeps a search on a common
    word as cheap as one on a rare word, however large the store."""
    if _is_sqlite(session):
        sql = (
            "SELECT rowid AS id, -bm25(articles_fts, 10.0, 3.0, 1.0) AS rel FROM articles_fts "
            "WHERE articles_fts MATCH :fts ORDER BY rowid DESC LIMIT :window"
        )
        params: dict[str, Any] = {"fts": _fts5_query(words), "window": SEARCH_WINDOW}
        return text(sql).bindparams(**params).columns(id=Integer(), rel=Float()).subquery("matches")
    ids, rels = _postgres_matches(session, " ".join(words))
    listed = text(
        "SELECT * FROM unnest(CAST(:ids AS integer[]), CAST(:rels AS float8[])) AS m(id, rel)"
    )
    return (
        listed.bindparams(ids=ids, rels=rels).columns(id=Integer(), rel=Float()).subquery("matches")
    )


# How common the words are among the newest articles picks the plan. Common: walk the primary key
# backwards until the window is full. Rare: the GIN index finds every match (a walk would read
# most of the table). In between: a walk over the newest WALK_CAP articles, then the index if the
# window is not full. (The planner cannot tell these cases apart: it misjudges word combinations.)
SEARCH_SAMPLE = 1000
COMMON_SHARE = 0.2
RARE_SHARE = 0.02
WALK_CAP = 20 * SEARCH_WINDOW
RANKED = (
    "SELECT a.id, ts_rank(a.search_vector, plainto_tsquery('simple', :words)) "
    "FROM articles AS a JOIN (SELECT id FROM {source} WHERE search_vector @@ "
    "plainto_tsquery('simple', :words) ORDER BY id DESC LIMIT :window) AS m ON m.id = a.id"
)
NEWEST = "(SELECT id, search_vector FROM articles ORDER BY id DESC LIMIT :cap) AS newest"


def _postgres_matches(session: Session, words: str) -> tuple[list[int], list[float]]:
    connection = session.connection()
    sample = connection.execute(
        text(RANKED.format(source=NEWEST).replace("LIMIT :window", "")),
        {"words": words, "cap": SEARCH_SAMPLE},
    ).all()
    share = len(sample) / SEARCH_SAMPLE
    if share >= COMMON_SHARE:
        return _ranked_matches(connection, words, walk=True, cap=None)
    if share >= RARE_SHARE:
        ids, rels = _ranked_matches(connection, words, walk=True, cap=WALK_CAP)
        if len(ids) == SEARCH_WINDOW:
            return ids, rels
    return _ranked_matches(connection, words, walk=False, cap=None)


def _ranked_matches(
    connection: Any, words: str, *, walk: bool, cap: int | None
) -> tuple[list[int], list[float]]:
    """The newest SEARCH_WINDOW matches, by walking the primary key backwards (over the newest
    `cap` articles at most) or through the GIN index."""
    switches = ("enable_seqscan", "enable_bitmapscan" if walk else "enable_indexscan")
    for name in switches:
        _planner_setting(connection, name, on=False)
    try:
        sql = RANKED.format(source=NEWEST if cap else "articles")
        params = {"words": words, "window": SEARCH_WINDOW, "cap": cap}
        rows = connection.execute(text(sql), params).all()
    finally:
        for name in switches:
            _planner_setting(connection, name, on=True)
    return [int(r[0]) for r in rows], [float(r[1]) for r in rows]


def _planner_setting(connection: Any, name: str, *, on: bool) -> None:
    """Set a planner switch for the rest of this transaction."""
    connection.execute(
        text("SELECT set_config(:name, :value, true)"),
        {"name": name, "value": "on" if on else "off"},
    )


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


@dataclass
class StoryView:
    story: Story
    articles: list[ArticleBrief] = field(default_factory=list)
    hot: float | None = None

    @property
    def outlets(self) -> list[tuple[int, str]]:
        seen: dict[int, str] = {}
        for article in self.articles:
            seen.setdefault(article.source_id, article.outlet)
        return list(seen.items())

    @property
    def representative(self) -> ArticleBrief | None:
        originals = [a for a in self.articles if a.duplicate_of_id is None] or self.articles
        for article in originals:
            if article.title == self.story.headline:
                return article
        return originals[0] if originals else None

    @property
    def first_report(self) -> ArticleBrief | None:
        originals = [a for a in self.articles if a.duplicate_of_id is None] or self.articles
        return originals[0] if originals else None


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
    views = stories_with_articles(session=session, story_ids=ids, excerpts=False)
    for view in views:
        view.hot = scores.get(view.story.id or 0)
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
        matches = search_matches(session=session, words=words)
        matching = sa_select(col(Article.story_id)).join(matches, matches.c.id == col(Article.id))
        conditions.append(col(Story.id).in_(matching))
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
        query = query.where(
            or_(column < bound, and_(column == bound, col(Story.id) < int(last_id)))
        )
    query = query.order_by(column.desc(), col(Story.id).desc()).limit(limit + 1)
    rows = [(int(sid), key) for sid, key in session.execute(query).all()]
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
    rows = session.execute(query.order_by(score.desc(), col(Story.id).desc()).limit(limit + 1))
    ranked = [(int(story_id), float(hot)) for story_id, hot in rows.all()]
    next_cursor = None
    if len(ranked) > limit:
        story_id, hot = ranked[limit - 1]
        next_cursor = encode_cursor("hot", (as_of.timestamp(), hot, story_id))
    return [sid for sid, _ in ranked[:limit]], next_cursor, dict(ranked[:limit])


def _hot_window_start(session: Session, as_of: datetime) -> datetime:
    """HOT_WINDOW before `as_of`, or before the newest story when the store has gone quiet
    (an idle store still lists its latest stories, by the same formula)."""
    newest = session.exec(
        select(func.max(col(Story.last_seen))).where(col(Story.merged_into_id).is_(None))
    ).one()
    if isinstance(newest, str):  # SQLite hands back aggregates of timestamps as text
        newest = datetime.fromisoformat(newest)
    if newest is not None and newest.tzinfo is None:
        newest = newest.replace(tzinfo=UTC)
    return min(as_of, newest or as_of) - ranking.HOT_WINDOW


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
    matches = search_matches(session=session, words=words)
    best = (
        sa_select(col(Article.story_id).label("story_id"), func.max(matches.c.rel).label("rel"))
        .join(matches, matches.c.id == col(Article.id))
        .group_by(col(Article.story_id))
        .subquery("best")
    )
    query = (
        sa_select(col(Story.id), best.c.rel, col(Story.last_seen))
        .join(best, best.c.story_id == col(Story.id))
        .where(*_story_conditions(session, filters, None))
    )
    keyed: list[tuple[Key, int]] = [
        ((round(float(rel), 9), seen.timestamp()), int(sid))
        for sid, rel, seen in session.execute(query).all()
    ]
    ids, next_cursor = _page_by_key(keyed, "relevance", limit, cursor, 3)
    return ids, next_cursor, {}


def stories_with_articles(
    *, session: Session, story_ids: Sequence[int], excerpts: bool = True
) -> list[StoryView]:
    """The stories (in the given order) with their articles in time order. Without `excerpts`
    (listings), only the representative article of each story gets its excerpt."""
    if not story_ids:
        return []
    query = select(Story).where(col(Story.id).in_(story_ids)).options(defer(Story.profile))  # type: ignore[arg-type]
    stories = {s.id: s for s in session.exec(query).all()}
    views = {sid: StoryView(stories[sid]) for sid in story_ids if sid in stories}
    condition = col(Article.story_id).in_(story_ids)
    for brief in article_briefs(session=session, condition=condition, excerpts=excerpts):
        views[brief.story_id or 0].articles.append(brief)
    if not excerpts:
        _fill_excerpts(session, [v.representative for v in views.values() if v.representative])
    return list(views.values())


def _fill_excerpts(session: Session, briefs: Sequence[ArticleBrief]) -> None:
    head = func.substr(col(Article.text), 1, EXCERPT_CHARS * 2)
    query = sa_select(col(Article.id), col(Article.summary), head).where(
        col(Article.id).in_([b.id for b in briefs])
    )
    texts = {aid: summary or body or "" for aid, summary, body in session.execute(query).all()}
    for brief in briefs:
        brief.excerpt = excerpt(texts.get(brief.id, ""))


def article_briefs(
    *,
    session: Session,
    condition: ColumnElement[bool],
    order: Sequence[Any] | None = None,
    limit: int | None = None,
    excerpts: bool = True,
) -> list[ArticleBrief]:
    """Articles (without their full text) that meet `condition`, oldest first by default;
    their excerpts left empty unless `excerpts`."""
    head = func.substr(col(Article.text), 1, EXCERPT_CHARS * 2) if excerpts else literal("")
    columns: list[Any] = [
        Article.id,
        Article.story_id,
        Article.source_id,
        Source.title,
        Source.url,
        Article.title,
        Article.url,
        Article.published_at,
        Article.summary if excerpts else literal(""),
        head,
        Article.extraction_status,
        Article.duplicate_of_id,
    ]
    query: Select[Any] = (
        sa_select(*columns)
        .join(Source, col(Source.id) == col(Article.source_id))
        .where(condition, col(Article.extraction_status).not_in(HIDDEN_STATUSES))
        .order_by(*(order or (col(Article.published_at), col(Article.id))))
        .limit(limit)
    )
    return [_brief(row) for row in session.execute(query).all()]


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
    flat = " ".join(re.sub(r"<[^>]*>", " ", body).split())
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
    matches = search_matches(session=session, words=words)
    visible = col(Article.extraction_status).not_in(HIDDEN_STATUSES)
    query = (
        sa_select(col(Article.id), matches.c.rel, col(Article.published_at))
        .join(matches, matches.c.id == col(Article.id))
        .where(visible, *conditions)
    )
    keyed: list[tuple[Key, int]] = [
        ((round(float(rel), 9), _epoch(published)), int(aid))
        for aid, rel, published in session.execute(query).all()
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
