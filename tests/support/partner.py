"""A partner's webhook receiver on 127.0.0.1, written from the partner's side.

It knows only the documented contract: it recomputes the HMAC-SHA256 over
``"<timestamp>.<raw body>"`` with its own copy of the secret, rejects stale
timestamps and bad signatures with 401, and can be told to answer 503 or to
stall (longer than the sender's timeout) on the first N attempts. Accepted
deliveries are kept, parsed, with their Idempotency-Key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field

from tests.support.httpserver import HTTPServer, Request, Response

TOLERANCE = 300  # seconds a timestamp may be off


@dataclass
class Delivery:
    key: str
    event: str
    doc: dict
    headers: dict[str, str]


@dataclass
class PartnerReceiver:
    secret: str
    path: str = "/hook"
    fail_first: int = 0  # answer 503 to the first N attempts
    stall_first: int = 0  # answer the first N attempts only after `stall` seconds
    stall: float = 1.0
    status: int = 200  # answer for accepted deliveries
    attempts: int = 0
    rejected: list[str] = field(default_factory=list)
    accepted: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, req: Request) -> Response:
        with self.lock:
            self.attempts += 1
            n = self.attempts
        if n <= self.stall_first:
            return Response(200, b"late", delay=self.stall)
        if n <= self.stall_first + self.fail_first:
            return Response(503, b"busy", headers={"Retry-After": "0"})
        problem = self.check(req)
        if problem:
            with self.lock:
                self.rejected.append(problem)
            return Response(401, problem.encode())
        doc = json.loads(req.body.decode("utf-8"))
        with self.lock:
            self.accepted.append(Delivery(req.headers["idempotency-key"], doc["event"], doc,
                                          req.headers))
        return Response(self.status, b'{"ok":true}', headers={"Content-Type": "application/json"})

    def check(self, req: Request) -> str:
        ts = req.headers.get("x-publisher-timestamp", "")
        sig = req.headers.get("x-publisher-signature", "")
        if not ts.isdigit():
            return "missing timestamp"
        if abs(time.time() - int(ts)) > TOLERANCE:
            return "stale timestamp"
        mac = hmac.new(self.secret.encode(), ts.encode() + b"." + req.body, hashlib.sha256)
        if not hmac.compare_digest("sha256=" + mac.hexdigest(), sig):
            return "bad signature"
        if not req.headers.get("idempotency-key"):
            return "missing Idempotency-Key"
        if not req.headers.get("content-type", "").startswith("application/json"):
            return "not JSON"
        return ""

    def events(self) -> list[tuple[str, str, int]]:
        with self.lock:
            return [(d.event, d.doc["id"], d.doc["version"]) for d in self.accepted]

    def keys(self) -> list[str]:
        with self.lock:
            return [d.key for d in self.accepted]

    def install(self, server: HTTPServer) -> str:
        server.route("POST", self.path, self.handle)
        return server.url + self.path
