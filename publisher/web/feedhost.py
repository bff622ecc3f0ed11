"""Serve the generated ``feeds/`` folder with the right types and conditional GET."""

from __future__ import annotations

from flask import Blueprint, abort, send_file

from ..errors import RenderError
from ..feedwriter import safe_join
from . import current_config

bp = Blueprint("feedhost", __name__)

TYPES = {".xml": "application/xml; charset=utf-8", ".json": "application/feed+json; charset=utf-8"}
RSS_TYPE = "application/rss+xml; charset=utf-8"
ATOM_TYPE = "application/atom+xml; charset=utf-8"


@bp.get("/feeds/<path:rel>")
def feed_file(rel: str):
    root = current_config().feeds.output_dir
    try:
        path = safe_join(root, rel)
    except RenderError:
        abort(404)
    if not path.is_file() or path.name.startswith("."):
        abort(404)
    mimetype = TYPES.get(path.suffix, "application/octet-stream")
    if path.name.startswith("rss") or "rss" in path.stem:
        mimetype = RSS_TYPE
    elif path.name.startswith("atom") or path.parent.name == "archive":
        mimetype = ATOM_TYPE
    resp = send_file(path, mimetype=mimetype, conditional=True, etag=True, max_age=60)
    return resp
