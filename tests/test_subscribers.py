"""Subscribers: CSV import/export (contract columns), suppression, consent, the CLI."""

from __future__ import annotations

import csv
import io

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from publisher import subscribers as subs
from publisher.cli import main
from publisher.schema import suppressions

HEADER = "email,name,frequency,categories,script,status\n"


def _write(tmp_path, text: str, name="subs.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _export(store) -> str:
    buf = io.StringIO()
    subs.export_csv(store, buf)
    return buf.getvalue()


def test_import_reports_bad_rows_by_line_and_keeps_good_ones(tmp_path, store):
    path = _write(tmp_path, HEADER +
                  "good.one@example.com,王小明,daily,,zh-hans,active\n"
                  "not-an-address,李强,daily,,zh-hans,active\n"
                  "good.two@example.com,陳美玲,weekly,文化;体育,zh-hant,active\n"
                  "bad.freq@example.com,,hourly,,zh-hans,active\n"
                  "bad.script@example.com,,daily,,zh-cn,active\n"
                  "bad.status@example.com,,daily,,zh-hans,maybe\n"
                  "good.one@example.com,王小明,weekly,,zh-hans,active\n"
                  "too.many@example.com,,daily,,zh-hans,active,extra\n"
                  ",nobody,daily,,zh-hans,active\n")
    report = subs.import_csv(store, path)
    assert (report.added, report.updated, report.unchanged) == (2, 0, 0)
    lines = [int(e.split("line ")[1].split(":")[0]) for e in report.errors]
    assert lines == [3, 5, 6, 7, 8, 9, 10]
    assert "frequency" in report.errors[1] and "script" in report.errors[2]
    assert "duplicate of line 2" in report.errors[4]
    assert all(e.startswith(f"{path}: line ") for e in report.errors)
    assert [s.email for s in subs.list_subscribers(store)] == ["good.one@example.com",
                                                             "good.two@example.com"]
    two = subs.get_by_email(store, "good.two@example.com")
    assert two.categories == ("体育", "文化") and two.script == "zh-hant"


def test_line_numbers_count_physical_lines_with_quoted_newlines(tmp_path, store):
    path = _write(tmp_path, HEADER + 'a@example.com,"two\nlines",daily,,zh-hans,active\n'
                  "broken,,daily,,zh-hans,active\n")
    report = subs.import_csv(store, path)
    assert report.added == 1 and report.errors[0].split(": ")[1] == "line 4"
    assert subs.get_by_email(store, "a@example.com").name == "two lines"


def test_reimport_is_idempotent(tmp_path, store):
    path = _write(tmp_path, HEADER + "a@example.com,甲,daily,本地,zh-hans,active\n"
                  "b@example.com,乙,weekly,,zh-hant,pending\n")
    first = subs.import_csv(store, path)
    before = _export(store)
    second = subs.import_csv(store, path)
    assert (first.added, second.added, second.updated, second.unchanged) == (2, 0, 0, 2)
    assert _export(store) == before


def test_suppression_wins_over_import(tmp_path, store):
    subs.upsert(store, "gone@example.com")
    subs.remove(store, "gone@example.com")
    subs.remove(store, "bounced@example.com", reason="bounced")
    path = _write(tmp_path, HEADER + "gone@example.com,,daily,,zh-hans,active\n"
                  "bounced@example.com,,daily,,zh-hans,pending\n")
    report = subs.import_csv(store, path)
    assert report.suppressed == 2 and report.added == 0
    assert subs.get_by_email(store, "gone@example.com").status == "unsubscribed"
    assert subs.get_by_email(store, "bounced@example.com") is None  # suppressed only
    assert subs.list_subscribers(store, "active") == []


def test_imported_unsubscribed_status_is_suppressed(tmp_path, store):
    subs.upsert(store, "x@example.com")
    report = subs.import_csv(store, _write(tmp_path, HEADER + "x@example.com,,daily,,zh-hans,"
                                                             "complained\n"))
    assert report.updated == 1
    with store.engine.connect() as conn:
        reason = conn.execute(select(suppressions.c.reason)
                              .where(suppressions.c.email == "x@example.com")).scalar()
    assert reason == "complained"


def test_export_round_trips(tmp_path, config, store):
    subs.import_csv(store, _write(tmp_path, HEADER +
                                  "a@example.com,\"Zhao, Lei\",daily,本地;经济,zh-hans,active\n"
                                  "b@example.com,陳美玲,weekly,,zh-hant,active\n"
                                  "c@example.com,,daily,,zh-hans,pending\n"))
    subs.remove(store, "b@example.com")
    subs.remove(store, "only.suppressed@example.com", reason="bounced")
    exported = _export(store)
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert list(rows[0]) == list(subs.CSV_COLUMNS)
    by_email = {r["email"]: r for r in rows}
    assert by_email["a@example.com"]["name"] == "Zhao, Lei"
    assert by_email["a@example.com"]["categories"] == "本地;经济"
    assert by_email["b@example.com"]["status"] == "unsubscribed"
    assert by_email["only.suppressed@example.com"]["status"] == "bounced"
    # into a fresh database, then out again: the same file
    from publisher.store import Store
    other = Store.open(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        report = subs.import_csv(other, _write(tmp_path, exported, "export.csv"))
        assert not report.errors and report.added == 4
        assert _export(other) == exported
    finally:
        other.close()


def test_consent_for_import_and_cli(tmp_path, store):
    subs.import_csv(store, _write(tmp_path, HEADER + "imp@example.com,,daily,,zh-hans,active\n"))
    rec = subs.consent_record(store, "imp@example.com")
    assert rec["consent_method"] == "import" and rec["confirm_method"] == "import"
    assert rec["consent_detail"].endswith("subs.csv:2") and rec["confirmed_at"] is not None


def test_request_and_confirm(store):
    s, action = subs.request_subscription(store, "web@example.com", frequency="weekly",
                                          ip="192.0.2.1")
    assert action == "confirm" and s.status == "pending"
    assert subs.confirm(store, s.token_key, ip="192.0.2.2")[1] == "confirmed"
    assert subs.confirm(store, s.token_key)[1] == "already"
    assert subs.request_subscription(store, "web@example.com")[1] == "already"
    subs.unsubscribe(store, s.token_key, method="one-click")
    assert subs.confirm(store, s.token_key)[1] == "gone"
    assert subs.confirm(store, "no-such-key")[1] == "unknown"


@pytest.mark.postgres
def test_import_and_suppression_on_both_databases(tmp_path, any_store):
    path = _write(tmp_path, HEADER + "a@example.com,甲,daily,本地,zh-hans,active\n"
                  "b@example.com,乙,daily,,zh-hans,unsubscribed\n")
    assert subs.import_csv(any_store, path).added == 2
    assert subs.import_csv(any_store, path).unchanged == 2
    assert subs.upsert(any_store, "b@example.com", status="active") == "suppressed"


# -- CLI ---------------------------------------------------------------------------

def test_cli_import_export_add_remove_list(tmp_path, site):
    runner = CliRunner()
    cfg = ["--config", str(site)]
    path = _write(tmp_path, HEADER + "a@example.com,甲,daily,,zh-hans,active\n"
                  "oops,乙,daily,,zh-hans,active\n")
    r = runner.invoke(main, [*cfg, "subscribers", "import", str(path)])
    assert r.exit_code == 0, r.output
    assert "line 3" in r.output and "1 added" in r.output
    r = runner.invoke(main, [*cfg, "subscribers", "add", "b@example.com", "--frequency", "weekly"])
    assert r.exit_code == 0
    r = runner.invoke(main, [*cfg, "subscribers", "remove", "a@example.com"])
    assert r.exit_code == 0
    out = tmp_path / "out.csv"
    r = runner.invoke(main, [*cfg, "subscribers", "export", "-o", str(out)])
    assert r.exit_code == 0
    rows = {r["email"]: r for r in csv.DictReader(out.open(encoding="utf-8"))}
    assert rows["a@example.com"]["status"] == "unsubscribed"
    assert rows["b@example.com"]["frequency"] == "weekly"
    r = runner.invoke(main, [*cfg, "subscribers", "import", str(out)])
    assert r.exit_code == 0 and "0 added, 0 updated" in r.output
    r = runner.invoke(main, [*cfg, "subscribers", "list"])
    assert r.exit_code == 0 and "b@example.com" in r.output
    r = runner.invoke(main, [*cfg, "subscribers", "add", "not an address"])
    assert r.exit_code == 2


# -- outside text ------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.text(max_size=100))
def test_normalize_email_accepts_or_raises_invalid_row(value):
    try:
        out = subs.normalize_email(value)
    except subs.InvalidRow:
        return
    assert "@" in out and not any(c in out for c in "\r\n\x00")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_clean_text_is_one_safe_line(value):
    out = subs.clean_text(value)
    assert len(out) <= 255 and not any(ord(c) < 32 or c in "\x7f\u2028\u2029" for c in out)
    assert subs.parse_categories(value) == subs.parse_categories(";".join(
        subs.parse_categories(value)))
