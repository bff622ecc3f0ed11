"""Thread-safe token buckets: the global send rate and a per-recipient-domain rate.

``rate_per_second = 0`` means unlimited. The clock and the sleep function are
arguments so tests can drive them without waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """Allows *rate* acquisitions per second on average, bursts up to *burst*."""

    def __init__(self, rate: float, burst: float | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate / 10)
        self.clock, self.sleep = clock, sleep
        self._tokens = self.burst
        self._last = clock()
        self._lock = threading.Lock()

    def _reserve(self) -> float:
        """Take one token (going into debt if need be); return how long to wait for it."""
        with self._lock:
            now = self.clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def acquire(self) -> float:
        """Block until a send is allowed; return the seconds waited."""
        wait = self._reserve()
        if wait > 0:
            self.sleep(wait)
        return wait


class RateLimiter:
    """The global limit and the per-domain limit together (either may be off)."""

    def __init__(self, rate: float, per_domain: float = 0.0, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.clock, self.sleep = clock, sleep
        self.global_bucket = TokenBucket(rate, clock=clock, sleep=sleep) if rate > 0 else None
        self.per_domain = per_domain
        self._domains: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def _domain_bucket(self, domain: str) -> TokenBucket:
        with self._lock:
            bucket = self._domains.get(domain)
            if bucket is None:
                bucket = TokenBucket(self.per_domain, burst=1.0, clock=self.clock,
                                     sleep=self.sleep)
                self._domains[domain] = bucket
            return bucket

    def acquire(self, address: str) -> float:
        """Wait until a message to *address* may go; return the seconds waited."""
        waited = 0.0
        if self.per_domain > 0:
            waited += self._domain_bucket(address.rpartition("@")[2].lower()).acquire()
        if self.global_bucket is not None:
            waited += self.global_bucket.acquire()
        return waited
