"""Read-only views for ``publisher status``, and the progress bar of interactive sends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from sqlalchemy import func, select

from .schema import outbox
from .store import Store


def edition_progress(store: Store, edition_id: int) -> dict[str, int]:
    """Outbox rows of an edition counted by status."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(outbox.c.status, func.count())
                            .where(outbox.c.edition_id == edition_id).group_by(outbox.c.status))
        return {r[0]: r[1] for r in rows}


def progress_line(progress: dict[str, int]) -> str:
    """'sent 10, deferred 2, …' in a fixed order, zeros left out."""
    order = ("sent", "pending", "claimed", "deferred", "bounced", "rejected", "failed",
             "suppressed")
    return ", ".join(f"{k} {progress[k]}" for k in order if progress.get(k))


class _Rate(TextColumn):
    """Messages per second since the start."""

    def __init__(self) -> None:
        super().__init__("")

    def render(self, task):  # noqa: D102
        speed = task.finished_speed or task.speed
        return f"{speed:,.0f} msg/s" if speed else "- msg/s"


@contextmanager
def send_progress(console: Console) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar (rate and ETA) when *console* is a terminal, else None."""
    if not console.is_terminal:
        yield None
        return
    columns = (TextColumn("sending"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
               _Rate(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("send", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
