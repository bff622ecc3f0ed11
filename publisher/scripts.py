"""Conversion between simplified and traditional Chinese script, with OpenCC.

``zh-hant`` is Taiwan usage at the phrase level (``s2twp``: 软件 → 軟體,
头发 → 頭髮); ``zh-hans`` is plain traditional-to-simplified (``t2s``).
Converters take a while to build, so each is built once and cached; an
``opencc.OpenCC`` object only reads its dictionaries after that, so one can be
shared between threads.
"""

from __future__ import annotations

import functools
import logging
import re

import opencc

logger = logging.getLogger(__name__)

SCRIPTS = ("zh-hans", "zh-hant")
_CONFIGS = {"zh-hans": "t2s", "zh-hant": "s2twp"}
_HAN_RE = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
# Tags, comments, doctype and CDATA; what lies between them is text.
_MARKUP_RE = re.compile(r"(<!--.*?-->|<!\[CDATA\[.*?\]\]>|<[^>]*>)", re.DOTALL)
_RAW_TEXT_RE = re.compile(r"<(script|style)\b", re.IGNORECASE)


@functools.cache
def _converter(config: str) -> opencc.OpenCC:
    logger.debug("building OpenCC converter %s", config)
    return opencc.OpenCC(config)


def to_script(text: str, script: str) -> str:
    """``text`` in ``script`` ("zh-hans" or "zh-hant"); anything not Chinese is left alone."""
    if script not in _CONFIGS:
        raise ValueError(f"unknown script {script!r}: expected one of {', '.join(SCRIPTS)}")
    if not text or text.isascii():
        return text
    return _converter(_CONFIGS[script]).convert(text)


def convert_html(html: str, script: str) -> str:
    """Convert the text of an HTML fragment, never its tags, attributes or URLs.

    The content of ``<script>`` and ``<style>`` is left as it is.
    """
    parts = _MARKUP_RE.split(html)
    raw = None  # inside <script>/<style>: the name of the element
    for i, part in enumerate(parts):
        if i % 2:  # markup
            raw = _raw_text_state(part, raw)
        elif raw is None:
            parts[i] = to_script(part, script)
    return "".join(parts)


def _raw_text_state(tag: str, raw: str | None) -> str | None:
    if raw is not None:
        return None if re.match(rf"</{raw}\b", tag, re.IGNORECASE) else raw
    match = _RAW_TEXT_RE.match(tag)
    return match.group(1).lower() if match and not tag.endswith("/>") else None


def detect_script(text: str) -> str:
    """"zh-hant" when ``text`` is mostly traditional, else "zh-hans" (the default).

    Compares the share of Han characters that only exist in traditional script
    (changed by t2s) with the share only in simplified (changed by s2t).
    """
    han = "".join(_HAN_RE.findall(text))
    if not han:
        return "zh-hans"
    traditional = _changed(han, _converter("t2s").convert(han))
    simplified = _changed(han, _converter("s2t").convert(han))
    return "zh-hant" if traditional > simplified else "zh-hans"


def _changed(before: str, after: str) -> int:
    if len(before) != len(after):  # a phrase changed length: count distinct characters
        return len(set(before) - set(after))
    return sum(a != b for a, b in zip(before, after, strict=True))
