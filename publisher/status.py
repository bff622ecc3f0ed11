"""Read-only views for ``publisher status``."""

from __future__ import annotations

from sqlalchemy import func, select

from .schema import outbox
from .store import Store


def edition_progress(store: Store, edition_id: int) -> dict[str, int]:
    """Outbox rows of an edition counted by status."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(outbox.c.status, func.count())
                            .where(outbox.c.edition_id == edition_id).group_by(outbox.c.status))
        return {r[0]: r[1] for r in rows}
