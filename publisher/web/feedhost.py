"""Serve the generated ``feeds/`` folder like a feed host.

- ``Content-Type`` by document: ``application/rss+xml``, ``application/atom+xml``,
  ``application/feed+json``, each with ``charset=utf-8``;
- a strong ``ETag`` (hash of the bytes; the gzip variant has its own) and
  ``Last-Modified`` (the file's mtime), ``304 Not Modified`` on a matching
  ``If-None-Match`` or, without one, a not-older ``If-Modified-Since``;
- gzip when the client accepts it (``Vary: Accept-Encoding``);
- ``HEAD``; dot-files, folders and paths outside ``feeds/`` are 404.

In production a web server can serve the same files: see ``docs/feeds.md``.
"""

from __future__ import annotations

import gzip
import hashlib
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

from flask import Blueprint, Response, abort, request

from ..errors import RenderError
from ..feedwriter import safe_join
from . import current_config

bp = Blueprint("feedhost", __name__)

RSS_TYPE = "application/rss+xml; charset=utf-8"
ATOM_TYPE = "application/atom+xml; charset=utf-8"
JSON_TYPE = "application/feed+json; charset=utf-8"
MAX_AGE = 60
_CACHE: dict[tuple[str, int, int], tuple[bytes, str, bytes, str]] = {}


def content_type(path: Path) -> str:
    """The media type of a feed file, from its name (``rss*.xml``, ``atom*.xml``, ``*.json``)."""
    name = path.name
    if name.endswith(".json"):
        return JSON_TYPE
    if name.startswith("rss"):
        return RSS_TYPE
    if name.startswith("atom"):
        return ATOM_TYPE
    return "application/xml; charset=utf-8" if name.endswith(".xml") else "application/octet-stream"


def _variants(path: Path) -> tuple[bytes, str, bytes, str]:
    """(bytes, etag, gzipped bytes, gzip etag) of *path*, cached by mtime and size."""
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    hit = _CACHE.get(key)
    if hit is None:
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()[:32]
        hit = (data, f'"{digest}"', gzip.compress(data, 6, mtime=0), f'"{digest}-gz"')
        if len(_CACHE) > 2000:
            _CACHE.clear()
        _CACHE[key] = hit
    return hit


@bp.route("/feeds/<path:rel>", methods=["GET", "HEAD"])
def feed_file(rel: str):
    root = current_config().feeds.output_dir
    try:
        path = safe_join(root, rel)
    except RenderError:
        abort(404)
    if any(part.startswith(".") for part in Path(rel).parts) or not path.is_file():
        abort(404)
    data, etag, zipped, zetag = _variants(path)
    use_gzip = _accepts_gzip() and len(data) > 256
    body, tag = (zipped, zetag) if use_gzip else (data, etag)
    modified = datetime.fromtimestamp(int(path.stat().st_mtime), UTC)
    headers = {
        "Content-Type": content_type(path),
        "ETag": tag,
        "Last-Modified": format_datetime(modified, usegmt=True),
        "Cache-Control": f"public, max-age={MAX_AGE}",
        "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff",
    }
    if _not_modified({etag, zetag}, modified):
        headers.pop("Content-Type")
        return Response(status=304, headers=headers)
    if use_gzip:
        headers["Content-Encoding"] = "gzip"
    resp = Response(b"" if request.method == "HEAD" else body, status=200, headers=headers)
    resp.content_length = len(body)
    return resp


def _accepts_gzip() -> bool:
    for part in request.headers.get("Accept-Encoding", "").split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in ("gzip", "x-gzip", "*"):
            q = params.strip().lower()
            return not (q.startswith("q=") and _qvalue(q[2:]) == 0)
    return False


def _qvalue(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 1.0


def _not_modified(etags: set[str], modified: datetime) -> bool:
    inm = request.headers.get("If-None-Match")
    if inm is not None:
        if inm.strip() == "*":
            return True
        tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
        return bool(tags & etags)
    ims = request.headers.get("If-Modified-Since")
    if ims:
        try:
            since = parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return False
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        return modified <= since
    return False
