"""The double opt-in mail: the confirmation link, or a notice to an active subscriber.

Both are one-off transactional messages built with :class:`EmailMessage`
(``multipart/alternative``: plain text, then HTML with inlined CSS), sent
through the configured transport and DKIM-signed like the digests. No header
value from outside data ever carries CR or LF.
"""

from __future__ import annotations

import logging
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid, parseaddr

from . import dkim, render, scripts, tokens
from .config import Config
from .errors import DeliveryError
from .message import header_safe
from .models import Subscriber
from .store import utcnow
from .transport import Transport, make_transport

logger = logging.getLogger(__name__)

CONFIRM, ALREADY = "confirm", "already"
_SUBJECTS = {CONFIRM: "请确认订阅{site}电子报", ALREADY: "您已订阅{site}电子报"}
def sender_address(config: Config) -> Address:
    name, addr = parseaddr(header_safe(config.email.from_addr))
    local, _, domain = addr.rpartition("@")
    return Address(display_name=name, username=local, domain=domain)


def links(config: Config, subscriber: Subscriber) -> dict[str, str]:
    """The absolute links a confirmation mail carries, on ``[site].url``."""
    s = tokens.signer(config)
    base = config.site.url
    return dict(
        confirm_url=f"{base}/confirm/{s.make(subscriber.token_key, tokens.CONFIRM)}",
        prefs_url=f"{base}/preferences/{s.make(subscriber.token_key, tokens.PREFERENCES)}",
        unsubscribe_url=f"{base}/unsubscribe/{s.make(subscriber.token_key, tokens.UNSUBSCRIBE)}",
        subscribe_url=f"{base}/subscribe",
    )


def build(config: Config, subscriber: Subscriber, kind: str = CONFIRM,
          now: datetime | None = None) -> bytes:
    """The complete RFC 5322 message for *subscriber* (DKIM-signed when configured)."""
    now = now or utcnow()
    script = subscriber.script
    context = dict(site=config.site, email=subscriber.email, kind=kind,
                   days=tokens.MAX_AGE[tokens.CONFIRM] // 86400, **links(config, subscriber))
    subject = scripts.to_script(_SUBJECTS[kind].format(site=header_safe(config.site.name)), script)
    html = render.render_template(config, f"email/{kind}.html", subject=subject, **context)
    text = render.render_template(config, f"email/{kind}.txt", subject=subject, **context)
    if script != "zh-hans":
        html, text = scripts.convert_html(html, script), scripts.to_script(text, script)
    sender = sender_address(config)
    msg = EmailMessage(policy=SMTP)
    msg["From"] = sender
    try:
        msg["To"] = Address(addr_spec=header_safe(subscriber.email))
    except (ValueError, IndexError) as e:
        raise DeliveryError(f"invalid recipient address {subscriber.email!r}: {e}") from e
    msg["Subject"] = header_safe(subject)
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid(domain=sender.domain or "localhost")
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    msg["MIME-Version"] = "1.0"
    msg.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(render.inline_css(html, config.site.url), subtype="html",
                        charset="utf-8", cte="quoted-printable")
    return dkim.sign(msg.as_bytes(policy=SMTP), config)


def send(config: Config, subscriber: Subscriber, kind: str = CONFIRM, *,
         transport: Transport | None = None, now: datetime | None = None) -> bytes:
    """Build and send one confirmation (or already-subscribed) mail; return its bytes."""
    data = build(config, subscriber, kind, now)
    own = transport is None
    transport = transport or make_transport(config)
    try:
        transport.send(sender_address(config).addr_spec, [subscriber.email], data)
    finally:
        if own:
            transport.close()
    logger.info("sent %s mail to subscriber %s", kind, subscriber.id)
    return data
