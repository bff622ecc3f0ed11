"""The WSGI module production servers load: ``publisher.web.wsgi:app``."""

from __future__ import annotations

import importlib
import sys

from lxml import html


def test_wsgi_module_builds_the_app_from_publisher_config(site, monkeypatch):
    monkeypatch.setenv("PUBLISHER_CONFIG", str(site))
    sys.modules.pop("publisher.web.wsgi", None)
    module = importlib.import_module("publisher.web.wsgi")
    try:
        assert module.application is module.app
        config = module.app.extensions["publisher.config"]
        assert config.path == site.resolve()
        response = module.app.test_client().get("/subscribe")
        assert response.status_code == 200
        assert html.fromstring(response.data).xpath("//form")
    finally:
        module.app.extensions["publisher.store"].close()
        sys.modules.pop("publisher.web.wsgi", None)
