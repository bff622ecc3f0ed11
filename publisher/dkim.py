"""DKIM signing (RFC 6376) with dkimpy, when ``[email].dkim_selector`` and
``dkim_key_path`` are set.

The signing domain ``d=`` is the domain of the configured ``From`` address, so
the signature aligns with From for DMARC. The signature covers the headers a
bulk sender must protect, the List-Unsubscribe pair included (RFC 8058 §4);
From, Subject, To, List-Unsubscribe and List-Unsubscribe-Post are signed one
extra time ("oversigned") so that nobody can add a second copy in transit
without breaking the signature. Canonicalization is relaxed/relaxed.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from pathlib import Path

import dkim as dkimpy

from .config import Config
from .errors import ConfigError, DeliveryError

logger = logging.getLogger(__name__)

SIGNED_HEADERS = ("From", "To", "Subject", "Date", "Message-ID", "List-Id",
                  "List-Unsubscribe", "List-Unsubscribe-Post", "MIME-Version", "Content-Type",
                  "Reply-To", "Cc", "In-Reply-To", "References", "Auto-Submitted")
OVERSIGNED = ("From", "To", "Subject", "List-Unsubscribe", "List-Unsubscribe-Post")
_FROM_RE = re.compile(rb"^From:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.I | re.M)


def enabled(config: Config) -> bool:
    return bool(config.email.dkim_selector and config.email.dkim_key_path)


@lru_cache(maxsize=4)
def _read_key(path: Path, mtime_ns: int) -> bytes:
    key = path.read_bytes()
    if b"PRIVATE KEY-----" not in key:
        raise ConfigError(f"{path}: [email].dkim_key_path: not a PEM RSA private key")
    return key


def load_key(config: Config) -> bytes:
    """The PEM private key named by ``[email].dkim_key_path`` (re-read when it changes)."""
    path = Path(config.email.dkim_key_path or "")
    try:
        return _read_key(path, path.stat().st_mtime_ns)
    except OSError as e:
        raise ConfigError(f"{path}: [email].dkim_key_path: cannot read the DKIM key: "
                          f"{e.strerror}") from e


def signing_domain(config: Config, message: bytes) -> str:
    """The From domain of *message* (falling back to the configured From)."""
    from email.utils import parseaddr

    head = message.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    match = _FROM_RE.search(head)
    value = match.group(1).decode("ascii", "replace") if match else config.email.from_addr
    addr = parseaddr(" ".join(value.split()))[1] or parseaddr(config.email.from_addr)[1]
    return addr.rsplit("@", 1)[-1].lower()


def sign(message: bytes, config: Config) -> bytes:
    """*message* with a DKIM-Signature header prepended; unchanged when DKIM is off."""
    if not enabled(config):
        return message
    key = load_key(config)
    linesep = b"\r\n" if b"\r\n" in message[:4096] else b"\n"
    present = _present_headers(message)
    include = [h for h in SIGNED_HEADERS if h.lower() in present]
    include += [h for h in OVERSIGNED if h.lower() in present]
    selector = config.email.dkim_selector.encode("ascii")
    domain = signing_domain(config, message).encode("idna")
    try:
        signature = dkimpy.sign(message, selector, domain, key,
                                canonicalize=(b"relaxed", b"relaxed"),
                                include_headers=[h.encode() for h in include], linesep=linesep)
    except dkimpy.KeyFormatError as e:
        raise ConfigError(f"{config.email.dkim_key_path}: [email].dkim_key_path: "
                          f"unusable DKIM key: {e}") from e
    except dkimpy.DKIMException as e:
        raise DeliveryError(f"DKIM signing failed: {e}") from e
    return signature + message


def _present_headers(message: bytes) -> set[str]:
    head = re.split(rb"\r?\n\r?\n", message, maxsplit=1)[0]
    names = re.findall(rb"^([!-9;-~]+):", head, re.M)
    return {n.decode("ascii").lower() for n in names}


def dns_record(public_key_pem: bytes) -> str:
    """The TXT record value to publish at ``<selector>._domainkey.<domain>``."""
    body = b"".join(line for line in public_key_pem.splitlines() if b"-----" not in line)
    return f"v=DKIM1; k=rsa; p={body.decode('ascii')}"
