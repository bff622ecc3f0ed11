"""Licensing decisions under the reprint terms (pure: no I/O).

The site can only license what it owns (DESIGN.md, "The reprint terms"):

- an **original** in one of the partner's categories goes out in full
  (``full_text = true``) or as summary + link, always with the attribution
  block (site name, canonical link, author, "来源:<site>") and the terms version;
- a **reprint** is never passed on in full: it is left out (``reprints =
  "exclude"``, the default) or sent as headline + link to the original source
  (``reprints = "headline"``);
- nothing goes out before ``published + embargo_minutes``, and nothing
  withdrawn goes out at all (except the withdrawal notice itself).

:func:`grant` decides, :func:`licensed_content` renders what a partner may
receive; every channel (webhook, partner feed, email) uses both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape

from . import cleaning
from .config import Config, PartnerConfig
from .models import REPRINT, Article

FULL, SUMMARY, HEADLINE = "full", "summary", "headline"
SUMMARY_CHARS = 140


def is_reprint(article: Article, config: Config) -> bool:
    """True when the site does not own *article*.

    ``origin = "reprint"`` says so; a source outlet other than the site itself
    says so too, whatever the origin field claims (we may only pass on what we own).
    """
    if article.origin == REPRINT:
        return True
    source = article.source_name.strip()
    return bool(source) and source not in (config.site.name, config.rights.holder)


def in_categories(partner: PartnerConfig, article: Article, config: Config) -> bool:
    """Empty ``categories`` means all; names or their ASCII slugs both match."""
    if not partner.categories:
        return True
    wanted = set(partner.categories)
    slug = config.categories.get(article.category, "")
    return article.category in wanted or (bool(slug) and slug in wanted)


def available_at(partner: PartnerConfig, article: Article) -> datetime:
    """When the embargo on *article* ends for *partner*."""
    return article.published + timedelta(minutes=partner.embargo_minutes)


def grant(config: Config, partner: PartnerConfig, article: Article,
          now: datetime) -> str | None:
    """FULL, SUMMARY or HEADLINE: what *partner* may receive of *article* at *now*; or None."""
    if article.status != "published" or not in_categories(partner, article, config):
        return None
    if now < available_at(partner, article):
        return None
    if is_reprint(article, config):
        return HEADLINE if partner.reprints == "headline" else None
    return FULL if partner.full_text else SUMMARY


@dataclass(frozen=True)
class Content:
    """What one partner receives of one article, ready for any channel."""

    mode: str  # full | summary | headline | withdrawn
    title: str
    url: str  # canonical link; for a headline, the original source
    summary: str
    html: str  # includes the attribution block
    text: str  # includes the attribution block
    attribution: dict
    source: dict | None  # {"name", "url"} for reprints


def attribution(config: Config, article: Article, *, reprint: bool = False) -> dict:
    """The mandatory attribution block as data (and as one line of text)."""
    credit_name = article.source_name if reprint and article.source_name else config.site.name
    block = {
        "site": config.site.name,
        "site_url": config.site.url,
        "url": article.url,
        "author": article.author,
        "credit": f"来源:{credit_name}",
        "holder": config.rights.holder,
        "terms_version": config.rights.terms_version,
    }
    if reprint:
        block["source_url"] = article.source_url
    author = f" · 作者:{article.author}" if article.author else ""
    block["text"] = (f"{block['credit']}{author} · 原文链接:{article.url} · "
                     f"© {config.rights.holder} · 授权条款 {config.rights.terms_version}")
    return block


def _attribution_html(block: dict) -> str:
    author = f" · 作者:{escape(block['author'])}" if block["author"] else ""
    url = escape(block["url"], quote=True)
    return (f'<div class="attribution"><p>{escape(block["credit"])}{author}</p>'
            f'<p>原文链接:<a href="{url}">{url}</a></p>'
            f'<p>© {escape(block["holder"])} · 授权条款 {escape(block["terms_version"])}</p></div>')


def _attribution_text(block: dict) -> str:
    lines = [block["credit"] + (f" · 作者:{block['author']}" if block["author"] else ""),
             f"原文链接:{block['url']}",
             f"© {block['holder']} · 授权条款 {block['terms_version']}"]
    return "\n".join(lines)


def make_summary(article: Article) -> str:
    if article.summary.strip():
        return article.summary.strip()
    return cleaning.make_summary(article.body_html, SUMMARY_CHARS)


def licensed_content(config: Config, article: Article, mode: str) -> Content:
    """Render what *mode* allows of *article*; never the body of a reprint."""
    if mode == HEADLINE:
        return _headline(config, article)
    block = attribution(config, article)
    summary = make_summary(article)
    url = escape(article.url, quote=True)
    if mode == FULL:
        html = article.body_html
        text = cleaning.html_to_text(article.body_html, links=True)
    elif mode == SUMMARY:
        html = f'<p>{escape(summary)}</p><p><a href="{url}">阅读全文</a></p>'
        text = f"{summary}\n\n阅读全文:{article.url}"
    else:
        raise ValueError(f"unknown licence mode {mode!r}")
    return Content(mode=mode, title=article.title, url=article.url, summary=summary,
                   html=html + _attribution_html(block),
                   text=(text + "\n\n" if text else "") + _attribution_text(block),
                   attribution=block, source=None)


def _headline(config: Config, article: Article) -> Content:
    link = article.source_url or article.url
    block = attribution(config, article, reprint=True)
    block["url"] = link
    name = article.source_name or config.site.name
    block["text"] = f"来源:{name} · 原文链接:{link}"
    href = escape(link, quote=True)
    html = (f'<p><a href="{href}">{escape(article.title)}</a></p>'
            f'<div class="attribution"><p>来源:{escape(name)}</p></div>')
    text = f"{article.title}\n{link}\n\n来源:{name}"
    return Content(mode=HEADLINE, title=article.title, url=link, summary="", html=html,
                   text=text, attribution=block,
                   source={"name": article.source_name, "url": article.source_url})


def withdrawn_content(config: Config, article: Article) -> Content:
    """A withdrawal notice carries identity and attribution, never the text."""
    reprint = is_reprint(article, config)
    block = attribution(config, article, reprint=reprint)
    source = {"name": article.source_name, "url": article.source_url} if reprint else None
    return Content(mode="withdrawn", title=article.title, url=article.url, summary="",
                   html="", text="", attribution=block, source=source)
