"""Load and check ``config.toml`` once, into frozen dataclasses.

Every key, its default and its meaning are listed in the ``_DEFAULTS`` style
tables below (one place, like rss2email's ``CONFIG``). Relative paths are
resolved against the folder of the config file. Secrets are never read from
the file: only the *names* of environment variables that hold them.

A bad file raises :class:`ConfigError` naming the file, the key and the reason.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger

from .errors import ConfigError

CONFIG_ENV = "PUBLISHER_CONFIG"
SCRIPTS = ("zh-hans", "zh-hant")


@dataclass(frozen=True)
class SiteConfig:
    name: str
    url: str  # no trailing slash
    language: str = "zh-CN"
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    script: str = "zh-hans"  # canonical script articles are stored in
    contact: str = ""  # postal / contact line for the email footer
    description: str = ""


@dataclass(frozen=True)
class StorageConfig:
    database_url: str
    pool_size: int = 5  # connections kept per process (PostgreSQL); ≥ worker threads
    max_overflow: int = 10  # extra connections a process may open at a peak

    def engine_kwargs(self) -> dict[str, int]:
        """Pool settings for :func:`publisher.store.Store.open` (server databases only)."""
        if self.database_url.startswith("sqlite"):
            return {}
        return {"pool_size": self.pool_size, "max_overflow": self.max_overflow}


@dataclass(frozen=True)
class SourceConfig:
    name: str
    type: str  # directory | feed
    path: Path | None = None
    url: str | None = None
    category: str = ""  # default category for a feed source
    timeout: float = 10.0  # connect and read timeout, seconds
    max_bytes: int = 5_000_000
    origin: str = ""  # "" = decided per article; "reprint" marks a whole upstream


@dataclass(frozen=True)
class FeedsConfig:
    output_dir: Path
    max_items: int = 50
    hub: str | None = None
    archive_size: int = 100  # items per RFC 5005 archive page
    base_url: str = ""  # public URL of output_dir; "" = <site.url>/feeds
    hub_retries: int = 3  # extra attempts of a failed WebSub ping
    hub_timeout: float = 10.0  # seconds, connect and read, per ping


@dataclass(frozen=True)
class SMTPConfig:
    host: str = "127.0.0.1"
    port: int = 25
    security: str = "none"  # none | starttls | ssl
    username: str = ""
    password_env: str = "PUBLISHER_SMTP_PASSWORD"
    connections: int = 4
    rate_per_second: float = 0.0
    per_domain_rate: float = 0.0
    timeout: float = 30.0
    ca_file: Path | None = None  # extra CA bundle to trust (a private relay); system CAs otherwise

    @property
    def password(self) -> str:
        return os.environ.get(self.password_env, "")


@dataclass(frozen=True)
class EmailConfig:
    from_addr: str
    transport: str = "file"  # file | smtp
    outbox_dir: Path = Path("var/outbox")
    smtp: SMTPConfig = field(default_factory=SMTPConfig)
    dkim_selector: str = ""
    dkim_key_path: Path | None = None
    reply_to: str = ""
    unsubscribe_mailto: str = ""
    batch_size: int = 500
    retry_deadline_hours: float = 24.0


@dataclass(frozen=True)
class QueueConfig:
    broker_url: str
    prefix: str = "publisher"  # queue names: <prefix>.send, <prefix>.partners, <prefix>.feeds
    visibility_timeout: int = 3600  # Redis: seconds before an unacked task is redelivered


@dataclass(frozen=True)
class DigestConfig:
    name: str
    schedule: str
    subject: str
    frequency: str = "daily"  # daily | weekly: which subscribers get it, and the window
    max_articles: int = 30


@dataclass(frozen=True)
class RightsConfig:
    holder: str
    disclaimer: str
    terms_version: str


@dataclass(frozen=True)
class PartnerConfig:
    name: str
    delivery: str  # webhook | feed | email
    url: str = ""
    secret_env: str = ""
    categories: tuple[str, ...] = ()
    full_text: bool = True
    reprints: str = "exclude"  # exclude | headline
    embargo_minutes: int = 0
    timeout: float = 10.0  # webhook connect and read timeout, seconds
    attempts_per_run: int = 3  # tries of one delivery in one run (backoff in between)
    retry_base_seconds: float = 1.0  # first in-run backoff; doubles per try
    retry_deadline_minutes: float = 1440.0  # then the delivery is dead-lettered

    @property
    def secret(self) -> str:
        return os.environ.get(self.secret_env, "") if self.secret_env else ""


@dataclass(frozen=True)
class WebConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    secret_key_env: str = "PUBLISHER_SECRET_KEY"
    subscribe_rate_per_hour: int = 10
    secure_cookies: bool = False  # set behind TLS: the session cookie is sent over https only
    proxies: int = 0  # reverse proxies in front (X-Forwarded-For/-Proto hops trusted)


@dataclass(frozen=True)
class SchedulerConfig:
    collect_minutes: int = 5
    misfire_grace_seconds: int = 600
    leader_poll_seconds: float = 5.0  # how often a standby scheduler tries to take over


@dataclass(frozen=True)
class Config:
    path: Path
    root: Path
    site: SiteConfig
    storage: StorageConfig
    sources: tuple[SourceConfig, ...]
    feeds: FeedsConfig
    email: EmailConfig
    digests: tuple[DigestConfig, ...]
    rights: RightsConfig
    partners: tuple[PartnerConfig, ...] = ()
    queue: QueueConfig | None = None
    web: WebConfig = field(default_factory=WebConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    categories: dict[str, str] = field(default_factory=dict)  # name -> ASCII slug
    var_dir: Path = Path("var")
    templates_dir: Path | None = None
    demo_subscribers: Path | None = None  # CSV loaded when the database has no subscribers
    demo_as_of: datetime | None = None  # the first cycle of the daemon runs as of this time

    def digest(self, name: str) -> DigestConfig:
        for d in self.digests:
            if d.name == name:
                return d
        known = ", ".join(d.name for d in self.digests) or "none"
        raise ConfigError(f"{self.path}: no [[digests]] named {name!r} (known: {known})")

    def partner(self, name: str) -> PartnerConfig:
        for p in self.partners:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.partners) or "none"
        raise ConfigError(f"{self.path}: no [[partners]] named {name!r} (known: {known})")


class _Reader:
    """Typed access to one TOML table, with errors that name file and key."""

    def __init__(self, path: Path, table: dict[str, Any], where: str):
        self.path, self.table, self.where = path, table, where
        self.used: set[str] = set()

    def fail(self, key: str, reason: str) -> ConfigError:
        return ConfigError(f"{self.path}: {self.where}{key}: {reason}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., *, required=False):
        self.used.add(key)
        if key not in self.table:
            if required or default is ...:
                raise self.fail(key, "is required")
            return default
        value = self.table[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and kind is not bool and bool not in _as_tuple(kind):
            raise self.fail(key, f"must be {_kind_name(kind)}, not a boolean")
        if not isinstance(value, kind):
            raise self.fail(key, f"must be {_kind_name(kind)} (got {value!r})")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.get(key, str, default)
        if value not in choices:
            raise self.fail(key, f"must be one of {', '.join(choices)} (got {value!r})")
        return value

    def positive(self, key: str, default: int | float, *, zero_ok=False) -> Any:
        value = self.get(key, type(default) if isinstance(default, int) else float, default)
        if value < 0 or (value == 0 and not zero_ok):
            raise self.fail(key, f"must be {'≥' if zero_ok else '>'} 0 (got {value!r})")
        return value

    def sub(self, key: str) -> _Reader:
        table = self.get(key, dict, {})
        return _Reader(self.path, table, f"{self.where}{key}.")

    def check_unknown(self, allowed_extra: tuple[str, ...] = ()) -> None:
        unknown = set(self.table) - self.used - set(allowed_extra)
        if unknown:
            raise self.fail(sorted(unknown)[0], "unknown key")


def _as_tuple(kind):
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
             list: "a list", dict: "a table"}
    return " or ".join(names.get(k, k.__name__) for k in _as_tuple(kind))


def _path(root: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (root / p)


def _resolve_sqlite(url: str, root: Path) -> str:
    """Make a relative SQLite path relative to the config folder."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith("sqlite:////") and ":memory:" not in url:
        return prefix + str(_path(root, url[len(prefix):]))
    return url


def default_config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or "config.toml")


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read, check and return the configuration at *path*."""
    path = Path(path) if path else default_config_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found (set --config or {CONFIG_ENV})") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config file: {e.strerror}") from e
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 at byte {e.start}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from e
    return parse_config(data, path.resolve())


def parse_config(data: dict[str, Any], path: Path) -> Config:
    root = path.parent
    top = _Reader(path, data, "")
    site = _site(top.sub("site"))
    storage_r = top.sub("storage")
    url = storage_r.get("database_url", str, "sqlite:///var/publisher.db")
    if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", url):
        raise storage_r.fail("database_url", "must be a sqlite:/// or postgresql+psycopg:// URL")
    storage = StorageConfig(_resolve_sqlite(url, root),
                            pool_size=storage_r.positive("pool_size", 5),
                            max_overflow=storage_r.positive("max_overflow", 10, zero_ok=True))
    storage_r.check_unknown()

    sources = tuple(_source(_Reader(path, t, f"sources[{i}]."), root)
                    for i, t in enumerate(_tables(top, "sources")))
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise top.fail("sources", "source names must be unique")

    feeds_r = top.sub("feeds")
    feeds = FeedsConfig(
        output_dir=_path(root, feeds_r.get("output_dir", str, "feeds")),
        max_items=feeds_r.positive("max_items", 50),
        hub=feeds_r.get("hub", str, "") or None,
        archive_size=feeds_r.positive("archive_size", 100),
        base_url=feeds_r.get("base_url", str, "").rstrip("/"),
        hub_retries=feeds_r.positive("hub_retries", 3, zero_ok=True),
        hub_timeout=feeds_r.positive("hub_timeout", 10.0),
    )
    if feeds.base_url and not feeds.base_url.startswith(("http://", "https://")):
        raise feeds_r.fail("base_url", "must be an http(s) URL")
    if feeds.hub and not feeds.hub.startswith(("http://", "https://")):
        raise feeds_r.fail("hub", "must be an http(s) URL")
    feeds_r.check_unknown()

    email = _email(top.sub("email"), root)
    queue_r = top.sub("queue")
    queue = None
    if queue_r.table:
        broker = queue_r.get("broker_url", str, required=True)
        if not broker.startswith(("redis://", "rediss://", "amqp://", "amqps://", "memory://")):
            raise queue_r.fail("broker_url", "must be a redis:// or amqp:// URL")
        prefix = queue_r.get("prefix", str, "publisher")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", prefix):
            raise queue_r.fail("prefix", f"must be letters, digits, '.', '_' or '-' (got {prefix!r})")
        queue = QueueConfig(broker, prefix=prefix,
                            visibility_timeout=queue_r.positive("visibility_timeout", 3600))
        queue_r.check_unknown()

    digests = tuple(_digest(_Reader(path, t, f"digests[{i}].")) for i, t in
                    enumerate(_tables(top, "digests")))
    if len({d.name for d in digests}) != len(digests):
        raise top.fail("digests", "digest names must be unique")

    rights_r = top.sub("rights")
    rights = RightsConfig(
        holder=rights_r.get("holder", str, site.name),
        disclaimer=rights_r.get("disclaimer", str, ""),
        terms_version=rights_r.get("terms_version", str, "1"),
    )
    rights_r.check_unknown()

    partners = tuple(_partner(_Reader(path, t, f"partners[{i}].")) for i, t in
                     enumerate(_tables(top, "partners")))
    if len({p.name for p in partners}) != len(partners):
        raise top.fail("partners", "partner names must be unique")

    web_r = top.sub("web")
    web = WebConfig(
        host=web_r.get("host", str, "127.0.0.1"),
        port=web_r.positive("port", 8000),
        secret_key_env=web_r.get("secret_key_env", str, "PUBLISHER_SECRET_KEY"),
        subscribe_rate_per_hour=web_r.positive("subscribe_rate_per_hour", 10),
        secure_cookies=web_r.get("secure_cookies", bool, False),
        proxies=web_r.positive("proxies", 0, zero_ok=True),
    )
    web_r.check_unknown()

    sched_r = top.sub("scheduler")
    scheduler = SchedulerConfig(
        collect_minutes=sched_r.positive("collect_minutes", 5),
        misfire_grace_seconds=sched_r.positive("misfire_grace_seconds", 600),
        leader_poll_seconds=sched_r.positive("leader_poll_seconds", 5.0),
    )
    sched_r.check_unknown()

    cats_r = top.sub("categories")
    categories = {}
    for name in cats_r.table:
        slug = cats_r.get(name, str)
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", slug):
            raise cats_r.fail(name, f"slug must be lowercase ASCII letters, digits and '-' (got {slug!r})")
        categories[name] = slug

    var_dir = _path(root, top.get("var_dir", str, "var"))
    demo_r = top.sub("demo")
    demo_csv = demo_r.get("subscribers", str, "")
    as_of = demo_r.get("as_of", (str, datetime), "") or None
    if isinstance(as_of, str):
        try:
            as_of = datetime.fromisoformat(as_of)
        except ValueError:
            raise demo_r.fail("as_of", f"not an ISO 8601 date and time: {as_of!r}") from None
    if as_of is not None and as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=site.timezone)
    demo_r.check_unknown()
    templates = root / "templates"
    top.check_unknown(("site", "storage", "sources", "feeds", "email", "queue", "digests",
                       "rights", "partners", "web", "scheduler", "categories", "demo", "var_dir"))
    return Config(path=path, root=root, site=site, storage=storage, sources=sources, feeds=feeds,
                  email=email, digests=digests, rights=rights, partners=partners, queue=queue,
                  web=web, scheduler=scheduler, categories=categories, var_dir=var_dir,
                  templates_dir=templates if templates.is_dir() else None,
                  demo_subscribers=_path(root, demo_csv) if demo_csv else None,
                  demo_as_of=as_of)


def _tables(top: _Reader, key: str) -> list[dict[str, Any]]:
    value = top.get(key, list, [])
    for i, t in enumerate(value):
        if not isinstance(t, dict):
            raise top.fail(f"{key}[{i}]", f"must be a table ([[{key}]])")
    return value


def _site(r: _Reader) -> SiteConfig:
    url = r.get("url", str, required=True).rstrip("/")
    if not re.match(r"^https?://[^/\s]+", url):
        raise r.fail("url", f"must be an absolute http(s) URL (got {url!r})")
    tz_name = r.get("timezone", str, "Asia/Shanghai")
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise r.fail("timezone", f"unknown time zone {tz_name!r}") from None
    site = SiteConfig(
        name=r.get("name", str, required=True),
        url=url,
        language=r.get("language", str, "zh-CN"),
        timezone=tz,
        script=r.choice("script", SCRIPTS, "zh-hans"),
        contact=r.get("contact", str, ""),
        description=r.get("description", str, ""),
    )
    if not site.name.strip():
        raise r.fail("name", "must not be empty")
    r.check_unknown()
    return site


def _source(r: _Reader, root: Path) -> SourceConfig:
    name = r.get("name", str, required=True)
    kind = r.choice("type", ("directory", "feed"), "directory")
    path = url = None
    if kind == "directory":
        path = _path(root, r.get("path", str, required=True))
    else:
        url = r.get("url", str, required=True)
        if not url.startswith(("http://", "https://")):
            raise r.fail("url", f"must be an http(s) URL (got {url!r})")
    src = SourceConfig(
        name=name, type=kind, path=path, url=url,
        category=r.get("category", str, ""),
        timeout=r.positive("timeout", 10.0),
        max_bytes=r.positive("max_bytes", 5_000_000),
        origin=r.choice("origin", ("", "original", "reprint"), ""),
    )
    r.check_unknown()
    return src


def _email(r: _Reader, root: Path) -> EmailConfig:
    smtp_r = r.sub("smtp")
    smtp = SMTPConfig(
        host=smtp_r.get("host", str, "127.0.0.1"),
        port=smtp_r.positive("port", 25),
        security=smtp_r.choice("security", ("none", "starttls", "ssl"), "none"),
        username=smtp_r.get("username", str, ""),
        password_env=smtp_r.get("password_env", str, "PUBLISHER_SMTP_PASSWORD"),
        connections=smtp_r.positive("connections", 4),
        rate_per_second=smtp_r.positive("rate_per_second", 0.0, zero_ok=True),
        per_domain_rate=smtp_r.positive("per_domain_rate", 0.0, zero_ok=True),
        timeout=smtp_r.positive("timeout", 30.0),
        ca_file=_path(root, ca) if (ca := smtp_r.get("ca_file", str, "")) else None,
    )
    if "password" in smtp_r.table:
        raise smtp_r.fail("password", "secrets never live in config.toml: "
                          "put the password in the variable named by password_env")
    smtp_r.check_unknown()
    from_addr = r.get("from", str, required=True)
    if "\r" in from_addr or "\n" in from_addr or "@" not in from_addr:
        raise r.fail("from", f"must be an address like 'Name <news@example.com>' (got {from_addr!r})")
    key = r.get("dkim_key_path", str, "")
    email = EmailConfig(
        from_addr=from_addr,
        transport=r.choice("transport", ("file", "smtp"), "file"),
        outbox_dir=_path(root, r.get("outbox_dir", str, "var/outbox")),
        smtp=smtp,
        dkim_selector=r.get("dkim_selector", str, ""),
        dkim_key_path=_path(root, key) if key else None,
        reply_to=r.get("reply_to", str, ""),
        unsubscribe_mailto=r.get("unsubscribe_mailto", str, ""),
        batch_size=r.positive("batch_size", 500),
        retry_deadline_hours=r.positive("retry_deadline_hours", 24.0),
    )
    if bool(email.dkim_selector) != bool(email.dkim_key_path):
        raise r.fail("dkim_selector", "dkim_selector and dkim_key_path go together")
    r.check_unknown()
    return email


def _digest(r: _Reader) -> DigestConfig:
    name = r.get("name", str, required=True)
    schedule = r.get("schedule", str, required=True)
    try:
        CronTrigger.from_crontab(schedule)
    except ValueError as e:
        raise r.fail("schedule", f"invalid cron expression {schedule!r}: {e}") from None
    default_freq = "weekly" if "week" in name.lower() else "daily"
    d = DigestConfig(
        name=name, schedule=schedule,
        subject=r.get("subject", str, "{site} {date}"),
        frequency=r.choice("frequency", ("daily", "weekly"), default_freq),
        max_articles=r.positive("max_articles", 30),
    )
    try:
        d.subject.format(site="", date="", name="", count=0)
    except (KeyError, IndexError, ValueError) as e:
        raise r.fail("subject", f"unknown placeholder {e} "
                     "(use {site}, {date}, {name}, {count})") from None
    r.check_unknown()
    return d


def _partner(r: _Reader) -> PartnerConfig:
    delivery = r.choice("delivery", ("webhook", "feed", "email"), "webhook")
    url = r.get("url", str, "")
    if delivery == "webhook" and not url.startswith(("http://", "https://")):
        raise r.fail("url", "a webhook partner needs an http(s) url")
    if delivery == "email" and "@" not in url:
        raise r.fail("url", "an email partner needs the editors' address in url")
    cats = r.get("categories", list, [])
    if not all(isinstance(c, str) for c in cats):
        raise r.fail("categories", "must be a list of strings")
    p = PartnerConfig(
        name=r.get("name", str, required=True),
        delivery=delivery, url=url,
        secret_env=r.get("secret_env", str, ""),
        categories=tuple(cats),
        full_text=r.get("full_text", bool, True),
        reprints=r.choice("reprints", ("exclude", "headline"), "exclude"),
        embargo_minutes=r.positive("embargo_minutes", 0, zero_ok=True),
        timeout=r.positive("timeout", 10.0),
        attempts_per_run=r.positive("attempts_per_run", 3),
        retry_base_seconds=r.positive("retry_base_seconds", 1.0, zero_ok=True),
        retry_deadline_minutes=r.positive("retry_deadline_minutes", 1440.0),
    )
    if "secret" in r.table:
        raise r.fail("secret", "secrets never live in config.toml: use secret_env")
    if delivery in ("webhook", "feed") and not p.secret_env:
        raise r.fail("secret_env", f"a {delivery} partner needs secret_env (the variable holding its key)")
    r.check_unknown()
    return p
