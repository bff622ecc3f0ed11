"""Shared fixtures: a site config in a temp folder, SQLite and PostgreSQL stores,
loopback SMTP and HTTP servers."""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from pathlib import Path

import pytest

from publisher.config import load_config
from publisher.store import Store

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
PG_HOST, PG_PORT = "127.0.0.1", 5432

BASE_CONFIG = """
[site]
name = "江城新闻网"
url = "https://news.example.com"
timezone = "Asia/Shanghai"
contact = "江城市文化路 88 号"

[storage]
database_url = "{database_url}"

[[sources]]
name = "local"
type = "directory"
path = "content"

[feeds]
output_dir = "feeds"
max_items = 50

[email]
from = "江城新闻网 <newsletter@news.example.com>"
transport = "file"
outbox_dir = "var/outbox"

[[digests]]
name = "daily"
schedule = "0 7 * * *"
subject = "{{site}} 每日精选 {{date}}"

[[digests]]
name = "weekly"
schedule = "0 8 * * 1"
subject = "{{site}} 一周要闻 {{date}}"
frequency = "weekly"

[rights]
holder = "江城新闻网"
disclaimer = "凡本网注明“来源:XXX(非本网)”的作品均转载自其他媒体。"
terms_version = "2026-01"

[categories]
"本地" = "bendi"
"经济" = "jingji"
"文化" = "wenhua"
"体育" = "tiyu"
"""


def write_site(tmp_path: Path, extra: str = "", *, content: Path | None = None,
               database_url: str | None = None) -> Path:
    """A site folder with config.toml and a copy of the content; returns the config path."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    src = content if content is not None else ROOT / "content"
    if src.exists() and not (site / "content").exists():
        shutil.copytree(src, site / "content")
    (site / "content").mkdir(exist_ok=True)
    url = database_url or f"sqlite:///{site / 'var' / 'publisher.db'}"
    path = site / "config.toml"
    path.write_text(BASE_CONFIG.format(database_url=url) + extra, encoding="utf-8")
    return path


@pytest.fixture
def site(tmp_path):
    """Path of a config.toml for the sample site in a temp folder."""
    return write_site(tmp_path)


@pytest.fixture
def config(site):
    return load_config(site)


@pytest.fixture
def store(config):
    s = Store.open(config.storage.database_url)
    yield s
    s.close()


def port_open(host: str, port: int) -> bool:
    """Whether a service listens at host:port (tests skip, with the reason, when not)."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def pg_url():
    """A fresh PostgreSQL database on 127.0.0.1:5432, dropped afterwards."""
    if not port_open(PG_HOST, PG_PORT):
        pytest.skip("PostgreSQL is not listening on 127.0.0.1:5432")
    import psycopg

    name = f"publisher_test_{uuid.uuid4().hex[:10]}"
    admin = f"host={PG_HOST} port={PG_PORT} user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request, tmp_path):
    """The same tests on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    s = Store.open(url)
    yield s
    s.close()


@pytest.fixture
def smtp_server():
    from tests.support.smtpserver import SMTPServer

    with SMTPServer() as server:
        yield server


@pytest.fixture
def http_server():
    from tests.support.httpserver import HTTPServer

    with HTTPServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _no_publisher_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith("PUBLISHER_"):
            monkeypatch.delenv(key, raising=False)
