"""Stable ASCII slugs for category paths: configured, else pinyin, never raw Chinese."""

from __future__ import annotations

import hashlib
import re
import unicodedata

from pypinyin import lazy_pinyin

from .config import Config


def slugify(text: str) -> str:
    """ASCII slug: Han characters become toneless pinyin, the rest is transliterated."""
    words = lazy_pinyin(unicodedata.normalize("NFKC", text), errors="default")
    ascii_text = unicodedata.normalize("NFKD", "-".join(words)).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    if not slug:  # nothing transliterable: a short stable hash
        slug = "c-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]
    return slug


def category_slug(category: str, config: Config) -> str:
    return config.categories.get(category) or slugify(category).replace("-", "")
