"""WebSub publisher side: tell the hub which feeds changed.

After a build, every changed feed's URL is POSTed to ``[feeds].hub`` as
``hub.mode=publish&hub.url=<feed URL>`` (the form PubSubHubbub 0.4 hubs and
the WebSub recommendation's publishers use), one request per feed. A ping is
retried, with a growing pause, on connection errors, timeouts, 429 and 5xx;
any other answer outside 2xx is final. Each request is bounded by
``[feeds].hub_timeout``; a ping gets at most ``1 + [feeds].hub_retries``
attempts; when the hub cannot be reached at all the remaining pings of the
run are given up at once (the next change pings again). A failed ping never
fails the build: it is logged and reported.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import requests

from .config import Config

logger = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
MAX_PAUSE = 30.0


@dataclass
class PingReport:
    ok: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # url -> last error


def publish_changes(config: Config, changed: Iterable[str], **kwargs) -> PingReport:
    """Ping ``[feeds].hub`` for the changed feed files (paths relative to ``output_dir``)."""
    from .feeds import feed_url

    hub = config.feeds.hub
    if not hub:
        return PingReport()
    urls = [feed_url(config, rel) for rel in changed
            if rel.endswith((".xml", ".json"))]
    kwargs.setdefault("retries", config.feeds.hub_retries)
    kwargs.setdefault("timeout", config.feeds.hub_timeout)
    return publish(hub, urls, **kwargs)


def publish(hub: str, urls: Iterable[str], *, retries: int = 3, timeout: float = 10.0,
            backoff: float = 1.0, session: requests.Session | None = None,
            sleep: Callable[[float], None] = time.sleep) -> PingReport:
    """POST ``hub.mode=publish`` for each of *urls* to *hub*; see the module docstring."""
    report = PingReport()
    urls = list(dict.fromkeys(urls))
    own = session is None
    session = session or requests.Session()
    try:
        for i, url in enumerate(urls):
            error, reachable = _ping(session, hub, url, retries, timeout, backoff, sleep)
            if error is None:
                report.ok.append(url)
                continue
            report.failed[url] = error
            if not reachable:
                for rest in urls[i + 1:]:
                    report.failed[rest] = f"not attempted: hub unreachable ({error})"
                break
    finally:
        if own:
            session.close()
    if report.failed:
        logger.warning("WebSub: %d of %d pings to %s failed (first: %s)", len(report.failed),
                       len(urls), hub, next(iter(report.failed.values())))
    elif urls:
        logger.info("WebSub: pinged %s for %d feeds", hub, len(urls))
    return report


def _ping(session: requests.Session, hub: str, url: str, retries: int, timeout: float,
          backoff: float, sleep: Callable[[float], None]) -> tuple[str | None, bool]:
    """(error or None, whether the hub answered at all)."""
    error, reachable, wait = "no attempt", False, 0.0
    for attempt in range(retries + 1):
        if attempt:
            sleep(min(max(backoff * 2 ** (attempt - 1), wait), MAX_PAUSE))
        wait = 0.0
        try:
            resp = session.post(hub, data={"hub.mode": "publish", "hub.url": url},
                                timeout=timeout, allow_redirects=False)
        except requests.RequestException as e:
            error = f"{type(e).__name__}: {e}"
            continue
        reachable = True
        if 200 <= resp.status_code < 300:
            return None, True
        error = f"HTTP {resp.status_code} {resp.reason or ''}".strip()
        if resp.status_code not in RETRY_STATUS:
            return error, True
        wait = _retry_after(resp)
    return error, reachable


def _retry_after(resp: requests.Response) -> float:
    value = resp.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else 0.0
