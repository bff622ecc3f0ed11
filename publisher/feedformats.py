"""Feed documents: RSS 2.0, Atom 1.0 (RFC 4287) and JSON Feed 1.1.

The documents are written directly (every text escaped, every character XML
1.0 forbids removed) rather than through feedgen, for three reasons: the exact
elements validators ask for (``atom:link rel=self`` in RSS, ``xml:lang``,
RFC 5005 ``fh:archive`` and archive links, enclosures only with a known
length), byte-stable output, and speed: an entry is rendered once per build and
script and reused by every feed and archive page it appears in.

:func:`prepare` turns an :class:`~publisher.models.Article` into an
:class:`Item` in one script (sanitized content with absolute URLs, the
reprint's source and the disclaimer); :func:`render` assembles a document.
"""

from __future__ import annotations

import functools
import json
import mimetypes
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from email.utils import format_datetime
from html import escape as html_escape
from urllib.parse import urljoin, urlsplit

from . import cleaning, scripts
from .errors import RenderError
from .models import Article

FORMATS = ("rss", "atom", "json")
XML_FORMATS = ("rss", "atom")
GENERATOR = "publisher"
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
    tz: tzinfo = timezone.utc
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


# --------------------------------------------------------------- escaping

def _x(text: str) -> str:
    """Text content, markup characters escaped. *text* is clean (see :func:`_clean_text`):
    every :class:`Item` field is, and document-level values go through :func:`_xc`."""
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("\r", "&#13;"))


def _q(text: str) -> str:
    """An attribute value in double quotes (clean *text*, as for :func:`_x`)."""
    return (_x(text).replace('"', "&quot;").replace("\n", "&#10;").replace("\t", "&#9;"))


def _xc(text: str) -> str:
    return _x(_clean_text(text))


def _qc(text: str) -> str:
    return _q(_clean_text(text))


def rfc822(dt: datetime, tz: tzinfo) -> str:
    """An RFC 822 (RFC 2822) date with a numeric zone, as RSS 2.0 asks."""
    return format_datetime(_aware(dt).astimezone(tz).replace(microsecond=0))


def rfc3339(dt: datetime, tz: tzinfo) -> str:
    """An RFC 3339 timestamp with its offset, as Atom and JSON Feed ask."""
    return _aware(dt).astimezone(tz).replace(microsecond=0).isoformat()


def _aware(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        raise RenderError(f"naive datetime {dt!r} in a feed")
    return dt


# ------------------------------------------------------------- fragments

def _rss_item(it: Item, tz: tzinfo) -> str:
    parts = [
        "<item>",
        f"<title>{_x(it.title)}</title>",
        f"<link>{_x(it.url)}</link>",
        f"<description>{_x(it.summary)}</description>",
        f"<content:encoded>{_x(it.content_html)}</content:encoded>",
        f"<dc:creator>{_x(it.author)}</dc:creator>",
        *(f"<category>{_x(c)}</category>" for c in it.categories + it.tags),
        f'<guid isPermaLink="false">{_x(it.id)}</guid>',
        f"<pubDate>{rfc822(it.published, tz)}</pubDate>",
    ]
    if it.reprint:
        parts.append(f'<source url="{_q(it.source_url or it.url)}">'
                     f"{_x(it.source_name or '非本网')}</source>")
    if it.image:
        if it.image_length and it.image_type:
            parts.append(f'<enclosure url="{_q(it.image)}" length="{it.image_length}" '
                         f'type="{_q(it.image_type)}"/>')
        parts.append(_media_content(it))
    parts.append("</item>")
    return "".join(parts)


def _media_content(it: Item) -> str:
    attrs = f'url="{_q(it.image)}" medium="image"'
    if it.image_type:
        attrs += f' type="{_q(it.image_type)}"'
    if it.image_length:
        attrs += f' fileSize="{it.image_length}"'
    return f"<media:content {attrs}/>"


def _atom_entry(it: Item, tz: tzinfo) -> str:
    parts = [
        "<entry>",
        f"<id>{_x(it.id)}</id>",
        f'<title type="text">{_x(it.title)}</title>',
        f'<link rel="alternate" type="text/html" href="{_q(it.url)}"/>',
        f"<published>{rfc3339(it.published, tz)}</published>",
        f"<updated>{rfc3339(it.modified, tz)}</updated>",
        f"<author><name>{_x(it.author)}</name></author>",
        *(f'<category term="{_q(c)}"/>' for c in it.categories + it.tags),
        f'<summary type="text">{_x(it.summary)}</summary>',
        f'<content type="html">{_x(it.content_html)}</content>',
    ]
    if it.reprint and it.source_url:
        parts.append(f'<link rel="via" type="text/html" href="{_q(it.source_url)}" '
                     f'title="{_q(it.source_name)}"/>')
    if it.image:
        length = f' length="{it.image_length}"' if it.image_length else ""
        kind = f' type="{_q(it.image_type)}"' if it.image_type else ""
        parts.append(f'<link rel="enclosure" href="{_q(it.image)}"{kind}{length}/>')
        parts.append(_media_content(it))
    parts.append("</entry>")
    return "".join(parts)


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


def fragment(it: Item, fmt: str, tz: tzinfo, language: str = ""):
    """The rendered entry of *it* in *fmt*, made once and kept on the item."""
    key = (fmt, str(tz), language)
    cached = it.cache.get(key)
    if cached is None:
        if fmt == "rss":
            cached = _rss_item(it, tz)
        elif fmt == "atom":
            cached = _atom_entry(it, tz)
        else:
            cached = _json_item(it, tz, language)
        it.cache[key] = cached
    return cached


# ------------------------------------------------------------- documents

def render(items: list[Item], meta: FeedMeta, fmt: str) -> bytes:
    """One feed document of *items* (newest first) in *fmt*."""
    if fmt == "rss":
        return _rss(items, meta)
    if fmt == "atom":
        return _atom(items, meta)
    if fmt == "json":
        return _json(items, meta)
    raise RenderError(f"unknown feed format {fmt!r}")


def _updated(items: list[Item], meta: FeedMeta) -> datetime:
    stamps = [it.modified for it in items]
    if meta.updated is not None:
        stamps.append(meta.updated)
    return max(stamps) if stamps else datetime(2026, 1, 1, tzinfo=timezone.utc)


def _links_atom(meta: FeedMeta, fmt: str) -> list[str]:
    own = MEDIA_TYPES[fmt]
    out = [f'<atom:link rel="self" type="{own}" href="{_qc(meta.self_url)}"/>']
    if meta.hub:
        out.append(f'<atom:link rel="hub" href="{_qc(meta.hub)}"/>')
    out += [f'<atom:link rel="{rel}" type="{own}" href="{_qc(href)}"/>' for rel, href in meta.links]
    return out


def _rss(items: list[Item], meta: FeedMeta) -> bytes:
    head = [
        "<?xml version='1.0' encoding='UTF-8'?>\n",
        f'<rss version="2.0" xmlns:atom="{NS_ATOM}" xmlns:dc="{NS_DC}" '
        f'xmlns:content="{NS_CONTENT}" xmlns:media="{NS_MEDIA}" xmlns:fh="{NS_FH}">',
        "<channel>",
        f"<title>{_xc(meta.title)}</title>",
        f"<link>{_xc(meta.site_url + '/')}</link>",
        f"<description>{_xc(meta.description or meta.title)}</description>",
        *_links_atom(meta, "rss"),
        f"<language>{_xc(meta.language.lower())}</language>",
        f"<copyright>{_xc(meta.rights)}</copyright>" if meta.rights else "",
        f"<lastBuildDate>{rfc822(_updated(items, meta), meta.tz)}</lastBuildDate>",
        f"<generator>{GENERATOR}</generator>",
        "<docs>https://www.rssboard.org/rss-specification</docs>",
        "<fh:archive/>" if meta.archive else "",
    ]
    body = "\n".join(fragment(it, "rss", meta.tz) for it in items)
    return ("".join(head) + "\n" + body + "\n</channel>\n</rss>\n").encode("utf-8")


def _atom(items: list[Item], meta: FeedMeta) -> bytes:
    links = [f'<link rel="alternate" type="text/html" href="{_qc(meta.site_url + "/")}"/>']
    links += [x.replace("<atom:link", "<link") for x in _links_atom(meta, "atom")]
    head = [
        "<?xml version='1.0' encoding='UTF-8'?>\n",
        f'<feed xmlns="{NS_ATOM}" xmlns:media="{NS_MEDIA}" xmlns:fh="{NS_FH}" '
        f'xml:lang="{_qc(meta.language)}">',
        f"<id>{_xc(meta.id)}</id>",
        f'<title type="text">{_xc(meta.title)}</title>',
        f'<subtitle type="text">{_xc(meta.description or meta.title)}</subtitle>',
        *links,
        f"<updated>{rfc3339(_updated(items, meta), meta.tz)}</updated>",
        f"<author><name>{_xc(meta.author or meta.title)}</name>"
        f"<uri>{_xc(meta.site_url + '/')}</uri></author>",
        f'<rights type="text">{_xc(meta.rights)}</rights>' if meta.rights else "",
        f'<generator>{GENERATOR}</generator>',
        "<fh:archive/>" if meta.archive else "",
    ]
    body = "\n".join(fragment(it, "atom", meta.tz) for it in items)
    return ("".join(head) + "\n" + body + "\n</feed>\n").encode("utf-8")


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
    doc["items"] = [fragment(it, "json", meta.tz, meta.language) for it in items]
    return (json.dumps(doc, ensure_ascii=False, indent=1) + "\n").encode("utf-8")
