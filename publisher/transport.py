"""Mail transports behind one small protocol (httpx's BaseTransport, rss2email's
``smtp_send``/``maildir_send``): ``file`` writes ``.eml`` files, ``smtp`` talks
to a relay. Chosen by ``[email].transport``.
"""

from __future__ import annotations

import hashlib
import logging
import smtplib
import ssl
import time
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


class SMTPTransport:
    """One persistent SMTP connection (STARTTLS/SSL, AUTH), reconnecting when dropped."""

    def __init__(self, cfg: SMTPConfig, *, local_hostname: str | None = None):
        self.cfg = cfg
        self.local_hostname = local_hostname
        self._conn: smtplib.SMTP | None = None

    def connect(self) -> smtplib.SMTP:
        if self._conn is not None:
            return self._conn
        cfg = self.cfg
        try:
            if cfg.security == "ssl":
                conn = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout,
                                        local_hostname=self.local_hostname,
                                        context=ssl.create_default_context())
            else:
                conn = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout,
                                    local_hostname=self.local_hostname)
                if cfg.security == "starttls":
                    conn.starttls(context=ssl.create_default_context())
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
        conn = self.connect()
        try:
            refused = conn.sendmail(sender, recipients, message)
        except smtplib.SMTPRecipientsRefused as e:
            code, reply = next(iter(e.recipients.values()))
            self._reset()
            enhanced, text = _enhanced(reply)
            raise SMTPReplyError(code, text, enhanced) from e
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as e:
            self._reset()
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


def make_transport(config: Config) -> Transport:
    if config.email.transport == "smtp":
        return SMTPTransport(config.email.smtp)
    return FileTransport(config.email.outbox_dir)
