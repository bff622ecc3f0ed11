"""`publisher partners list|report [--csv]`, `publisher withdraw`, and the sample site."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from publisher import collect, syndication
from publisher.cli import main
from publisher.config import load_config
from publisher.store import Store
from tests.conftest import write_site
from tests.support.partner import PartnerReceiver
from tests.support.syndication import SECRETS, T0, article, partner_toml


@pytest.fixture
def env(tmp_path, http_server, monkeypatch):
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    recv = PartnerReceiver(SECRETS["PARTNER_A_SECRET"])
    url = recv.install(http_server)
    toml = (partner_toml("alpha", "webhook", url, "PARTNER_A_SECRET", timeout=2,
                         retry_base_seconds=0, categories=["本地"])
            + partner_toml("wire", "feed", secret_env="PARTNER_F_SECRET", reprints="headline"))
    empty = tmp_path / "empty"
    empty.mkdir()
    path = write_site(tmp_path, "\n" + toml, content=empty)
    config = load_config(path)
    store = Store.open(config.storage.database_url)
    store.save_article(article("a1"), T0)
    store.save_article(article("a2"), T0)
    syndication.run(config, store, T0)
    store.close()
    return path, recv


def invoke(path, *args):
    return CliRunner().invoke(main, ["--config", str(path), *args], catch_exceptions=False)


def test_partners_list(env):
    path, _ = env
    result = invoke(path, "partners", "list")
    assert result.exit_code == 0, result.output
    assert "alpha" in result.output and "wire" in result.output
    assert SECRETS["PARTNER_A_SECRET"] not in result.output


def test_report_and_csv(env):
    path, _ = env
    result = invoke(path, "partners", "report", "alpha")
    assert result.exit_code == 0
    assert "a1" in result.output and "published" in result.output
    result = invoke(path, "partners", "report", "alpha", "--csv")
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert sorted(r["article_id"] for r in rows) == ["a1", "a2"]
    for r in rows:
        assert r["event"] == "published" and r["response_status"] == "200"
        assert r["terms_version"] == "2026-01" and r["partner"] == "alpha"
        assert datetime.fromisoformat(r["time"]) == T0


def test_csv_cells_never_start_a_formula():
    from types import SimpleNamespace

    from publisher.partnerlog import to_csv

    row = SimpleNamespace(at=T0, partner="alpha", article_id="a1", version=1, event="withdraw",
                          terms_version="2026-01", response_status=None,
                          detail='=HYPERLINK("http://evil")')
    [parsed] = list(csv.DictReader(io.StringIO(to_csv([row]))))
    assert parsed["detail"] == "'=HYPERLINK(\"http://evil\")"


def test_report_unknown_partner_is_a_config_error(env):
    path, _ = env
    result = CliRunner().invoke(main, ["--config", str(path), "partners", "report", "nobody"])
    assert result.exit_code == 2


def test_withdraw_command_notifies_the_partner(env):
    path, recv = env
    result = invoke(path, "withdraw", "a1", "--reason", "版权方投诉")
    assert result.exit_code == 0, result.output
    assert recv.events()[-1] == ("withdrawn", "a1", 1)
    assert recv.accepted[-1].doc["reason"] == "版权方投诉"
    rows = list(csv.DictReader(io.StringIO(invoke(path, "partners", "report", "alpha",
                                                  "--csv").output)))
    assert [r["event"] for r in rows if r["article_id"] == "a1"] == ["published", "withdrawn",
                                                                     "ack"]
    assert invoke(path, "partners", "report", "wire").exit_code == 0


def test_sample_site_originals_only(tmp_path, http_server, monkeypatch):
    """The shipped sample content: every original goes out, no reprint in full."""
    monkeypatch.setenv("PARTNER_A_SECRET", SECRETS["PARTNER_A_SECRET"])
    recv = PartnerReceiver(SECRETS["PARTNER_A_SECRET"])
    url = recv.install(http_server)
    path = write_site(tmp_path, "\n" + partner_toml("alpha", "webhook", url, "PARTNER_A_SECRET",
                                                    timeout=2, retry_base_seconds=0))
    config = load_config(path)
    store = Store.open(config.storage.database_url)
    try:
        now = datetime(2026, 12, 1, tzinfo=UTC)
        collect.collect(config, store, now)
        published = store.published_articles(now)
        if not published:
            pytest.skip("no sample content in content/ yet")
        syndication.run(config, store, now)
        got = {d.doc["id"]: d.doc for d in recv.accepted}
        originals = {a.id for a in published if a.origin == "original" and not a.source_name}
        assert set(got) == originals
        reprints = [a for a in published if a.origin == "reprint"]
        for a in reprints:
            assert a.id not in got
        assert all(d["origin"] == "original" for d in got.values())
        assert all(d["attribution"]["credit"] == f"来源:{config.site.name}" for d in got.values())
    finally:
        store.close()
