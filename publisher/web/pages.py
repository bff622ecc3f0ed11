"""Subscriber pages: subscribe, confirm, preferences, unsubscribe, archive.

- Double opt-in: ``POST /subscribe`` mails a confirmation link and always
  redirects to the same "check your email" page, whatever the address's state.
- Every link carries a signed token (:mod:`publisher.tokens`); a GET only ever
  shows a page with a button (mail scanners prefetch links), the POST acts.
- ``POST /unsubscribe/<token>`` with ``List-Unsubscribe=One-Click`` (RFC 8058)
  unsubscribes with no cookie and no page.
- ``/archive/`` shows sent editions with no subscriber's data in them.
- A bad, tampered or expired token gets a 4xx page, never a stack trace.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import Blueprint, Response, abort, redirect, request, url_for
from werkzeug.exceptions import HTTPException

from .. import confirm as confirm_mail
from .. import editions as editions_mod
from .. import render, scripts, tokens
from .. import subscribers as subs
from ..config import SCRIPTS, DigestConfig
from ..errors import ConfigError, DeliveryError, PublisherError
from ..models import Subscriber
from . import current_config, current_store
from .security import CSRF_FIELD, CSRFError, RateLimiter, check_csrf, client_key, csrf_token, hashed

logger = logging.getLogger(__name__)

bp = Blueprint("pages", __name__)

MAILS_PER_ADDRESS_PER_DAY = 3
ERROR_TEXT = {
    400: ("请求无效", "链接或表单无效，可能已被修改或不完整。"),
    403: ("无法完成操作", "这个请求被拒绝了。"),
    404: ("页面不存在", "找不到您要访问的页面，链接可能已失效。"),
    405: ("请求方式错误", "这个页面不接受这种请求方式。"),
    410: ("链接已过期", "这个链接已经过期或不再有效。"),
    413: ("请求过大", "提交的内容太大。"),
    429: ("操作太频繁", "请求次数过多，请稍后再试。"),
    500: ("服务器错误", "服务器出了点问题，请稍后再试。"),
    503: ("暂时无法服务", "服务暂时不可用，请稍后再试。"),
}
_TOKEN_PAGES = ("pages.confirm", "pages.preferences", "pages.unsubscribe")


@bp.record_once
def _setup(state) -> None:
    app = state.app
    app.config.setdefault("SESSION_COOKIE_NAME", "publisher_session")
    app.config["SESSION_COOKIE_SAMESITE"] = app.config.get("SESSION_COOKIE_SAMESITE") or "Lax"
    app.config["SESSION_COOKIE_HTTPONLY"] = True


@bp.after_request
def _security_headers(resp: Response) -> Response:
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    resp.headers.setdefault("Referrer-Policy", "no-referrer")  # tokens live in our URLs
    resp.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    if request.endpoint != "pages.archive_edition":
        resp.headers["Cache-Control"] = "no-store"
    if request.endpoint in _TOKEN_PAGES:
        resp.headers["X-Robots-Tag"] = "noindex, nofollow"
    return resp


# -- rendering helpers ---------------------------------------------------------

def page(name: str, status: int = 200, *, script: str = "zh-hans", **context) -> Response:
    """Render ``templates/web/<name>`` (in the reader's script) as an HTML response."""
    config = current_config()
    html = render.render_template(config, f"web/{name}", site=config.site, csrf_token=csrf_token,
                                  csrf_field=CSRF_FIELD, lang=_lang(script), **context)
    if script != "zh-hans":
        html = scripts.convert_html(html, script)
    return Response(html, status=status, mimetype="text/html")


def _lang(script: str) -> str:
    return "zh-Hant" if script == "zh-hant" else "zh-Hans"


def error_page(code: int, message: str | None = None, **extra) -> Response:
    title, text = ERROR_TEXT.get(code, ERROR_TEXT[400 if code < 500 else 500])
    try:
        resp = page("error.html", code, title=title, message=message or text, code=code,
                    subscribe_url=url_for("pages.subscribe"))
    except PublisherError:
        logger.exception("cannot render the error page")
        resp = Response(f"{code} {title}\n", status=code, mimetype="text/plain")
    for k, v in extra.items():
        resp.headers[k] = v
    return resp


@bp.app_errorhandler(HTTPException)
def _http_error(e: HTTPException):
    if request.blueprint not in (None, "pages"):
        return e  # other blueprints (feeds, partner feeds) keep their own answers
    if e.code == 500:
        return _server_error(e)
    keep = {k: v for k, v in e.get_headers() if k.lower() in ("allow", "retry-after")}
    return error_page(e.code or 400, **keep)


@bp.app_errorhandler(500)
def _server_error(e):
    logger.error("internal error on %s: %s", request.path, getattr(e, "original_exception", e))
    return error_page(500)


@bp.errorhandler(PublisherError)
def _publisher_error(e: PublisherError):
    logger.error("%s: %s", request.path, e)
    return error_page(503)


def _load(token: str, action: str) -> Subscriber:
    """The subscriber a token names, or abort with a 4xx page."""
    try:
        token_key = tokens.signer(current_config()).load(token, action)
    except tokens.BadToken as e:
        if e.reason == "expired":
            abort(error_page(410, "这个链接已经过期。如需订阅，请重新填写订阅表单。"))
        abort(error_page(400, "这个链接无效，可能复制不完整或已被修改。"))
    subscriber = subs.get_by_token_key(current_store(), token_key)
    if subscriber is None:
        abort(error_page(404, "找不到这个订阅，它可能已被删除。"))
    return subscriber


def _csrf_or_abort() -> None:
    try:
        check_csrf(current_config().site.url)
    except CSRFError as e:
        logger.info("CSRF check failed on %s: %s", request.path, e)
        abort(error_page(400, "表单已过期或来源不明。请返回上一页，刷新后再提交。"))


def _category_choices(extra: tuple[str, ...] = ()) -> list[str]:
    """Categories to offer: the configured ones in order, then any others the store knows."""
    names = list(current_config().categories)
    for c in [*current_store().categories(), *extra]:
        if c not in names:
            names.append(c)
    return names


def _form_choices(form, known: list[str]) -> tuple[dict, list[str]]:
    """frequency, categories and script from a form, and the problems found."""
    values = dict(frequency=form.get("frequency", "daily"), script=form.get("script", "zh-hans"),
                  categories=tuple(sorted(set(form.getlist("categories")))))
    problems = []
    if values["frequency"] not in subs.FREQUENCIES:
        problems.append("请选择每日或每周。")
    if values["script"] not in SCRIPTS:
        problems.append("请选择简体或繁体。")
    if any(c not in known for c in values["categories"]):
        problems.append("请从列表中选择栏目。")
    return values, problems


def _links(subscriber: Subscriber) -> dict[str, str]:
    s = tokens.signer(current_config())
    return dict(
        prefs_url=url_for("pages.preferences", token=s.make(subscriber.token_key,
                                                            tokens.PREFERENCES)),
        unsubscribe_url=url_for("pages.unsubscribe", token=s.make(subscriber.token_key,
                                                                  tokens.UNSUBSCRIBE)))


# -- subscribe -------------------------------------------------------------------

@bp.get("/subscribe")
def subscribe():
    return _subscribe_form()


def _subscribe_form(status: int = 200, problems: list[str] | None = None,
                    values: dict | None = None) -> Response:
    values = values or dict(email="", frequency="daily", categories=(), script="zh-hans")
    return page("subscribe.html", status, problems=problems or [], values=values,
                categories=_category_choices())


@bp.post("/subscribe")
def subscribe_post():
    _csrf_or_abort()
    config = current_config()
    verdict = RateLimiter(current_store()).hit(
        f"subscribe:{client_key(request.remote_addr)}", config.web.subscribe_rate_per_hour,
        timedelta(hours=1))
    if not verdict.allowed:
        return error_page(429, "提交次数过多，请一小时后再试。",
                          **{"Retry-After": str(verdict.retry_after)})
    if request.form.get("website"):  # the honeypot only robots fill in
        return redirect(url_for("pages.check_email"), 303)
    values, problems = _form_choices(request.form, _category_choices())
    email = request.form.get("email", "")
    try:
        email = subs.normalize_email(email)
    except subs.InvalidRow:
        problems.insert(0, "请输入有效的电子邮箱地址。")
    if problems:
        return _subscribe_form(400, problems, dict(values, email=subs.clean_text(email, 320)))
    subscriber, action = subs.request_subscription(
        current_store(), email, ip=request.remote_addr or "",
        detail=f"web form {request.path}", **values)
    if subscriber is not None and action != "none":
        _mail(subscriber, action)
    return redirect(url_for("pages.check_email"), 303)


def _mail(subscriber: Subscriber, action: str) -> None:
    """Send the confirmation (or already-subscribed) mail, at most a few a day per address."""
    store = current_store()
    verdict = RateLimiter(store).hit(f"mail:{hashed(subscriber.email)}",
                                     MAILS_PER_ADDRESS_PER_DAY, timedelta(days=1))
    if not verdict.allowed:
        logger.info("subscriber %s: confirmation mail limit reached", subscriber.id)
        return
    kind = confirm_mail.CONFIRM if action == "confirm" else confirm_mail.ALREADY
    try:
        confirm_mail.send(current_config(), subscriber, kind)
    except (DeliveryError, ConfigError) as e:
        logger.error("cannot send the %s mail to subscriber %s: %s", kind, subscriber.id, e)
        return
    if kind == confirm_mail.CONFIRM:
        subs.mark_confirmation_sent(store, subscriber.id)


@bp.get("/subscribe/check-email")
def check_email():
    return page("check_email.html")


# -- confirm ---------------------------------------------------------------------

@bp.get("/confirm/<token>")
def confirm(token: str):
    subscriber = _load(token, tokens.CONFIRM)
    if subscriber.status == "active":
        return page("confirmed.html", script=subscriber.script, already=True,
                    **_links(subscriber))
    if subscriber.status != "pending":
        return error_page(410, "这个确认链接已不再有效。如需订阅，请重新填写订阅表单。")
    return page("confirm.html", script=subscriber.script, email=subscriber.email)


@bp.post("/confirm/<token>")
def confirm_post(token: str):
    subscriber = _load(token, tokens.CONFIRM)
    _csrf_or_abort()
    subscriber, outcome = subs.confirm(current_store(), subscriber.token_key,
                                       ip=request.remote_addr or "")
    if subscriber is None or outcome in ("gone", "unknown"):
        return error_page(410, "这个确认链接已不再有效。如需订阅，请重新填写订阅表单。")
    return page("confirmed.html", script=subscriber.script, already=outcome == "already",
                **_links(subscriber))


# -- preferences -----------------------------------------------------------------

@bp.get("/preferences/<token>")
def preferences(token: str):
    subscriber = _load(token, tokens.PREFERENCES)
    return _preferences_page(subscriber, saved=request.args.get("saved") == "1")


def _preferences_page(subscriber: Subscriber, status: int = 200, *, saved: bool = False,
                      problems: list[str] | None = None) -> Response:
    return page("preferences.html", status, script=subscriber.script, subscriber=subscriber,
                categories=_category_choices(subscriber.categories), saved=saved,
                problems=problems or [], **_links(subscriber))


@bp.post("/preferences/<token>")
def preferences_post(token: str):
    subscriber = _load(token, tokens.PREFERENCES)
    _csrf_or_abort()
    values, problems = _form_choices(request.form, _category_choices(subscriber.categories))
    if problems:
        return _preferences_page(subscriber, 400, problems=problems)
    subs.update_preferences(current_store(), subscriber.token_key, **values)
    return redirect(url_for("pages.preferences", token=token, saved=1), 303)


# -- unsubscribe -----------------------------------------------------------------

@bp.get("/unsubscribe/<token>")
def unsubscribe(token: str):
    subscriber = _load(token, tokens.UNSUBSCRIBE)
    if subscriber.status not in ("active", "pending"):
        return page("unsubscribed.html", script=subscriber.script,
                    subscribe_url=url_for("pages.subscribe"))
    return page("unsubscribe.html", script=subscriber.script, email=subscriber.email,
                **_links(subscriber))


@bp.post("/unsubscribe/<token>")
def unsubscribe_post(token: str):
    if request.form.get("List-Unsubscribe") == "One-Click":
        return _one_click(token)
    subscriber = _load(token, tokens.UNSUBSCRIBE)
    _csrf_or_abort()
    subs.unsubscribe(current_store(), subscriber.token_key, method="web")
    return page("unsubscribed.html", script=subscriber.script,
                subscribe_url=url_for("pages.subscribe"))


def _one_click(token: str) -> Response:
    """RFC 8058: no cookie, no CSRF, no page; the signed token is the authority."""
    try:
        token_key = tokens.signer(current_config()).load(token, tokens.UNSUBSCRIBE)
    except tokens.BadToken:
        return Response("invalid unsubscribe link\n", 400, mimetype="text/plain")
    subs.unsubscribe(current_store(), token_key, method="one-click")
    return Response("unsubscribed\n", 200, mimetype="text/plain")


# -- archive ---------------------------------------------------------------------

@bp.get("/archive/")
def archive_index():
    store, config = current_store(), current_config()
    rows = []
    for edition in editions_mod.list_editions(store, 200):
        if edition.status != "sent":
            continue
        rows.append(dict(key=edition.key, digest=edition.digest,
                         date=edition.period_end.astimezone(config.site.timezone),
                         count=len(editions_mod.edition_articles(store, edition)),
                         url=url_for("pages.archive_edition", key=edition.key)))
    return page("archive.html", editions=rows, subscribe_url=url_for("pages.subscribe"))


@bp.get("/archive")
def archive_redirect():
    return redirect(url_for("pages.archive_index"), 301)


@bp.get("/archive/<key>")
def archive_edition(key: str):
    config, store = current_config(), current_store()
    edition = editions_mod.get_edition(store, key)
    if edition is None or edition.status not in ("sent", "sending"):
        return error_page(404, "没有这一期简报。")
    script = request.args.get("script", config.site.script)
    if script not in SCRIPTS:
        script = config.site.script
    digest = _digest_config(edition.digest)
    variant = render.Variant(script=script, categories=(), frequency=digest.frequency)
    subscribe_url = f"{config.site.url}/subscribe"
    rendered = render.render_digest(
        config, digest, edition.key, edition.period_end,
        editions_mod.edition_articles(store, edition), variant,
        f"{config.site.url}/archive/{edition.key}", web=True)
    html = (rendered.html.replace(render.PREFS_URL, subscribe_url)
            .replace(render.UNSUB_URL, subscribe_url).replace(render.RECIPIENT, ""))
    resp = Response(html, mimetype="text/html")
    resp.headers["Cache-Control"] = "no-cache"
    return resp


def _digest_config(name: str) -> DigestConfig:
    try:
        return current_config().digest(name)
    except ConfigError:  # the digest left the config; its editions stay readable
        return DigestConfig(name=name, schedule="0 7 * * *", subject="{site} {name} {date}")
