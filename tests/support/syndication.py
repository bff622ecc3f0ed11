"""Helpers for the syndication tests: a site with partners, and small articles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from publisher.config import load_config
from publisher.models import ORIGINAL, REPRINT, Article
from tests.conftest import write_site

T0 = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
SECRETS = {"PARTNER_A_SECRET": "s3cret-a-0123456789", "PARTNER_B_SECRET": "s3cret-b-9876543210",
           "PARTNER_F_SECRET": "feed-token-abcdef", "PARTNER_E_SECRET": "unused-email"}


def partner_toml(name: str, delivery: str = "webhook", url: str = "", secret_env: str = "",
                 **keys) -> str:
    lines = ["[[partners]]", f'name = "{name}"', f'delivery = "{delivery}"']
    if url:
        lines.append(f'url = "{url}"')
    if secret_env:
        lines.append(f'secret_env = "{secret_env}"')
    for k, v in keys.items():
        if isinstance(v, bool):
            lines.append(f"{k} = {'true' if v else 'false'}")
        elif isinstance(v, str):
            lines.append(f'{k} = "{v}"')
        elif isinstance(v, (list, tuple)):
            lines.append(f"{k} = [" + ", ".join(f'"{x}"' for x in v) + "]")
        else:
            lines.append(f"{k} = {v}")
    return "\n".join(lines) + "\n"


def site_config(tmp_path: Path, partners: str, *, database_url: str | None = None,
                extra: str = ""):
    empty = tmp_path / "empty-content"
    empty.mkdir(exist_ok=True)
    path = write_site(tmp_path, "\n" + extra + "\n" + partners, content=empty,
                      database_url=database_url)
    return load_config(path)


def article(aid: str, *, category: str = "本地", origin: str = ORIGINAL, minutes: int = 0,
            body: str | None = None, **kw) -> Article:
    body = body if body is not None else f"<p>{aid} 正文第一段，记者现场采访。</p><p>第二段内容。</p>"
    values = dict(
        id=aid, title=f"标题 {aid}", url=f"https://news.example.com/a/{aid}.html",
        published=T0 - timedelta(hours=1) + timedelta(minutes=minutes), body_html=body,
        summary=f"{aid} 的摘要", author="杜才云", category=category, origin=origin)
    if origin == REPRINT:
        values.update(source_name="新华社", source_url=f"https://xinhua.example.org/{aid}.htm",
                      author="新华社记者")
    values.update(kw)
    return Article(**values)
