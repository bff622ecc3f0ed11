"""Readers: turn one content file into an :class:`Article` (Pelican's readers).

``.md`` files carry front matter, ``+++`` TOML (Hugo's convention) or ``---``
YAML; ``.txt`` files are pages as scraped from the site (see
:func:`publisher.cleaning.parse_scraped_page`).
"""

from __future__ import annotations

import logging
import re
import tomllib
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import markdown
import yaml

from . import cleaning
from .config import Config
from .errors import SourceError
from .models import ORIGINAL, REPRINT, Article

logger = logging.getLogger(__name__)

FRONT_MATTER = re.compile(r"\A\ufeff?(\+\+\+|---)[ \t]*\n(.*?)\n\1[ \t]*(?:\n|\Z)", re.S)
KNOWN_KEYS = {"id", "title", "date", "updated", "author", "category", "tags", "summary",
              "source", "source_url", "image", "draft", "url", "slug", "categories"}


class Skip(Exception):
    """The file is not (yet) an article: a draft, say. Not an error."""


def article_url(config: Config, article_id: str) -> str:
    return f"{config.site.url}/articles/{quote(article_id, safe='/')}"


def read_file(path: Path, root: Path, config: Config, source_name: str) -> Article:
    """Read one content file. Raises SourceError (bad file) or Skip (draft)."""
    if path.suffix == ".md":
        return read_markdown(path, root, config, source_name)
    if path.suffix == ".txt":
        return read_scraped(path, root, config, source_name)
    raise SourceError(f"{path}: unsupported file type")


def read_markdown(path: Path, root: Path, config: Config, source_name: str) -> Article:
    text = cleaning.decode_bytes(_read(path), str(path))
    meta, body = split_front_matter(text, path)
    if _truthy(meta.get("draft")):
        raise Skip(f"{path}: draft")
    tz = config.site.timezone
    article_id = str(meta.get("id") or _id_from_path(path, root))
    title = _text(meta.get("title"), path, "title", required=True)
    url = str(meta.get("url") or article_url(config, article_id))
    html = markdown.markdown(body, extensions=["tables", "fenced_code", "sane_lists"],
                             output_format="html")
    body_html = cleaning.sanitize_html(cleaning.strip_pinyin(cleaning.strip_ruby(html)), url)
    category = meta.get("category") or (meta.get("categories") or [""])[0]
    source = _text(meta.get("source"), path, "source")
    unknown = set(meta) - KNOWN_KEYS
    if unknown:
        logger.warning("%s: unknown front matter keys ignored: %s", path, ", ".join(sorted(unknown)))
    return Article(
        id=article_id,
        title=cleaning.strip_xml_illegal(cleaning.strip_pinyin(title)).strip(),
        url=url,
        published=parse_date(meta.get("date"), tz, path, "date") if meta.get("date")
        else _mtime(path, tz),
        updated=parse_date(meta["updated"], tz, path, "updated") if meta.get("updated") else None,
        body_html=body_html,
        summary=cleaning.strip_xml_illegal(_text(meta.get("summary"), path, "summary"))
        or cleaning.make_summary(body_html),
        author=_text(meta.get("author"), path, "author"),
        category=str(category or "").strip(),
        tags=tuple(str(t) for t in (meta.get("tags") or ())),
        origin=REPRINT if source else ORIGINAL,
        source_name=source,
        source_url=_text(meta.get("source_url"), path, "source_url"),
        image=_text(meta.get("image"), path, "image"),
        collected_from=source_name,
    )


def read_scraped(path: Path, root: Path, config: Config, source_name: str) -> Article:
    text = cleaning.decode_bytes(_read(path), str(path))
    page = cleaning.parse_scraped_page(text, config.site.timezone)
    if not page.title or not page.paragraphs:
        raise SourceError(f"{path}: no title or no body found in scraped page")
    article_id = _id_from_path(path, root)
    url = article_url(config, article_id)
    body_html = cleaning.sanitize_html(cleaning.scraped_to_html(page), url)
    return Article(
        id=article_id, title=page.title, url=url,
        published=page.date or _mtime(path, config.site.timezone),
        body_html=body_html, summary=cleaning.make_summary(body_html), author=page.author,
        category=page.category, origin=REPRINT if page.source_name else ORIGINAL,
        source_name=page.source_name, source_url=page.source_url, collected_from=source_name,
    )


def split_front_matter(text: str, path: Path) -> tuple[dict[str, Any], str]:
    m = FRONT_MATTER.match(text)
    if not m:
        raise SourceError(f"{path}: no front matter (start the file with +++ or ---)")
    fence, block = m.group(1), m.group(2)
    try:
        meta = tomllib.loads(block) if fence == "+++" else yaml.safe_load(block)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as e:
        kind = "TOML" if fence == "+++" else "YAML"
        first = str(e).splitlines()[0]
        raise SourceError(f"{path}: invalid {kind} front matter: {first}") from e
    if not isinstance(meta, dict):
        raise SourceError(f"{path}: front matter must be a table of keys")
    return meta, text[m.end():]


def parse_date(value: Any, tz: ZoneInfo, path: Path | str, key: str) -> datetime:
    """ISO 8601 date or datetime; no zone means the site's zone."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime.combine(value, time())
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise SourceError(f"{path}: {key}: not an ISO 8601 date: {value!r}") from None
    else:
        raise SourceError(f"{path}: {key}: not a date: {value!r}")
    return dt if dt.tzinfo else dt.replace(tzinfo=tz)


def _id_from_path(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    return "/".join(rel.parts)


def _mtime(path: Path, tz: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, tz)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise SourceError(f"{path}: cannot read: {e.strerror}") from e


def _text(value: Any, path: Path, key: str, *, required: bool = False) -> str:
    if value is None or value == "":
        if required:
            raise SourceError(f"{path}: front matter key {key!r} is required")
        return ""
    if not isinstance(value, str | int | float):
        raise SourceError(f"{path}: front matter key {key!r} must be text")
    text = cleaning.strip_xml_illegal(str(value)).strip()
    return text.replace("\r", " ").replace("\n", " ")


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() in ("true", "yes", "1"))
