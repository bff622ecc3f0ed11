"""The web side (``publisher serve``): one Flask app, one blueprint per area.

- :mod:`.feedhost`   serves ``feeds/`` like a feed host (types, ETag, 304, gzip)
- :mod:`.pages`      subscribe / confirm / preferences / unsubscribe / archive
- :mod:`.partnerfeed` per-partner authenticated feeds
"""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from ..config import Config
from ..tokens import secret_key


def create_app(config: Config, store=None) -> Flask:
    """Build the app for *config*; *store* defaults to the configured database."""
    from ..pipeline import open_store
    from . import feedhost, pages, partnerfeed

    app = Flask(__name__, static_folder=None, template_folder=None)
    app.config["SECRET_KEY"] = secret_key(config)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    app.config["SESSION_COOKIE_SECURE"] = config.web.secure_cookies
    if config.web.proxies:  # trust exactly that many hops for the client address and scheme
        n = config.web.proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    app.extensions["publisher.config"] = config
    app.extensions["publisher.store"] = store or open_store(config)
    app.register_blueprint(feedhost.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(partnerfeed.bp)
    return app


def current_config() -> Config:
    from flask import current_app

    return current_app.extensions["publisher.config"]


def current_store():
    from flask import current_app

    return current_app.extensions["publisher.store"]
