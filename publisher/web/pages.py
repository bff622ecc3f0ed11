"""Subscriber pages: subscribe, confirm, preferences, unsubscribe, archive."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("pages", __name__)
