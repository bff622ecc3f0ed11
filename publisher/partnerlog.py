"""The syndication audit log (append-only) and the ``publisher partners`` reports.

Every attempt to deliver, every acknowledgement, dead letter and withdrawal is
one ``audit_log`` row: partner, article, version, event, terms version, time,
response status and a short detail. Rows are only ever inserted (the 0006
migration adds triggers that refuse UPDATE and DELETE).
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import func, insert, select

from .config import Config
from .errors import ConfigError
from .schema import audit_log, deliveries
from .store import Store

CSV_HEADER = ("time", "partner", "article_id", "version", "event", "terms_version",
              "response_status", "detail")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def audit(conn, at: datetime, config: Config, *, partner: str, article_id: str,
          version: int | None, event: str, response_status: int | None = None,
          detail: str = "") -> None:
    """Append one row to the audit log (inside the caller's transaction)."""
    conn.execute(insert(audit_log).values(
        at=at, partner=partner, article_id=article_id, version=version, event=event,
        terms_version=config.rights.terms_version, response_status=response_status,
        detail=(detail or "")[:2000]))


def audit_rows(store: Store, partner: str | None = None, article_id: str | None = None) -> list:
    """Audit rows, oldest first (``partner=""`` holds the site-wide ``withdraw`` rows)."""
    q = select(audit_log).order_by(audit_log.c.at, audit_log.c.id)
    if partner is not None:
        q = q.where(audit_log.c.partner == partner)
    if article_id is not None:
        q = q.where(audit_log.c.article_id == article_id)
    with store.engine.connect() as conn:
        return conn.execute(q).all()


def delivery_counts(store: Store) -> dict[str, dict[str, int]]:
    q = (select(deliveries.c.partner, deliveries.c.status, func.count())
         .group_by(deliveries.c.partner, deliveries.c.status))
    counts: dict[str, dict[str, int]] = {}
    with store.engine.connect() as conn:
        for partner, status, n in conn.execute(q):
            counts.setdefault(partner, {})[status] = n
    return counts


def open_deliveries(store: Store, partner: str) -> list:
    """Pending and dead deliveries of *partner*: what needs an operator's eye."""
    d = deliveries.c
    q = (select(deliveries).where(d.partner == partner, d.status.in_(("pending", "dead")))
         .order_by(d.id))
    with store.engine.connect() as conn:
        return conn.execute(q).all()


def print_partners(config: Config, store: Store, console: Console) -> None:
    """``publisher partners list``: who gets what, how, and where deliveries stand."""
    counts = delivery_counts(store)
    table = Table(title=f"partners · 授权条款 {config.rights.terms_version}")
    table.add_column("name", no_wrap=True)
    for col in ("delivery", "licence", "secret", "deliveries"):
        table.add_column(col, overflow="fold")
    for p in config.partners:
        c = counts.get(p.name, {})
        endpoint = f"/partners/{p.name}/atom.xml" if p.delivery == "feed" else p.url
        secret = "—" if not p.secret_env else ("set" if p.secret else f"${p.secret_env} unset")
        licence = (f"{'、'.join(p.categories) or 'all categories'}; "
                   f"{'full text' if p.full_text else 'summary + link'}; reprints {p.reprints}"
                   + (f"; embargo {p.embargo_minutes} min" if p.embargo_minutes else ""))
        table.add_row(p.name, f"{p.delivery} {endpoint}", licence, secret,
                      f"{c.get('delivered', 0)} delivered, {c.get('pending', 0)} pending, "
                      f"{c.get('dead', 0)} dead")
    if not config.partners:
        console.print("no [[partners]] configured", markup=False)
        return
    console.print(table)


def print_report(config: Config, store: Store, name: str, console: Console, *,
                 as_csv: bool = False) -> None:
    """``publisher partners report NAME [--csv]``: the partner's audit log."""
    rows = audit_rows(store, name)
    if not rows and name not in {p.name for p in config.partners}:
        config.partner(name)  # raises ConfigError naming the known partners
        raise ConfigError(f"no partner named {name!r}")  # pragma: no cover
    if as_csv:
        console.file.write(to_csv(rows))
        console.file.flush()
        return
    tz = config.site.timezone
    table = Table(title=f"{name}: audit log")
    for col in ("time", "article", "version", "event", "terms", "status", "detail"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r.at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S"), r.article_id,
                      "" if r.version is None else str(r.version), r.event, r.terms_version,
                      "" if r.response_status is None else str(r.response_status), r.detail)
    console.print(table)
    _print_open(store, name, console, tz)


def _print_open(store: Store, name: str, console: Console, tz) -> None:
    pending = open_deliveries(store, name)
    if not pending:
        console.print("nothing pending, nothing dead", markup=False)
        return
    table = Table(title=f"{name}: pending and dead deliveries")
    for col in ("article", "version", "event", "status", "attempts", "next attempt", "last error"):
        table.add_column(col, overflow="fold")
    for d in pending:
        nxt = d.next_attempt_at.astimezone(tz).strftime("%Y-%m-%d %H:%M") \
            if d.next_attempt_at and d.status == "pending" else ""
        table.add_row(d.article_id, str(d.version), d.event, d.status, str(d.attempts), nxt,
                      d.last_error or "")
    console.print(table)


def _cell(value: Any) -> str:
    """A CSV cell; text that a spreadsheet would run as a formula is quoted with '."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def to_csv(rows: list) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for r in rows:
        writer.writerow([r.at.isoformat(), _cell(r.partner), _cell(r.article_id),
                         "" if r.version is None else r.version, r.event, _cell(r.terms_version),
                         "" if r.response_status is None else r.response_status,
                         _cell(r.detail)])
    return buf.getvalue()
