"""Per-partner Atom feeds, served only with the partner's token."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("partnerfeed", __name__)
