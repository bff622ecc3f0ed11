"""The delivery rules, against a real aiosmtpd server on 127.0.0.1."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from publisher import bounces
from publisher.delivery import backoff, claim_batch, send_pending, send_rows
from publisher.ratelimit import RateLimiter, TokenBucket
from publisher.schema import editions, outbox, subscribers, suppressions
from publisher.transport import SMTPTransport
from tests.support.delivery import NOW, add_articles, add_subscribers, edition, smtp_site
from tests.support.smtpserver import SMTPServer

EMAILS = [f"reader{i}@example.com" for i in range(12)]


@pytest.fixture
def site(tmp_path, smtp_server):
    config = smtp_site(tmp_path, smtp_server.port, connections=3)
    from publisher.store import Store

    store = Store.open(config.storage.database_url)
    ed = edition(config, store, EMAILS)
    yield config, store, ed, smtp_server.handler
    store.close()


def rows(store, **where):
    q = select(outbox)
    for k, v in where.items():
        q = q.where(outbox.c[k] == v)
    with store.engine.connect() as conn:
        return {r.email: r for r in conn.execute(q)}


def subscriber(store, email):
    with store.engine.connect() as conn:
        return conn.execute(select(subscribers).where(subscribers.c.email == email)).first()


def suppressed(store):
    with store.engine.connect() as conn:
        return {r.email: r.reason for r in conn.execute(select(suppressions))}


def test_everyone_gets_exactly_one_message_and_the_edition_completes(site):
    config, store, ed, server = site
    report = send_pending(config, store, now=NOW)
    assert report.counts["sent"] == len(EMAILS)
    assert sorted(server.recipients()) == sorted(EMAILS)
    assert {r.status for r in rows(store).values()} == {"sent"}
    assert all(r.last_code == 250 for r in rows(store).values())
    assert send_pending(config, store, now=NOW).counts["sent"] == 0
    assert len(server.recipients()) == len(EMAILS)
    with store.engine.connect() as conn:
        assert conn.execute(select(editions.c.status)).scalar() == "sent"
    msg = server.received[0].message
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["To"].addresses[0].addr_spec == server.received[0].rcpt_tos[0]
    assert "summary" not in report.summary() and "sent 12" in report.summary()


def test_messages_go_over_the_configured_number_of_pipelined_connections(site):
    config, store, ed, server = site
    send_pending(config, store, now=NOW)
    assert 1 <= server.connections <= config.email.smtp.connections


@pytest.mark.parametrize("reply", ["421 4.3.2 shutting down", "451 4.3.0 try again later"])
def test_4xx_is_deferred_with_backoff_then_delivered(site, reply):
    config, store, ed, server = site
    server.rcpt_rules[EMAILS[0]] = [reply, "250 OK"]
    report = send_pending(config, store, now=NOW)
    assert report.counts["deferred"] == 1 and report.counts["sent"] == len(EMAILS) - 1
    row = rows(store)[EMAILS[0]]
    assert row.status == "deferred" and row.last_code == int(reply[:3])
    assert row.last_enhanced == reply.split()[1]
    assert NOW + timedelta(seconds=30) <= row.next_attempt_at <= NOW + timedelta(minutes=1)
    assert send_pending(config, store, now=NOW + timedelta(seconds=10)).counts["sent"] == 0
    assert send_pending(config, store, now=NOW + timedelta(minutes=2)).counts["sent"] == 1
    assert server.counts()[EMAILS[0]] == 1
    assert subscriber(store, EMAILS[0]).soft_bounces == 0


def test_backoff_grows_exponentially_with_jitter():
    for attempt in range(1, 12):
        ceiling = min(timedelta(minutes=2 ** (attempt - 1)), timedelta(hours=4))
        delays = {backoff(attempt) for _ in range(20)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1


def test_4xx_past_the_deadline_fails_and_counts_as_a_soft_bounce(site):
    config, store, ed, server = site
    server.rcpt_rules[EMAILS[0]] = ["452 4.2.2 mailbox full"]
    now = NOW
    for _ in range(20):
        send_pending(config, store, now=now)
        row = rows(store)[EMAILS[0]]
        if row.status != "deferred":
            break
        now = row.next_attempt_at
    assert row.status == "failed" and row.last_enhanced == "4.2.2"
    assert row.first_attempt_at == NOW
    assert now <= NOW + timedelta(hours=config.email.retry_deadline_hours)
    assert subscriber(store, EMAILS[0]).soft_bounces == 1
    assert EMAILS[0] not in suppressed(store)


def test_dropped_connection_is_retried_and_the_connection_reopened(site):
    config, store, ed, server = site
    server.drop.add(EMAILS[3])
    server.drop_rcpt.add(EMAILS[5])
    report = send_pending(config, store, now=NOW)
    assert report.counts["deferred"] == 2
    assert rows(store)[EMAILS[3]].status == "deferred"
    assert rows(store)[EMAILS[3]].last_code is None
    send_pending(config, store, now=NOW + timedelta(minutes=2))
    assert sorted(server.counts()) == sorted(EMAILS)
    assert all(n == 1 for n in server.counts().values())
    assert subscriber(store, EMAILS[3]).soft_bounces == 0


@pytest.mark.parametrize("reply", ["550 5.1.1 <x>: no such user", "550 5.2.1 mailbox disabled"])
def test_hard_bounce_suppresses_the_address(site, reply):
    config, store, ed, server = site
    server.rcpt_rules[EMAILS[1]] = [reply]
    report = send_pending(config, store, now=NOW)
    assert report.counts["bounced"] == 1 and report.counts["suppressed"] == 1
    row = rows(store)[EMAILS[1]]
    assert (row.status, row.last_code, row.last_enhanced) == ("bounced", 550, reply.split()[1])
    assert suppressed(store) == {EMAILS[1]: "bounced"}
    assert subscriber(store, EMAILS[1]).status == "bounced"
    assert server.commands["RSET"] >= 1  # the connection was reset and reused


def test_policy_rejection_is_reported_not_held_against_the_subscriber(site):
    config, store, ed, server = site
    server.data_rules[EMAILS[2]] = ["554 5.7.1 message rejected as spam"]
    server.rcpt_rules[EMAILS[4]] = ["550 5.7.1 sender not authorized"]
    report = send_pending(config, store, now=NOW)
    assert report.counts["rejected"] == 2 and report.counts["suppressed"] == 0
    assert rows(store)[EMAILS[2]].status == "rejected"
    assert rows(store)[EMAILS[2]].last_enhanced == "5.7.1"
    assert suppressed(store) == {}
    assert subscriber(store, EMAILS[2]).status == "active"
    assert subscriber(store, EMAILS[2]).soft_bounces == 0
    assert "rejected 2" in report.summary()


def test_three_soft_bounces_in_a_row_suppress(tmp_path, smtp_server):
    from publisher.editions import compose
    from publisher.store import Store

    config = smtp_site(tmp_path, smtp_server.port)
    store = Store.open(config.storage.database_url)
    edition(config, store, ["full@example.com", "fine@example.com"])
    smtp_server.handler.rcpt_rules["full@example.com"] = ["552 5.2.2 mailbox full"]
    for day in range(3):
        now = NOW + timedelta(days=day)
        if day:
            add_articles(store, now, prefix=f"d{day}-")
            assert compose(config, store, config.digest("daily"), now) is not None
        send_pending(config, store, now=now)
        assert subscriber(store, "full@example.com").soft_bounces == day + 1 or day == 2
    assert suppressed(store) == {"full@example.com": "bounced"}
    assert subscriber(store, "full@example.com").status == "bounced"
    assert subscriber(store, "fine@example.com").status == "active"
    store.close()


def test_a_delivery_resets_the_soft_bounce_count(site):
    config, store, ed, server = site
    with store.engine.begin() as conn:
        bounces.soft_bounce(conn, EMAILS[0], "earlier")
        bounces.soft_bounce(conn, EMAILS[0], "earlier")
    send_pending(config, store, now=NOW)
    assert subscriber(store, EMAILS[0]).soft_bounces == 0


def test_an_address_suppressed_after_composing_is_skipped(site):
    from publisher import subscribers as subs

    config, store, ed, server = site
    subs.remove(store, EMAILS[6])
    report = send_pending(config, store, now=NOW)
    assert report.counts["skipped"] == 1
    assert EMAILS[6] not in server.recipients()
    assert rows(store)[EMAILS[6]].status == "suppressed"


def test_send_rows_sends_a_claimed_batch_with_one_transport(site):
    config, store, ed, server = site
    claimed = claim_batch(store, NOW, 5)
    transport = SMTPTransport(config.email.smtp)
    counts = send_rows(config, store, claimed, transport)
    transport.close()
    assert counts["sent"] == 5
    assert sorted(server.recipients()) == sorted(r.email for r in claimed)
    assert {rows(store)[r.email].status for r in claimed} == {"sent"}


def test_an_unreachable_server_stops_the_run_and_releases_the_claims(tmp_path):
    from publisher.store import Store
    from tests.support.smtpserver import free_port

    config = smtp_site(tmp_path, free_port(), connections=2)
    store = Store.open(config.storage.database_url)
    edition(config, store, EMAILS)
    report = send_pending(config, store, now=NOW)
    assert report.errors and report.counts["sent"] == 0
    statuses = [r.status for r in rows(store).values()]
    assert "claimed" not in statuses
    assert statuses.count("deferred") == report.counts["deferred"] <= 2 * 3
    assert statuses.count("pending") == len(EMAILS) - report.counts["deferred"]
    store.close()


def test_progress_is_reported_until_done(site):
    config, store, ed, server = site
    seen = []
    send_pending(config, store, now=NOW, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (len(EMAILS), len(EMAILS))


def test_rate_limits_space_sends_out():
    clock = [0.0]

    def sleep(seconds):
        clock[0] += seconds

    bucket = TokenBucket(10, burst=1, clock=lambda: clock[0], sleep=sleep)
    for _ in range(21):
        bucket.acquire()
    assert clock[0] == pytest.approx(2.0)
    limiter = RateLimiter(0, per_domain=2, clock=lambda: clock[0], sleep=sleep)
    clock[0] = 0.0
    for _ in range(5):
        limiter.acquire("a@slow.example")
    assert clock[0] == pytest.approx(2.0)
    limiter.acquire("b@other.example")
    assert clock[0] == pytest.approx(2.0)


def test_configured_rate_limit_is_applied(tmp_path, smtp_server, monkeypatch):
    from publisher import ratelimit
    from publisher.store import Store

    waited = []
    monkeypatch.setattr(ratelimit.TokenBucket, "acquire",
                        lambda self: waited.append(self.rate) or 0.0)
    config = smtp_site(tmp_path, smtp_server.port, extra_smtp="rate_per_second = 50\n"
                                                              "per_domain_rate = 5")
    store = Store.open(config.storage.database_url)
    edition(config, store, EMAILS[:4])
    send_pending(config, store, now=NOW)
    assert sorted(waited) == [5] * 4 + [50] * 4
    store.close()


def test_claims_of_a_dead_process_are_released(site):
    from sqlalchemy import update

    from publisher.delivery import release_dead_claims, worker_id

    config, store, ed, server = site
    host = worker_id().rpartition(":")[0]
    with store.engine.begin() as conn:
        conn.execute(update(outbox).values(status="claimed", claimed_at=NOW,
                                           claimed_by=f"{host}:999999999"))
    assert release_dead_claims(store) == len(EMAILS)
    assert send_pending(config, store, now=NOW).counts["sent"] == len(EMAILS)


def test_same_rules_on_postgresql(tmp_path, pg_url):
    from publisher.store import Store

    with SMTPServer() as server:
        config = smtp_site(tmp_path, server.port, database_url=pg_url)
        store = Store.open(config.storage.database_url)
        edition(config, store, EMAILS)
        server.handler.rcpt_rules[EMAILS[0]] = ["550 5.1.1 no such user"]
        report = send_pending(config, store, now=NOW)
        assert report.counts["sent"] == len(EMAILS) - 1 and report.counts["bounced"] == 1
        assert suppressed(store) == {EMAILS[0]: "bounced"}
        add_subscribers(store, ["late@example.com"])
        store.close()


def test_fast_links_are_tokens_the_web_side_accepts(tmp_path):
    from publisher import tokens
    from publisher.config import load_config
    from publisher.delivery import LinkSigner
    from tests.conftest import write_site

    config = load_config(write_site(tmp_path))
    signer = tokens.signer(config)
    fast = LinkSigner(config, signer)
    assert fast.fast
    for key in (tokens.new_token_key(), tokens.new_token_key()):
        for action in (tokens.UNSUBSCRIBE, tokens.PREFERENCES):
            assert signer.load(fast.make(key, action), action) == key
            with pytest.raises(tokens.BadToken):
                signer.load(fast.make(key, action), tokens.CONFIRM)
    assert signer.load(fast.make("Not-Hex-Key", tokens.UNSUBSCRIBE), tokens.UNSUBSCRIBE) \
        == "Not-Hex-Key"


def test_greylisting_4_7_x_is_retried_not_rejected(site):
    config, store, ed, server = site
    server.rcpt_rules[EMAILS[0]] = ["450 4.7.1 greylisted, try again", "250 OK"]
    assert send_pending(config, store, now=NOW).counts["deferred"] == 1
    assert send_pending(config, store, now=NOW + timedelta(minutes=2)).counts["sent"] == 1
    assert subscriber(store, EMAILS[0]).soft_bounces == 0


def test_messages_are_dkim_signed_when_configured(tmp_path, smtp_server):
    import dkim as dkimpy

    from publisher import dkim
    from publisher.store import Store
    from tests.conftest import DATA

    keys = DATA / "dkim"
    if not (keys / "test.key").exists():
        pytest.skip("the DKIM test key (tests/data/dkim) is not there")
    config = smtp_site(tmp_path, smtp_server.port,
                       extra_email=f'dkim_selector = "news2026"\n'
                                   f'dkim_key_path = "{keys / "test.key"}"')
    store = Store.open(config.storage.database_url)
    edition(config, store, EMAILS[:2])
    assert send_pending(config, store, now=NOW).counts["sent"] == 2

    def dnsfunc(name, timeout=5):
        return dkim.dns_record((keys / "test.pub").read_bytes()).encode()

    for received in smtp_server.received:
        assert dkimpy.verify(received.data, dnsfunc=dnsfunc)
        signed = received.message["DKIM-Signature"]
        assert "list-unsubscribe" in signed.lower() and "list-unsubscribe-post" in signed.lower()
    store.close()


def test_cli_send_with_the_file_transport_writes_parseable_messages(tmp_path):
    from email import message_from_bytes
    from email.policy import default

    from click.testing import CliRunner

    from publisher.cli import main
    from publisher.config import load_config
    from publisher.store import Store
    from tests.conftest import write_site

    path = write_site(tmp_path, content=tmp_path / "nocontent")
    config = load_config(path)
    store = Store.open(config.storage.database_url)
    edition(config, store, EMAILS[:3])
    store.close()
    result = CliRunner().invoke(main, ["--config", str(path), "send"])
    assert result.exit_code == 0, result.output
    assert "sent 3," in result.output and "messages/s" in result.output
    files = sorted(config.email.outbox_dir.glob("*.eml"))
    assert len(files) == 3
    msgs = [message_from_bytes(f.read_bytes(), policy=default) for f in files]
    assert sorted(m["To"].addresses[0].addr_spec for m in msgs) == sorted(EMAILS[:3])
    result = CliRunner().invoke(main, ["--config", str(path), "status"])
    assert result.exit_code == 0 and "daily-2026-03-02" in result.output


def test_kept_render_cache_is_reused_and_follows_withdrawals(site):
    """Workers keep one FactoryCache across batches: no re-render until the edition changes."""
    from email import message_from_bytes
    from email.policy import default

    from publisher.delivery import FactoryCache
    from publisher.editions import edition_articles
    from publisher.transport import make_transport

    config, store, ed, server = site
    cache = FactoryCache(config, store)
    first = claim_batch(store, NOW, 5)
    transport = make_transport(config)
    send_rows(config, store, first, transport, factories=cache)
    key = (first[0].edition_id, first[0].variant)
    kept = cache.get(*key)
    victim = edition_articles(store, ed)[0]
    second = claim_batch(store, NOW, 3)
    send_rows(config, store, second, transport, factories=cache)
    assert cache.get(*key) is kept  # nothing changed: the rendered variant is reused
    store.withdraw(victim.id, "版权投诉")
    third = claim_batch(store, NOW, 10)
    send_rows(config, store, third, transport, factories=cache)
    transport.close()
    assert cache.get(*key) is not kept  # rendered again without the withdrawn article
    later = {r.rcpt_tos[0]: message_from_bytes(r.data, policy=default) for r in server.received}
    before = later[first[0].email].get_body(("html",)).get_content()
    assert victim.url in before
    for row in third:
        html = later[row.email].get_body(("html",)).get_content()
        assert victim.title not in html and victim.url not in html
