"""Cleaning of text from outside: decoding, pinyin and ruby removal, HTML
sanitizing, plain-text summaries, and parsing of pages as scraped.

Everything here is a pure function: no I/O, no global state.

Scraped pages (``*.txt``): one paragraph per line, as the scraper saves them::

    讓鮮紅黨旗高高飄揚(yáng)在城市上空      title (pinyin is removed everywhere)
    讓鮮紅黨旗高高飄揚(yáng)在城市上空      the same again: dropped
    2026-11-25 09:30  來源:新華社          header lines (optional, any number)
    欄目:本地
    原文鏈接:https://example.org/a.htm
    first paragraph …                     body
    … last paragraph。(杜才云)             byline: becomes the author
    江蘇蘇訊網版權及免責聲明:凡本網注明…     the site's disclaimer: dropped

A header line follows the title and holds ``key:value`` fields (ASCII or full-width
colon), possibly after a bare date. Keys, simplified or traditional: 发布时间/时间/日期
(``2026-11-25 09:30``, ``2026年11月25日 09:30``, ISO 8601; no zone means the site's),
来源 (the outlet of a reprint; 本网/本站/原创 mean the site itself), 作者 (else the
byline), 栏目/分类 (category), 原文链接/原文 (the original's URL). The first line that
is not a header line starts the body. ``content/README.md`` has the full format.
"""

from __future__ import annotations

import html as html_lib
import logging
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from functools import partial
from urllib.parse import urljoin, urlsplit
from zoneinfo import ZoneInfo

import lxml.html
import nh3
from lxml import etree

from publisher.errors import SourceError

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------- decoding

_UTF8_BOM = b"\xef\xbb\xbf"
_DECLARED_RE = re.compile(
    rb"""(?:<\?xml[^>]{0,200}?encoding|<meta[^>]{0,200}?charset)\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""",
    re.IGNORECASE)
_FAMILIES = {"gb18030": ("gb18030",), "big5": ("cp950", "big5hkscs")}
_ALIASES = {
    "gb18030": "gb18030", "gbk": "gb18030", "gb2312": "gb18030", "cp936": "gb18030",
    "x-gbk": "gb18030", "euc-cn": "gb18030", "ms936": "gb18030", "windows-936": "gb18030",
    "big5": "big5", "big5-hkscs": "big5", "big5hkscs": "big5", "cp950": "big5",
    "x-x-big5": "big5", "ms950": "big5", "windows-950": "big5",
}
# The commonest simplified characters, and the traditional forms of those that
# differ: real Chinese text is mostly made of them, while Big5 bytes read as
# GB18030 (or the other way round) give mostly rare characters.
_COMMON_HANS = (
    "的一是不了在人有我他这个们中来上大为和国地到以说时要就出会可也你对生能而子那得于着下自之"
    "年过发后作里用道行所然家种事成方多经么去法学如都同现当没动面起看定天分还进好小部其些主样"
    "理心她本前开但因只从想实日军者意无力它与长把机十民第公此已工使情明性知全三又关点正业外将"
    "两高间由问很最重并物手应战向头文体政美相见被利什二等产或新己制身果加西斯月话合回特代内信"
    "表化老给世位次度门任常先海通教儿原东声提立及比员解水名真论处走义各入几口认条平系气题活尔"
    "更别打女变四神总何电数安少报才结反受目太量再感建务做接必场件计管期市直德资命山金指克许统"
    "区保至队形社便空决治展马科司五基眼书非则听白却界达光放强即像难且权思王象完设式色路记南品"
    "住告类求据程北边死张该交规万取拉格望觉术领共确传师观清今切院让识候带导争运笑飞风步改收根"
    "干造言联持组每济车亲极林服快办议往元英士证近失转夫令准布始怎呢存未远叫台单影具罗字爱击流"
    "备兵连调深商算质团集百需价花党华城石级整府离况亚请技际约示复病息究线似官火断精满支视消越"
    "器容照须九增研写称企八功吗包片史委乎查轻易早曾除农找装广显吧阿李标谈吃图念六引历首医局突"
    "专费号尽另周较注语仅考落青随选列武红响虽推势参希古众构房半节土投某案黑维革划敌致陈律足态"
    "护七兴派孩验责营星够章音跟志底站严巴例防族供效续施留讲型料终答紧黄绝奇察母京段依批群项故"
    "按河米围江织害斗双境客纪采举杀攻父苏密低朝友诉止细愿千值仍男钱破网热助倒育属坐帝限船脸职"
    "速刻乐否刚威毛状率甚独球般普怕弹校苦创假久错承印晚兰试股拿脑预谁益阳若哪微尼继送急血惊伤"
    "素药适波夜省初喜卫源食险待述陆习置居劳财环排福纳欢雷警获模充负云停木游龙树疑层冷"
)
_COMMON_HANT_EXTRA = (
    "並乾亞來個們備傳傷僅價兒內兩別則剛創劃動務勞勢區卻參員問喫單嗎嚴國圍圖團報場夠學實寫將專"
    "對導層屬師帶幾廣張強彈後從愛態應戰採擊據敵數斷於時書會東條業極構樂標樣樹機權歡歷殺氣決沒"
    "況準滿濟為無熱營爭爲爾狀獨獲現環產當發盡眾確種稱節紀約紅納級細終組結絕給統經維網緊線總織"
    "繼續羅羣義習聯聲職聽腦臉臺與興舉華萬著藥蘇蘭處號衆術衛衞裏裝裡覆見規視親覺觀計記設許訴試"
    "話該認語說説誰調談請論講證識議護變讓負財責費資質車軍較輕轉辦農這連進運過達遠適選還邊醫錢"
    "錯長門開間關陳陸陽隊際隨險雖雙離難雲電響項須預領頭題願類顯風飛馬驗驚體鬥麼黃點黨龍"
)
_COMMON = frozenset(_COMMON_HANS + _COMMON_HANT_EXTRA)
_CJK_PUNCT = frozenset("，。、；：？！“”‘’《》〈〉「」『』（）【】〔〕—…·　")


def decode_bytes(data: bytes, name: str) -> str:
    """Decode a source file: UTF-8 (BOM or not), else the declared charset,
    else whichever of GB18030 and Big5 reads as real Chinese. Newlines become ``\\n``.

    A declaration (``<?xml encoding=…?>``, ``<meta charset=…>``) is honoured when it
    names a GB or Big5 charset and the bytes decode with it (others are ignored).
    """
    text = _decode(data, name)
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _decode(data: bytes, name: str) -> str:
    if data.startswith(_UTF8_BOM):
        text = _try_decode(data[len(_UTF8_BOM):], "utf-8")
        if text is not None:
            return text
    text = _try_decode(data, "utf-8")
    if text is not None:
        return text
    declared = _declared_family(data)
    if declared:
        text = _decode_family(data, declared)
        if text is not None:
            return text
        logger.debug("%s: declared charset %s does not fit the bytes", name, declared)
    candidates = [t for t in (_decode_family(data, f) for f in ("gb18030", "big5")) if t]
    if not candidates:
        raise SourceError(f"{name}: cannot decode as UTF-8, GB18030 or Big5")
    return max(candidates, key=_chinese_score)  # max() keeps the first (GB18030) on a tie


def _try_decode(data: bytes, codec: str) -> str | None:
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        return None


def _decode_family(data: bytes, family: str) -> str | None:
    texts = (_try_decode(data, codec) for codec in _FAMILIES[family])
    return next((t for t in texts if t is not None), None)


def _declared_family(data: bytes) -> str | None:
    match = _DECLARED_RE.search(data[:2048])
    if not match:
        return None
    return _ALIASES.get(match.group(1).decode("ascii").lower().replace("_", "-"))


def _chinese_score(text: str) -> float:
    """Share of common characters among the non-ASCII letters of ``text``."""
    total = common = 0
    for ch in text:
        if ch < "\x80" or ch in _CJK_PUNCT or "\uff01" <= ch <= "\uff5e":
            continue
        total += 1
        common += ch in _COMMON
    return common / total if total else 0.0


# ------------------------------------------------------------ plain text

_XML_ILLEGAL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def strip_xml_illegal(text: str) -> str:
    """Remove what XML 1.0 forbids: C0 controls but tab/LF/CR, U+FFFE/U+FFFF, lone surrogates."""
    return _XML_ILLEGAL_RE.sub("", text)


_HAN = "\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_TONE_MARKS = "\u0300\u0301\u0304\u030c"  # grave, acute, macron, caron (not the ü diaeresis)
_PINYIN_LETTERS = "a-zü\u00e0-\u00fc\u0101-\u01dc\u0300-\u036f"
_SYLLABLE = rf"[{_PINYIN_LETTERS}]+[1-5]?"
_ANNOTATION_RE = re.compile(rf"(?<=[{_HAN}])[(（]({_SYLLABLE}(?: {_SYLLABLE}){{0,3}})[)）]")
_SYLLABLES = frozenset("""
a o e ai ei ao ou an en ang eng er m n ng hm ba bo bai bei bao ban ben bang beng bi bie biao
bian bin bing bu pa po pai pei pao pou pan pen pang peng pi pie piao pian pin ping pu ma mo me
mai mei mao mou man men mang meng mi mie miao miu mian min ming mu fa fo fei fou fan fen fang
feng fu da de dai dei dao dou dan den dang deng dong di dia die diao diu dian ding du duo dui
duan dun ta te tai tei tao tou tan tang teng tong ti tie tiao tian ting tu tuo tui tuan tun na
ne nai nei nao nou nan nen nang neng nong ni nie niao niu nian nin niang ning nu nuo nuan nun nü
nüe lü lüe la lo le lai lei lao lou lan lang leng long li lia lie liao liu lian lin liang ling
lu luo luan lun ga ge gai gei gao gou gan gen gang geng gong gu gua guo guai gui guan gun guang
ka ke kai kei kao kou kan ken kang keng kong ku kua kuo kuai kui kuan kun kuang ha he hai hei
hao hou han hen hang heng hong hu hua huo huai hui huan hun huang ji jia jie jiao jiu jian jin
jiang jing jiong ju jue juan jun qi qia qie qiao qiu qian qin qiang qing qiong qu que quan qun
xi xia xie xiao xiu xian xin xiang xing xiong xu xue xuan xun zha zhe zhi zhai zhei zhao zhou
zhan zhen zhang zheng zhong zhu zhua zhuo zhuai zhui zhuan zhun zhuang cha che chi chai chao
chou chan chen chang cheng chong chu chua chuo chuai chui chuan chun chuang sha she shi shai
shei shao shou shan shen shang sheng shu shua shuo shuai shui shuan shun shuang re ri rao rou
ran ren rang reng rong ru rua ruo rui ruan run za ze zi zai zei zao zou zan zen zang zeng zong
zu zuo zui zuan zun ca ce ci cai cao cou can cen cang ceng cong cu cuo cui cuan cun sa se si sai
sao sou san sen sang seng song su suo sui suan sun ya yo ye yao you yan yin yang ying yong yi yu
yue yuan yun wa wo wai wei wan wen wang weng wu lue nue
""".split())


def strip_pinyin(text: str) -> str:
    """Remove pinyin a script converter inserted after characters: ``飄揚(yáng)`` → ``飄揚``.

    Only a parenthesised run of 1–4 valid pinyin syllables right after a Han
    character goes. Toneless syllables (``(le)``, ``(an)``) go only when the text
    also has tone-marked annotations, the mark of the converter; other
    parentheses (citations, bylines, ``(AP)``, ``(2026)``) are never touched.
    """
    annotations = [m.group(1) for m in _ANNOTATION_RE.finditer(text)]
    if not any(_has_tone(a) and _is_pinyin(a) for a in annotations):
        return text
    return _ANNOTATION_RE.sub(lambda m: "" if _is_pinyin(m.group(1)) else m.group(0), text)


def _syllable_base(word: str) -> str:
    bare = "".join(c for c in unicodedata.normalize("NFD", word) if c not in _TONE_MARKS)
    return unicodedata.normalize("NFC", bare).rstrip("12345")


def _is_pinyin(annotation: str) -> bool:
    return all(_syllable_base(w) in _SYLLABLES for w in annotation.split(" "))


def _has_tone(annotation: str) -> bool:
    decomposed = unicodedata.normalize("NFD", annotation)
    return any(c in _TONE_MARKS or c in "12345" for c in decomposed)


_RUBY_TEXT_RE = re.compile(
    r"<(rt|rp|rtc)\b[^>]*>.*?(?:</\1\s*>|(?=<(?:rt|rp|rtc|rb)\b|</ruby\s*>)|\Z)",
    re.IGNORECASE | re.DOTALL)
_RUBY_TAG_RE = re.compile(r"</?(?:ruby|rb)\b[^>]*>|</(?:rt|rp|rtc)\s*>", re.IGNORECASE)


def strip_ruby(html: str) -> str:
    """Drop ``<rt>``/``<rp>``/``<rtc>`` with their content and unwrap ``<ruby>``/``<rb>``,
    keeping the base text: ``<ruby>漢<rt>hàn</rt></ruby>`` → ``漢``."""
    return _RUBY_TAG_RE.sub("", _RUBY_TEXT_RE.sub("", html))


# ------------------------------------------------------------------- HTML

_ALLOWED_TAGS = frozenset({
    "p", "br", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "blockquote", "a", "img",
    "figure", "figcaption", "table", "thead", "tbody", "tr", "th", "td", "strong", "em", "b",
    "i", "u", "s", "sub", "sup", "code", "pre", "hr", "span", "ruby", "rt", "rp", "cite", "q",
    "abbr", "small",
})
_ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "width", "height", "title"},
    "th": {"colspan", "rowspan"},
    "td": {"colspan", "rowspan"},
    "abbr": {"title"},
}
_URL_SCHEMES = frozenset({"http", "https", "mailto"})
_DROP_WITH_CONTENT = frozenset({"script", "style", "template", "noscript", "iframe", "object"})


def sanitize_html(html: str, base_url: str) -> str:
    """Keep only the markup a news article needs; make links and images absolute.

    Scripts, event handlers, styles and URLs other than http/https/mailto go;
    links get ``rel="noopener noreferrer"``; relative URLs are resolved against
    ``base_url`` (left relative when it is empty).
    """
    cleaned = nh3.clean(
        strip_xml_illegal(html),
        tags=set(_ALLOWED_TAGS),
        clean_content_tags=set(_DROP_WITH_CONTENT),
        attributes={tag: set(attrs) for tag, attrs in _ALLOWED_ATTRIBUTES.items()},
        attribute_filter=partial(_absolute_url, base_url),
        url_schemes=set(_URL_SCHEMES),
        link_rel="noopener noreferrer",
        strip_comments=True,
    )
    return strip_xml_illegal(cleaned)


def _absolute_url(base_url: str, tag: str, attribute: str, value: str) -> str | None:
    if attribute not in ("href", "src"):
        return value
    if not value.strip():
        return None
    try:
        url = urljoin(base_url, value.strip())
        scheme = urlsplit(url).scheme.lower()
    except ValueError:  # e.g. a malformed IPv6 host
        return None
    return url if not scheme or scheme in _URL_SCHEMES else None


_BLOCK_TAGS = frozenset({
    "p", "div", "section", "article", "header", "footer", "h1", "h2", "h3", "h4", "h5", "h6",
    "ul", "ol", "li", "blockquote", "figure", "figcaption", "table", "tr", "pre", "hr", "dl",
    "dt", "dd",
})
_TAG_RE = re.compile(r"<[^>]*>")


def html_to_text(html: str, *, links: bool = False) -> str:
    """Plain text of an HTML fragment, one paragraph per block, separated by a blank line.

    With *links*, each link's address follows its text in parentheses.
    """
    html = strip_xml_illegal(strip_ruby(html))
    if not html.strip():
        return ""
    try:
        root = lxml.html.fragment_fromstring(html, create_parent="div")
    except (etree.ParserError, ValueError):
        logger.debug("html_to_text: unparsable fragment, stripping tags by pattern")
        return _text_lines(html_lib.unescape(_TAG_RE.sub("\n", html)))
    etree.strip_elements(root, *_DROP_WITH_CONTENT, etree.Comment, with_tail=False)
    if links:
        _inline_hrefs(root)
    for el in root.iter():
        if el.tag == "br":
            el.tail = "\n" + (el.tail or "")
        elif el.tag in _BLOCK_TAGS:
            el.text = "\n" + (el.text or "")
            el.tail = "\n" + (el.tail or "")
    return _text_lines(root.text_content())


def _inline_hrefs(root) -> None:
    for a in root.iter("a"):
        href = (a.get("href") or "").strip()
        if href.startswith(("http://", "https://", "mailto:")) and href not in a.text_content():
            a.tail = f" ({href})" + (a.tail or "")


def _text_lines(text: str) -> str:
    lines = (" ".join(line.split()) for line in text.split("\n"))
    return "\n\n".join(line for line in lines if line)


_SENTENCE_END_RE = re.compile(r"[。！？!?][”’」』）)]*")
_CJK_END = re.compile(rf"[{_HAN}，。、；：？！”’」』）》…]$")


def make_summary(html: str, limit: int = 120) -> str:
    """The first ``limit`` characters or so of the text, as one line.

    Cut after the last sentence end (。！？) that fits, when that keeps at least a
    third of ``limit``; otherwise cut hard and end with "…". Never longer than ``limit``.
    """
    text = _join_paragraphs(html_to_text(html).split("\n\n"))
    limit = max(limit, 1)
    if len(text) <= limit:
        return text
    window = text[:limit]
    ends = [m.end() for m in _SENTENCE_END_RE.finditer(window)]
    if ends and ends[-1] >= limit // 3:
        return window[:ends[-1]]
    return window[:limit - 1].rstrip() + "…"


def _join_paragraphs(paragraphs: list[str]) -> str:
    """Join paragraphs into one line: no space after Chinese text, a space after Latin."""
    out = ""
    for para in paragraphs:
        if out and para:
            out += "" if _CJK_END.search(out) else " "
        out += para
    return out


# ---------------------------------------------------------- scraped pages

@dataclass(frozen=True)
class ScrapedPage:
    """What a scraped page says, cleaned; ``source_name`` set means a reprint."""

    title: str
    paragraphs: tuple[str, ...]
    author: str
    date: datetime | None
    source_name: str
    source_url: str
    category: str


_FIELD_KEYS = {
    "发布时间": "date", "發佈時間": "date", "發布時間": "date", "时间": "date", "時間": "date",
    "日期": "date", "来源": "source", "來源": "source", "作者": "author", "栏目": "category",
    "欄目": "category", "分类": "category", "分類": "category", "原文链接": "url",
    "原文鏈接": "url", "原文": "url",
}
_FIELD_RE = re.compile(
    "(" + "|".join(sorted(_FIELD_KEYS, key=len, reverse=True)) + r")\s*[:：]\s*")
_SELF_SOURCES = frozenset({"本网", "本網", "本站", "原创", "原創"})
_DATE_RE = re.compile(
    r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?"
    r"(?:\s*T?\s*(\d{1,2})\s*[:：时時点點]\s*(\d{1,2})(?:\s*[:：分]\s*(\d{1,2})(?:\.\d+)?\s*秒?)?"
    r"\s*分?)?\s*(Z|[+-]\d{2}:?\d{2})?")
_DISCLAIMER_RE = re.compile(
    r"版[权權](?:及|和|与|與)?免[责責][声聲申]明|^(?:免[责責]|版[权權])[声聲申]明")
_DISCLAIMER_MORE_RE = re.compile(
    r"致[电電]|[电電][话話]|[邮郵]箱|@|[删刪]除|稿[费費]|[转轉]载|[转轉]載|版[权權]|免[责責]")
_ROLE_RE = re.compile(
    r"(?:本[报報])?(?:特约|特約)?(?:记者|記者|通讯员|通訊員|实习生|實習生|责任编辑|責任編輯|"
    r"责编|責編|编辑|編輯|撰稿|摄影|攝影|文|图|圖)(?:\s*[:：/／]|\s+)")
_BYLINE_RE = re.compile(r"[(（]([^()（）]{2,40})[)）]$")
_NAME_RE = re.compile(r"[\u4e00-\u9fff]{2,4}(?:·[\u4e00-\u9fff]{1,6})?")
_NOT_NAMES = frozenset({
    "待续", "待續", "未完待续", "未完待續", "全文完", "资料图", "資料圖", "草案", "试行", "試行",
    "节选", "節選", "摘编", "摘編", "有删节", "有刪節", "有删改", "有刪改",
})
_LINE_STRIP = " \t\u3000\u00a0\u200b\ufeff"


def parse_scraped_page(text: str, tz: ZoneInfo) -> ScrapedPage:
    """Read a page as scraped (format in the module docstring) into its parts.

    Raises ``SourceError`` when there is no title line at all.
    """
    lines = _clean_lines(text)
    if not lines:
        raise SourceError("scraped page is empty")
    title, rest = lines[0], lines[1:]
    if rest and _same_line(rest[0], title):
        rest = rest[1:]
    meta, rest = _read_header(rest, tz)
    rest, byline = _take_byline(_drop_disclaimer(rest))
    source = meta.get("source", "")
    return ScrapedPage(
        title=title,
        paragraphs=tuple(rest),
        author=meta.get("author") or byline,
        date=meta.get("date"),
        source_name="" if source in _SELF_SOURCES else source,
        source_url=meta.get("url", ""),
        category=meta.get("category", ""),
    )


def scraped_to_html(page: ScrapedPage) -> str:
    """The body of a scraped page as HTML, one ``<p>`` per paragraph."""
    return "\n".join(f"<p>{html_lib.escape(p, quote=False)}</p>" for p in page.paragraphs)


def _clean_lines(text: str) -> list[str]:
    text = strip_pinyin(strip_xml_illegal(text)).replace("\r\n", "\n").replace("\r", "\n")
    lines = (line.strip(_LINE_STRIP).strip() for line in text.split("\n"))
    return [line for line in lines if line]


def _same_line(a: str, b: str) -> bool:
    def norm(s: str) -> str:
        return "".join(unicodedata.normalize("NFKC", s).split())
    return norm(a) == norm(b)


def _read_header(lines: list[str], tz: ZoneInfo) -> tuple[dict, list[str]]:
    meta: dict = {}
    for i, line in enumerate(lines):
        fields = _header_fields(line, tz)
        if fields is None:
            return meta, lines[i:]
        meta.update(fields)
    return meta, []


def _header_fields(line: str, tz: ZoneInfo) -> dict | None:
    """The fields of a header line, or None when the line is not one."""
    if _DISCLAIMER_RE.search(line):
        return None
    parts = _FIELD_RE.split(line)
    fields: dict = {}
    if parts[0].strip():
        fields["date"] = parse_page_date(parts[0], tz)
        if fields["date"] is None:
            return None
    for key, value in zip(parts[1::2], parts[2::2], strict=True):
        name, value = _FIELD_KEYS[key], value.strip()
        if name == "date":
            value = parse_page_date(value, tz)
        elif name == "url" and not re.match(r"https?://\S+$", value):
            value = None
        if not value or (isinstance(value, str) and len(value) > 500):
            return None
        fields[name] = value
    return fields or None


def parse_page_date(text: str, tz: ZoneInfo) -> datetime | None:
    """A date as news pages write it (``2026-06-18 09:30``, ``2026年6月18日 09:30``,
    ISO 8601), aware; no zone means ``tz``. None when it is not such a date."""
    match = _DATE_RE.fullmatch(text.strip())
    if not match:
        return None
    year, month, day, hour, minute, second, zone = match.groups()
    try:
        naive = datetime(int(year), int(month), int(day),
                         int(hour or 0), int(minute or 0), int(second or 0))
        return naive.replace(tzinfo=_zone(zone) if zone else tz)
    except ValueError:
        return None


def _zone(text: str) -> timezone:
    if text == "Z":
        return UTC
    digits = text[1:].replace(":", "")
    offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return timezone(-offset if text[0] == "-" else offset)  # ValueError past ±24h


def _drop_disclaimer(lines: list[str]) -> list[str]:
    """Remove the site's disclaimer from the last two lines (it may span both)."""
    for i in range(max(0, len(lines) - 2), len(lines)):
        if _DISCLAIMER_RE.search(lines[i]):
            after = [line for line in lines[i + 1:] if not _DISCLAIMER_MORE_RE.search(line)]
            return lines[:i] + after
    return lines


def _take_byline(lines: list[str]) -> tuple[list[str], str]:
    """Split a closing ``(名字)`` byline off the last paragraph; return (lines, author)."""
    match = _BYLINE_RE.search(lines[-1]) if lines else None
    names = _byline_names(match.group(1)) if match else []
    if not match or not names:
        return lines, ""
    last = lines[-1][:match.start()].rstrip(_LINE_STRIP)
    return lines[:-1] + ([last] if last else []), "、".join(names)


def _byline_names(inner: str) -> list[str]:
    names = re.split(r"[、,，\s]+", _ROLE_RE.sub(" ", inner).strip(_LINE_STRIP))
    if all(_NAME_RE.fullmatch(n) and n not in _NOT_NAMES for n in names):
        return names
    return []
