"""Config loading: the shipped config is valid; every bad file names its key and reason."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import pytest

from publisher.config import load_config
from publisher.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
CASES = sorted((Path(__file__).parent / "data" / "config").glob("*.toml"))


def test_shipped_config_loads():
    config = load_config(ROOT / "config.toml")
    assert config.site.name == "江城新闻网"
    assert config.site.timezone.key == "Asia/Shanghai"
    assert config.storage.database_url == f"sqlite:///{ROOT / 'var' / 'publisher.db'}"
    assert config.sources[0].path == ROOT / "content"
    assert config.email.transport == "file"
    assert config.email.outbox_dir == ROOT / "var" / "outbox"
    assert [d.name for d in config.digests] == ["daily", "weekly"]
    assert config.digest("weekly").frequency == "weekly"
    assert config.categories["本地"] == "bendi"


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_bad_config_names_key_and_reason(case: Path):
    expected = case.with_suffix(".expected").read_text(encoding="utf-8").strip()
    with pytest.raises(ConfigError) as info:
        load_config(case)
    message = str(info.value)
    assert expected in message
    assert str(case.resolve()) in message or str(case) in message
    assert "\n" not in message


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_not_utf8(tmp_path):
    p = tmp_path / "c.toml"
    p.write_bytes('[site]\nname = "江城新闻网站点"\n'.encode("gbk"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(p)


def test_secrets_come_from_environment(tmp_path, monkeypatch):
    p = tmp_path / "c.toml"
    p.write_text('[site]\nname="s"\nurl="https://a.example"\n[email]\nfrom="a@a.example"\n'
                 '[email.smtp]\npassword_env="MY_PW"\n', encoding="utf-8")
    config = load_config(p)
    assert config.email.smtp.password == ""
    monkeypatch.setenv("MY_PW", "s3cret")
    assert config.email.smtp.password == "s3cret"
    assert "s3cret" not in repr(config)


def test_relative_paths_resolve_against_config_folder(tmp_path, monkeypatch):
    folder = tmp_path / "siteconf"
    folder.mkdir()
    (folder / "config.toml").write_text(
        '[site]\nname="s"\nurl="https://a.example/"\n[email]\nfrom="a@a.example"\n'
        '[[sources]]\nname="l"\npath="posts"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    config = load_config(folder / "config.toml")
    assert config.sources[0].path == folder / "posts"
    assert config.feeds.output_dir == folder / "feeds"
    assert config.site.url == "https://a.example"  # trailing slash dropped


def test_env_selects_config(tmp_path, monkeypatch):
    p = tmp_path / "other.toml"
    p.write_text('[site]\nname="其他"\nurl="https://b.example"\n[email]\nfrom="a@b.example"\n',
                 encoding="utf-8")
    monkeypatch.setenv("PUBLISHER_CONFIG", str(p))
    assert load_config().site.name == "其他"


def test_unknown_digest_and_partner(config):
    with pytest.raises(ConfigError, match="no \\[\\[digests\\]\\] named 'hourly'"):
        config.digest("hourly")
    with pytest.raises(ConfigError, match="no \\[\\[partners\\]\\] named 'x'"):
        config.partner("x")


def test_production_example_loads():
    config = load_config(ROOT / "deploy" / "config.production.toml")
    assert config.storage.database_url.startswith("postgresql+psycopg://")
    assert config.queue is not None and config.email.transport == "smtp"
    assert config.web.secure_cookies and config.web.proxies == 1


def test_demo_as_of(tmp_path):
    from datetime import datetime, timedelta, timezone

    base = '[site]\nname="s"\nurl="https://a.example"\n[email]\nfrom="a@a.example"\n[demo]\n'
    p = tmp_path / "c.toml"
    p.write_text(base + 'as_of = "2026-11-26T22:00:00"\n', encoding="utf-8")
    as_of = load_config(p).demo_as_of
    assert as_of == datetime(2026, 11, 26, 22, 0, tzinfo=timezone(timedelta(hours=8)))
    p.write_text(base + "as_of = 2026-11-26T14:00:00Z\n", encoding="utf-8")  # a TOML datetime
    assert load_config(p).demo_as_of == datetime(2026, 11, 26, 14, 0, tzinfo=UTC)
    p.write_text(base + 'as_of = "last tuesday"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="demo.as_of: not an ISO 8601"):
        load_config(p)
    assert load_config(ROOT / "config.toml").demo_as_of is not None
