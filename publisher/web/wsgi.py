"""The WSGI entry point for production servers::

    PUBLISHER_CONFIG=/etc/publisher/config.toml gunicorn -w 4 publisher.web.wsgi:app

The config comes from ``$PUBLISHER_CONFIG`` (default ``./config.toml``). Each
server process builds its own app and database pool at import, so do not
``--preload`` (a pool must not cross a fork).
"""

from __future__ import annotations

from ..config import load_config
from . import create_app

app = create_app(load_config())
application = app  # the name mod_wsgi and uWSGI look for
