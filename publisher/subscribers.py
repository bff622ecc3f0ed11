"""Subscribers: add, remove, list, CSV import/export, suppression and consent.

CSV columns (contract): ``email,name,frequency,categories,script,status``;
categories separated by ``;``. Addresses are checked with email-validator
(syntax only, no DNS). A bad row is reported with its line number and reason
while the good rows are imported; importing the same file twice changes nothing.
The suppression list always wins over an import.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, func, insert, select, update

from .config import SCRIPTS
from .errors import UsageError
from .models import Subscriber
from .schema import subscribers, suppressions
from .store import Store, utcnow
from .tokens import new_token_key

logger = logging.getLogger(__name__)

CSV_COLUMNS = ("email", "name", "frequency", "categories", "script", "status")
FREQUENCIES = ("daily", "weekly")
STATUSES = ("pending", "active", "unsubscribed", "bounced", "complained")


class InvalidRow(ValueError):
    pass


@dataclass
class ImportReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    suppressed: int = 0
    errors: list[str] = field(default_factory=list)


def normalize_email(address: str) -> str:
    """The address checked (syntax only) and normalized; raises InvalidRow."""
    address = (address or "").strip()
    if any(c in address for c in "\r\n\x00"):
        raise InvalidRow("address contains a line break")
    try:
        info = validate_email(address, check_deliverability=False)
    except EmailNotValidError as e:
        raise InvalidRow(f"invalid address {address!r}: {e}") from None
    local, _, domain = info.normalized.rpartition("@")
    return f"{local}@{domain.lower()}"


def parse_categories(value: str) -> tuple[str, ...]:
    return tuple(sorted({c.strip() for c in (value or "").split(";") if c.strip()}))


def check_fields(frequency: str, script: str, status: str = "active") -> None:
    if frequency not in FREQUENCIES:
        raise InvalidRow(f"frequency must be daily or weekly (got {frequency!r})")
    if script not in SCRIPTS:
        raise InvalidRow(f"script must be zh-hans or zh-hant (got {script!r})")
    if status not in STATUSES:
        raise InvalidRow(f"status must be one of {', '.join(STATUSES)} (got {status!r})")


def _row_to_subscriber(row) -> Subscriber:
    return Subscriber(id=row.id, email=row.email, name=row.name, frequency=row.frequency,
                      categories=parse_categories(row.categories), script=row.script,
                      status=row.status, token_key=row.token_key)


def get_by_email(store: Store, email: str) -> Subscriber | None:
    with store.engine.connect() as conn:
        row = conn.execute(select(subscribers).where(subscribers.c.email == email)).first()
    return _row_to_subscriber(row) if row else None


def get_by_token_key(store: Store, token_key: str) -> Subscriber | None:
    with store.engine.connect() as conn:
        row = conn.execute(select(subscribers).where(subscribers.c.token_key == token_key)).first()
    return _row_to_subscriber(row) if row else None


def is_suppressed(conn, email: str) -> bool:
    return conn.execute(select(suppressions.c.email).where(suppressions.c.email == email)).first() \
        is not None


def upsert(store: Store, email: str, *, name: str = "", frequency: str = "daily",
           categories: tuple[str, ...] = (), script: str = "zh-hans", status: str = "active",
           method: str = "cli", ip: str = "", now: datetime | None = None) -> str:
    """Add or update one subscriber; return added / updated / unchanged / suppressed."""
    now = now or utcnow()
    email = normalize_email(email)
    check_fields(frequency, script, status)
    name = " ".join((name or "").split())
    cats = ";".join(categories)
    with store.engine.begin() as conn:
        if is_suppressed(conn, email) and status in ("active", "pending"):
            return "suppressed"
        row = conn.execute(select(subscribers).where(subscribers.c.email == email)).first()
        if row is None:
            conn.execute(insert(subscribers).values(
                email=email, name=name, frequency=frequency, categories=cats, script=script,
                status=status, token_key=new_token_key(), created_at=now, consent_method=method,
                consent_ip=ip, consent_at=now,
                confirmed_at=now if status == "active" else None, soft_bounces=0, updated_at=now))
            return "added"
        new = dict(name=name, frequency=frequency, categories=cats, script=script, status=status)
        if all(getattr(row, k) == v for k, v in new.items()):
            return "unchanged"
        conn.execute(update(subscribers).where(subscribers.c.id == row.id)
                     .values(**new, updated_at=now))
        return "updated"


def remove(store: Store, email: str, *, reason: str = "unsubscribed",
           now: datetime | None = None) -> bool:
    """Unsubscribe an address and add it to the suppression list. False if unknown."""
    now = now or utcnow()
    email = normalize_email(email)
    with store.engine.begin() as conn:
        n = conn.execute(update(subscribers).where(subscribers.c.email == email).values(
            status=reason if reason in STATUSES else "unsubscribed", unsubscribed_at=now,
            updated_at=now)).rowcount
        suppress(conn, email, reason, now=now)
    return bool(n)


def suppress(conn, email: str, reason: str, detail: str = "", now: datetime | None = None) -> None:
    if not is_suppressed(conn, email):
        conn.execute(insert(suppressions).values(email=email, reason=reason, detail=detail,
                                                 created_at=now or utcnow()))


def list_subscribers(store: Store, status: str | None = None) -> list[Subscriber]:
    q = select(subscribers).order_by(subscribers.c.email)
    if status:
        q = q.where(subscribers.c.status == status)
    with store.engine.connect() as conn:
        return [_row_to_subscriber(r) for r in conn.execute(q)]


def count(store: Store) -> dict[str, int]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(subscribers.c.status, func.count()).group_by(subscribers.c.status))
        return {r[0]: r[1] for r in rows}


def import_csv(store: Store, path: Path, *, method: str = "import") -> ImportReport:
    """Import subscribers from a CSV file; bad rows are reported, good rows kept."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror}") from e
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: not UTF-8 (byte {e.start})") from e
    return import_rows(store, io.StringIO(text), str(path), method=method)


def import_rows(store: Store, stream, name: str, *, method: str = "import") -> ImportReport:
    reader = csv.DictReader(stream)
    header = [h.strip() for h in (reader.fieldnames or [])]
    if "email" not in header:
        raise UsageError(f"{name}: line 1: header must include 'email' "
                         f"(expected {','.join(CSV_COLUMNS)})")
    report = ImportReport()
    for row in reader:
        line = reader.line_num
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k}
        try:
            outcome = upsert(store, row.get("email", ""), name=row.get("name", ""),
                             frequency=row.get("frequency") or "daily",
                             categories=parse_categories(row.get("categories", "")),
                             script=row.get("script") or "zh-hans",
                             status=row.get("status") or "active", method=method)
        except InvalidRow as e:
            report.errors.append(f"{name}: line {line}: {e}")
            continue
        setattr(report, outcome, getattr(report, outcome) + 1)
    return report


def export_csv(store: Store, stream) -> int:
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    n = 0
    for s in list_subscribers(store):
        writer.writerow([s.email, s.name, s.frequency, ";".join(s.categories), s.script, s.status])
        n += 1
    return n


def delete_all(store: Store) -> None:
    """Remove every subscriber (tests and demos only)."""
    with store.engine.begin() as conn:
        conn.execute(delete(subscribers))
