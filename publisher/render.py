"""Rendering: the one Jinja2 environment, and digests rendered once per variant.

A variant is what makes two subscribers' digests differ in content (script,
chosen categories, frequency). Each variant is rendered and CSS-inlined once;
per-recipient values (preference and unsubscribe links) are left as
placeholders that the message builder fills with plain string joins.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from itertools import groupby
from pathlib import Path

from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    select_autoescape,
)
from premailer import Premailer

from . import scripts
from .config import Config, DigestConfig
from .errors import RenderError
from .models import Article

logger = logging.getLogger(__name__)

PACKAGED_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
# Per-recipient placeholders: plain word characters survive escaping and inlining.
PREFS_URL = "PUBLISHERPREFSURL0"
UNSUB_URL = "PUBLISHERUNSUBURL0"
RECIPIENT = "PUBLISHERRECIPIENT0"


@dataclass(frozen=True)
class Variant:
    script: str
    categories: tuple[str, ...]  # sorted; empty = all
    frequency: str

    @property
    def key(self) -> str:
        return f"{self.script}|{';'.join(self.categories)}|{self.frequency}"

    @classmethod
    def from_key(cls, key: str) -> Variant:
        script, cats, freq = key.split("|")
        return cls(script, tuple(c for c in cats.split(";") if c), freq)

    def selects(self, article: Article) -> bool:
        return not self.categories or article.category in self.categories


@dataclass(frozen=True)
class RenderedDigest:
    subject: str
    html: str  # CSS inlined, with placeholders
    text: str  # with placeholders
    article_count: int


@lru_cache(maxsize=8)
def _environment(site_templates: Path | None) -> Environment:
    loaders = [FileSystemLoader(str(site_templates))] if site_templates else []
    loaders.append(FileSystemLoader(str(PACKAGED_TEMPLATES)))
    env = Environment(loader=ChoiceLoader(loaders), undefined=StrictUndefined,
                      autoescape=select_autoescape(["html", "xml", "htm"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["localdate"] = lambda dt, tz, fmt="%Y-%m-%d %H:%M": dt.astimezone(tz).strftime(fmt)
    return env


def environment(config: Config) -> Environment:
    """The Jinja2 environment: the site's templates/ first, then the packaged ones."""
    site = config.templates_dir
    if site and site.resolve() == PACKAGED_TEMPLATES:
        site = None
    return _environment(site)


def render_template(config: Config, name: str, **context) -> str:
    try:
        return environment(config).get_template(name).render(**context)
    except TemplateError as e:
        raise RenderError(f"template {name}: {e}") from e


def group_by_category(articles: list[Article]) -> list[tuple[str, list[Article]]]:
    """Articles grouped by category, categories in order of first appearance."""
    order: dict[str, int] = {}
    for a in articles:
        order.setdefault(a.category or "", len(order))
    ordered = sorted(articles, key=lambda a: (order[a.category or ""], -a.published.timestamp()))
    return [(cat, list(items)) for cat, items in groupby(ordered, key=lambda a: a.category or "")]


def localize(article: Article, script: str) -> Article:
    """The article's reader-visible text in *script*."""
    return article.evolve(
        title=scripts.to_script(article.title, script),
        summary=scripts.to_script(article.summary, script),
        author=scripts.to_script(article.author, script),
        category=scripts.to_script(article.category, script),
        source_name=scripts.to_script(article.source_name, script),
    )


def digest_subject(config: Config, digest: DigestConfig, date: datetime, count: int,
                   script: str) -> str:
    subject = digest.subject.format(site=config.site.name, name=digest.name,
                                    date=date.astimezone(config.site.timezone).strftime("%Y-%m-%d"),
                                    count=count)
    subject = " ".join(subject.split())  # no CR/LF, no runs of space
    return scripts.to_script(subject, script)


def render_digest(config: Config, digest: DigestConfig, edition_key: str, date: datetime,
                  articles: list[Article], variant: Variant, archive_url: str, *,
                  web: bool = False) -> RenderedDigest:
    """Render one variant of an edition: subject, inlined HTML and plain text.

    *web* renders the archive ("view in browser") page: no recipient, and a
    subscribe link where the preference and unsubscribe links would be.
    """
    chosen = [localize(a, variant.script) for a in articles if variant.selects(a)]
    subject = digest_subject(config, digest, date, len(chosen), variant.script)
    context = dict(
        site=config.site, rights=config.rights, digest=digest, subject=subject,
        groups=group_by_category(chosen), count=len(chosen), date=date,
        tz=config.site.timezone, script=variant.script, edition_key=edition_key,
        archive_url=archive_url, prefs_url=PREFS_URL, unsubscribe_url=UNSUB_URL,
        recipient=RECIPIENT, disclaimer=scripts.to_script(config.rights.disclaimer, variant.script),
        preheader=_preheader(chosen),
        lang="zh-Hant" if variant.script == "zh-hant" else "zh-Hans",
        web=web, subscribe_url=f"{config.site.url}/subscribe",
    )
    html = render_template(config, "email/digest.html", **context)
    text = _tidy_text(render_template(config, "email/digest.txt", **context))
    if variant.script == "zh-hant":  # the templates' own words, too
        html = scripts.convert_html(html, variant.script)
        text = scripts.to_script(text, variant.script)
    inlined = _restore_placeholders(inline_css(html, config.site.url))
    return RenderedDigest(subject=subject, html=inlined, text=text, article_count=len(chosen))


_JOINED_PLACEHOLDER = re.compile(rf'="[^"]*?({PREFS_URL}|{UNSUB_URL})"')


def _restore_placeholders(html: str) -> str:
    """Undo premailer's base_url join (``https://site/PUBLISHERPREFSURL0``) on placeholders."""
    return _JOINED_PLACEHOLDER.sub(r'="\1"', html)


def _preheader(articles: list[Article]) -> str:
    titles = "；".join(a.title for a in articles[:3])
    return titles[:110]


def inline_css(html: str, base_url: str) -> str:
    """Inline the CSS with premailer; only @media rules stay in <style>."""
    try:
        return Premailer(html, base_url=base_url, remove_classes=False, keep_style_tags=False,
                         strip_important=False, cssutils_logging_level=logging.CRITICAL,
                         disable_validation=True, allow_network=False).transform()
    except Exception as e:  # noqa: BLE001 - premailer raises a zoo of parser errors
        raise RenderError(f"cannot inline CSS: {e}") from e


def _tidy_text(text: str) -> str:
    """Plain text with single blank lines between blocks and no trailing spaces."""
    lines = [line.rstrip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"
