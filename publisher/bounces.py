"""Bounces and complaints: what an SMTP reply or a report means for a subscriber.

Rules (shared by the send path and ``publisher bounces process``):

- 5.1.x (bad address) and 5.2.1 (mailbox disabled) are **hard bounces**: the
  address is suppressed at once and the subscriber marked ``bounced``.
- 5.7.x (and 4.7.x) are **policy** rejections: the sender's problem (content,
  reputation, authentication); reported, never held against the subscriber.
- Any other failure that reached the recipient's mailbox (a 4xx that outlived
  the retry deadline, 5.2.2 mailbox full, an unclassified 5xx, a DSN with
  ``Action: failed``) is a **soft bounce**; three in a row suppress the address.
  A delivery the server accepted resets the count.
- An ARF complaint (RFC 5965) unsubscribes the address at once.

Reports are read from a Maildir or an mbox; DSNs per RFC 3464, ARF per RFC 5965.
Each report is processed once (its digest is remembered in ``kv``), so running
the command twice over the same mailbox changes nothing.
"""

from __future__ import annotations

import hashlib
import logging
import mailbox
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes
from email.message import EmailMessage, Message
from email.policy import default
from email.utils import getaddresses, parseaddr
from pathlib import Path

from sqlalchemy import insert, select, update

from . import subscribers as subs
from . import tokens
from .config import Config
from .errors import UsageError
from .schema import kv, subscribers
from .store import Store, utcnow

logger = logging.getLogger(__name__)

HARD, SOFT, POLICY, TRANSIENT = "hard", "soft", "policy", "transient"
SOFT_BOUNCE_LIMIT = 3
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


def classify(code: int | None, enhanced: str | None) -> str:
    """HARD, POLICY, SOFT (permanent but not the address's fault) or TRANSIENT (retry)."""
    if enhanced:
        cls, subject, detail = (int(x) for x in enhanced.split("."))
        if subject == 7:
            return POLICY
        if cls == 5 and (subject == 1 or (subject, detail) == (2, 1)):
            return HARD
        if cls == 4:
            return TRANSIENT
        if cls == 5:
            return SOFT
    if code is None or 400 <= code < 500:
        return TRANSIENT
    return SOFT if code >= 500 else TRANSIENT


def enhanced_in(text: str) -> str | None:
    """The first RFC 3463 status code in *text*, e.g. '5.1.1'."""
    m = _STATUS.search(text or "")
    return ".".join(m.groups()) if m else None


# -- what happens to the subscriber ---------------------------------------------

def hard_bounce(conn, email: str, detail: str, now: datetime | None = None) -> bool:
    """Suppress *email* and mark its subscriber bounced; True if it was not suppressed yet."""
    now = now or utcnow()
    fresh = not subs.is_suppressed(conn, email)
    subs.suppress(conn, email, "bounced", detail[:500], now=now)
    conn.execute(update(subscribers).where(subscribers.c.email == email,
                                           subscribers.c.status.in_(("active", "pending")))
                 .values(status="bounced", updated_at=now))
    return fresh


def soft_bounce(conn, email: str, detail: str, now: datetime | None = None) -> bool:
    """Count a soft bounce; the third in a row suppresses. True if this one suppressed."""
    now = now or utcnow()
    conn.execute(update(subscribers).where(subscribers.c.email == email)
                 .values(soft_bounces=subscribers.c.soft_bounces + 1, updated_at=now))
    n = conn.execute(select(subscribers.c.soft_bounces)
                     .where(subscribers.c.email == email)).scalar()
    if n is not None and n >= SOFT_BOUNCE_LIMIT:
        return hard_bounce(conn, email, f"{n} soft bounces in a row; last: {detail}", now)
    return False


def complaint(conn, email: str, detail: str, now: datetime | None = None) -> bool:
    """Unsubscribe at once after a complaint; True if it was not suppressed yet."""
    now = now or utcnow()
    fresh = not subs.is_suppressed(conn, email)
    conn.execute(update(subscribers).where(subscribers.c.email == email)
                 .values(status="complained", unsubscribed_at=now, updated_at=now))
    subs.suppress(conn, email, "complained", detail[:500], now=now)
    return fresh


# -- reading reports --------------------------------------------------------------

@dataclass
class BounceEvent:
    kind: str  # HARD | SOFT | POLICY | TRANSIENT | "complaint" | "delayed"
    email: str
    status: str = ""
    detail: str = ""


@dataclass
class BounceReport:
    counts: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        c = self.counts
        return (f"bounces: {c['messages']} reports read, {c['hard']} hard bounces, "
                f"{c['soft']} soft bounces, {c['complaint']} complaints, "
                f"{c['policy']} policy rejections, {c['delayed']} delays, "
                f"{c['suppressed']} addresses suppressed, {c['unsubscribed']} unsubscribed by mail, "
                f"{c['seen']} already processed, "
                f"{c['unrecognized']} not a bounce or complaint")


def events_from(msg: Message) -> list[BounceEvent]:
    """The bounce or complaint events a message carries (empty if it is neither)."""
    if msg.get_content_type() != "multipart/report":
        return []
    report_type = (msg.get_param("report-type") or "").lower()
    if report_type == "delivery-status":
        return _dsn_events(msg)
    if report_type == "feedback-report":
        return _arf_events(msg)
    return []


def _dsn_events(msg: Message) -> list[BounceEvent]:
    events = []
    for part in msg.walk():
        if part.get_content_type() not in ("message/delivery-status",
                                           "message/global-delivery-status"):
            continue
        for block in _status_blocks(part)[1:]:  # the first block is per-message
            event = _dsn_recipient(block)
            if event:
                events.append(event)
    return events


def _status_blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    text = payload if isinstance(payload, str) else ""
    blocks = re.split(r"\r?\n\s*\r?\n", text.strip())
    return [message_from_bytes(b.encode("utf-8", "replace") + b"\n", policy=default)
            for b in blocks]


def _dsn_recipient(block: Message) -> BounceEvent | None:
    rcpt = _typed_address(block.get("Final-Recipient") or block.get("Original-Recipient"))
    action = str(block.get("Action", "")).strip().lower()
    if not rcpt or action not in ("failed", "delayed"):
        return None
    diagnostic = " ".join(str(block.get("Diagnostic-Code", "")).split())
    status = enhanced_in(str(block.get("Status", ""))) or enhanced_in(diagnostic) or ""
    if action == "delayed":
        return BounceEvent("delayed", rcpt, status, diagnostic)
    kind = classify(500 if status.startswith("5") or not status else 400, status or None)
    return BounceEvent(SOFT if kind == TRANSIENT else kind, rcpt, status, diagnostic)


def _typed_address(value) -> str:
    """'rfc822; user@example.com' -> 'user@example.com'."""
    text = " ".join(str(value or "").split())
    if ";" in text:
        kind, _, text = text.partition(";")
        if kind.strip().lower() not in ("rfc822", "utf-8"):
            return ""
    return parseaddr(text.strip())[1].strip().lower()


def _arf_events(msg: Message) -> list[BounceEvent]:
    feedback, original = None, None
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/feedback-report" and feedback is None:
            blocks = _status_blocks(part)
            feedback = blocks[0] if blocks else None
        elif ctype in ("message/rfc822", "text/rfc822-headers") and original is None:
            original = _original(part)
    if feedback is None:
        return []
    kind = str(feedback.get("Feedback-Type", "abuse")).strip().lower()
    rcpts = [_typed_address(v) for v in feedback.get_all("Original-Rcpt-To") or []]
    if not any(rcpts) and original is not None:
        rcpts = [a.lower() for _, a in getaddresses(original.get_all("To") or []) if a]
    detail = f"ARF {kind} from {feedback.get('Reporting-MTA') or feedback.get('User-Agent') or ''}"
    return [BounceEvent("complaint", r, "", detail.strip()) for r in rcpts if r]


def _original(part: Message) -> Message | None:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    if isinstance(payload, str):
        return message_from_bytes(payload.encode("utf-8", "replace"), policy=default)
    return None


# -- applying them ------------------------------------------------------------------

def process_path(config: Config, store: Store, path: Path) -> BounceReport:
    """Read every report (and mailto unsubscribe request) in the Maildir or mbox at *path*."""
    report = BounceReport()
    signer = tokens.signer(config)
    for raw in iter_messages(Path(path)):
        report.counts["messages"] += 1
        try:
            process_message(store, raw, report, signer)
        except (ValueError, LookupError, TypeError) as e:  # a malformed report: skip it
            report.counts["unrecognized"] += 1
            report.errors.append(f"unreadable report: {e}")
            logger.warning("unreadable report in %s: %s", path, e)
    return report


def iter_messages(path: Path):
    """Raw messages from a Maildir (new/ and cur/) or an mbox file."""
    if path.is_dir():
        if not (path / "cur").is_dir() and not (path / "new").is_dir():
            raise UsageError(f"{path}: not a Maildir (no cur/ or new/)")
        box = mailbox.Maildir(path, factory=None, create=False)
    elif path.is_file():
        box = mailbox.mbox(path, factory=None, create=False)
    else:
        raise UsageError(f"{path}: no such Maildir or mbox")
    try:
        for key in box.iterkeys():
            yield box.get_bytes(key)
    finally:
        box.close()


def process_message(store: Store, raw: bytes, report: BounceReport,
                    signer: tokens.Signer | None = None) -> None:
    key = "bounce:" + hashlib.sha256(raw).hexdigest()
    with store.engine.begin() as conn:
        if conn.execute(select(kv.c.key).where(kv.c.key == key)).first():
            report.counts["seen"] += 1
            return
        msg = message_from_bytes(raw, _class=EmailMessage, policy=default)
        events = events_from(msg)
        mailto = not events and signer is not None and mailto_unsubscribe(conn, msg, signer,
                                                                            report)
        if not events and not mailto:
            report.counts["unrecognized"] += 1
        for event in events:
            apply_event(conn, event, report)
        conn.execute(insert(kv).values(key=key, value=utcnow().isoformat(), flag=True))


_UNSUBSCRIBE_SUBJECT = re.compile(r"\bunsubscribe-([A-Za-z0-9_.-]{20,})")


def mailto_unsubscribe(conn, msg: Message, signer: tokens.Signer,
                       report: BounceReport) -> bool:
    """Honour a ``List-Unsubscribe`` mailto request (subject ``unsubscribe-TOKEN``).

    Returns True when the message was such a request, valid or not.
    """
    m = _UNSUBSCRIBE_SUBJECT.search(str(msg.get("Subject", "")))
    if not m:
        return False
    try:
        token_key = signer.load(m.group(1), tokens.UNSUBSCRIBE)
    except tokens.BadToken as e:
        report.counts["bad_unsubscribe"] += 1
        report.errors.append(f"unsubscribe request with a {e} token ignored")
        return True
    if subs.unsubscribe_in(conn, token_key, method="mailto") is not None:
        report.counts["unsubscribed"] += 1
    return True


def apply_event(conn, event: BounceEvent, report: BounceReport) -> None:
    report.counts[event.kind] += 1
    detail = f"{event.status} {event.detail}".strip()
    suppressed = False
    if event.kind == "complaint":
        suppressed = complaint(conn, event.email, detail)
    elif event.kind == HARD:
        suppressed = hard_bounce(conn, event.email, detail)
    elif event.kind == SOFT:
        suppressed = soft_bounce(conn, event.email, detail)
    elif event.kind == POLICY:
        logger.warning("policy rejection reported for %s: %s", event.email, detail)
    if suppressed:
        report.counts["suppressed"] += 1
    logger.info("%s: %s %s", event.email, event.kind, detail)
