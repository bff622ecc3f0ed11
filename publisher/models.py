"""Plain data passed between the stages."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime

ORIGINAL = "original"
REPRINT = "reprint"


@dataclass(frozen=True)
class Article:
    """One article as the pipeline sees it: cleaned, in the canonical script.

    ``id`` is stable for the life of the article (feeds build their entry ids
    from it); ``version`` grows by one each time the content changes.
    """

    id: str
    title: str
    url: str  # canonical, absolute
    published: datetime  # timezone-aware
    body_html: str  # sanitized
    summary: str = ""
    author: str = ""
    category: str = ""
    tags: tuple[str, ...] = ()
    updated: datetime | None = None
    origin: str = ORIGINAL
    source_name: str = ""  # the other outlet, for reprints
    source_url: str = ""
    image: str = ""
    image_type: str = ""
    image_length: int = 0
    collected_from: str = ""  # the [[sources]] name
    version: int = 1
    status: str = "published"  # published | withdrawn
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def is_reprint(self) -> bool:
        return self.origin == REPRINT

    @property
    def modified(self) -> datetime:
        return self.updated or self.published

    def content_hash(self) -> str:
        """Hash of everything a reader sees; a change makes a new version."""
        data = {k: v for k, v in asdict(self).items()
                if k not in ("version", "status", "extra", "collected_from", "updated")}
        data["published"] = self.published.isoformat()
        blob = json.dumps(data, ensure_ascii=False, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def evolve(self, **changes) -> Article:
        return replace(self, **changes)


@dataclass(frozen=True)
class Subscriber:
    id: int
    email: str
    name: str = ""
    frequency: str = "daily"  # daily | weekly
    categories: tuple[str, ...] = ()  # empty = all
    script: str = "zh-hans"
    status: str = "active"  # pending | active | unsubscribed | bounced | complained
    token_key: str = ""  # random per-subscriber secret mixed into signed tokens
