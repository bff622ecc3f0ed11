"""Feed documents: RSS 2.0, Atom 1.0 (RFC 4287) and JSON Feed 1.1.

RSS and Atom are produced by feedgen (:class:`feedgen.feed.FeedGenerator`,
:class:`feedgen.entry.FeedEntry`, its ``dc`` and ``media`` extensions, and one
small extension of ours, :class:`HistoryExtension`, for what feedgen has no call
for: RFC 5005 ``fh:archive`` and the ``atom:link`` elements an RSS channel
carries beside ``rel="self"``). JSON Feed, which feedgen does not know, is
written with :mod:`json`.

:func:`prepare` turns an :class:`~publisher.models.Article` into an
:class:`Item` in one script (sanitized content with absolute URLs, the
reprint's source and the disclaimer, every character XML 1.0 forbids removed);
:func:`entry` makes its :class:`~feedgen.entry.FeedEntry` once per format and
zone, shared by every document the item appears in; :func:`render` assembles a
document. Output is a function of the inputs only (dates are given, never
"now"), so the same inputs give the same bytes.
"""

from __future__ import annotations

import copy
import functools
import json
import mimetypes
import re
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, tzinfo
from email.utils import format_datetime
from html import escape as html_escape
from urllib.parse import urljoin, urlsplit

from feedgen.entry import FeedEntry
from feedgen.ext.base import BaseExtension
from feedgen.ext.dc import DcEntryExtension, DcExtension
from feedgen.ext.media import MediaEntryExtension, MediaExtension
from feedgen.feed import FeedGenerator
from lxml import etree

from . import cleaning, scripts
from .errors import RenderError
from .models import Article

FORMATS = ("rss", "atom", "json")
XML_FORMATS = ("rss", "atom")
GENERATOR = "publisher"
RSS_DOCS = "https://www.rssboard.org/rss-specification"
NS_ATOM = "http://www.w3.org/2005/Atom"
NS_DC = "http://purl.org/dc/elements/1.1/"
NS_CONTENT = "http://purl.org/rss/1.0/modules/content/"
NS_MEDIA = "http://search.yahoo.com/mrss/"
NS_FH = "http://purl.org/syndication/history/1.0"
MEDIA_TYPES = {"rss": "application/rss+xml", "atom": "application/atom+xml",
               "json": "application/feed+json"}


@dataclass(frozen=True)
class FeedMeta:
    """What a feed document says about itself (already in its script)."""

    id: str  # stable feed id (an absolute URI)
    title: str
    site_url: str  # no trailing slash
    self_url: str
    language: str  # BCP 47, e.g. zh-CN
    description: str
    rights: str = ""
    author: str = ""  # "" = the feed's title
    tz: tzinfo = UTC
    hub: str | None = None
    updated: datetime | None = None
    links: tuple[tuple[str, str], ...] = ()  # (rel, href): prev-archive, next-archive, current
    archive: bool = False  # an RFC 5005 archive document
    disclaimer: str = ""  # appended to every reprint by :func:`publisher.feeds.build_feed`


@dataclass(frozen=True)
class Item:
    """One article ready for feeds, in one script. Every URL is absolute."""

    id: str
    title: str
    url: str
    published: datetime
    modified: datetime
    author: str
    summary: str
    content_html: str
    categories: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    source_name: str = ""
    source_url: str = ""
    reprint: bool = False
    image: str = ""
    image_type: str = ""
    image_length: int = 0
    cache: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    def to_json(self) -> str:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "cache"}
        data["published"] = self.published.isoformat()
        data["modified"] = self.modified.isoformat()
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Item:
        data = json.loads(text)
        data["published"] = datetime.fromisoformat(data["published"])
        data["modified"] = datetime.fromisoformat(data["modified"])
        data["categories"], data["tags"] = tuple(data["categories"]), tuple(data["tags"])
        return cls(**data)


# ------------------------------------------------------------------ items

def entry_id(site_url: str, article_id: str) -> str:
    """A stable, never reused id for an article: a tag: URI (RFC 4151).

    It depends only on the site's host and the article's id, never on the
    title, the URL or the version, so edits keep it.
    """
    host = urlsplit(site_url).hostname or "localhost"
    return f"tag:{host},2026:article:{_tag_specific(article_id)}"


def _tag_specific(text: str) -> str:
    """Characters RFC 4151 allows in the specific part (pchar / "/" / "?"), others %-encoded."""
    safe = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/?")
    return "".join(c if c in safe else "".join(f"%{b:02X}" for b in c.encode("utf-8"))
                   for c in text)


def article_url(article: Article, site_url: str) -> str:
    return _absolute(site_url + "/", article.url) or site_url + "/"


def safe_body(article: Article, site_url: str) -> str:
    """The article's HTML as feeds carry it: sanitized, no script, absolute URLs."""
    return cleaning.sanitize_html(article.body_html, article_url(article, site_url))


def prepare(article: Article, *, site_url: str, script: str, canonical: str,
            disclaimer: str, fallback_author: str, body: str | None = None) -> Item:
    """*article* as an :class:`Item` in *script* (converted when it is not *canonical*).

    *body* is :func:`safe_body` of the article when the caller already has it.
    """
    def conv(text: str) -> str:
        text = _clean_text(text)
        return text if script == canonical else _short_to_script(text, script)

    url = article_url(article, site_url)
    body = safe_body(article, site_url) if body is None else body
    if script != canonical:
        body = scripts.convert_html(body, script)
    source_url = _absolute(url, article.source_url) if article.is_reprint else ""
    source_name = conv(article.source_name) if article.is_reprint else ""
    summary = conv(article.summary) or _clean_text(cleaning.make_summary(body, 200))
    title = conv(article.title) or summary[:60] or _clean_text(article.id)
    fallback_author = _clean_text(fallback_author)
    image = _absolute(url, article.image)
    return Item(
        id=entry_id(site_url, article.id), title=title, url=url,
        published=article.published, modified=max(article.modified, article.published),
        author=conv(article.author) or fallback_author, summary=summary or title,
        content_html=_clean_text(body + _attribution(article.is_reprint, source_name,
                                                     source_url, disclaimer)),
        categories=(conv(article.category),) if article.category.strip() else (),
        tags=tuple(t for t in (conv(t) for t in article.tags) if t.strip()),
        source_name=source_name,
        source_url=source_url, reprint=article.is_reprint,
        image=image,
        image_type=_clean_text(_image_type(article.image_type, image)) if image else "",
        image_length=max(int(article.image_length or 0), 0),
    )


def _attribution(reprint: bool, name: str, url: str, disclaimer: str) -> str:
    if not reprint:
        return ""
    label = html_escape(name or "非本网")
    if url:
        label = f'<a href="{html_escape(url)}" rel="noopener noreferrer">{label}</a>'
    html = f"<p>来源:{label}</p>"
    if disclaimer:
        html += f"<p><small>{html_escape(disclaimer)}</small></p>"
    return html


@functools.lru_cache(maxsize=4096)
def _short_to_script(text: str, script: str) -> str:
    """Names that repeat (authors, categories, sources) are converted once."""
    return scripts.to_script(text, script)


_PLAIN_ABSOLUTE = re.compile(
    r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~%!$&'()*+,;=:@/-]*)?")


def _absolute(base: str, url: str) -> str:
    """*url* resolved against *base* when it is http(s); "" otherwise."""
    url = _clean_text(url or "").strip()
    if not url:
        return ""
    if _PLAIN_ABSOLUTE.fullmatch(url):
        return url
    try:
        resolved = urljoin(base, url)
        parts = urlsplit(resolved)
    except ValueError:
        return ""
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ""
    return resolved


def _image_type(declared: str, url: str) -> str:
    if declared and "/" in declared:
        return declared
    guessed, _ = mimetypes.guess_type(urlsplit(url).path)
    return guessed or ""


def _clean_text(text: str) -> str:
    return cleaning.strip_xml_illegal(text or "")


# ------------------------------------------------------------------ dates

def rfc822(dt: datetime, tz: tzinfo) -> str:
    """An RFC 822 (RFC 2822) date with a numeric zone, as RSS 2.0 asks."""
    return format_datetime(_local(dt, tz))


def rfc3339(dt: datetime, tz: tzinfo) -> str:
    """An RFC 3339 timestamp with its offset, as Atom and JSON Feed ask."""
    return _local(dt, tz).isoformat()


def _local(dt: datetime, tz: tzinfo) -> datetime:
    """*dt* in the feed's zone, whole seconds; naive datetimes are refused."""
    if dt.tzinfo is None:
        raise RenderError(f"naive datetime {dt!r} in a feed")
    return dt.astimezone(tz).replace(microsecond=0)


# ---------------------------------------------------------- feedgen parts

class HistoryExtension(BaseExtension):
    """Feed-level elements feedgen has no call for.

    RFC 5005 ``<fh:archive/>`` (RSS and Atom) and, in RSS, the ``atom:link``
    elements beyond ``rel="self"`` (``hub``, ``current``, ``prev-archive``,
    ``next-archive``): feedgen's RSS writer keeps only the self link. In Atom
    those links go through :meth:`FeedGenerator.link` like any other.
    """

    def __init__(self) -> None:
        self.links: list[dict[str, str]] = []  # extra atom:link attributes, RSS only
        self.archive = False

    def extend_ns(self) -> dict[str, str]:
        return {"fh": NS_FH}

    def extend_rss(self, feed):
        channel = feed.find("channel")
        for attrs in self.links:
            etree.SubElement(channel, f"{{{NS_ATOM}}}link", attrs)
        if self.archive:
            etree.SubElement(channel, f"{{{NS_FH}}}archive")
        return feed

    def extend_atom(self, feed):
        if self.archive:
            etree.SubElement(feed, f"{{{NS_FH}}}archive")
        return feed


_LINK_ATTRIBUTES = ("rel", "type", "hreflang", "title", "length")


class _Entry(FeedEntry):
    """A feedgen entry whose XML is built once, then copied for every further document.

    An item appears in a subscription feed and in one or more archive pages;
    feedgen would build the same ``<item>``/``<entry>`` element for each. The
    first document gets the element feedgen built; the others a copy of it
    (``copy.deepcopy`` of an lxml element: the same subtree, made in C).
    """

    _elements: dict | None = None  # "rss"/"atom" -> the element feedgen built

    def rss_entry(self, extensions=True):
        return self._built("rss", super().rss_entry, extensions)

    def atom_entry(self, extensions=True):
        return self._built("atom", self._atom_entry, extensions)

    def _atom_entry(self, extensions=True):
        element = super().atom_entry(extensions)
        # feedgen 1.0.0 writes an entry's links with href only (lkiesow/python-feedgen#135,
        # a loop variable shadowed): give them back their rel, type, title and length.
        for node, data in zip(element.iterchildren("link"), self.link() or [], strict=False):
            for name in _LINK_ATTRIBUTES:
                if data.get(name) and node.get(name) is None:
                    node.set(name, data[name])
        return element

    def _built(self, kind, build, extensions):
        if not extensions:
            return build(extensions)
        if self._elements is None:
            self._elements = {}
        if kind not in self._elements:
            self._elements[kind] = build(extensions)
            return self._elements[kind]
        return copy.deepcopy(self._elements[kind])


def entry(it: Item, fmt: str, tz: tzinfo) -> FeedEntry:
    """The feedgen entry of *it* in *fmt* ("rss" or "atom"), made once and kept on the item."""
    key = (fmt, tz)
    fe = it.cache.get(key)
    if fe is None:
        fe = it.cache[key] = _make_entry(it, fmt, tz)
    return fe


def _make_entry(it: Item, fmt: str, tz: tzinfo) -> FeedEntry:
    fe = _Entry()
    fe.id(it.id)  # also the RSS guid, isPermaLink="false"
    fe.title(it.title or it.id)  # feedgen refuses an entry without a title
    fe.published(_local(it.published, tz))
    fe.updated(_local(it.modified, tz))
    if it.categories or it.tags:
        fe.category([{"term": c} for c in it.categories + it.tags])
    fe.summary(it.summary, type="text")  # RSS <description>
    fe.content(it.content_html, type="html")  # RSS <content:encoded>
    if fmt == "rss":
        fe.register_extension("dc", DcEntryExtension, atom=False, rss=True)
    fe.register_extension("media", MediaEntryExtension)
    fe.link(_rss_parts(fe, it) if fmt == "rss" else _atom_parts(fe, it))
    if it.image:
        fe.media.content(_media_content(it), group=None)
    return fe


def _rss_parts(fe: FeedEntry, it: Item) -> list[dict[str, str]]:
    """RSS-only parts; returns the entry's links (<link>, <enclosure>)."""
    fe.dc.dc_creator(it.author)  # RSS <author> must be an e-mail address
    if it.reprint:
        fe.source(url=it.source_url or it.url, title=it.source_name or "非本网")
    links = [{"href": it.url, "rel": "alternate", "type": "text/html"}]
    if it.image and it.image_length and it.image_type:  # validators reject length 0
        links.append({"href": it.image, "rel": "enclosure", "type": it.image_type,
                      "length": str(it.image_length)})
    return links


def _atom_parts(fe: FeedEntry, it: Item) -> list[dict[str, str]]:
    """Atom-only parts; returns the entry's links (alternate, via, enclosure)."""
    fe.author({"name": it.author})
    links = [{"href": it.url, "rel": "alternate", "type": "text/html"}]
    if it.reprint and it.source_url:
        links.append({"href": it.source_url, "rel": "via", "type": "text/html",
                      "title": it.source_name})
    if it.image:
        link = {"href": it.image, "rel": "enclosure"}
        if it.image_type:
            link["type"] = it.image_type
        if it.image_length:
            link["length"] = str(it.image_length)
        links.append(link)
    return links


def _media_content(it: Item) -> dict[str, str]:
    attrs = {"url": it.image, "medium": "image"}
    if it.image_type:
        attrs["type"] = it.image_type
    if it.image_length:
        attrs["fileSize"] = str(it.image_length)
    return attrs


# ------------------------------------------------------------- documents

def render(items: list[Item], meta: FeedMeta, fmt: str) -> bytes:
    """One feed document of *items* (newest first, as given) in *fmt*."""
    if fmt == "json":
        return _json(items, meta)
    fg = generator(items, meta, fmt)
    try:
        data = fg.rss_str() if fmt == "rss" else fg.atom_str()
    except ValueError as e:  # feedgen's required fields, lxml's text checks
        raise RenderError(f"{fmt} feed {meta.self_url}: {e}") from e
    return data + b"\n"


def generator(items: list[Item], meta: FeedMeta, fmt: str) -> FeedGenerator:
    """The feedgen generator of one RSS or Atom document, entries appended in order."""
    if fmt not in XML_FORMATS:
        raise RenderError(f"unknown feed format {fmt!r}")
    fg = FeedGenerator()
    if fmt == "rss":
        fg.register_extension("dc", DcExtension, DcEntryExtension, atom=False, rss=True)
    fg.register_extension("media", MediaExtension, MediaEntryExtension)
    fg.register_extension("history", HistoryExtension)
    _head(fg, meta, fmt, _updated(items, meta))
    for it in items:
        fg.add_entry(entry(it, fmt, meta.tz), order="append")
    return fg


def _head(fg: FeedGenerator, meta: FeedMeta, fmt: str, updated: datetime) -> None:
    site = _clean_text(meta.site_url) + "/"
    title = _first(meta.title, site)  # feedgen refuses a feed without one
    fg.title(title)
    fg.updated(_local(updated, meta.tz))  # RSS lastBuildDate, Atom updated
    fg.generator(GENERATOR)
    if _first(meta.rights):
        fg.rights(_first(meta.rights))  # RSS copyright, Atom rights
    own = MEDIA_TYPES[fmt]
    links = [{"href": _clean_text(meta.self_url), "rel": "self", "type": own}]
    if meta.hub:
        links.append({"href": _clean_text(meta.hub), "rel": "hub"})
    links += [{"href": _clean_text(href), "rel": rel, "type": own} for rel, href in meta.links]
    description = _first(meta.description, title)
    if fmt == "rss":
        fg.link(links[0])
        fg.link(href=site, rel="alternate")  # the last link is RSS's channel <link>
        fg.description(description)
        fg.language(_clean_text(meta.language).lower())
        fg.docs(RSS_DOCS)
        fg.history.links = links[1:]  # hub, RFC 5005: see HistoryExtension
    else:
        fg.id(_first(meta.id, meta.self_url, site))
        fg.link([{"href": site, "rel": "alternate", "type": "text/html"}, *links])
        fg.subtitle(description)
        fg.language(_clean_text(meta.language))  # feedgen writes it as xml:lang on <feed>
        fg.author({"name": _first(meta.author, title), "uri": site})
    fg.history.archive = meta.archive


def _first(*texts: str) -> str:
    """The first of *texts* that is not blank once cleaned ("" if none is)."""
    for text in texts:
        text = _clean_text(text)
        if text.strip():
            return text
    return ""


def _updated(items: list[Item], meta: FeedMeta) -> datetime:
    stamps = [it.modified for it in items]
    if meta.updated is not None:
        stamps.append(meta.updated)
    return max(stamps) if stamps else datetime(2026, 1, 1, tzinfo=UTC)


# ------------------------------------------------------------ JSON Feed

def _json_entry(it: Item, tz: tzinfo, language: str) -> dict:
    key = ("json", tz, language)
    cached = it.cache.get(key)
    if cached is None:
        cached = it.cache[key] = _json_item(it, tz, language)
    return cached


def _json_item(it: Item, tz: tzinfo, language: str) -> dict:
    item = {
        "id": it.id,
        "url": it.url,
        "title": it.title,
        "content_html": it.content_html,
        "summary": it.summary,
        "date_published": rfc3339(it.published, tz),
        "date_modified": rfc3339(it.modified, tz),
        "authors": [{"name": it.author}],
        "language": language,
    }
    if it.categories or it.tags:
        item["tags"] = list(dict.fromkeys(it.categories + it.tags))
    if it.image:
        item["image"] = it.image
        if it.image_type:
            att = {"url": it.image, "mime_type": it.image_type}
            if it.image_length:
                att["size_in_bytes"] = it.image_length
            item["attachments"] = [att]
    if it.reprint:
        if it.source_url:
            item["external_url"] = it.source_url
        origin = "{0.scheme}://{0.netloc}/".format(urlsplit(it.url))
        item["_source"] = {"about": origin, "name": it.source_name, "url": it.source_url}
    return item



def _json(items: list[Item], meta: FeedMeta) -> bytes:
    doc = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": _clean_text(meta.title),
        "home_page_url": meta.site_url + "/",
        "feed_url": meta.self_url,
        "description": _clean_text(meta.description or meta.title),
        "language": meta.language,
        "authors": [{"name": _clean_text(meta.author or meta.title), "url": meta.site_url + "/"}],
    }
    if meta.hub:
        doc["hubs"] = [{"type": "WebSub", "url": meta.hub}]
    doc["items"] = [_json_entry(it, meta.tz, meta.language) for it in items]
    return (json.dumps(doc, ensure_ascii=False, indent=1) + "\n").encode("utf-8")
