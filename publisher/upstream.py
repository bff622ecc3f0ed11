"""Upstream feed sources: RSS/Atom fetched with requests, parsed with feedparser.

Fetching is bounded: a connect and read timeout, a cap on the response size,
a redirect limit, retries with backoff on 5xx and connection errors, and
conditional GET (ETag / Last-Modified) so an unchanged feed costs a 304.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urljoin

import feedparser
import requests

from . import cleaning
from .config import Config, SourceConfig
from .errors import SourceError
from .models import ORIGINAL, REPRINT, Article

logger = logging.getLogger(__name__)

USER_AGENT = "publisher/0.1 (+feed collector)"
MAX_REDIRECTS = 5
RETRIES = 2
BACKOFF = 0.5  # seconds, doubled each retry


@dataclass(frozen=True)
class FetchResult:
    status: int  # 200 or 304
    body: bytes
    etag: str | None
    last_modified: str | None
    content_type: str


def make_session() -> requests.Session:
    s = requests.Session()
    s.max_redirects = MAX_REDIRECTS
    s.headers.update({"User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate",
                      "Accept": "application/atom+xml, application/rss+xml, "
                                "application/xml;q=0.9, */*;q=0.5"})
    return s


def fetch(source: SourceConfig, *, etag: str | None = None, last_modified: str | None = None,
          session: requests.Session | None = None) -> FetchResult:
    """GET the source's URL with bounded retries; raise SourceError on failure."""
    session = session or make_session()
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    delay, last_error = BACKOFF, ""
    for attempt in range(RETRIES + 1):
        try:
            return _get_once(session, source, headers)
        except _Retryable as e:
            last_error = str(e)
            if attempt < RETRIES:
                logger.info("source %s: %s; retrying in %.1fs", source.name, e, delay)
                time.sleep(delay)
                delay *= 2
    raise SourceError(f"source {source.name}: {source.url}: {last_error}")


class _Retryable(Exception):
    pass


def _get_once(session: requests.Session, source: SourceConfig, headers: dict) -> FetchResult:
    timeout = (source.timeout, source.timeout)
    try:
        with session.get(source.url, headers=headers, timeout=timeout, stream=True) as r:
            if r.status_code == 304:
                return FetchResult(304, b"", headers.get("If-None-Match"),
                                   headers.get("If-Modified-Since"), "")
            if r.status_code >= 500:
                raise _Retryable(f"HTTP {r.status_code}")
            if r.status_code >= 400:
                raise SourceError(f"source {source.name}: {source.url}: HTTP {r.status_code}")
            body = _read_capped(r, source, time.monotonic() + source.timeout * 3)
            return FetchResult(r.status_code, body, r.headers.get("ETag"),
                               r.headers.get("Last-Modified"), r.headers.get("Content-Type", ""))
    except requests.TooManyRedirects as e:
        raise SourceError(f"source {source.name}: {source.url}: more than {MAX_REDIRECTS} redirects") from e
    except (requests.ConnectionError, requests.Timeout) as e:
        raise _Retryable(_short(e)) from e
    except requests.RequestException as e:
        raise SourceError(f"source {source.name}: {source.url}: {_short(e)}") from e


def _read_capped(r: requests.Response, source: SourceConfig, deadline: float) -> bytes:
    chunks, size = [], 0
    for chunk in r.iter_content(65536):
        size += len(chunk)
        if size > source.max_bytes:
            raise SourceError(f"source {source.name}: response larger than {source.max_bytes} bytes")
        if time.monotonic() > deadline:
            raise _Retryable("response took too long")
        chunks.append(chunk)
    return b"".join(chunks)


def _short(e: Exception) -> str:
    text = str(e)
    return text if len(text) < 200 else text[:200] + "…"


def parse_feed(body: bytes, source: SourceConfig, config: Config,
               content_type: str = "") -> tuple[list[Article], list[str]]:
    """Parse an RSS/Atom document into (articles, problems).

    A document that yields no usable entry raises SourceError; a malformed one
    that still yields entries is used and its problem reported by name.
    """
    headers = {"content-type": content_type} if content_type else {}
    parsed = feedparser.parse(body, response_headers=headers, sanitize_html=False,
                              resolve_relative_uris=False)
    base = parsed.feed.get("link") or source.url or ""
    articles, problems = [], []
    for entry in parsed.entries:
        try:
            articles.append(entry_to_article(entry, source, config, base))
        except SourceError as e:
            problems.append(str(e))
    if parsed.bozo:
        reason = f"source {source.name}: malformed feed: {parsed.get('bozo_exception')}"
        if not articles:
            raise SourceError(reason)
        problems.insert(0, reason + f" (used {len(articles)} entries)")
    for p in problems:
        logger.warning("%s", p)
    return articles, problems


def entry_to_article(entry, source: SourceConfig, config: Config, base: str) -> Article:
    link = urljoin(base, entry.get("link") or "")
    if not link:
        raise SourceError(f"source {source.name}: entry without link skipped")
    title = cleaning.strip_pinyin(cleaning.strip_xml_illegal(
        cleaning.html_to_text(entry.get("title") or ""))).strip()
    if not title:
        raise SourceError(f"source {source.name}: entry {link} without title skipped")
    html = ""
    if entry.get("content"):
        html = entry.content[0].get("value", "")
    html = html or entry.get("summary") or ""
    body_html = cleaning.sanitize_html(cleaning.strip_pinyin(cleaning.strip_ruby(html)), link)
    published = _entry_date(entry, "published") or _entry_date(entry, "updated") \
        or datetime.now(UTC)
    guid = entry.get("id") or link
    article_id = f"{source.name}/{hashlib.sha256(guid.encode('utf-8')).hexdigest()[:16]}"
    source_name = (entry.get("source") or {}).get("title", "") or (
        source.name if source.origin == REPRINT else "")
    tags = tuple(t.get("term", "") for t in entry.get("tags", []) if t.get("term"))
    return Article(
        id=article_id, title=title, url=link, published=published,
        updated=_entry_date(entry, "updated"), body_html=body_html,
        summary=cleaning.make_summary(cleaning.sanitize_html(entry.get("summary") or "", link))
        or cleaning.make_summary(body_html),
        author=cleaning.strip_xml_illegal(entry.get("author") or ""),
        category=source.category or (tags[0] if tags else ""), tags=tags,
        origin=REPRINT if source_name else ORIGINAL, source_name=source_name,
        source_url=link if source_name else "", collected_from=source.name,
    )


def _entry_date(entry, key: str) -> datetime | None:
    parsed = entry.get(f"{key}_parsed")
    if not parsed:
        return None
    return datetime(*parsed[:6], tzinfo=UTC)
