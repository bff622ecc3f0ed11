"""Build RFC 5322 digest messages from pre-encoded pieces.

A :class:`MessageFactory` is made once per rendered variant. It encodes every
static part once: the headers (RFC 2047 for the From display name and the
Subject), the MIME structure and both bodies in quoted-printable. Each place
where a per-recipient value goes (preference and unsubscribe links, the
address) starts a fresh encoded line, so :meth:`MessageFactory.build` only
encodes a few short ASCII strings and joins bytes: no ``EmailMessage`` per
recipient.

Quoted-printable around a slot: the text before it ends with a soft line break
(``=`` CRLF) and the inserted value ends with one too. Soft breaks vanish when
decoded, so the decoded body is exactly the rendered text with the values in
place, while every encoded line stays at most 76 characters (RFC 2045 6.7).

Header values from data never carry CR or LF.
"""

from __future__ import annotations

import base64
import html
import itertools
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime, parseaddr

from .config import Config
from .errors import DeliveryError
from .render import PREFS_URL, RECIPIENT, UNSUB_URL, RenderedDigest

logger = logging.getLogger(__name__)

# C0 and C1 controls and every other character str.splitlines() breaks on.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_PLACEHOLDERS = re.compile(f"({PREFS_URL}|{UNSUB_URL}|{RECIPIENT})")
_SLOT = {PREFS_URL: "prefs", UNSUB_URL: "unsub", RECIPIENT: "email"}
# Printable ASCII without "=": goes into quoted-printable as it is.
_QP_SAFE = re.compile(r"[ -<>-~]+")
_ATOM_SAFE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]+")
_ADDR_SAFE = re.compile(r"[!-~]+@[A-Za-z0-9.-]+")
QP_LINE = 76


def header_safe(value: str) -> str:
    """One header line: every control or line-breaking character becomes a space."""
    return " ".join(_UNSAFE.sub(" ", value).split())


def display_text(value: str) -> str:
    """A display name as it will read: no control characters, single spaces."""
    return header_safe(value)


def sender_domain(config: Config) -> str:
    _, addr = parseaddr(config.email.from_addr)
    return addr.rsplit("@", 1)[-1].lower() if "@" in addr else "localhost"


def list_id(config: Config, name: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "digest"
    return f"{header_safe(config.site.name)} {header_safe(name)} <{slug}.{sender_domain(config)}>"


# -- RFC 2047 ----------------------------------------------------------------

def encoded_words(text: str, header: str = "") -> list[str]:
    """*text* as UTF-8 base64 encoded-words, split on character boundaries.

    Each line stays within 78 characters: the first word shares its line with
    ``header: ``. (Python's address parser shows a space between adjacent
    encoded-words of a display name, against RFC 2047 6.2; a name of up to 15
    CJK characters fits in one word and reads the same everywhere.)
    """
    budget = _word_bytes(78 - len(header) - 2 if header else 77)
    words, chunk, size = [], [], 0
    for ch in text:
        n = len(ch.encode("utf-8", "replace"))
        if size + n > budget and chunk:
            words.append("".join(chunk))
            chunk, size, budget = [], 0, _word_bytes(77)
        chunk.append(ch)
        size += n
    if chunk:
        words.append("".join(chunk))
    return [f"=?utf-8?b?{base64.b64encode(w.encode('utf-8', 'replace')).decode('ascii')}?="
            for w in words]


def _word_bytes(width: int) -> int:
    """UTF-8 bytes that fit in an encoded-word of at most *width* (and 75) characters."""
    return max(3, (min(width, 75) - 12) // 4 * 3)


def unstructured(name: str, value: str) -> str:
    """``Name: value`` CRLF-terminated; encoded and folded when not plain short ASCII."""
    value = header_safe(value)
    if _plain(value) and len(name) + 2 + len(value) <= 78:
        return f"{name}: {value}\r\n"
    return f"{name}: " + "\r\n ".join(encoded_words(value, name)) + "\r\n"


def _plain(value: str) -> bool:
    return value.isascii() and value.isprintable() and "=?" not in value


def mailbox(name: str, addr: str, header: str) -> str:
    """``Header: display name <addr>`` CRLF-terminated, display name encoded as needed."""
    name = display_text(name)
    if not name:
        return f"{header}: {addr}\r\n"
    if _plain(name):
        phrase = name if _ATOM_SAFE.fullmatch(name) and "=" not in name else \
            '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        line = f"{header}: {phrase} <{addr}>"
        if len(line) <= 78:
            return line + "\r\n"
        if len(phrase) + len(header) < 76:
            return f"{header}: {phrase}\r\n <{addr}>\r\n"
    words = encoded_words(name, header)
    sep = " " if len(words[-1]) + len(addr) + 3 + (len(header) + 2 if len(words) == 1 else 1) \
        <= 78 else "\r\n "
    return f"{header}: " + "\r\n ".join(words) + f"{sep}<{addr}>\r\n"


def ascii_address(addr: str) -> str:
    """The address for a header and the envelope; raises DeliveryError if unusable."""
    addr = addr.strip()
    local, at, domain = addr.rpartition("@")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError as e:
            raise DeliveryError(f"invalid recipient domain in {addr!r}") from e
        addr = f"{local}@{domain}"
    if not (at and _ADDR_SAFE.fullmatch(addr)) or any(c in local for c in '<>"(),;:\\'):
        raise DeliveryError(f"invalid or non-ASCII recipient address {addr!r} (SMTPUTF8 is "
                            "not supported)")
    return addr


# -- quoted-printable ----------------------------------------------------------

_QP_BYTE = [chr(b) if 33 <= b <= 126 and b != 61 else f"={b:02X}" for b in range(256)]
_QP_BYTE[32], _QP_BYTE[9] = " ", "\t"


def _qp_line(line: str) -> list[str]:
    """One logical line (no line break) as quoted-printable tokens."""
    tokens = [_QP_BYTE[b] for b in line.encode("utf-8", "replace")]
    if tokens and tokens[-1] in (" ", "\t"):
        tokens[-1] = "=20" if tokens[-1] == " " else "=09"
    if tokens and tokens[0] == ".":
        tokens[0] = "=2E"  # never a lone "." line, whatever the transport does
    if line.startswith("From "):
        tokens[0] = "=46"  # mbox-safe
    return tokens


def _wrap(tokens: list[str]) -> list[str]:
    """Tokens packed into lines of at most 75 characters (76 with the soft break)."""
    lines, cur, n = [], [], 0
    for t in tokens:
        if n + len(t) > QP_LINE - 1:
            lines.append("".join(cur))
            cur, n = [], 0
        cur.append(t)
        n += len(t)
    lines.append("".join(cur))
    return lines


def qp_segment(text: str, *, open_end: bool) -> str:
    """Encode static text; with *open_end* it ends on a fresh line for a slot."""
    logical = text.split("\n")
    out = []
    for i, line in enumerate(logical):
        last = i == len(logical) - 1
        if last and not line:
            break
        wrapped = _wrap(_qp_line(line)) if line else [""]
        out.append("=\r\n".join(wrapped))
        out.append("=\r\n" if last else "\r\n")
    if not open_end and out and out[-1] == "=\r\n":
        out.pop()  # the body's own last line: no trailing soft break
    return "".join(out)


def qp_value(value: str) -> bytes:
    """A per-recipient value on lines of its own, each ending in a soft break."""
    if not value:
        return b""
    if _QP_SAFE.fullmatch(value) and value[0] != ".":
        if len(value) <= QP_LINE - 1:
            return (value + "=\r\n").encode("ascii")
        step = QP_LINE - 1
        return "".join(value[i:i + step] + "=\r\n"
                       for i in range(0, len(value), step)).encode("ascii")
    tokens = [_QP_BYTE[b] for b in value.encode("utf-8", "replace")]
    if tokens[0] == ".":
        tokens[0] = "=2E"
    return "".join(line + "=\r\n" for line in _wrap(tokens)).encode("ascii")


def qp_template(body: str) -> list[bytes | str]:
    """The body as pre-encoded bytes with slot names ("prefs", "unsub", "email") between."""
    body = body.replace("\r\n", "\n").replace("\r", "\n")
    parts = _PLACEHOLDERS.split(body)
    out: list[bytes | str] = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(_SLOT[part])
            continue
        at_line_start = not part or part.endswith("\n")
        open_end = i < len(parts) - 1 and not at_line_start
        out.append(qp_segment(part, open_end=open_end).encode("ascii"))
    return out


# -- the factory ----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Recipient:
    email: str
    name: str
    prefs_url: str
    unsubscribe_url: str
    unsubscribe_mailto: str
    message_key: str = ""  # stable per outbox row: the Message-ID stays the same on retries


_TEXT_PART = ('Content-Type: text/plain; charset="utf-8"\r\n'
              "Content-Transfer-Encoding: quoted-printable\r\n\r\n")
_HTML_PART = ('Content-Type: text/html; charset="utf-8"\r\n'
              "Content-Transfer-Encoding: quoted-printable\r\n\r\n")


class MessageFactory:
    """Per-variant message builder; :meth:`build` returns the bytes for one recipient."""

    def __init__(self, config: Config, rendered: RenderedDigest, list_name: str, date: datetime):
        self.config = config
        self.rendered = rendered
        self.domain = sender_domain(config)
        self.list_id = list_id(config, list_name)
        self.subject = display_text(rendered.subject)
        self.date = format_datetime(date.astimezone(config.site.timezone))
        self._mid = f"{date:%Y%m%d%H%M%S}.{secrets.token_hex(6)}"
        self._counter = itertools.count(1)
        boundary = f"=_{secrets.token_hex(12)}"  # "=_" cannot occur in quoted-printable
        self._plan = self._make_plan(boundary)
        self._slots = [(i, p) for i, p in enumerate(self._plan) if isinstance(p, str)]

    def _make_plan(self, boundary: str) -> list[bytes | str]:
        name, addr = parseaddr(header_safe(self.config.email.from_addr))
        top = [mailbox(name, addr, "From"), "\0to",
               unstructured("Subject", self.subject), f"Date: {self.date}\r\n", "\0mid",
               f"List-Id: {display_list_id(self.list_id)}\r\n", "\0unsub",
               "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"]
        if self.config.email.reply_to:
            rname, raddr = parseaddr(header_safe(self.config.email.reply_to))
            top.append(mailbox(rname, raddr, "Reply-To"))
        top += ["MIME-Version: 1.0\r\n",
                f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n',
                f"--{boundary}\r\n{_TEXT_PART}"]
        plan: list[bytes | str] = [p[1:] if p.startswith("\0") else p.encode("ascii")
                                   for p in top]
        plan += [p if isinstance(p, bytes) else "t" + p for p in qp_template(self.rendered.text)]
        plan.append(f"\r\n--{boundary}\r\n{_HTML_PART}".encode("ascii"))
        plan += [p if isinstance(p, bytes) else "h" + p for p in qp_template(self.rendered.html)]
        plan.append(f"\r\n--{boundary}--\r\n".encode("ascii"))
        return _merge(plan)

    def build(self, r: Recipient) -> bytes:
        email = ascii_address(r.email)
        key = r.message_key or str(next(self._counter))
        unsub_header = header_safe(f"<{r.unsubscribe_url}>, <{r.unsubscribe_mailto}>")
        values = {
            "to": mailbox(r.name, email, "To").encode("utf-8"),
            "mid": f"Message-ID: <{key}.{self._mid}@{self.domain}>\r\n".encode("ascii"),
            "unsub": f"List-Unsubscribe: {unsub_header}\r\n".encode("ascii", "replace"),
            "tprefs": qp_value(r.prefs_url), "tunsub": qp_value(r.unsubscribe_url),
            "temail": qp_value(email),
            "hprefs": qp_value(html.escape(r.prefs_url)),
            "hunsub": qp_value(html.escape(r.unsubscribe_url)),
            "hemail": qp_value(html.escape(email)),
        }
        parts = self._plan.copy()
        for i, slot in self._slots:
            parts[i] = values[slot]
        return b"".join(parts)

    def expected_bodies(self, r: Recipient) -> tuple[str, str]:
        """(text, html) as a reader's client decodes them: for tests and previews."""
        email = ascii_address(r.email)

        def fill(body: str, esc) -> str:
            body = body.replace("\r\n", "\n").replace("\r", "\n")
            return (body.replace(PREFS_URL, esc(r.prefs_url))
                    .replace(UNSUB_URL, esc(r.unsubscribe_url)).replace(RECIPIENT, esc(email)))
        return fill(self.rendered.text, str), fill(self.rendered.html, html.escape)


def display_list_id(value: str) -> str:
    """List-Id is structured; a non-ASCII phrase is RFC 2047-encoded before the <id>."""
    phrase, _, rest = value.rpartition(" <")
    if _plain(phrase) and len(value) <= 68:
        return value
    if _plain(phrase):
        return f"{phrase}\r\n <{rest}"
    return "\r\n ".join(encoded_words(phrase)) + "\r\n <" + rest


def _merge(plan: list[bytes | str]) -> list[bytes | str]:
    """Adjacent static pieces joined, so build() joins as few pieces as possible."""
    out: list[bytes | str] = []
    for p in plan:
        if isinstance(p, bytes) and out and isinstance(out[-1], bytes):
            out[-1] += p
        elif not (isinstance(p, bytes) and not p):
            out.append(p)
    return out
