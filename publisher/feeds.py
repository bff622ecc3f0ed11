"""Feeds: which documents the site has, and building only those that changed.

Every feed exists in both scripts (``feeds/…`` in simplified, ``feeds/zh-hant/…``
in traditional), site wide and per category (``category/<slug>/``), as RSS
2.0, Atom 1.0 and JSON Feed 1.1, each with RFC 5005 archive pages
(``archive/rss-N.xml``, ``archive/atom-N.xml``, oldest first) so a reader can
walk the whole history.

A build first reads a light index of the articles (id, version, status,
dates, category), plans every document and fingerprints its inputs. Only
documents whose fingerprint differs from the one recorded in ``feed_state``
(or whose file is missing) are rendered: a build where nothing changed
renders and writes nothing; a changed article re-renders only the documents
it appears in. Rendering is :mod:`publisher.feedformats` (feedgen for RSS and
Atom, each entry built once per script and shared); writing is
:class:`publisher.feedwriter.FeedWriter` (atomic, skips identical bytes).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import case, delete, func, insert, select, tuple_

from . import feedformats as ff
from . import scripts, websub
from .config import Config
from .errors import RenderError
from .feedformats import FeedMeta, Item
from .feedwriter import FeedState, FeedWriter
from .models import Article
from .schema import articles as articles_table
from .schema import feed_items
from .slugs import category_slugs
from .store import Store, utcnow

logger = logging.getLogger(__name__)

FORMATS = ff.FORMATS
FILENAMES = {"rss": "rss.xml", "atom": "atom.xml", "json": "feed.json"}
SCRIPTS = ("zh-hans", "zh-hant")
RENDER_VERSION = "4"  # bump when the output of feedformats changes (4: feedgen)
INDEX_KEY = ".index"  # feed_state row holding the key of the last complete build


# ------------------------------------------------------ compatible helpers

def entry_id(site_url: str, article: Article) -> str:
    """A stable, never reused id for an article: a tag: URI (RFC 4151)."""
    return ff.entry_id(site_url, article.id)


def build_feed(articles: list[Article], meta: FeedMeta, fmt: str) -> bytes:
    """Render *articles* as one feed document (RSS and Atom through feedgen), as they are.

    Entries are sorted here, newest first (ties by id, as the store orders them),
    and appended in that order.
    """
    ordered = sorted(articles, key=lambda a: (a.published, a.id), reverse=True)
    items = [ff.prepare(a, site_url=meta.site_url, script="zh-hans", canonical="zh-hans",
                        disclaimer=meta.disclaimer, fallback_author=meta.author or meta.title)
             for a in ordered]
    return ff.render(items, meta, fmt)


# ---------------------------------------------------------------- planning

@dataclass(frozen=True)
class Row:
    """What the planner needs to know of an article (no body, no title)."""

    id: str
    version: int
    status: str
    published: datetime
    category: str
    changed_at: datetime


@dataclass(frozen=True)
class Doc:
    """One feed document to build: where, in which format and script, from what."""

    rel: str
    fmt: str
    script: str
    meta: FeedMeta
    rows: tuple[Row, ...]  # published articles in it, newest first
    fingerprint: str


def article_index(store: Store, now: datetime) -> list[Row]:
    """Every article due by *now*, withdrawn ones too, newest first (ties by id)."""
    a = articles_table.c
    q = (select(a.id, a.version, a.status, a.published, a.category, a.changed_at)
         .where(a.published <= now).order_by(a.published.desc(), a.id.desc()))
    with store.engine.connect() as conn:
        return [Row(r.id, r.version, r.status, r.published, r.category or "", r.changed_at)
                for r in conn.execute(q)]


def plan(config: Config, index: list[Row]) -> list[Doc]:
    """Every document the site has, with the fingerprint of its inputs."""
    scopes: list[tuple[str, str, list[Row]]] = [("", "", index)]
    slugs = category_slugs({r.category for r in index if r.category.strip()}, config)
    by_cat: dict[str, list[Row]] = {}
    for r in index:
        if r.category in slugs:
            by_cat.setdefault(r.category, []).append(r)
    for cat in sorted(by_cat, key=slugs.__getitem__):
        scopes.append((f"category/{slugs[cat]}/", cat, by_cat[cat]))
    docs: list[Doc] = []
    for script in SCRIPTS:
        base = "" if script == "zh-hans" else f"{script}/"
        for folder, category, rows in scopes:
            docs += _scope_docs(config, script, base + folder, category, rows)
    return docs


def _scope_docs(config: Config, script: str, folder: str, category: str,
                rows: list[Row]) -> list[Doc]:
    live = [r for r in rows if r.status == "published"]
    newest = live[:config.feeds.max_items]
    size = config.feeds.archive_size
    oldest_first = rows[::-1]
    pages = [oldest_first[i:i + size] for i in range(0, len(oldest_first), size)]
    window = [r for r in rows if not newest or len(live) <= len(newest)
              or r.published >= newest[-1].published]
    docs = []
    for fmt in FORMATS:
        links = (("prev-archive", _archive_url(config, folder, fmt, len(pages))),) \
            if pages and fmt != "json" else ()
        docs.append(_doc(config, script, folder + FILENAMES[fmt], fmt, category, newest,
                         _latest(window), links, archive=False))
    for n, page in enumerate(pages, 1):
        items = [r for r in reversed(page) if r.status == "published"]
        for fmt in ff.XML_FORMATS:
            links = [("current", _url(config, folder + FILENAMES[fmt]))]
            if n > 1:
                links.append(("prev-archive", _archive_url(config, folder, fmt, n - 1)))
            if n < len(pages):
                links.append(("next-archive", _archive_url(config, folder, fmt, n + 1)))
            docs.append(_doc(config, script, f"{folder}archive/{fmt}-{n}.xml", fmt, category,
                             items, _latest(page), tuple(links), archive=True))
    return docs


def _latest(rows: Iterable[Row]) -> datetime | None:
    return max((r.changed_at for r in rows), default=None)


def _url(config: Config, rel: str) -> str:
    return f"{config.feeds.base_url or config.site.url + '/feeds'}/{rel}"


def _archive_url(config: Config, folder: str, fmt: str, n: int) -> str:
    return _url(config, f"{folder}archive/{fmt}-{n}.xml")


def _doc(config: Config, script: str, rel: str, fmt: str, category: str, rows: list[Row],
         updated: datetime | None, links: tuple[tuple[str, str], ...], *, archive: bool) -> Doc:
    meta = replace(_scope_meta(config, script, category), id=_url(config, rel),
                   self_url=_url(config, rel), updated=updated, links=links, archive=archive)
    blob = json.dumps([RENDER_VERSION, rel, fmt, script, repr(meta),
                       [f"{r.id}\x1f{r.version}" for r in rows]], ensure_ascii=False)
    return Doc(rel, fmt, script, meta, tuple(rows), hashlib.sha256(blob.encode()).hexdigest())


_META_CACHE: dict[tuple, FeedMeta] = {}


def _scope_meta(config: Config, script: str, category: str) -> FeedMeta:
    """The script- and category-dependent part of a feed's metadata (cached per config)."""
    key = (config.site, config.rights, config.feeds.hub, script, category)
    meta = _META_CACHE.get(key)
    if meta is None:
        def conv(text: str) -> str:
            return ff._clean_text(text if script == config.site.script
                                  else scripts.to_script(text, script))
        site = config.site
        title = site.name + (f" · {category}" if category else "")
        meta = FeedMeta(
            id="", title=conv(title), site_url=site.url, self_url="",
            language=_language(config, script), description=conv(site.description or title),
            rights=conv(f"© {config.rights.holder}") if config.rights.holder else "",
            author=conv(site.name), tz=site.timezone, hub=config.feeds.hub,
            disclaimer=conv(config.rights.disclaimer))
        if len(_META_CACHE) > 1000:
            _META_CACHE.clear()
        _META_CACHE[key] = meta
    return meta


def _language(config: Config, script: str) -> str:
    if script == config.site.script:
        return config.site.language
    return "zh-TW" if script == "zh-hant" else "zh-CN"


# ---------------------------------------------------------------- building

class _Items:
    """Articles prepared once per script and article version, shared by every document.

    Prepared items are kept in ``feed_items`` (keyed by article version and a hash of
    everything else that shapes them), so a later build, even a full rebuild,
    converts and sanitizes only articles that changed.
    """

    def __init__(self, config: Config, store: Store):
        self.config, self.store = config, store
        self.articles: dict[str, Article] = {}
        self.items: dict[tuple[str, str], Item | None] = {}
        self.bodies: dict[str, str] = {}
        self.stored: dict[tuple[str, str], tuple[int, str, str]] = {}  # version, context, data
        self.fresh: dict[tuple[str, str], tuple[int, str, str]] = {}
        self.contexts: dict[tuple[str, str, str], str] = {}

    def load(self, ids: Iterable[str]) -> None:
        missing = [i for i in dict.fromkeys(ids) if i not in self.articles]
        c = feed_items.c
        for start in range(0, len(missing), 500):
            chunk = missing[start:start + 500]
            for a in self.store.articles_by_ids(chunk):
                self.articles[a.id] = a
            with self.store.engine.connect() as conn:
                for row in conn.execute(select(c.article_id, c.script, c.version, c.context,
                                               c.data).where(c.article_id.in_(chunk))):
                    self.stored[(row.article_id, row.script)] = (row.version, row.context,
                                                                 row.data)

    def get(self, article_id: str, script: str, meta: FeedMeta) -> Item | None:
        key = (article_id, script)
        if key not in self.items:
            self.items[key] = self._cached(article_id, script, meta) \
                or self._prepare(article_id, script, meta)
        return self.items[key]

    def release(self, keys: Iterable[tuple[str, str]]) -> None:
        """Forget the prepared items (and their entries) of *keys*: no document needs them."""
        for key in keys:
            self.items.pop(key, None)

    def save(self) -> None:
        """Keep the items prepared in this build for the next ones."""
        if not self.fresh:
            return
        keys = list(self.fresh)
        c = feed_items.c
        with self.store.engine.begin() as conn:
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                conn.execute(delete(feed_items).where(
                    tuple_(c.article_id, c.script).in_(chunk)))
                conn.execute(insert(feed_items), [
                    dict(article_id=k[0], script=k[1], version=self.fresh[k][0],
                         context=self.fresh[k][1], data=self.fresh[k][2]) for k in chunk])
        self.fresh.clear()

    def _context(self, script: str, meta: FeedMeta) -> str:
        key = (script, meta.disclaimer, meta.author)
        if key not in self.contexts:
            blob = repr((RENDER_VERSION, self.config.site.url, self.config.site.script) + key)
            self.contexts[key] = hashlib.sha256(blob.encode("utf-8")).hexdigest()
        return self.contexts[key]

    def _cached(self, article_id: str, script: str, meta: FeedMeta) -> Item | None:
        article, stored = self.articles.get(article_id), self.stored.get((article_id, script))
        if article is None or stored is None:
            return None
        version, context, data = stored
        if version != article.version or context != self._context(script, meta):
            return None
        return Item.from_json(data)

    def _prepare(self, article_id: str, script: str, meta: FeedMeta) -> Item | None:
        article = self.articles.get(article_id)
        if article is None:
            return None
        try:
            body = self.bodies.get(article_id)
            if body is None:
                body = self.bodies[article_id] = ff.safe_body(article, self.config.site.url)
            item = ff.prepare(article, site_url=self.config.site.url, script=script,
                              canonical=self.config.site.script, disclaimer=meta.disclaimer,
                              fallback_author=meta.author, body=body)
        except (RenderError, ValueError, TypeError, LookupError) as e:
            logger.error("article %s left out of the %s feeds: %s", article_id, script, e)
            return None
        self.fresh[(article_id, script)] = (article.version, self._context(script, meta),
                                            item.to_json())
        return item


def build_all(config: Config, store: Store, now: datetime | None = None, *,
              ping: bool = True) -> list[str]:
    """Build every feed; return the relative paths of the files that changed.

    With ``[feeds].hub`` set (and *ping*), the hub is then pinged for the
    changed feeds (see :mod:`publisher.websub`).
    """
    now = now or utcnow()
    writer = FeedWriter(config.feeds.output_dir, FeedState(store), background=True)
    key = _summary_key(config, store, now)
    if writer.state.get(INDEX_KEY) == key and writer.all_present():
        logger.info("feeds: nothing changed since the last build")
        return []
    docs = plan(config, article_index(store, now))
    todo = []
    for doc in docs:
        if writer.up_to_date(doc.rel, doc.fingerprint):
            writer.keep(doc.rel)
        else:
            todo.append(doc)
    try:
        failed = _render_all(config, store, writer, todo) if todo else 0
    finally:
        failed_writes = writer.finish()
    failed += len(failed_writes)
    writer.state.set(INDEX_KEY, None if failed else key)
    removed = writer.remove_stale()
    writer.sync()
    writer.state.save(now)
    logger.info("feeds: %d documents, %d rendered, %d files changed",
                len(docs), len(todo), len(writer.changed))
    if ping and config.feeds.hub:
        websub.publish_changes(config, [r for r in writer.changed if r not in removed])
    return writer.changed


def _summary_key(config: Config, store: Store, now: datetime) -> str:
    """Changes whenever any input of any feed changes (or the feeds' config does).

    Every edit raises an article's version, every new or newly due article the
    count, every withdrawal the count of published ones; articles are never
    deleted. So equal keys mean equal inputs, found with one aggregate query.
    """
    a = articles_table.c
    q = select(func.count(), func.coalesce(func.sum(a.version), 0),
               func.coalesce(func.sum(case((a.status == "published", 1), else_=0)), 0),
               func.max(a.changed_at)).where(a.published <= now)
    with store.engine.connect() as conn:
        row = conn.execute(q).one()
    blob = repr((RENDER_VERSION, tuple(row), config.site, config.rights, config.feeds,
                 sorted(config.categories.items())))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _render_all(config: Config, store: Store, writer: FeedWriter, todo: list[Doc]) -> int:
    """Render and write *todo*; return how many documents failed.

    Documents are rendered by script and period (an archive page of the site
    next to the category pages covering the same time), and each prepared item,
    with its feedgen entries, is let go after the last document it is in: the
    build holds a few pages' worth of entries, not the whole archive's.
    """
    failed = 0
    items = _Items(config, store)
    todo = sorted(todo, key=_render_order)
    items.load(r.id for doc in todo for r in doc.rows)
    done_after = _last_uses(todo)
    for n, doc in enumerate(todo):
        try:
            prepared = [it for it in (items.get(r.id, doc.script, doc.meta) for r in doc.rows)
                        if it is not None]
            writer.write(doc.rel, ff.render(prepared, doc.meta, doc.fmt), doc.fingerprint)
        except RenderError as e:
            failed += 1
            logger.error("feed %s not built: %s", doc.rel, e)
            if doc.rel not in writer.written:
                writer.keep(doc.rel)
        items.release(done_after.get(n, ()))
    items.save()
    return failed


def _render_order(doc: Doc) -> tuple:
    """Script, then the newest article in the document (empty documents first)."""
    return (doc.script, bool(doc.rows), doc.rows[0].published if doc.rows else None)


def _last_uses(todo: list[Doc]) -> dict[int, list[tuple[str, str]]]:
    """For each document's index, the (article id, script) keys no later document uses."""
    last: dict[tuple[str, str], int] = {}
    for n, doc in enumerate(todo):
        for r in doc.rows:
            last[(r.id, doc.script)] = n
    out: dict[int, list[tuple[str, str]]] = {}
    for key, n in last.items():
        out.setdefault(n, []).append(key)
    return out


def feed_url(config: Config, rel: str) -> str:
    """The public URL of the feed file at *rel* (relative to ``[feeds].output_dir``)."""
    return _url(config, rel)
