"""Feeds: RSS 2.0, Atom 1.0 and JSON Feed 1.1 from a list of articles.

:func:`build_feed` is the one place feedgen is used; it returns bytes and
touches nothing outside. :func:`build_all` decides which feeds exist (site
wide and per category, in both scripts) and hands them to the writer.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape

from feedgen.feed import FeedGenerator

from . import scripts
from .config import Config
from .feedwriter import FeedWriter
from .models import Article
from .slugs import category_slug
from .store import Store, utcnow

logger = logging.getLogger(__name__)

FORMATS = ("rss", "atom", "json")
FILENAMES = {"rss": "rss.xml", "atom": "atom.xml", "json": "feed.json"}


@dataclass(frozen=True)
class FeedMeta:
    """What a feed says about itself."""

    id: str  # stable feed id (tag: URI)
    title: str
    site_url: str
    self_url: str
    language: str
    description: str
    rights: str
    disclaimer: str
    hub: str | None = None
    author: str = ""
    updated: datetime | None = None


def entry_id(site_url: str, article: Article) -> str:
    """A stable, never reused id for an article: a tag: URI (RFC 4151)."""
    host = site_url.split("://", 1)[-1].split("/", 1)[0]
    return f"tag:{host},2026:article:{article.id}"


def attributed_html(article: Article, meta: FeedMeta) -> str:
    """The article body with the reprint's source (and the disclaimer) appended."""
    html = article.body_html
    if article.is_reprint:
        src = escape(article.source_name)
        if article.source_url:
            src = f'<a href="{escape(article.source_url)}">{src}</a>'
        html += f"<p>来源:{src}</p>"
        if meta.disclaimer:
            html += f"<p><small>{escape(meta.disclaimer)}</small></p>"
    return html


def build_feed(articles: list[Article], meta: FeedMeta, fmt: str) -> bytes:
    """Render *articles* (already sorted, newest first) as one feed document."""
    if fmt == "json":
        return _json_feed(articles, meta)
    fg = FeedGenerator()
    fg.load_extension("dc")
    fg.id(meta.id)
    fg.title(meta.title)
    fg.link(href=meta.site_url + "/", rel="alternate")
    fg.link(href=meta.self_url, rel="self")
    if meta.hub:
        fg.link(href=meta.hub, rel="hub")
    fg.language(meta.language)
    fg.description(meta.description or meta.title)
    fg.subtitle(meta.description or meta.title)
    fg.rights(meta.rights)
    fg.author({"name": meta.author or meta.title})
    fg.generator("publisher")
    fg.updated(meta.updated or (articles[0].modified if articles else _epoch()))
    fg.lastBuildDate(meta.updated or (articles[0].modified if articles else _epoch()))
    for article in articles:
        _add_entry(fg, article, meta)
    if fmt == "rss":
        return fg.rss_str(pretty=True)
    return fg.atom_str(pretty=True)


def _add_entry(fg: FeedGenerator, a: Article, meta: FeedMeta) -> None:
    fe = fg.add_entry(order="append")
    fe.id(entry_id(meta.site_url, a))
    fe.guid(entry_id(meta.site_url, a), permalink=False)
    fe.title(a.title)
    fe.link(href=a.url, rel="alternate")
    fe.published(a.published)
    fe.updated(a.modified)
    author = a.author or meta.author or meta.title
    fe.author({"name": author})
    fe.dc.dc_creator(author)
    if a.category:
        fe.category(term=a.category, label=a.category)
    fe.summary(a.summary or a.title)
    fe.description(a.summary or a.title)
    fe.content(attributed_html(a, meta), type="html")
    if a.is_reprint:
        fe.source(url=a.source_url or a.url, title=a.source_name)
    if a.image:
        fe.enclosure(url=a.image, length=str(a.image_length or 0),
                     type=a.image_type or "image/jpeg")


def _json_feed(articles: list[Article], meta: FeedMeta) -> bytes:
    doc = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": meta.title,
        "home_page_url": meta.site_url + "/",
        "feed_url": meta.self_url,
        "description": meta.description or meta.title,
        "language": meta.language,
        "authors": [{"name": meta.author or meta.title}],
        "items": [_json_item(a, meta) for a in articles],
    }
    if meta.hub:
        doc["hubs"] = [{"type": "WebSub", "url": meta.hub}]
    return json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8")


def _json_item(a: Article, meta: FeedMeta) -> dict:
    item = {
        "id": entry_id(meta.site_url, a),
        "url": a.url,
        "title": a.title,
        "content_html": attributed_html(a, meta),
        "summary": a.summary,
        "date_published": a.published.isoformat(),
        "date_modified": a.modified.isoformat(),
        "authors": [{"name": a.author or meta.author or meta.title}],
        "tags": [t for t in (a.category, *a.tags) if t],
        "language": meta.language,
    }
    if a.image:
        item["image"] = a.image
    if a.is_reprint:
        item["external_url"] = a.source_url or a.url
        item["_source"] = {"name": a.source_name, "url": a.source_url}
    return item


def _epoch() -> datetime:
    return datetime(2026, 1, 1, tzinfo=timezone.utc)


def feed_sets(config: Config, store: Store, now: datetime) -> list[tuple[str, str, list[Article]]]:
    """(relative folder, title suffix, articles) for every feed the site has."""
    limit = config.feeds.max_items
    sets = [("", "", store.published_articles(now, limit=limit))]
    for category in store.categories():
        items = store.published_articles(now, category=category, limit=limit)
        if items:
            sets.append((f"category/{category_slug(category, config)}", category, items))
    return sets


def build_all(config: Config, store: Store, now: datetime | None = None) -> list[str]:
    """Build every feed; return the relative paths of the files that changed."""
    now = now or utcnow()
    writer = FeedWriter(config.feeds.output_dir)
    for folder, suffix, items in feed_sets(config, store, now):
        _write_set(writer, config, folder, suffix, items, "zh-hans")
        _write_set(writer, config, f"zh-hant/{folder}", suffix, items, "zh-hant")
    return writer.changed


def _write_set(writer: FeedWriter, config: Config, folder: str, suffix: str,
               items: list[Article], script: str) -> None:
    folder = folder.strip("/")
    if script != config.site.script:
        items = [_in_script(a, script) for a in items]
    title = config.site.name + (f" · {suffix}" if suffix else "")
    for fmt in FORMATS:
        rel = f"{folder}/{FILENAMES[fmt]}" if folder else FILENAMES[fmt]
        meta = FeedMeta(
            id=f"{config.site.url}/feeds/{rel}",
            title=scripts.to_script(title, script),
            site_url=config.site.url,
            self_url=f"{config.site.url}/feeds/{rel}",
            language="zh-TW" if script == "zh-hant" else config.site.language,
            description=scripts.to_script(config.site.description or title, script),
            rights=scripts.to_script(f"© {config.rights.holder}", script),
            disclaimer=scripts.to_script(config.rights.disclaimer, script),
            hub=config.feeds.hub, author=scripts.to_script(config.site.name, script),
        )
        writer.write(rel, build_feed(items, meta, fmt))


def _in_script(a: Article, script: str) -> Article:
    return a.evolve(title=scripts.to_script(a.title, script),
                    summary=scripts.to_script(a.summary, script),
                    body_html=scripts.convert_html(a.body_html, script),
                    author=scripts.to_script(a.author, script),
                    category=scripts.to_script(a.category, script),
                    source_name=scripts.to_script(a.source_name, script))
