"""Mail transports behind one small protocol (httpx's BaseTransport, rss2email's
``smtp_send``/``maildir_send``): ``file`` writes ``.eml`` files, ``smtp`` talks
to a relay. Chosen by ``[email].transport``.
"""

from __future__ import annotations

import hashlib
import logging
import re
import smtplib
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from .config import Config, SMTPConfig
from .errors import DeliveryError, SMTPReplyError
from .feedwriter import atomic_write

logger = logging.getLogger(__name__)


class Transport(Protocol):
    def send(self, sender: str, recipients: list[str], message: bytes) -> None:
        """Hand one message over; raise DeliveryError (or SMTPReplyError) on failure."""

    def close(self) -> None: ...


class FileTransport:
    """Writes each message as one ``.eml`` file, atomically."""

    def __init__(self, outbox_dir: Path):
        self.outbox_dir = Path(outbox_dir)
        self._seq = 0

    def send(self, sender: str, recipients: list[str], message: bytes) -> None:
        self._seq += 1
        digest = hashlib.sha1(message).hexdigest()[:12]
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{self._seq:06d}-{digest}.eml"
        try:
            atomic_write(self.outbox_dir / name, message)
        except OSError as e:
            raise DeliveryError(f"cannot write {self.outbox_dir / name}: {e.strerror}") from e

    def close(self) -> None:
        pass


def _enhanced(reply: bytes | str) -> tuple[str | None, str]:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    parts = text.split(None, 1)
    if parts and len(parts[0].split(".")) == 3 and parts[0][0] in "245":
        return parts[0], (parts[1] if len(parts) > 1 else "")
    return None, text


def _tls_context(cfg: SMTPConfig) -> ssl.SSLContext:
    """Certificate and host name verified, against the system CAs or ``ca_file``."""
    return ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)


class SMTPTransport:
    """One persistent SMTP connection (STARTTLS/SSL, AUTH), reconnecting when dropped."""

    def __init__(self, cfg: SMTPConfig, *, local_hostname: str | None = None,
                 pipelining: bool = True):
        self.cfg = cfg
        self.local_hostname = local_hostname
        self.pipelining = pipelining
        self._conn: smtplib.SMTP | None = None

    def connect(self) -> smtplib.SMTP:
        if self._conn is not None:
            return self._conn
        cfg = self.cfg
        try:
            if cfg.security == "ssl":
                conn = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout,
                                        local_hostname=self.local_hostname,
                                        context=_tls_context(cfg))
            else:
                conn = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout,
                                    local_hostname=self.local_hostname)
                if cfg.security == "starttls":
                    conn.starttls(context=_tls_context(cfg))
            conn.ehlo_or_helo_if_needed()
            if cfg.username:
                conn.login(cfg.username, cfg.password)
        except smtplib.SMTPAuthenticationError as e:
            raise DeliveryError(f"SMTP {cfg.host}:{cfg.port}: authentication failed ({e.smtp_code})") from e
        except (OSError, smtplib.SMTPException) as e:
            raise DeliveryError(f"SMTP {cfg.host}:{cfg.port}: cannot connect: {e}") from e
        self._conn = conn
        return conn

    def send(self, sender: str, recipients: list[str], message: bytes) -> None:
        """Send one message; PIPELINING (RFC 2920) when the server offers it."""
        conn = self.connect()
        try:
            if self.pipelining and conn.has_extn("pipelining"):
                self._send_pipelined(conn, sender, recipients, message)
                return
            refused = conn.sendmail(sender, recipients, message)
        except SMTPReplyError:
            raise
        except smtplib.SMTPRecipientsRefused as e:
            code, reply = next(iter(e.recipients.values()))
            self._after_reply(code)
            enhanced, text = _enhanced(reply)
            raise SMTPReplyError(code, text, enhanced) from e
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as e:
            self._after_reply(e.smtp_code)
            enhanced, text = _enhanced(e.smtp_error)
            raise SMTPReplyError(e.smtp_code, text, enhanced) from e
        except smtplib.SMTPServerDisconnected as e:
            self._drop()
            raise DeliveryError(f"SMTP {self.cfg.host}:{self.cfg.port}: disconnected") from e
        except smtplib.SMTPResponseException as e:
            self._drop()
            enhanced, text = _enhanced(e.smtp_error)
            raise SMTPReplyError(e.smtp_code, text, enhanced) from e
        except (OSError, smtplib.SMTPException) as e:
            self._drop()
            raise DeliveryError(f"SMTP {self.cfg.host}:{self.cfg.port}: {e}") from e
        if refused:
            code, reply = next(iter(refused.values()))
            enhanced, text = _enhanced(reply)
            raise SMTPReplyError(code, text, enhanced)

    def _send_pipelined(self, conn: smtplib.SMTP, sender: str, recipients: list[str],
                        message: bytes) -> None:
        """MAIL, RCPT… and DATA in one write, their replies read together, then the content."""
        size = f" SIZE={len(message)}" if conn.has_extn("size") else ""
        envelope = [f"MAIL FROM:<{sender}>{size}\r\n"]
        envelope += [f"RCPT TO:<{r}>\r\n" for r in recipients]
        envelope.append("DATA\r\n")
        conn.send("".join(envelope).encode("ascii"))
        mail = conn.getreply()
        rcpts = [conn.getreply() for _ in recipients]
        data = conn.getreply()
        accepted = [r for r in rcpts if r[0] in (250, 251)]
        if mail[0] != 250 or not accepted or data[0] != 354:
            if data[0] == 354:
                conn.send(b".\r\n")  # RFC 2920: end the DATA the server wrongly accepted
                conn.getreply()
            failed = mail if mail[0] != 250 else next(
                (r for r in rcpts if r[0] not in (250, 251)), data)
            self._after_reply(failed[0])
            enhanced, text = _enhanced(failed[1])
            raise SMTPReplyError(failed[0], text, enhanced)
        conn.send(dot_stuff(message))
        code, reply = conn.getreply()
        if code != 250:
            self._after_reply(code)
            enhanced, text = _enhanced(reply)
            raise SMTPReplyError(code, text, enhanced)
        refused = [r for r in rcpts if r[0] not in (250, 251)]
        if refused:
            enhanced, text = _enhanced(refused[0][1])
            raise SMTPReplyError(refused[0][0], text, enhanced)

    def _after_reply(self, code: int) -> None:
        """RSET after an error reply; a 421 means the server is closing: drop instead."""
        if code == 421:
            self._drop()
        else:
            self._reset()

    def _reset(self) -> None:
        try:
            if self._conn is not None:
                self._conn.rset()
        except (OSError, smtplib.SMTPException):
            self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except OSError:
                pass

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.quit()
            except (OSError, smtplib.SMTPException):
                conn.close()


_EOL = re.compile(rb"\r\n|\n|\r")


def dot_stuff(message: bytes) -> bytes:
    """The DATA content: CRLF line ends, leading dots doubled, ended by CRLF "." CRLF."""
    bare = message.replace(b"\r\n", b"")
    if b"\n" in bare or b"\r" in bare:
        message = _EOL.sub(b"\r\n", message)
    if message.startswith(b"."):
        message = b"." + message
    if b"\n." in message:
        message = message.replace(b"\n.", b"\n..")
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    return message + b".\r\n"


class TransportPool:
    """Up to *size* transports, one per sending thread, made on demand by *factory*."""

    def __init__(self, factory: Callable[[], Transport], size: int = 1):
        self.factory = factory
        self.size = max(1, size)
        self._made: list[Transport] = []
        self._lock = threading.Lock()

    @classmethod
    def wrap(cls, transport: Transport) -> TransportPool:
        """A pool of one around an existing transport."""
        pool = cls(lambda: transport, 1)
        return pool

    def make(self) -> Transport:
        transport = self.factory()
        with self._lock:
            self._made.append(transport)
        return transport

    def close(self) -> None:
        with self._lock:
            made, self._made = self._made, []
        for t in made:
            t.close()


def make_pool(config: Config) -> TransportPool:
    """``[email.smtp].connections`` persistent SMTP connections, or one file writer."""
    if config.email.transport == "smtp":
        return TransportPool(lambda: SMTPTransport(config.email.smtp),
                             config.email.smtp.connections)
    return TransportPool(lambda: FileTransport(config.email.outbox_dir), 1)


def make_transport(config: Config) -> Transport:
    if config.email.transport == "smtp":
        return SMTPTransport(config.email.smtp)
    return FileTransport(config.email.outbox_dir)
