"""Asynchronous bounces (RFC 3464) and complaints (RFC 5965) from a Maildir or an mbox."""

from __future__ import annotations

import mailbox

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from publisher import bounces
from publisher.cli import main
from publisher.errors import UsageError
from publisher.schema import subscribers, suppressions
from tests.conftest import DATA
from tests.support.delivery import add_subscribers

CASES = DATA / "bounces"
READERS = [f"reader{i}@example.com" for i in range(8)]


def maildir(tmp_path):
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    for path in sorted(CASES.glob("*.eml")):
        box.add(path.read_bytes())
    box.close()
    return tmp_path / "Maildir"


def mbox(tmp_path):
    box = mailbox.mbox(tmp_path / "bounces.mbox", create=True)
    for path in sorted(CASES.glob("*.eml")):
        box.add(path.read_bytes())
    box.close()
    return tmp_path / "bounces.mbox"


def state(store):
    with store.engine.connect() as conn:
        subs = {r.email: (r.status, r.soft_bounces) for r in conn.execute(select(subscribers))}
        supp = {r.email: r.reason for r in conn.execute(select(suppressions))}
    return subs, supp


@pytest.mark.parametrize("make", [maildir, mbox])
def test_reports_act_on_subscribers(config, store, tmp_path, make):
    add_subscribers(store, READERS)
    report = bounces.process_path(config, store, make(tmp_path))
    subs, supp = state(store)
    assert supp == {"reader0@example.com": "bounced", "reader1@example.com": "bounced",
                    "reader5@example.com": "complained", "reader6@example.com": "complained"}
    assert subs["reader0@example.com"][0] == "bounced"
    assert subs["reader1@example.com"][0] == "bounced"
    assert subs["reader2@example.com"] == ("active", 0)  # 5.7.1: the sender's problem
    assert subs["reader3@example.com"] == ("active", 1)  # 5.2.2: a soft bounce
    assert subs["reader4@example.com"] == ("active", 0)  # delayed: nothing yet
    assert subs["reader5@example.com"][0] == "complained"
    assert subs["reader7@example.com"] == ("active", 0)  # an autoreply is no bounce
    c = report.counts
    assert (c["messages"], c["hard"], c["soft"], c["policy"], c["delayed"], c["complaint"],
            c["unrecognized"], c["suppressed"]) == (8, 2, 1, 1, 1, 2, 1, 4)
    assert "2 complaints" in report.summary()
    (tmp_path / "again").mkdir()
    again = bounces.process_path(config, store, make(tmp_path / "again"))
    assert again.counts["seen"] == 8 and state(store) == (subs, supp)


def test_three_soft_bounces_suppress(store):
    add_subscribers(store, ["full@example.com"])
    with store.engine.begin() as conn:
        assert not bounces.soft_bounce(conn, "full@example.com", "552 5.2.2")
        assert not bounces.soft_bounce(conn, "full@example.com", "552 5.2.2")
        assert bounces.soft_bounce(conn, "full@example.com", "552 5.2.2")
    subs, supp = state(store)
    assert supp == {"full@example.com": "bounced"} and subs["full@example.com"][0] == "bounced"


@pytest.mark.parametrize("code,enhanced,kind", [
    (550, "5.1.1", bounces.HARD), (550, "5.1.10", bounces.HARD), (550, "5.2.1", bounces.HARD),
    (552, "5.2.2", bounces.SOFT), (554, "5.7.1", bounces.POLICY), (451, "4.7.1", bounces.POLICY),
    (451, "4.3.0", bounces.TRANSIENT), (421, None, bounces.TRANSIENT), (550, None, bounces.SOFT),
    (None, None, bounces.TRANSIENT)])
def test_classification(code, enhanced, kind):
    assert bounces.classify(code, enhanced) == kind


def test_cli_processes_a_maildir(site, tmp_path):
    result = CliRunner().invoke(main, ["--config", str(site), "bounces", "process",
                                       str(maildir(tmp_path))])
    assert result.exit_code == 0, result.output
    assert "8 reports read" in result.output and "2 hard bounces" in result.output


def test_a_folder_that_is_not_a_maildir_is_a_usage_error(config, store, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError):
        bounces.process_path(config, store, tmp_path / "empty")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(status=st.text(max_size=20), action=st.text(max_size=12), rcpt=st.text(max_size=40),
       junk=st.binary(max_size=200))
def test_malformed_reports_never_crash(store, status, action, rcpt, junk):
    body = (f"Content-Type: multipart/report; report-type=delivery-status; boundary=\"Z\"\n\n"
            f"--Z\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; x\n\n"
            f"Final-Recipient: rfc822; {rcpt}\nAction: {action}\nStatus: {status}\n\n--Z--\n")
    report = bounces.BounceReport()
    for raw in (body.encode("utf-8", "replace"), junk):
        bounces.process_message(store, raw, report)
    assert report.counts["hard"] + report.counts["soft"] + report.counts["unrecognized"] \
        + report.counts["seen"] + report.counts["policy"] + report.counts["delayed"] >= 1


def test_mailto_unsubscribe_from_a_real_digest(config, store, tmp_path):
    """The mailto in List-Unsubscribe, answered by a mail client, unsubscribes that reader."""
    from email import message_from_bytes
    from email.message import EmailMessage
    from email.policy import default
    from urllib.parse import parse_qs, urlsplit

    from publisher import pipeline
    from publisher import subscribers as subs
    from tests.test_pipeline import NOW

    subs.upsert(store, "leaver@example.com")
    subs.upsert(store, "stayer@example.com")
    pipeline.cycle(config, store, NOW, digests=True)
    sent = {m["To"].addresses[0].addr_spec: m for m in
            (message_from_bytes(p.read_bytes(), policy=default)
             for p in config.email.outbox_dir.glob("*.eml"))}
    header = str(sent["leaver@example.com"]["List-Unsubscribe"])
    mailto = urlsplit(header.split("<mailto:", 1)[1].rstrip(">"))
    subject = parse_qs(mailto.query)["subject"][0]
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    for subj in (subject, subject[:-3] + "xyz"):  # the real one, and a tampered one
        request = EmailMessage()
        request["From"], request["To"], request["Subject"] = \
            "leaver@example.com", mailto.path, subj
        request.set_content("unsubscribe")
        box.add(request.as_bytes())
    box.close()
    report = bounces.process_path(config, store, tmp_path / "Maildir")
    assert report.counts["unsubscribed"] == 1 and report.counts["bad_unsubscribe"] == 1
    current, suppressed = state(store)
    assert current["leaver@example.com"][0] == "unsubscribed"
    assert suppressed["leaver@example.com"] == "unsubscribed"
    assert current["stayer@example.com"][0] == "active"
