"""The ``publisher`` command line: every stage by hand.

Errors are one line on stderr and an exit code: 2 for usage or config
problems, 1 for failures; ``--verbose`` adds the traceback.
"""

from __future__ import annotations

import functools
import logging
import sys
import traceback
from pathlib import Path

import click
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from . import feeds as feeds_mod
from . import pipeline
from . import subscribers as subs
from .collect import collect as collect_articles
from .collect import source_statuses
from .config import CONFIG_ENV, Config, load_config
from .delivery import send_pending
from .errors import PublisherError, UsageError
from .status import send_progress
from .store import Store

logger = logging.getLogger(__name__)
console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


class Context:
    def __init__(self, config_path: str | None, verbose: bool):
        self.config_path = config_path
        self.verbose = verbose
        self._config: Config | None = None
        self._store: Store | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = pipeline.open_store(self.config)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def setup_logging(verbose: bool) -> None:
    """Rich log lines on a terminal; plain one-line records otherwise (pipes, systemd)."""
    level = logging.DEBUG if verbose else logging.WARNING
    if console.is_terminal:
        handler: logging.Handler = RichHandler(console=console, show_path=verbose,
                                               show_time=verbose, markup=False)
        fmt = "%(message)s"
    else:
        handler = logging.StreamHandler(sys.stderr)
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, force=True, handlers=[handler])
    for noisy in ("alembic", "urllib3", "feedgen", "apscheduler.scheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING if not verbose else logging.INFO)


def run_guarded(ctx: Context, fn, *args, **kwargs):
    """Run *fn*, turning PublisherError into one line and an exit code."""
    try:
        return fn(*args, **kwargs)
    except PublisherError as e:
        if ctx.verbose:
            traceback.print_exc()
        console.print(f"[bold red]error:[/] {e}", highlight=False, markup=True, soft_wrap=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)
    finally:
        ctx.close()


def command(group, *args, **kwargs):
    """A click command whose body runs guarded, with the Context as first argument."""
    def wrap(fn):
        @group.command(*args, **kwargs)
        @click.pass_obj
        @functools.wraps(fn)
        def inner(ctx: Context, **kw):
            return run_guarded(ctx, fn, ctx, **kw)
        return inner
    return wrap


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar=CONFIG_ENV,
              help=f"config.toml to use (default ./config.toml, or ${CONFIG_ENV}).")
@click.option("-v", "--verbose", is_flag=True, help="More logging; tracebacks on errors.")
@click.pass_context
def main(click_ctx: click.Context, config_path: str | None, verbose: bool) -> None:
    """Newsletter and syndication publisher for news sites."""
    setup_logging(verbose)
    click_ctx.obj = Context(config_path, verbose)


@command(main, "collect")
def collect_cmd(ctx: Context) -> None:
    """Read every source and store new or changed articles."""
    report = collect_articles(ctx.config, ctx.store)
    c = report.counts
    out.print(f"collected: {c['new']} new, {c['updated']} updated, {c['unchanged']} unchanged, "
              f"{c['duplicate']} duplicates, {len(report.errors)} errors")
    for err in report.errors:
        console.print(f"  {err}", markup=False)
    if report.errors and not (c["new"] or c["updated"] or c["unchanged"]):
        sys.exit(1)


@command(main, "feeds")
def feeds_cmd(ctx: Context) -> None:
    """Build every feed (only changed files are rewritten)."""
    changed = feeds_mod.build_all(ctx.config, ctx.store)
    out.print(f"feeds: {len(changed)} files changed in {ctx.config.feeds.output_dir}")


@command(main, "digest")
@click.argument("name", required=False)
@click.option("--preview", is_flag=True, help="Compose and write a preview, send nothing.")
@click.option("--send", "send", is_flag=True, help="Compose and send now.")
def digest_cmd(ctx: Context, name: str | None, preview: bool, send: bool) -> None:
    """Compose a digest edition (all digests without NAME)."""
    if preview and send:
        raise UsageError("--preview and --send exclude each other")
    targets = [ctx.config.digest(name)] if name else list(ctx.config.digests)
    if not targets:
        raise UsageError(f"{ctx.config.path}: no [[digests]] configured")
    for d in targets:
        if preview:
            path = preview_digest(ctx, d)
            out.print(f"{d.name}: preview written to {path}")
            continue
        edition, report = pipeline.digest(ctx.config, ctx.store, d, send=False)
        if send and edition is not None:
            with send_progress(console) as progress:
                report = send_pending(ctx.config, ctx.store, edition_id=edition.id,
                                      progress=progress)
        if edition is None:
            out.print(f"{d.name}: nothing new to send")
        else:
            out.print(f"{d.name}: edition {edition.key}, {edition.total} recipients"
                      + (f"; {report.summary()}" if report else " (queued; run 'publisher send')"))


def preview_digest(ctx: Context, d) -> Path:
    from .editions import WINDOWS, edition_key
    from .feedwriter import atomic_write
    from .render import Variant, render_digest
    from .store import utcnow

    now = utcnow()
    articles = ctx.store.published_articles(now, since=now - WINDOWS[d.frequency],
                                            limit=d.max_articles)
    key = edition_key(ctx.config, d, now)
    rendered = render_digest(ctx.config, d, key, now, articles,
                             Variant(ctx.config.site.script, (), d.frequency),
                             f"{ctx.config.site.url}/archive/{key}")
    path = ctx.config.var_dir / "preview" / f"{key}.html"
    atomic_write(path, rendered.html.encode("utf-8"))
    return path


@command(main, "send")
def send_cmd(ctx: Context) -> None:
    """Send every pending message in the outbox."""
    with send_progress(console) as progress:
        report = send_pending(ctx.config, ctx.store, progress=progress)
    out.print(report.summary())
    if report.errors:
        sys.exit(1)


@command(main, "cycle")
@click.option("--digests", is_flag=True, help="Also compose every digest now.")
def cycle_cmd(ctx: Context, digests: bool) -> None:
    """Collect, build feeds, send what is due, syndicate."""
    report = pipeline.cycle(ctx.config, ctx.store, digests=digests)
    print_cycle(report)


def print_cycle(report: pipeline.CycleReport) -> None:
    c = report.collected.counts if report.collected else {}
    out.print(f"collect: {c.get('new', 0)} new, {c.get('updated', 0)} updated; "
              f"feeds: {len(report.feeds_changed)} files changed; "
              f"editions: {', '.join(e.key for e in report.editions) or 'none'}; "
              f"send: {report.sent.summary() if report.sent else '-'}")
    for err in report.errors:
        console.print(f"  {err}", markup=False)


@command(main, "withdraw")
@click.argument("article_id")
@click.option("--reason", required=True, help="Why (kept in the audit log).")
def withdraw_cmd(ctx: Context, article_id: str, reason: str) -> None:
    """Withdraw an article everywhere (feeds, digests, archive, partners)."""
    article, changed = pipeline.withdraw(ctx.config, ctx.store, article_id, reason)
    out.print(f"withdrawn: {article.id} ({article.title}); {len(changed)} feed files rebuilt")


@command(main, "status")
def status_cmd(ctx: Context) -> None:
    """Sources, subscribers and editions at a glance."""
    from .editions import list_editions
    from .status import edition_progress

    t = Table(title="sources")
    for col in ("source", "last success", "last error", "failures", "articles"):
        t.add_column(col)
    for s in source_statuses(ctx.store):
        t.add_row(s["name"], _when(s["last_success"]), (s["last_error"] or "")[:80],
                  str(s["consecutive_failures"]), str(s["article_count"]))
    out.print(t)
    counts = sorted(subs.count(ctx.store).items())
    out.print("subscribers: " + (", ".join(f"{k} {v}" for k, v in counts) or "none"))
    t = Table(title="editions")
    for col in ("edition", "status", "total", "sent", "pending", "failed"):
        t.add_column(col)
    for e in list_editions(ctx.store, 20):
        p = edition_progress(ctx.store, e.id)
        t.add_row(e.key, e.status, str(e.total), str(p.get("sent", 0)),
                  str(p.get("pending", 0) + p.get("claimed", 0) + p.get("deferred", 0)),
                  str(p.get("failed", 0) + p.get("bounced", 0) + p.get("rejected", 0)))
    out.print(t)


def _when(dt) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S UTC") if dt else "never"


@command(main, "serve")
@click.option("--host", default=None, help="Interface (default [web].host).")
@click.option("--port", type=int, default=None, help="Port (default [web].port).")
def serve_cmd(ctx: Context, host: str | None, port: int | None) -> None:
    """Serve the feeds and the subscriber pages."""
    from .web import create_app

    app = create_app(ctx.config)
    app.run(host=host or ctx.config.web.host, port=port or ctx.config.web.port, threaded=True)


@main.group("subscribers")
def subscribers_group() -> None:
    """Manage subscribers."""


@command(subscribers_group, "add")
@click.argument("email")
@click.option("--name", default="")
@click.option("--frequency", type=click.Choice(subs.FREQUENCIES), default="daily")
@click.option("--categories", default="", help="Separated by ';' (empty = all).")
@click.option("--script", type=click.Choice(["zh-hans", "zh-hant"]), default="zh-hans")
def subscribers_add(ctx: Context, email, name, frequency, categories, script) -> None:
    """Add (or update) one confirmed subscriber."""
    try:
        outcome = subs.upsert(ctx.store, email, name=name, frequency=frequency,
                              categories=subs.parse_categories(categories), script=script)
    except subs.InvalidRow as e:
        raise UsageError(str(e)) from None
    out.print(f"{email}: {outcome}")


@command(subscribers_group, "remove")
@click.argument("email")
def subscribers_remove(ctx: Context, email) -> None:
    """Unsubscribe an address (and suppress it)."""
    try:
        found = subs.remove(ctx.store, email)
    except subs.InvalidRow as e:
        raise UsageError(str(e)) from None
    out.print(f"{email}: {'removed' if found else 'not subscribed; suppressed anyway'}")


@command(subscribers_group, "list")
@click.option("--status", type=click.Choice(subs.STATUSES), default=None)
def subscribers_list(ctx: Context, status) -> None:
    """List subscribers."""
    t = Table()
    for col in ("email", "name", "frequency", "categories", "script", "status"):
        t.add_column(col)
    for s in subs.list_subscribers(ctx.store, status):
        t.add_row(s.email, s.name, s.frequency, ";".join(s.categories), s.script, s.status)
    out.print(t)


@command(subscribers_group, "import")
@click.argument("csv_path", type=click.Path(dir_okay=False))
def subscribers_import(ctx: Context, csv_path) -> None:
    """Import subscribers from CSV (bad rows reported, good rows kept)."""
    r = subs.import_csv(ctx.store, Path(csv_path))
    for err in r.errors:
        console.print(err, markup=False, highlight=False)
    out.print(f"imported: {r.added} added, {r.updated} updated, {r.unchanged} unchanged, "
              f"{r.suppressed} suppressed, {len(r.errors)} rejected")
    if r.errors and not (r.added or r.updated or r.unchanged):
        sys.exit(1)


@command(subscribers_group, "export")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="-")
def subscribers_export(ctx: Context, output) -> None:
    """Export subscribers as CSV."""
    if output == "-":
        subs.export_csv(ctx.store, sys.stdout)
    else:
        with open(output, "w", encoding="utf-8", newline="") as f:
            subs.export_csv(ctx.store, f)


@main.group("partners")
def partners_group() -> None:
    """Partner syndication."""


@command(partners_group, "list")
def partners_list(ctx: Context) -> None:
    """Partners, their delivery and what they are licensed to."""
    from . import syndication

    syndication.print_partners(ctx.config, ctx.store, out)


@command(partners_group, "report")
@click.argument("name")
@click.option("--csv", "as_csv", is_flag=True, help="Export the audit log as CSV.")
def partners_report(ctx: Context, name: str, as_csv: bool) -> None:
    """What partner NAME received, when, under which terms (audit log)."""
    from . import syndication

    syndication.print_report(ctx.config, ctx.store, name, out, as_csv=as_csv)


@main.group("bounces")
def bounces_group() -> None:
    """Asynchronous bounces and complaints."""


@command(bounces_group, "process")
@click.argument("path", type=click.Path(exists=True))
def bounces_process(ctx: Context, path: str) -> None:
    """Read DSNs (RFC 3464) and ARF reports (RFC 5965) from a Maildir or mbox."""
    from . import bounces

    report = bounces.process_path(ctx.config, ctx.store, Path(path))
    out.print(report.summary())


@command(main, "worker", context_settings={"ignore_unknown_options": True})
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker_cmd(ctx: Context, celery_args: tuple[str, ...]) -> None:
    """Start a Celery worker with the project's settings (needs [queue])."""
    from . import tasks

    tasks.run_worker(ctx.config, list(celery_args))


if __name__ == "__main__":  # pragma: no cover
    main()
