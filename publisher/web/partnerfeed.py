"""Per-partner Atom feeds, served only with the partner's token.

``GET /partners/<name>/atom.xml`` with ``Authorization: Bearer <token>`` (or
``?token=<token>``), where the token is the partner's secret (the variable
named by its ``secret_env``). Anything else is 401. The feed holds exactly
what the partner is licensed to (see :mod:`publisher.rights`) and is built on
request: it is never written into the public ``feeds/`` folder. Each fetch
records in the audit log the article versions it handed over.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from flask import Blueprint, Response, current_app, request

from .. import rights, syndication
from ..config import Config, PartnerConfig
from ..feeds import FeedMeta, build_feed
from ..models import ORIGINAL, Article
from ..store import utcnow
from . import current_config, current_store

logger = logging.getLogger(__name__)

bp = Blueprint("partnerfeed", __name__)
ATOM_TYPE = "application/atom+xml; charset=utf-8"


def presented_token() -> str:
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.args.get("token", "")


def authorized(config: Config, name: str, token: str) -> PartnerConfig | None:
    """The feed partner *name* if *token* is its secret (constant-time compare)."""
    partner = next((p for p in config.partners if p.name == name), None)
    secret = partner.secret if partner is not None else ""
    if partner is None or partner.delivery != "feed" or not secret or not token:
        hmac.compare_digest(b"0" * 32, token.encode("utf-8"))  # same work either way
        return None
    return partner if hmac.compare_digest(secret.encode("utf-8"), token.encode("utf-8")) else None


def _unauthorized(had_token: bool) -> Response:
    error = ', error="invalid_token"' if had_token else ""
    resp = Response("401 Unauthorized: this feed needs the partner's token\n", status=401,
                    mimetype="text/plain")
    resp.headers["WWW-Authenticate"] = f'Bearer realm="partner feed"{error}'
    resp.headers["Cache-Control"] = "no-store"
    return resp


def feed_item(article: Article, content: rights.Content) -> Article:
    """The article as the partner may see it (the licensed text, attribution included)."""
    return article.evolve(
        url=content.url, body_html=content.html, summary=content.summary or content.title,
        origin=ORIGINAL, source_name="", source_url="",
        image="" if content.mode == rights.HEADLINE else article.image)


def render_feed(config: Config, partner: PartnerConfig, items: list[Article]) -> bytes:
    url = f"{config.site.url}/partners/{partner.name}/atom.xml"
    meta = FeedMeta(
        id=url, title=f"{config.site.name} · {partner.name} 授权稿件", site_url=config.site.url,
        self_url=url, language=config.site.language,
        description=f"{config.site.name}授权{partner.name}转载的稿件(条款版本 "
                    f"{config.rights.terms_version})",
        rights=f"© {config.rights.holder} · 授权条款 {config.rights.terms_version}",
        disclaimer=config.rights.disclaimer, author=config.site.name)
    return build_feed(items, meta, "atom")


@bp.get("/partners/<name>/atom.xml")
def partner_feed(name: str):
    config = current_config()
    token = presented_token()
    partner = authorized(config, name, token)
    if partner is None:
        logger.info("partner feed %s: refused (%s)", name, "bad token" if token else "no token")
        return _unauthorized(bool(token))
    store, now = current_store(), current_app.extensions.get("publisher.clock", utcnow)()
    entries = syndication.feed_entries(config, store, partner, now)
    body = render_feed(config, partner, [feed_item(a, c) for a, c in entries])
    syndication.record_feed_fetch(config, store, partner, [a for a, _ in entries], now)
    resp = Response(body, mimetype=ATOM_TYPE)
    resp.headers["Cache-Control"] = "private, no-cache"
    resp.headers["Vary"] = "Authorization"
    resp.set_etag(hashlib.sha256(body).hexdigest()[:32])
    return resp.make_conditional(request)
