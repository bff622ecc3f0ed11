"""Build RFC 5322 digest messages.

A :class:`MessageFactory` is made once per rendered variant; :meth:`build`
fills in the per-recipient parts (address, Message-ID, unsubscribe links).
Header values from data never carry CR or LF.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid, parseaddr
from datetime import datetime

from .config import Config
from .errors import DeliveryError
from .render import PREFS_URL, RECIPIENT, UNSUB_URL, RenderedDigest

logger = logging.getLogger(__name__)

_CRLF = re.compile(r"[\r\n\x00]+")


def header_safe(value: str) -> str:
    """A header value with every CR, LF and NUL folded into a space."""
    return _CRLF.sub(" ", value).strip()


def sender_domain(config: Config) -> str:
    _, addr = parseaddr(config.email.from_addr)
    return addr.rsplit("@", 1)[-1].lower() if "@" in addr else "localhost"


def list_id(config: Config, name: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "digest"
    return f"{header_safe(config.site.name)} {header_safe(name)} <{slug}.{sender_domain(config)}>"


@dataclass(frozen=True)
class Recipient:
    email: str
    name: str
    prefs_url: str
    unsubscribe_url: str
    unsubscribe_mailto: str


class MessageFactory:
    """Per-variant message builder; :meth:`build` returns the bytes for one recipient."""

    def __init__(self, config: Config, rendered: RenderedDigest, list_name: str, date: datetime):
        self.config = config
        self.rendered = rendered
        self.list_id = list_id(config, list_name)
        self.domain = sender_domain(config)
        self.date = format_datetime(date)
        self.subject = header_safe(rendered.subject)

    def build(self, r: Recipient) -> bytes:
        msg = EmailMessage(policy=SMTP)
        msg["From"] = header_safe(self.config.email.from_addr)
        try:
            msg["To"] = Address(display_name=header_safe(r.name), addr_spec=header_safe(r.email))
        except (ValueError, IndexError) as e:
            raise DeliveryError(f"invalid recipient address {r.email!r}: {e}") from e
        msg["Subject"] = self.subject
        msg["Date"] = self.date
        msg["Message-ID"] = make_msgid(domain=self.domain)
        msg["List-Id"] = self.list_id
        msg["List-Unsubscribe"] = f"<{r.unsubscribe_url}>, <{r.unsubscribe_mailto}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        if self.config.email.reply_to:
            msg["Reply-To"] = header_safe(self.config.email.reply_to)
        msg["MIME-Version"] = "1.0"
        text = self._fill(self.rendered.text, r)
        html = self._fill(self.rendered.html, r)
        msg.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
        msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
        return msg.as_bytes(policy=SMTP)

    @staticmethod
    def _fill(body: str, r: Recipient) -> str:
        return (body.replace(PREFS_URL, r.prefs_url).replace(UNSUB_URL, r.unsubscribe_url)
                .replace(RECIPIENT, r.email))
