"""Stable ASCII slugs for category paths: configured, else pinyin, never raw Chinese.

A slug depends only on the category's name (and ``[categories]``), never on
which other categories exist, except when two names would share one slug: then
every name but the configured (or alphabetically first) one gets a short hash
of its name appended, which is stable too.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable

from pypinyin import lazy_pinyin

from .config import Config

MAX_SLUG = 60


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]


def slugify(text: str) -> str:
    """ASCII slug: Han characters become toneless pinyin, the rest is transliterated."""
    words = lazy_pinyin(unicodedata.normalize("NFKC", text), errors="default")
    ascii_text = unicodedata.normalize("NFKD", "-".join(words)).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    if not slug:  # nothing transliterable: a short stable hash
        slug = "c-" + _digest(text)
    elif len(slug) > MAX_SLUG:
        slug = slug[:MAX_SLUG].rstrip("-") + "-" + _digest(text)
    return slug


def category_slug(category: str, config: Config) -> str:
    """The path segment of one category: ``[categories]`` first, else its pinyin."""
    configured = config.categories.get(category)
    if configured:
        return configured
    slug = slugify(category)
    if slug.startswith("c-") or len(slug) > MAX_SLUG - 9:  # a hash, or long: keep the dashes
        return slug
    return slug.replace("-", "")


def category_slugs(categories: Iterable[str], config: Config) -> dict[str, str]:
    """Slugs for *categories*, unique among them (see the module docstring)."""
    names = sorted(set(categories), key=lambda c: (c not in config.categories, c))
    out: dict[str, str] = {}
    taken: set[str] = set()
    for name in names:
        slug = category_slug(name, config)
        if slug in taken:
            slug = f"{slug}-{_digest(name)}"
        taken.add(slug)
        out[name] = slug
    return out
