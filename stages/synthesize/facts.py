"""Fact extraction: what a chunk states (address, phone, price, table cells, courses, ...)."""

from __future__ import annotations

import logging
import re
from collections import Counter
from typing import Any

from stages.common.korean import normalize
from stages.synthesize.limits import DEFAULTS, Limits

log = logging.getLogger("synthesize")

# ------------------------------------------------------------------ facts
# A Korean street or lot address in any region: '[도 ]시/군 [읍/면/동 ...] 로/길/리 번지' ('제천시 송학면 의림대로
# 47길 7', '제주시 구좌읍 송당리 산 164-1', '서울특별시 중구 세종대로 110'), or '... 일원' (an area).
ADDRESS = re.compile(
    r"(?<![가-힣])(?:[가-힣]{2,7}(?:특별자치도|특별시|광역시|도)\s)?[가-힣]{1,5}(?:시|군)\s"
    r"(?=[^,()\n/]*?[가-힣0-9](?:읍|면|동|가|리|로|길)[\s\d])"
    r"[^,()\n/]*?(?:\d+(?:-\d+)?(?:번지)?(?:\s*\d+층)?|일원)(?=[\s,)/]|$)"
)
PHONE = re.compile(r"0\d{1,2}[-.]\s?\d{3,4}[-.]\s?\d{4}")
PRICE = re.compile(r"\d{1,3}(?:,\d{3})+원")
ROOMS = re.compile(r"객실\s*수?\s*(\d+)")
HOURS = re.compile(r"\d{1,2}:\d{2}\s*~\s*\d{1,2}:\d{2}")
CLOCK_TIME = re.compile(r"\d{1,2}:\d{2}")
# '소요시간 1시간 50분', '탐방시간 : 해설사 동행 2~3시간', '관람시간: 약 40분' -> the span itself
DURATION = re.compile(r"(?:소요|탐방|관람|체험)\s*시간\s*[:：]?\s*(?:[가-힣]+\s){0,2}?(\d[0-9~시간 반분]*[시간반분])")
URL = re.compile(
    r"(?<![\w.@/])(?:https?://)?(?:www\.)?[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:kr|com|net|org)(?:/[\w./-]*)?", re.I
)
MONEY = re.compile(r"\d{1,3}(?:[,.]\d{3})+원|\d+(?:만|천)원|\d+원")
# '입장료 3,000원', '체험비 1만원': a price named by the word in front of it
NAMED_PRICE = re.compile(
    r"(?P<label>입장료|관람료|이용료|체험비|참가비|숙박비|요금)\s*(?P<price>\d{1,3}(?:[,.]\d{3})+원|\d+(?:만|천)원)"
)
DISCOUNT = re.compile(
    r"(?P<item>[가-힣A-Za-z0-9 ]{2,25}?)\s*(?P<value>\d{1,3}(?:[,.]\d{3})+원|\d+(?:만|천)?원|\d+%)\s*할인"
)
HEIGHT = re.compile(r"(?:높이가?\s*|해발\s*)(\d[\d,.]*\s?m)(?![a-z])")
CLOSED = re.compile(
    r"((?:매주|매월\s*\S+)\s*[월화수목금토일]요일(?:\s*및\s*[^\s/*]+(?:\s[가-힣]{0,2}날)?)?)\s*(?:휴[장관무]|정기\s*휴무|쉽니다)"
)
# '주변여행 : 비밀의 숲, 비자림' / '주변 관광지: ...': places to combine with a visit
NEARBY_LIST = re.compile(r"주변\s*(?:여행|관광지|명소|볼거리)\s*[:：]\s*([^\n]+)")
AMENITY = re.compile(
    r"(?<![가-힣])[가-힣]{0,4}(?:주차장|화장실|운동시설|탐방안내소|올레안내소|관광안내소|매점|샤워장|전망대|놀이터|수유실)"
)
# '소규모, 개별 여행객에게 적합', '체험학습에 적합하다', '전 연령층 대상': who it suits
SUITS = re.compile(
    r"(?<![가-힣])((?:[가-힣]+,\s*)?(?:[가-힣]+\s)?[가-힣]*(?:객|층|자|족|들|학습|여행|나들이|산책))(에게|에)\s*(?:적합|알맞|추천)"
)
HASHTAG_LINE = re.compile(r"^\s*#\S")
LABELLED_PRICE = re.compile(r"(?P<label>[가-힣A-Za-z0-9 ]{2,15}?)\s*[:：(]\s*(?P<price>\d{1,3}(?:,\d{3})+원)")
MENU_ITEM = re.compile(r"(?P<name>[가-힣A-Za-z0-9 &]{2,20}?)\s*\((?P<menu>[^()]{2,40})\)")
# OCR reads the brochure's menu separators ('·', ',') as ':', '-', '.', ';'.
MENU_SEPARATOR = re.compile(r"\s*[·:;.\-]\s*")
FOOD_CONTEXT = re.compile(r"맛집|식당|음식|먹거리|메뉴|맛있|미식|식도락|레스토랑|카페")

# (fact, pattern): the pattern's group 1 is the answer ('activity': group 2 the verb); how each is asked
# and answered is styles.SENTENCE_SPECS.
VERBS = "즐길|체험할|감상할|배울|만날|누릴|알아볼|관람할"
SENTENCE_FACTS: list[tuple[str, re.Pattern[str]]] = [
    ("activity", re.compile(rf"([^,.]{{2,60}}?)[을를]\s+(?:\S+\s+)?({VERBS})\s*수\s*있")),
    ("activity", re.compile(r"([^,.]{4,60}?)[이가]\s*가능")),
    ("famous", re.compile(r"(?<!\S)([^,.\s][^,.]{1,24}?)(?<!으)(?<!기)(?:으로|로)도?\s*유명")),
    ("selected", re.compile(r"(?<!\S)([가-힣]+\s?\d+[선경])에\s*(?:\S+\s)*?선정")),
    ("event", re.compile(r"(?<!\S)([^,.\s][^,.]{1,40}?)[이가]\s*매년\s*열리")),
    ("operator", re.compile(r"(?<!\S)([가-힣]{2,10})[이가]\s*운영하는")),
    ("designated", re.compile(r"(\d{4}년)\s*보물로\s*지정")),
    ("certified", re.compile(r"(\d{4}년)\s*(?:\S+\s){0,3}?\S*인증을\s*받")),
    ("built", re.compile(r"(\d{4}년대?)\s*[^,.]{0,20}?만들어졌")),
    ("founded", re.compile(r"((?:[가-힣]+\s){1,2}\d+년)\s*창건")),
    ("species", re.compile(r"(\d[\d,]*여?\s?종)의?\s*[가-힣]+[이가을를]\s")),
    ("exhibits", re.compile(r"(\d[\d,]*여?\s?점)[이가]\s*전시")),
    ("parking", re.compile(r"(\d+대)\s*주차장")),
    ("seats", re.compile(r"(\d+석\s*이상)")),
    ("length", re.compile(r"(\d+(?:\.\d+)?\s?k?m)\s*(?:길이의\s*)?(?:길|출렁다리|계곡|둘레길|산책로)")),
    ("period", re.compile(r"운영기간\s*[:：]\s*([^/\n]+?)\s*(?:/|$)")),
    ("period", re.compile(r"(\d+월부터\s*\d+월\s*초?까지)\s*운영")),
    ("period", re.compile(r"(\d+월\s?\d+일\s*~\s*\d+월\s?\d+일)까지\s*운영")),
    ("closed", re.compile(r"(매주\s*\S요일)\s*(?:및\s*\S+\s*)?휴[장관무]")),
    ("capacity", re.compile(r"(\d+명)까지\s*입장")),
    ("filming", re.compile(r"(?<!\S)((?:[A-Za-z]+\s){0,2}[A-Za-z가-힣]+)\s*촬영지로")),
    ("booking", re.compile(r"예매\s*[:：]\s*(\S+)")),
    ("nearby", re.compile(r"(?<!\S)([가-힣A-Za-z0-9]{2,15})\s*인근에서")),
    ("fee", re.compile(r"(무료)\s*이용")),
]
# Trim "청풍호를 배경으로 번지점프와 짚라인" to what is asked: the part after the last adverbial.
ADVERBIAL = re.compile(r".*(?:으로|로|에서|에|서)\s")
FESTIVAL = re.compile(r"(\d{1,2}월)\s[^.\n]*?(?<!\S)((?:[가-힣]+\s)?[가-힣A-Za-z0-9]+(?:축제|영화제|엑스포|박람회))")


def entity_name(title: str) -> str:
    """'포레스트 리솜 (레스트리 리솜)' -> '포레스트 리솜': brackets hold notes, not the name people ask with."""
    glued = re.sub(r"(?<=[가-힣])\([^)\s]*\)(?=[가-힣])", "", title)  # '금(악)오름' -> '금오름'
    bare = " ".join(re.sub(r"\([^)]*\)|\[[^\]]*\]", " ", glued).split())
    return bare if len(bare) >= 2 else title


def _body(text: str, title: str, lim: Limits) -> str:
    """An entry's prose: from its title on, without brackets, its leading address and 'name:' label."""
    lines = [line for line in text.splitlines() if not HASHTAG_LINE.match(line)]
    start = next((i for i, line in enumerate(lines) if line.startswith(title)), 0)
    body = re.sub(r"\([^)]*\)", "", "\n".join(lines[start:]))
    while (m := ADDRESS.match(body.strip())) is not None:  # entries open with one or more addresses
        body = body.strip()[m.end() :]
    body = re.sub(r"^\s*일원\s", "", body).strip()
    first = body.split("\n")[0][: lim.colon_window]
    if ":" in first and not re.search(r"\d:\d", first):
        body = body.split(":", 1)[1]
    return body.strip()


def _first_sentence(text: str, title: str, lim: Limits) -> str:
    sentence = re.split(r"(?<=[.!?])\s", _body(text, title, lim))[0].strip()
    ok = len(sentence) >= lim.sentence_min_chars and sentence[0] not in "*※#-" and sentence.endswith(".")
    return sentence if ok else ""


def is_place(chunk: dict[str, Any]) -> bool:
    return chunk["kind"] == "entry" and ADDRESS.search(chunk["text"]) is not None


# A fact: (fact, entity, answer, template key, extra) — extra fills {x} in the template.
Fact = tuple[str, str, str, str, str]


def entity_facts(chunk: dict[str, Any], lim: Limits = DEFAULTS) -> list[tuple[str, str, str]]:
    """(fact, entity, answer) for an entry chunk (one attraction, lodging, ...)."""
    return [(f, e, a) for f, e, a, _, _ in _entity_facts(chunk, lim)]


GENERIC_TITLE = re.compile(r"(안내|요금|금액|방법|현황)$")
# A heading that rates or classifies rather than names: '난이도하', '난이도 중', '등급 A', 'Level 2'
LABEL_TITLE = re.compile(r"^(?:난이도|등급|레벨|level|구분|분류|유형)\s*\S{0,2}$", re.I)


def _squashed(s: str) -> str:
    return re.sub(r"[\s,·.:;\-/~()\[\]'\"“”‘’]", "", s).lower()


def subject(chunk: dict[str, Any]) -> str:
    """What an entry is about. Usually its title; but a title that names nothing the text mentions
    ('난이도하' under '아부오름', a generic '...안내') gives way to the deepest section-path part the
    text does mention ('아부오름은 ...'), else to the product that owns the section."""
    title = _strip_generic(entity_name(chunk["title"]))
    if GENERIC_TITLE.search(chunk["title"]):
        return course_owner(chunk)
    text = _squashed(chunk["text"])
    if _squashed(title) in text:
        return title
    parts = [p for p in chunk["section_path"].split(" > ")[:-1] if not re.match(r"PART\s*\d", p)]
    for part in reversed(parts):
        name = entity_name(part)
        if len(_squashed(name)) >= 2 and _squashed(name) in text and not GENERIC_TITLE.search(name):
            return name
    if LABEL_TITLE.match(title) and parts:  # '수월봉 > 난이도하' whose text never repeats '수월봉'
        return entity_name(parts[-1])
    return title


def _entity_facts(chunk: dict[str, Any], lim: Limits) -> list[Fact]:
    text = chunk["text"]
    e = subject(chunk)
    facts: list[Fact] = []
    for fact, pattern in (("address", ADDRESS), ("phone", PHONE), ("hours", HOURS)):
        found = sorted({normalize(m.group(0)) for m in pattern.finditer(text)})
        if len(found) == 1:  # ambiguous when a chunk holds several
            facts.append((fact, e, found[0], fact, ""))
    for fact, pattern in (("rooms", ROOMS), ("duration", DURATION)):
        found = sorted({normalize(m.group(1)) for m in pattern.finditer(text)})
        if len(found) == 1:
            facts.append((fact, e, found[0], fact, ""))
    # one amount in the chunk, and not a discount ('8시간권 5,000원 할인' is no price of the chunk's subject)
    amounts = {re.sub(r"[,.]", "", m.group(0)) for m in MONEY.finditer(text)}
    prices = sorted({m.group(0) for m in PRICE.finditer(text) if not re.match(r"\s*할인", text[m.end() :])})
    if len(prices) == 1 and len(amounts) == 1:
        facts.append(("price", e, prices[0], "price", ""))
    facts += general_facts(chunk, e, lim)
    if re.search(r"[!?,]", chunk["title"]):
        return facts  # a slogan for a title names nothing one could ask about
    # '*경로는 예시이며 ... 변경이 가능합니다' notes are caveats, not facts about the entity
    body = "\n".join(x for x in _body(text, chunk["title"], lim).splitlines() if not x.lstrip().startswith(("*", "※")))
    seen: set[str] = set()
    for fact, pattern in SENTENCE_FACTS:
        if fact in seen:
            continue
        m = pattern.search(body)
        if not m:
            continue
        answer = normalize(m.group(1))
        if fact == "activity":
            answer = ADVERBIAL.sub("", answer).strip()
        answer = re.sub(r"^\S+[은는]\s+", "", answer)  # '서우봉은 함덕해변과 ...': drop the topic
        # '목장들이 있으며 제주의 중산간 풍광': keep the last clause, the object of the verb
        answer = re.split(r"\S*(?:으며|이며|하며|있고|하고|지만|는데|답고|롭고|으면|르면|하면|보면|가면)\s+", answer)[
            -1
        ].strip()
        if len(answer) < 2 or len(answer) > lim.value_max_chars:
            continue
        verb = m.group(2) if fact == "activity" and m.lastindex and m.lastindex >= 2 else ""
        seen.add(fact)
        facts.append((fact, e, answer, f"s:{fact}:{pattern.pattern}", verb))
    sentence = _first_sentence(text, chunk["title"], lim)
    if sentence:
        # Only places get "어떤 곳인가요?": a heading like 지역화폐 환급 is not a place.
        facts.append(("sentence", e, sentence, "sentence" if is_place(chunk) else "definition", ""))
    return facts


def _clean_menu(menu: str) -> str:
    """'칼국수-떡만두국' / '돼지갈비:냉면' / '한방토종닭·오리백숙' -> '칼국수, 떡만두국' ..."""
    items = [i for i in MENU_SEPARATOR.split(menu) if i]
    return ", ".join(normalize(i) for i in items)


def list_facts(chunk: dict[str, Any], lim: Limits = DEFAULTS) -> list[tuple[str, str, str]]:
    """Facts about named items inside a section chunk: menus '식당(메뉴)', labelled prices."""
    return [(f, e, a) for f, e, a, _, _ in _list_facts(chunk, lim)]


def restaurants(chunk: dict[str, Any], lim: Limits) -> dict[str, str]:
    """name -> cleaned menu for a restaurant list 'name(menu), name(menu), ...'."""
    text = chunk["text"]
    items = list(MENU_ITEM.finditer(text))
    if chunk["kind"] == "table" or len(items) < lim.menu_min_items:
        return {}  # one bracket in prose is not a menu
    if not FOOD_CONTEXT.search(" ".join((chunk["section_path"], chunk["title"], text))):
        return {}  # 'name(role)' lists elsewhere are credits, not menus ('이경민(사진작가)')
    names = Counter(m["name"].strip(" ,-") for m in items)
    out: dict[str, str] = {}
    for m in items:
        name, menu = m["name"].strip(" ,-"), m["menu"].strip()
        # a name continued from the line above ('미당손두부와\n등갈비(...)') is cut: skip it
        before = text[: m.start("name")].rstrip(" ")
        if before and before.rstrip()[-1] not in ",)":
            continue
        if names[name] == 1 and not re.search(r"\d|[A-Za-z]{3,}", menu) and len(name) >= 2:
            cleaned = _clean_menu(menu)
            if cleaned:
                out[name] = cleaned
    return out


def _list_facts(chunk: dict[str, Any], lim: Limits) -> list[Fact]:
    facts: list[Fact] = [("menu", n, m, "menu", "") for n, m in restaurants(chunk, lim).items()]
    if chunk["kind"] == "table":
        return facts
    text = chunk["text"]
    labels = Counter(m["label"].strip() for m in LABELLED_PRICE.finditer(text))
    for m in LABELLED_PRICE.finditer(text):
        label = m["label"].strip()
        if labels[label] == 1 and not label.isdigit():
            facts.append(("price", f"{chunk['title']} {label}".strip(), m["price"], "price", ""))
    for m in FESTIVAL.finditer(text):
        facts.append(("festival", normalize(m.group(2)), m.group(1), "festival", ""))
    return facts


# Words that end a heading without naming anything ('옥순봉 출렁다리 지역화폐 환급' is about 옥순봉 출렁다리).
GENERIC_WORDS = {
    "안내",
    "정보",
    "소개",
    "현황",
    "요금",
    "금액",
    "환급",
    "지역화폐",
    "혜택",
    "이용",
    "이용안내",
    "꿀팁",
    "문의",
}


def _strip_generic(name: str) -> str:
    words = name.split()
    while len(words) > 1 and (words[-1] in GENERIC_WORDS or words[-1] in ("및", "과", "와", "&")):
        words.pop()
    return " ".join(words)


def course_owner(chunk: dict[str, Any]) -> str:
    """The product a table belongs to: the deepest path part that is not a generic '...안내' heading."""
    parts = [p for p in chunk["section_path"].split(" > ") if not re.match(r"PART\s*\d", p)]
    named = [p for p in parts if not GENERIC_TITLE.search(p) and not p.startswith("#")]
    return _strip_generic(entity_name(named[-1])) if named else entity_name(chunk["title"])


# ------------------------------------------------------------------ general facts (any brochure layout)
def _one(found: list[str]) -> str:
    """The single distinct value found, else '' (two different values in one chunk are ambiguous)."""
    values = sorted(set(found))
    return values[0] if len(values) == 1 else ""


def _items(value: str) -> list[str]:
    items = [re.sub(r"[ㄱ-ㅎㅏ-ㅣ]+$", "", normalize(i)).strip() for i in re.split(r"\s*[,·]\s*", value)]
    return [i for i in items if len(i) >= 2]


# A section subject one can hold and show for a discount: '디지털 관광주민증', '관광카드', '회원'.
PASS_LIKE = re.compile(r"증|카드|패스|쿠폰|회원|이용권")


def general_facts(chunk: dict[str, Any], e: str, lim: Limits) -> list[Fact]:
    """Facts that do not depend on the sample's layout: closing days, heights, named prices,
    discounts, URLs, 'nearby' lists, amenities and who a place suits."""
    text = chunk["text"]
    facts: list[Fact] = []
    if closed := _one([normalize(m.group(1)) for m in CLOSED.finditer(text)]):
        facts.append(("closed", e, closed, "closed", ""))
    if height := _one([normalize(m.group(1)) for m in HEIGHT.finditer(text)]):
        facts.append(("height", e, height, "height", ""))
    if not PRICE.search(text) or len({m.group(0) for m in PRICE.finditer(text)}) > 1:
        named = {m["label"]: m["price"] for m in NAMED_PRICE.finditer(text)}
        for label, price in sorted(named.items()):
            facts.append(
                ("price", e, price, "named_price", label) if label != "요금" else ("price", e, price, "price", "")
            )
    for m in DISCOUNT.finditer(text):
        item = normalize(m["item"]).strip(" *")
        if len(item) >= 3 and not re.search(r"\d$", item):
            # '{x}가 있으면 … 할인받을 수 있나요?' reads right only when x is something one holds
            # (a pass, card, coupon, membership); any other 'N원 할인' line is asked plainly.
            holder = subject_of_section(chunk)
            key = "discount" if PASS_LIKE.search(holder) else "discount_plain"
            facts.append(("discount", item, m["value"], key, holder))
    if url := _one([m.group(0) for m in URL.finditer(text)]):
        if re.search(r"예약|예매", " ".join((text, chunk["title"], chunk["section_path"]))):
            facts.append(("booking_url", e, url, "booking_url", ""))
        elif re.search(r"홈페이지|누리집|사이트|확인|문의", text):  # a site to read or donate on, not to book
            facts.append(("homepage", e, url, "homepage", ""))
    if m := NEARBY_LIST.search(text):
        items = _items(m.group(1))
        if len(items) >= 2:
            facts.append(("nearby_list", e, ", ".join(items[:6]), "nearby_list", ""))
    info = next((line for line in text.splitlines() if ADDRESS.search(line)), "")
    amenities = list(dict.fromkeys(a.group(0) for a in AMENITY.finditer(info.split("주변")[0])))
    if len(amenities) >= 2:
        facts.append(("amenities", e, ", ".join(amenities), "amenities", ""))
    if (m := SUITS.search(text)) and len(m.group(1).strip()) >= 2:
        facts.append(("suits", e, _suits(m.group(1)), "suits", m.group(2)))
    return facts


def _suits(value: str) -> str:
    """'갖춰 체험학습' -> '체험학습': a verb before the noun phrase belongs to the clause before."""
    words = normalize(value).strip(" ,").split(" ")
    while len(words) > 1 and re.search(r"[춰고며서어아해여게지워]$", words[0]):
        words.pop(0)
    return " ".join(words)


def subject_of_section(chunk: dict[str, Any]) -> str:
    """The programme a benefit list belongs to ('디지털 관광주민증' for its 주요혜택)."""
    parts = [p for p in chunk["section_path"].split(" > ") if not re.match(r"PART\s*\d", p)]
    named = [p for p in parts if not GENERIC_TITLE.search(p)]
    return entity_name(named[-1]) if named else entity_name(chunk["title"])
