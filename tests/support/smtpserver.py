"""A real SMTP server on 127.0.0.1 (aiosmtpd) that records what it receives and
can be told to answer errors or drop the connection for chosen recipients.

Rules per recipient:

- ``rcpt_rules[addr]``: replies to successive RCPT TO attempts (the last one
  repeats), e.g. ``["451 4.3.0 try later", "250 OK"]``;
- ``data_rules[addr]``: replies to successive end-of-DATA for messages to addr;
- ``drop``: addresses whose DATA drops the connection once, after the content
  was received but before the reply (the client cannot know it arrived);
- ``drop_rcpt``: addresses whose RCPT drops the connection once.

``pipelining=True`` (the default) advertises PIPELINING, as Postfix and Exim do.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from email import message_from_bytes
from email.policy import default

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPProtocol


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self):
        return message_from_bytes(self.data, policy=default)


@dataclass
class Handler:
    received: list[Received] = field(default_factory=list)
    rcpt_rules: dict[str, list[str]] = field(default_factory=dict)
    data_rules: dict[str, list[str]] = field(default_factory=dict)
    drop: set[str] = field(default_factory=set)
    drop_rcpt: set[str] = field(default_factory=set)
    pipelining: bool = True
    delay: float = 0.0  # seconds before each DATA reply (a slow relay)
    lock: threading.Lock = field(default_factory=threading.Lock)
    rcpt_attempts: dict[str, int] = field(default_factory=dict)
    data_attempts: dict[str, int] = field(default_factory=dict)
    commands: Counter = field(default_factory=Counter)
    connections: int = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        with self.lock:
            self.connections += 1
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_RSET(self, server, session, envelope):
        with self.lock:
            self.commands["RSET"] += 1
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.lock:
            n = self.rcpt_attempts.get(address, 0)
            self.rcpt_attempts[address] = n + 1
            rules = self.rcpt_rules.get(address)
            dropping = address in self.drop_rcpt
            self.drop_rcpt.discard(address)
        if dropping:
            server.transport.close()
            return "421 4.4.2 connection dropped"
        if rules:
            reply = rules[min(n, len(rules) - 1)]
            if not reply.startswith("250"):
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        for rcpt in envelope.rcpt_tos:
            with self.lock:
                dropping = rcpt in self.drop
                self.drop.discard(rcpt)
                n = self.data_attempts.get(rcpt, 0)
                self.data_attempts[rcpt] = n + 1
                rules = self.data_rules.get(rcpt)
            if dropping:
                server.transport.close()
                return "421 4.4.2 connection dropped"
            if rules and not rules[min(n, len(rules) - 1)].startswith("250"):
                return rules[min(n, len(rules) - 1)]
        with self.lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                          bytes(envelope.original_content or envelope.content)))
        return "250 2.0.0 OK queued"

    def recipients(self) -> list[str]:
        with self.lock:
            return [r for m in self.received for r in m.rcpt_tos]

    def counts(self) -> Counter:
        """How many messages each recipient received."""
        return Counter(self.recipients())


def free_port() -> int:
    """A port nobody listens on right now (aiosmtpd's Controller cannot take port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SMTPServer:
    def __init__(self, handler: Handler | None = None, **kwargs):
        self.handler = handler or Handler()
        self._port = kwargs.pop("port", None) or free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self._port,
                                     server_kwargs={"decode_data": False}, **kwargs)

    def __enter__(self) -> SMTPServer:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def received(self) -> list[Received]:
        return self.handler.received


__all__ = ["SMTPServer", "Handler", "Received", "SMTPProtocol"]
