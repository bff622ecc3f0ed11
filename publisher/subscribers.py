"""Subscribers: add, remove, list, CSV import/export, suppression and consent.

CSV columns (contract): ``email,name,frequency,categories,script,status``;
categories separated by ``;``. Addresses are checked with email-validator
(syntax only, no DNS). A bad row is reported with its line number and reason
while the good rows are imported; importing the same file twice changes nothing.

The suppression list (unsubscribed, bounced, complained, manual) always wins
over an import or the CLI: a suppressed address is never made active again
except by its owner, through the web double opt-in (subscribe, then follow the
confirmation link).

Consent record: ``consent_method``/``consent_at``/``consent_ip``/``consent_detail``
say how and when an address was subscribed (web form, import file and line,
CLI); ``confirm_method``/``confirmed_at``/``confirm_ip`` how and when it was
confirmed (the web confirmation link, or the operator's import/CLI).
"""

from __future__ import annotations

import csv
import io
import logging
import re
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
SUPPRESSED_STATUSES = ("unsubscribed", "bounced", "complained")
# Suppressions its owner may lift by subscribing again through the double opt-in.
OWNER_LIFTABLE = ("unsubscribed", "bounced")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


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
    if not address:
        raise InvalidRow("address is empty")
    try:
        info = validate_email(address, check_deliverability=False)
    except EmailNotValidError as e:
        raise InvalidRow(f"invalid address {address!r}: {e}") from None
    local, _, domain = info.normalized.rpartition("@")
    return f"{local}@{domain.lower()}"


def clean_text(value: str, limit: int = 255) -> str:
    """Outside text made safe for headers and CSV: no control characters, one-line."""
    return " ".join(_CONTROL.sub(" ", value or "").split())[:limit]


def parse_categories(value: str) -> tuple[str, ...]:
    parts = (clean_text(c, 100) for c in (value or "").split(";"))
    return tuple(sorted({c for c in parts if c}))


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


def consent_record(store: Store, email: str) -> dict | None:
    """How and when *email* subscribed and confirmed (None if unknown)."""
    cols = ("email", "status", "consent_method", "consent_at", "consent_ip", "consent_detail",
            "confirm_method", "confirmed_at", "confirm_ip", "confirmation_sent_at",
            "unsubscribed_at")
    with store.engine.connect() as conn:
        row = conn.execute(select(*(subscribers.c[c] for c in cols))
                           .where(subscribers.c.email == email)).first()
    return dict(row._mapping) if row else None


def suppression_reason(conn, email: str) -> str | None:
    return conn.execute(select(suppressions.c.reason)
                        .where(suppressions.c.email == email)).scalar()


def is_suppressed(conn, email: str) -> bool:
    return suppression_reason(conn, email) is not None


def upsert(store: Store, email: str, *, name: str = "", frequency: str = "daily",
           categories: tuple[str, ...] = (), script: str = "zh-hans", status: str = "active",
           method: str = "cli", ip: str = "", detail: str = "",
           now: datetime | None = None) -> str:
    """Add or update one subscriber as the operator (import, CLI).

    Returns added / updated / unchanged / suppressed. A suppressed address is
    never made pending or active; an unsubscribed/bounced/complained status
    puts the address on the suppression list.
    """
    now = now or utcnow()
    email = normalize_email(email)
    check_fields(frequency, script, status)
    new = dict(name=clean_text(name), frequency=frequency, categories=";".join(categories),
               script=script, status=status)
    with store.engine.begin() as conn:
        if status in ("active", "pending") and is_suppressed(conn, email):
            return "suppressed"
        row = conn.execute(select(subscribers).where(subscribers.c.email == email)).first()
        if status in SUPPRESSED_STATUSES:
            suppress(conn, email, status, f"{method}: {detail}".strip(": "), now=now)
        if row is None:
            conn.execute(insert(subscribers).values(
                **new, email=email, token_key=new_token_key(), created_at=now,
                consent_method=method, consent_ip=ip, consent_at=now, consent_detail=detail,
                soft_bounces=0, updated_at=now, **_status_change(status, method, now)))
            return "added"
        if all(getattr(row, k) == v for k, v in new.items()):
            return "unchanged"
        extra = _status_change(status, method, now) if status != row.status else {}
        conn.execute(update(subscribers).where(subscribers.c.id == row.id)
                     .values(**new, **extra, updated_at=now))
        return "updated"


def _status_change(status: str, method: str, now: datetime) -> dict:
    if status == "active":
        return dict(confirmed_at=now, confirm_method=method)
    if status in SUPPRESSED_STATUSES:
        return dict(unsubscribed_at=now)
    return {}


def request_subscription(store: Store, email: str, *, frequency: str = "daily",
                         categories: tuple[str, ...] = (), script: str = "zh-hans",
                         ip: str = "", detail: str = "web form",
                         now: datetime | None = None) -> tuple[Subscriber | None, str]:
    """A subscription asked for on the web (double opt-in, step one).

    Returns the subscriber and what to mail them: ``"confirm"`` (a confirmation
    link; the address stays pending until it is followed), ``"already"`` (it is
    active: a harmless notice with its preferences link) or ``"none"`` (the
    address complained or was blocked by the operator: nothing is sent).
    The caller shows the same page in every case.
    """
    now = now or utcnow()
    email = normalize_email(email)
    check_fields(frequency, script, "pending")
    prefs = dict(frequency=frequency, categories=";".join(categories), script=script)
    consent = dict(consent_method="web", consent_at=now, consent_ip=clean_text(ip, 64),
                   consent_detail=clean_text(detail), updated_at=now)
    with store.engine.begin() as conn:
        reason = suppression_reason(conn, email)
        row = conn.execute(select(subscribers).where(subscribers.c.email == email)).first()
        if reason is not None and reason not in OWNER_LIFTABLE:
            return (_row_to_subscriber(row) if row else None), "none"
        if row is not None and row.status == "complained":
            return _row_to_subscriber(row), "none"
        if row is not None and row.status == "active" and reason is None:
            return _row_to_subscriber(row), "already"
        if row is None:
            conn.execute(insert(subscribers).values(
                email=email, name="", status="pending", token_key=new_token_key(),
                created_at=now, soft_bounces=0, **prefs, **consent))
        else:
            conn.execute(update(subscribers).where(subscribers.c.id == row.id)
                         .values(status="pending", **prefs, **consent))
        row = conn.execute(select(subscribers).where(subscribers.c.email == email)).first()
    return _row_to_subscriber(row), "confirm"


def mark_confirmation_sent(store: Store, subscriber_id: int, now: datetime | None = None) -> None:
    with store.engine.begin() as conn:
        conn.execute(update(subscribers).where(subscribers.c.id == subscriber_id)
                     .values(confirmation_sent_at=now or utcnow()))


def confirm(store: Store, token_key: str, *, ip: str = "",
            now: datetime | None = None) -> tuple[Subscriber | None, str]:
    """Double opt-in, step two: a pending address becomes active.

    Returns (subscriber, outcome): ``confirmed``, ``already`` (it was active),
    ``gone`` (it left or was suppressed since) or ``unknown``.
    """
    now = now or utcnow()
    with store.engine.begin() as conn:
        row = conn.execute(select(subscribers)
                           .where(subscribers.c.token_key == token_key)).first()
        if row is None:
            return None, "unknown"
        if row.status == "active":
            return _row_to_subscriber(row), "already"
        reason = suppression_reason(conn, row.email)
        if row.status != "pending" or (reason is not None and reason not in OWNER_LIFTABLE):
            return _row_to_subscriber(row), "gone"
        if reason is not None:  # the owner came back through the double opt-in
            conn.execute(delete(suppressions).where(suppressions.c.email == row.email))
        conn.execute(update(subscribers).where(subscribers.c.id == row.id).values(
            status="active", confirmed_at=now, confirm_method="web",
            confirm_ip=clean_text(ip, 64), unsubscribed_at=None, soft_bounces=0, updated_at=now))
        row = conn.execute(select(subscribers).where(subscribers.c.id == row.id)).first()
    logger.info("subscriber %s confirmed", row.id)
    return _row_to_subscriber(row), "confirmed"


def update_preferences(store: Store, token_key: str, *, frequency: str,
                       categories: tuple[str, ...], script: str,
                       now: datetime | None = None) -> Subscriber | None:
    """Save a subscriber's choices; None when the token's subscriber is gone."""
    check_fields(frequency, script)
    with store.engine.begin() as conn:
        n = conn.execute(update(subscribers).where(subscribers.c.token_key == token_key).values(
            frequency=frequency, categories=";".join(sorted(set(categories))), script=script,
            updated_at=now or utcnow())).rowcount
    return get_by_token_key(store, token_key) if n else None


def unsubscribe(store: Store, token_key: str, *, method: str = "web",
                now: datetime | None = None) -> Subscriber | None:
    """Unsubscribe the token's subscriber and suppress the address (idempotent)."""
    with store.engine.begin() as conn:
        return unsubscribe_in(conn, token_key, method=method, now=now)


def unsubscribe_in(conn, token_key: str, *, method: str,
                   now: datetime | None = None) -> Subscriber | None:
    """:func:`unsubscribe` inside the caller's transaction."""
    now = now or utcnow()
    row = conn.execute(select(subscribers).where(subscribers.c.token_key == token_key)).first()
    if row is None:
        return None
    if row.status in ("active", "pending"):
        conn.execute(update(subscribers).where(subscribers.c.id == row.id).values(
            status="unsubscribed", unsubscribed_at=now, updated_at=now))
    suppress(conn, row.email, "unsubscribed", method, now=now)
    logger.info("subscriber %s unsubscribed (%s)", row.id, method)
    return _row_to_subscriber(row)


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
    return import_rows(store, io.StringIO(text, newline=""), str(path), method=method)


def import_rows(store: Store, stream, name: str, *, method: str = "import") -> ImportReport:
    """Import CSV rows from *stream*; every bad row is named as ``name: line N: reason``."""
    reader = csv.DictReader(stream)
    header = [(h or "").strip().lower() for h in (reader.fieldnames or [])]
    if "email" not in header:
        raise UsageError(f"{name}: line 1: header must include 'email' "
                         f"(expected {','.join(CSV_COLUMNS)})")
    reader.fieldnames = header
    report, seen, end = ImportReport(), {}, reader.line_num
    for raw in reader:
        line, end = end + 1, reader.line_num
        try:
            email, fields = _parse_row(raw, len(header))
            if email in seen:
                raise InvalidRow(f"duplicate of line {seen[email]} ({email})")
            seen[email] = line
            outcome = upsert(store, email, **fields, method=method, detail=f"{name}:{line}")
        except InvalidRow as e:
            report.errors.append(f"{name}: line {line}: {e}")
            continue
        setattr(report, outcome, getattr(report, outcome) + 1)
    return report


def _parse_row(raw: dict, width: int) -> tuple[str, dict]:
    if raw.get(None):
        raise InvalidRow(f"{width + len(raw[None])} fields, expected {width}")
    row = {k: (v or "").strip() for k, v in raw.items() if k}
    email = normalize_email(row.get("email", ""))
    return email, dict(name=row.get("name", ""), frequency=row.get("frequency") or "daily",
                       categories=parse_categories(row.get("categories", "")),
                       script=row.get("script") or "zh-hans",
                       status=row.get("status") or "active")


def export_csv(store: Store, stream) -> int:
    """Write every subscriber, and every suppressed address, as CSV; return the row count.

    The status written is the effective one: a suppressed address shows its
    suppression reason, so that importing the export keeps it suppressed.
    """
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    with store.engine.connect() as conn:
        reasons = {r.email: r.reason for r in conn.execute(select(suppressions))}
    n = 0
    for s in list_subscribers(store):
        status = s.status
        if status in ("active", "pending") and s.email in reasons:
            status = _status_for(reasons[s.email])
        reasons.pop(s.email, None)
        writer.writerow([s.email, s.name, s.frequency, ";".join(s.categories), s.script, status])
        n += 1
    for email, reason in sorted(reasons.items()):
        writer.writerow([email, "", "daily", "", "zh-hans", _status_for(reason)])
        n += 1
    return n


def _status_for(reason: str) -> str:
    return reason if reason in SUPPRESSED_STATUSES else "unsubscribed"


def delete_all(store: Store) -> None:
    """Remove every subscriber (tests and demos only)."""
    with store.engine.begin() as conn:
        conn.execute(delete(subscribers))
