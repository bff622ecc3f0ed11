"""Helpers for the delivery tests: a site that sends through a loopback SMTP server,
articles, subscribers and a composed edition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from publisher.config import Config, load_config
from publisher.editions import Edition, compose
from publisher.models import Article
from publisher.schema import subscribers
from publisher.store import Store
from publisher.tokens import new_token_key
from tests.conftest import write_site

NOW = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)


def smtp_site(tmp_path: Path, port: int, *, connections: int = 2, extra_smtp: str = "",
              extra_email: str = "", database_url: str | None = None) -> Config:
    extra = ""
    if extra_email:
        extra += extra_email + "\n"
    path = write_site(tmp_path, content=tmp_path / "nocontent", database_url=database_url)
    text = path.read_text(encoding="utf-8").replace(
        'transport = "file"',
        f'transport = "smtp"\n{extra}batch_size = 50')
    text += (f"\n[email.smtp]\nhost = \"127.0.0.1\"\nport = {port}\n"
             f"connections = {connections}\ntimeout = 10\n{extra_smtp}\n")
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def add_articles(store: Store, now: datetime = NOW, n: int = 3, prefix: str = "a") -> None:
    cats = ["本地", "经济", "文化"]
    for i in range(n):
        store.save_article(Article(
            id=f"{prefix}{i}", title=f"江城新闻{prefix}第{i}条：地铁新线开通", url=f"https://news.example.com/{prefix}/{i}",
            published=now - timedelta(hours=i + 1), body_html="<p>正文</p>",
            summary=f"摘要{i}，市民出行更方便。", author="杜才云", category=cats[i % 3]), now)


def add_subscribers(store: Store, emails: list[str], *, name: str = "读者",
                    now: datetime = NOW) -> None:
    rows = [dict(email=e, name=name, frequency="daily", categories="", script="zh-hans",
                 status="active", token_key=new_token_key(), created_at=now,
                 consent_method="import", consent_ip="", consent_at=now, confirmed_at=now,
                 soft_bounces=0, updated_at=now) for e in emails]
    with store.engine.begin() as conn:
        for i in range(0, len(rows), 1000):
            conn.execute(insert(subscribers), rows[i:i + 1000])


def edition(config: Config, store: Store, emails: list[str], now: datetime = NOW) -> Edition:
    add_articles(store, now)
    add_subscribers(store, emails, now=now)
    e = compose(config, store, config.digest("daily"), now)
    assert e is not None and e.total == len(emails)
    return e
