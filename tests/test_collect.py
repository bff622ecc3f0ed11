"""Directory sources: every content rule, one bad file never stopping the others."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from publisher import collect
from publisher.config import load_config
from publisher.store import Store
from tests.conftest import write_site

SEED = Path("/work/shared/seeds/scraped-article.txt")
NOW = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)


@pytest.fixture
def site_dir(tmp_path):
    content = tmp_path / "site" / "content"  # write_site uses it in place
    content.mkdir(parents=True)
    return content


def run(tmp_path, now=NOW):
    config = load_config(write_site(tmp_path, content=tmp_path / "site" / "content"))
    store = Store.open(config.storage.database_url)
    return collect.collect(config, store, now), store


def md(path: Path, front: str, body: str = "正文。", fence: str = "+++") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{fence}\n{front}\n{fence}\n{body}\n", encoding="utf-8")


def test_toml_and_yaml_front_matter(tmp_path, site_dir):
    md(site_dir / "a.md", 'title = "甲"\ndate = 2026-11-25T09:00:00\ncategory = "本地"\n'
       'tags = ["x", "y"]\nauthor = "记者"')
    md(site_dir / "sub" / "b.md", "title: 乙\ndate: 2026-11-25T10:00:00+08:00\n"
       "source: 新华社\nsource_url: https://x.example/1", fence="---")
    report, store = run(tmp_path)
    assert report.counts["new"] == 2 and not report.errors
    a, b = store.get_article("a"), store.get_article("sub/b")
    assert a.published == datetime(2026, 11, 25, 1, 0, tzinfo=UTC)  # site zone
    assert a.tags == ("x", "y") and a.author == "记者" and a.origin == "original"
    assert b.origin == "reprint" and b.source_name == "新华社"
    assert a.url == "https://news.example.com/articles/a"


def test_bad_files_reported_by_name_others_collected(tmp_path, site_dir):
    md(site_dir / "good.md", 'title = "好"\ndate = 2026-11-25')
    (site_dir / "undecodable.txt").write_bytes(b"\xff\xfe\xfa" * 40 + b"\x80\x81\xfe\xff" * 30)
    (site_dir / "nofront.md").write_text("只有正文\n", encoding="utf-8")
    md(site_dir / "badtoml.md", 'title = "未闭合')
    md(site_dir / "baddate.md", 'title = "坏日期"\ndate = "昨天"')
    report, store = run(tmp_path)
    assert report.counts["new"] == 1
    joined = "\n".join(report.errors)
    for name in ("undecodable.txt", "nofront.md", "badtoml.md", "baddate.md"):
        assert name in joined
    assert "cannot decode" in joined and "front matter" in joined and "ISO 8601" in joined


def test_draft_and_future_not_published_until_due(tmp_path, site_dir):
    md(site_dir / "draft.md", 'title = "草稿"\ndate = 2026-11-25\ndraft = true')
    md(site_dir / "future.md", 'title = "未来"\ndate = 2026-12-25T08:00:00')
    report, store = run(tmp_path)
    assert store.get_article("draft") is None
    assert store.published_articles(NOW) == []
    later = datetime(2026, 12, 26, tzinfo=UTC)
    assert [a.id for a in store.published_articles(later)] == ["future"]


def test_edit_makes_a_new_version(tmp_path, site_dir):
    md(site_dir / "a.md", 'title = "甲"\ndate = 2026-11-25', "第一版。")
    run(tmp_path)
    md(site_dir / "a.md", 'title = "甲"\ndate = 2026-11-25', "第二版。")
    report, store = run(tmp_path)
    assert report.counts["updated"] == 1 and report.changed_ids == ["a"]
    assert store.get_article("a").version == 2


def test_traditional_article_stored_in_canonical_script(tmp_path, site_dir):
    md(site_dir / "t.md", 'title = "臺灣的軟體產業"\ndate = 2026-11-25\ncategory = "經濟"\n'
       'source = "中央通訊社"', "<p>軟體產業發展迅速。</p>")
    _, store = run(tmp_path)
    a = store.get_article("t")
    assert "软件" in a.title or "软体" in a.title
    assert a.category == "经济" and a.source_name == "中央通讯社"


def test_seed_page_as_scraped(tmp_path, site_dir):
    if not SEED.exists():
        pytest.skip("the shared seed page is not present on this machine")
    (site_dir / "seed.txt").write_bytes(SEED.read_bytes())
    mtime = datetime(2026, 6, 18, 9, 0, tzinfo=UTC).timestamp()
    os.utime(site_dir / "seed.txt", (mtime, mtime))
    report, store = run(tmp_path)
    assert not report.errors
    a = store.get_article("seed")
    assert a.title == "让鲜红党旗高高飘扬在城市上空"
    assert a.author == "杜才云"
    assert "(yáng)" not in a.body_html and "版權" not in a.body_html and "版权" not in a.body_html
    assert a.published == datetime(2026, 6, 18, 9, 0, tzinfo=UTC)  # file mtime


def test_gbk_scraped_page(tmp_path, site_dir):
    text = "測試標題\n測試標題\n2026-11-25 09:30\n來源:新華社\n第一段正文內容。\n(張三)\n"
    (site_dir / "g.txt").write_bytes(text.encode("gb18030"))
    _, store = run(tmp_path)
    a = store.get_article("g")
    assert a.title == "测试标题" and a.author == "张三" and a.source_name == "新华社"
    assert a.published == datetime(2026, 11, 25, 1, 30, tzinfo=UTC)


def test_forbidden_characters_never_reach_the_store(tmp_path, site_dir):
    md(site_dir / "c.md", 'title = "控\\u0000制\\u0008字符"\ndate = 2026-11-25\n'
       'tags = ["a\\u0001b"]\nauthor = "记\\u000b者"', "正文\x0c。")
    report, store = run(tmp_path)
    assert not report.errors
    a = store.get_article("c")
    assert (a.title, a.tags, a.author) == ("控制字符", ("ab",), "记者")
    assert "\x0c" not in a.body_html
