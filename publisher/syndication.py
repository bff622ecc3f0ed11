"""Partner syndication under the reprint terms (see DESIGN.md).

Foundation only: records withdrawals in the audit log. Licensing, webhook,
feed and email delivery are built on top of this module.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import insert

from .config import Config
from .models import Article
from .schema import audit_log
from .store import Store

logger = logging.getLogger(__name__)


@dataclass
class SyndicationReport:
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    errors: list[str] = field(default_factory=list)


def run(config: Config, store: Store, now: datetime) -> SyndicationReport:
    return SyndicationReport()


def withdraw(config: Config, store: Store, article: Article, reason: str, now: datetime) -> None:
    with store.engine.begin() as conn:
        conn.execute(insert(audit_log).values(
            at=now, article_id=article.id, version=article.version, event="withdraw",
            terms_version=config.rights.terms_version, detail=reason))
