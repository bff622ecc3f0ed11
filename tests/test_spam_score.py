"""Digests scored by a real spam filter (SpamAssassin, local rules only, no network)."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from publisher import pipeline, subscribers

SPAMASSASSIN = shutil.which("spamassassin")
pytestmark = pytest.mark.skipif(SPAMASSASSIN is None,
                                reason="SpamAssassin is not installed (Debian package "
                                       "spamassassin; .ci/run installs it)")
NOW = datetime(2026, 11, 26, 22, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
LIMIT = 2.0  # SpamAssassin's own threshold is 5.0: we want a wide margin


def score(message: bytes) -> tuple[float, str]:
    proc = subprocess.run([SPAMASSASSIN, "-L", "-t"], input=message, capture_output=True,
                          timeout=120)
    report = proc.stdout.decode("utf-8", "replace")
    m = re.search(r"Content analysis details:\s+\((-?[\d.]+) points", report)
    assert m, report[-2000:]
    return float(m.group(1)), report[report.find("Content analysis details"):]


@pytest.fixture
def digests(config):
    store = pipeline.open_store(config)
    subscribers.upsert(store, "hans@example.com", name="王小明")
    subscribers.upsert(store, "hant@example.com", name="陳美玲", script="zh-hant",
                       categories=("文化", "经济"))
    subscribers.upsert(store, "week@example.com", name="李强", frequency="weekly")
    pipeline.cycle(config, store, NOW, digests=True)
    store.close()
    return sorted(Path(config.email.outbox_dir).glob("*.eml"))


def test_every_digest_scores_far_below_the_spam_threshold(digests):
    assert len(digests) == 3
    for path in digests:
        points, report = score(path.read_bytes())
        assert points < LIMIT, f"{path.name}: {points}\n{report}"
