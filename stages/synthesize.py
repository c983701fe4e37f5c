"""synthesize: chunks -> Korean QA pairs split BY SOURCE CHUNK into train/validation/test.

Generators behind one interface (``synthesize.generator``, profile-specific):

* ``rules`` (offline, deterministic): facts found in each chunk — address, phone, price,
  rooms, hours, period, closing day, duration, counts, lengths, menus, table cells, course
  order, activities, key sentences — asked with several honorific templates;
* ``llm``: an OpenAI-compatible chat endpoint or a local transformers model asked, in Korean,
  for N grounded questions per chunk (JSON, parsed robustly).

Both feed the same filters (answer grounded in its chunk, no answer leaking into the
question, near-duplicate questions dropped). Comparison (two facts, usually two chunks),
multi-hop (a course stop -> that place's address / menu) and unanswerable questions
(plausible aspects the brochure never states; answer: the abstention phrase) are added
by rule for either generator, in the mix set by ``synthesize.mix``.

Splitting by chunk (not by pair) is the point: a test question's chunk never backs
a training question, so the test measures reading the context, not memorisation.
Cross-chunk questions are built after the split, only from chunks of one split.

    python -m stages.synthesize --chunks data/chunks --out data/qa --metrics metrics/dataset.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stages.common import params as P
from stages.common.chat_api import ChatEndpoint
from stages.common.errors import UserError, run_cli
from stages.common.io import atomic_dir, dump_jsonl, read_jsonl, write_json
from stages.common.korean import josa, normalize

log = logging.getLogger("synthesize")

SPLITS = ("train", "validation", "test")
TYPES = ("factual", "descriptive", "comparison", "multihop", "unanswerable")


@dataclass(frozen=True)
class Limits:
    """Small thresholds of the rules generator (params synthesize.*)."""

    value_max_chars: int = 60  # table cells longer than this are prose, not an answer
    sentence_min_chars: int = 15  # shorter 'key sentences' are fragments
    colon_window: int = 45  # a colon this early in an entry's first line ends its name label
    menu_min_items: int = 3  # a restaurant list is at least this many 'name(menu)' items
    questions_per_fact: int = 1  # phrasings asked per fact (different templates)

    @classmethod
    def from_cfg(cls, cfg: dict[str, Any]) -> Limits:
        return cls(**{k: P.require(cfg, k, int, "synthesize") for k in cls.__dataclass_fields__})


# ------------------------------------------------------------------ facts
ADDRESS = re.compile(r"제천시\s[^,()\n/]*?(?:\d+(?:-\d+)?(?:번지)?(?:\s*\d+층)?|일원)(?=[\s,)/]|$)")
PHONE = re.compile(r"0\d{1,2}[-.]\s?\d{3,4}[-.]\s?\d{4}")
PRICE = re.compile(r"\d{1,3}(?:,\d{3})+원")
ROOMS = re.compile(r"객실\s*수?\s*(\d+)")
HOURS = re.compile(r"\d{1,2}:\d{2}\s*~\s*\d{1,2}:\d{2}")
CLOCK_TIME = re.compile(r"\d{1,2}:\d{2}")
DURATION = re.compile(r"소요\s*시간\s*[:：]?\s*([0-9~시간 반분]+[0-9시간반분])")
LABELLED_PRICE = re.compile(r"(?P<label>[가-힣A-Za-z0-9 ]{2,15}?)\s*[:：(]\s*(?P<price>\d{1,3}(?:,\d{3})+원)")
MENU_ITEM = re.compile(r"(?P<name>[가-힣A-Za-z0-9 &]{2,20}?)\s*\((?P<menu>[^()]{2,40})\)")
# OCR reads the brochure's menu separators ('·', ',') as ':', '-', '.', ';'.
MENU_SEPARATOR = re.compile(r"\s*[·:;.\-]\s*")

# (fact, pattern, templates): the pattern's group 1 is the answer; templates get {e} (entity), {x} (extra).
VERBS = "즐길|체험할|감상할|배울|만날|누릴|알아볼|관람할"
SENTENCE_FACTS: list[tuple[str, re.Pattern[str], list[str]]] = [
    (
        "activity",
        re.compile(rf"([^,.]{{2,60}}?)[을를]\s+(?:\S+\s+)?({VERBS})\s*수\s*있"),
        ["{e}에서는 무엇을 {x} 수 있나요?", "{e}에 가면 무엇을 {x} 수 있나요?"],
    ),
    (
        "activity",
        re.compile(r"([^,.]{4,60}?)[이가]\s*가능"),
        ["{e}에서는 어떤 활동을 할 수 있나요?", "{e}에서 할 수 있는 체험은 무엇인가요?"],
    ),
    (
        "famous",
        re.compile(r"([^,.]{2,40}?)(?<!으)(?:으로|로)도?\s*유명"),
        ["{e_eun} 무엇으로 유명한가요?", "{e_eun} 어떤 것으로 알려져 있나요?"],
    ),
    (
        "selected",
        re.compile(r"(?<!\S)([가-힣]+\s?\d+[선경])에\s*(?:\S+\s)*?선정"),
        ["{e_eun} 어떤 명소 목록에 선정되었나요?", "{e_eun} 어디에 선정된 곳인가요?"],
    ),
    (
        "event",
        re.compile(r"(?<!\S)([^,.\s][^,.]{1,40}?)[이가]\s*매년\s*열리"),
        ["{e}에서는 매년 어떤 행사가 열리나요?", "{e}에서 해마다 열리는 행사는 무엇인가요?"],
    ),
    (
        "operator",
        re.compile(r"(?<!\S)([가-힣]{2,10})[이가]\s*운영하는"),
        ["{e_eun} 어느 기관이 운영하나요?", "{e}의 운영 주체는 어디인가요?"],
    ),
    (
        "designated",
        re.compile(r"(\d{4}년)\s*보물로\s*지정"),
        ["{e_eun} 몇 년에 보물로 지정되었나요?", "{e_eun} 언제 보물로 지정되었나요?"],
    ),
    ("certified", re.compile(r"(\d{4}년)\s*(?:\S+\s){0,3}?\S*인증을\s*받"), ["{e_eun} 몇 년에 인증을 받았나요?"]),
    (
        "built",
        re.compile(r"(\d{4}년대?)\s*[^,.]{0,20}?만들어졌"),
        ["{e_eun} 언제 만들어졌나요?", "{e_eun} 몇 년대에 만들어졌나요?"],
    ),
    (
        "founded",
        re.compile(r"((?:[가-힣]+\s){1,2}\d+년)\s*창건"),
        ["{e_eun} 언제 창건되었나요?", "{e_eun} 언제 세워진 절인가요?"],
    ),
    (
        "species",
        re.compile(r"(\d[\d,]*여?\s?종)의?\s*[가-힣]+[이가을를]\s"),
        ["{e}에는 몇 종의 식물이 있나요?", "{e}에서는 몇 종의 식물을 볼 수 있나요?"],
    ),
    (
        "exhibits",
        re.compile(r"(\d[\d,]*여?\s?점)[이가]\s*전시"),
        ["{e}에는 유물이 몇 점 전시되어 있나요?", "{e}의 전시 유물은 몇 점인가요?"],
    ),
    ("parking", re.compile(r"(\d+대)\s*주차장"), ["{e}에는 차를 몇 대 댈 수 있는 주차장이 있나요?"]),
    ("seats", re.compile(r"(\d+석\s*이상)"), ["{e_eun} 좌석이 몇 석 규모인가요?"]),
    (
        "length",
        re.compile(r"(\d+(?:\.\d+)?\s?k?m)\s*(?:길이의\s*)?(?:길|출렁다리|계곡|둘레길|산책로)"),
        ["{e}의 길이는 얼마나 되나요?", "{e_eun} 길이가 몇 m인가요?"],
    ),
    (
        "period",
        re.compile(r"운영기간\s*[:：]\s*([^/\n]+?)\s*(?:/|$)"),
        ["{e_eui} 운영기간은 언제인가요?", "{e_eun} 언제 운영하나요?"],
    ),
    (
        "period",
        re.compile(r"(\d+월부터\s*\d+월\s*초?까지)\s*운영"),
        ["{e_eun} 언제 운영하나요?", "{e_eun} 몇 월부터 몇 월까지 이용할 수 있나요?"],
    ),
    (
        "period",
        re.compile(r"(\d+월\s?\d+일\s*~\s*\d+월\s?\d+일)까지\s*운영"),
        ["{e_eun} 언제부터 언제까지 운영하나요?", "{e_eui} 운영 기간은 어떻게 되나요?"],
    ),
    (
        "closed",
        re.compile(r"(매주\s*\S요일)\s*(?:및\s*\S+\s*)?휴[장관무]"),
        ["{e_eun} 언제 쉬나요?", "{e_eui} 휴무일은 언제인가요?"],
    ),
    ("capacity", re.compile(r"(\d+명)까지\s*입장"), ["{e_eun} 몇 명까지 입장할 수 있나요?"]),
    (
        "filming",
        re.compile(r"(?<!\S)((?:[A-Za-z]+\s){0,2}[A-Za-z가-힣]+)\s*촬영지로"),
        ["{e_eun} 어떤 작품의 촬영지로 알려져 있나요?"],
    ),
    ("booking", re.compile(r"예매\s*[:：]\s*(\S+)"), ["{e_eun} 어디에서 예매하나요?"]),
    (
        "nearby",
        re.compile(r"(?<!\S)([가-힣A-Za-z0-9]{2,15})\s*인근에서"),
        ["{e_eun} 어디 근처에 있나요?", "{e_eun} 어느 곳 인근에 있나요?"],
    ),
    ("fee", re.compile(r"(무료)\s*이용"), ["{e} 이용 요금은 얼마인가요?", "{e_eun} 유료인가요?"]),
]
# Trim "청풍호를 배경으로 번지점프와 짚라인" to what is asked: the part after the last adverbial.
ADVERBIAL = re.compile(r".*(?:으로|로|에서|에|서)\s")
FESTIVAL = re.compile(r"(\d{1,2}월)\s[^.\n]*?(?<!\S)((?:[가-힣]+\s)?[가-힣A-Za-z0-9]+(?:축제|영화제|엑스포|박람회))")

TEMPLATES: dict[str, list[str]] = {
    "address": [
        "{e_eui} 주소는 어디인가요?",
        "{e_eun} 어디에 있나요?",
        "{e}의 위치를 알려주세요.",
        "{e}에 가려면 어느 주소로 가야 하나요?",
    ],
    "phone": [
        "{e_eui} 전화번호는 무엇인가요?",
        "{e}에 문의하려면 어디로 전화하면 되나요?",
        "{e} 연락처를 알려주세요.",
    ],
    "rooms": [
        "{e_eui} 객실 수는 몇 개인가요?",
        "{e}에는 객실이 몇 개 있나요?",
        "{e_eun} 객실을 몇 개 갖추고 있나요?",
    ],
    "hours": [
        "{e_eui} 운영시간은 어떻게 되나요?",
        "{e_eun} 몇 시부터 몇 시까지 운영하나요?",
    ],
    "duration": [
        "{e_eun} 시간이 얼마나 걸리나요?",
        "{e_eui} 소요시간은 얼마인가요?",
    ],
    "price": [
        "{e_eui} 요금은 얼마인가요?",
        "{e_eun} 가격이 얼마예요?",
        "{e} 이용 요금이 궁금합니다. 얼마인가요?",
    ],
    "menu": [
        "{e_eui} 대표 메뉴는 무엇인가요?",
        "{e}에서는 어떤 음식을 먹을 수 있나요?",
        "{e}에 가면 무엇을 먹으면 좋을까요?",
    ],
    "sentence": [
        "{e_eun} 어떤 곳인가요?",
        "{e}에 대해 간단히 소개해 주세요.",
        "{e_eun} 어떤 특징이 있나요?",
    ],
    "definition": ["{e_eun} 무엇인가요?", "{e}에 대해 설명해 주세요."],
    "table": [
        "{title}에서 {key_eui} {col_eun} 무엇인가요?",
        "{title} 안내에 따르면 {key_eui} {col_eun} 어떻게 되나요?",
    ],
    "table_time": [  # a clock-time cell
        "{title}에서 {key_eui} {col_eun} 몇 시인가요?",
        "{title} 안내에 따르면 {key_eui} {col_eun} 어떻게 되나요?",
    ],
    "points": ["{title} 중 {key_eun} 몇 포인트인가요?", "{title}에서 {key_eul} 받으려면 몇 포인트가 필요한가요?"],
    "label": ["{e}의 {col_eun} 어떻게 되나요?", "{e}의 {col}에 대해 알려주세요."],
    "festival": ["{e_eun} 몇 월에 열리나요?", "{e_eun} 언제 열리는 행사인가요?"],
    "course_first": ["{e}의 첫 번째 방문지는 어디인가요?", "{e_eun} 어디에서 시작하나요?"],
    "course_last": ["{e}의 마지막 방문지는 어디인가요?", "{e_eun} 어디에서 끝나나요?"],
    "course_next": ["{e}에서 {x} 다음에 가는 곳은 어디인가요?", "{e}에서 {x_eul} 들른 뒤 어디로 가나요?"],
}

COMPARISON: dict[str, tuple[str, str, list[str]]] = {
    # dimension: (more, less, templates with {a_wa} {b} {how})
    "rooms": (
        "많은",
        "적은",
        ["{a_wa} {b} 중 객실이 더 {how} 곳은 어디인가요?", "{a_wa} {b} 가운데 객실 수가 더 {how} 곳은?"],
    ),
    "price": (
        "비싼",
        "저렴한",
        ["{a_wa} {b} 중 요금이 더 {how} 것은 어느 쪽인가요?", "{a_wa} {b} 가운데 더 {how} 쪽은 어디인가요?"],
    ),
    "points": ("많은", "적은", ["고향사랑 기부제 답례품 {a_wa} {b} 중 포인트가 더 {how} 것은 무엇인가요?"]),
    "duration": ("긴", "짧은", ["{a_wa} {b} 중 소요시간이 더 {how} 코스는 어디인가요?"]),
}

MULTIHOP = {
    "address": ["{course}에서 {x} 다음에 방문하는 곳의 주소는 어디인가요?", "{course}의 {nth} 방문지는 어디에 있나요?"],
    "menu": [
        "{course}에서 {x} 다음에 들르는 맛집의 대표 메뉴는 무엇인가요?",
        "{course}의 {nth} 맛집에서는 어떤 음식을 먹을 수 있나요?",
    ],
}
ORDINAL = ["첫 번째", "두 번째", "세 번째", "네 번째", "다섯 번째", "여섯 번째", "일곱 번째", "여덟 번째"]

# (keyword, template): aspects our brochure never states; a keyword found anywhere in the
# corpus drops the question (the brochure might answer it after all).
UNANSWERABLE: dict[str, list[tuple[str, str]]] = {
    "place": [
        ("주차", "{e_eui} 주차 요금은 얼마인가요?"),
        ("반려", "{e}에 반려동물을 데리고 갈 수 있나요?"),
        ("휠체어", "{e}에서 휠체어를 빌릴 수 있나요?"),
        ("와이파이", "{e}에서 와이파이를 쓸 수 있나요?"),
        ("수유실", "{e}에 수유실이 있나요?"),
        ("전기차", "{e}에 전기차 충전소가 있나요?"),
        ("셔틀", "{e}까지 가는 셔틀버스 시간표를 알려주세요."),
        ("외국어", "{e}에서 외국어 안내 서비스를 받을 수 있나요?"),
        ("유모차", "{e}에서 유모차를 대여할 수 있나요?"),
        ("물품보관", "{e}에 물품보관함이 있나요?"),
        ("장애인", "{e}에 장애인 전용 화장실이 있나요?"),
        ("어린이", "{e}의 어린이 요금은 얼마인가요?"),
    ],
    "lodging": [
        ("체크인", "{e}의 체크인 시간은 몇 시인가요?"),
        ("조식", "{e}에서 조식을 제공하나요?"),
        ("수영장", "{e}에 수영장이 있나요?"),
        ("1박 요금", "{e}의 1박 요금은 얼마인가요?"),
        ("반려", "{e}에 반려동물과 함께 묵을 수 있나요?"),
    ],
    "restaurant": [
        ("영업시간", "{e}의 영업시간은 어떻게 되나요?"),
        ("휴무", "{e}의 정기 휴무일은 언제인가요?"),
        ("배달", "{e}에서 배달 주문이 되나요?"),
        ("포장", "{e}에서 음식을 포장할 수 있나요?"),
    ],
}


def _fill(template: str, **values: str) -> str:
    e = values.get("e", "")
    x = values.get("x", "")
    extra = {"e_eui": f"{e}의", "e_eun": josa(e, "은/는") if e else "", "x": x, "x_eul": josa(x, "을/를") if x else ""}
    if "key" in values:
        extra["key_eui"] = f"{values['key']}의"
        extra["key_eun"] = josa(values["key"], "은/는")
        extra["key_eul"] = josa(values["key"], "을/를")
    if "col" in values:
        extra["col_eun"] = josa(values["col"], "은/는")
    return template.format(**{**extra, **values})


def entity_name(title: str) -> str:
    """'포레스트 리솜 (레스트리 리솜)' -> '포레스트 리솜': brackets hold notes, not the name people ask with."""
    bare = " ".join(re.sub(r"\([^)]*\)|\[[^\]]*\]", " ", title).split())
    return bare if len(bare) >= 2 else title


def _body(text: str, title: str, lim: Limits) -> str:
    """An entry's prose: from its title on, without brackets, its leading address and 'name:' label."""
    lines = text.splitlines()
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


def entity_facts(chunk: dict[str, Any], lim: Limits = Limits()) -> list[tuple[str, str, str]]:
    """(fact, entity, answer) for an entry chunk (one attraction, lodging, ...)."""
    return [(f, e, a) for f, e, a, _, _ in _entity_facts(chunk, lim)]


GENERIC_TITLE = re.compile(r"(안내|요금|금액|방법|현황)$")


def _entity_facts(chunk: dict[str, Any], lim: Limits) -> list[Fact]:
    text = chunk["text"]
    e = course_owner(chunk) if GENERIC_TITLE.search(chunk["title"]) else entity_name(chunk["title"])
    facts: list[Fact] = []
    for fact, pattern in (("address", ADDRESS), ("phone", PHONE), ("hours", HOURS)):
        found = sorted({normalize(m.group(0)) for m in pattern.finditer(text)})
        if len(found) == 1:  # ambiguous when a chunk holds several
            facts.append((fact, e, found[0], fact, ""))
    for fact, pattern in (("rooms", ROOMS), ("duration", DURATION)):
        found = sorted({normalize(m.group(1)) for m in pattern.finditer(text)})
        if len(found) == 1:
            facts.append((fact, e, found[0], fact, ""))
    prices = sorted({m.group(0) for m in PRICE.finditer(text)})
    if len(prices) == 1:
        facts.append(("price", e, prices[0], "price", ""))
    if re.search(r"[!?,]", chunk["title"]):
        return facts  # a slogan for a title names nothing one could ask about
    # '*경로는 예시이며 ... 변경이 가능합니다' notes are caveats, not facts about the entity
    body = "\n".join(x for x in _body(text, chunk["title"], lim).splitlines() if not x.lstrip().startswith(("*", "※")))
    seen: set[str] = set()
    for fact, pattern, _ in SENTENCE_FACTS:
        if fact in seen:
            continue
        m = pattern.search(body)
        if not m:
            continue
        answer = normalize(m.group(1))
        if fact == "activity":
            answer = ADVERBIAL.sub("", answer).strip()
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


def list_facts(chunk: dict[str, Any], lim: Limits = Limits()) -> list[tuple[str, str, str]]:
    """Facts about named items inside a section chunk: menus '식당(메뉴)', labelled prices."""
    return [(f, e, a) for f, e, a, _, _ in _list_facts(chunk, lim)]


def restaurants(chunk: dict[str, Any], lim: Limits) -> dict[str, str]:
    """name -> cleaned menu for a restaurant list 'name(menu), name(menu), ...'."""
    text = chunk["text"]
    items = list(MENU_ITEM.finditer(text))
    if chunk["kind"] == "table" or len(items) < lim.menu_min_items:
        return {}  # one bracket in prose is not a menu
    names = Counter(m["name"].strip(" ,-") for m in items)
    out: dict[str, str] = {}
    for m in items:
        name, menu = m["name"].strip(" ,-"), m["menu"].strip()
        # a name continued from the line above ('미당손두부와\n등갈비(...)') is cut: skip it
        before = text[: m.start("name")].rstrip(" ")
        if before and before.rstrip()[-1] not in ",)":
            continue
        if names[name] == 1 and not re.search(r"\d", menu) and len(name) >= 2:
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


# Table columns that hold a known fact type get that fact's natural templates.
COLUMN_FACTS = {
    "객실": "rooms",
    "주소": "address",
    "위치": "address",
    "전화": "phone",
    "연락처": "phone",
    "요금": "price",
    "가격": "price",
    "소요시간": "duration",
    "운영시간": "hours",
    "포인트": "points",
}


def _rows(chunk: dict[str, Any]) -> list[list[str]]:
    return [[c.strip() for c in line.split("|")] for line in chunk["text"].splitlines() if "|" in line]


def _is_label_table(rows: list[list[str]]) -> bool:
    """'상품소개 | ...' / '요금안내 | 30,000원 ...': two columns of short labels and longer values."""
    return bool(rows) and all(
        len(r) == 2 and len(r[0]) <= 6 and len(r[1]) > len(r[0]) and "→" not in r[1] for r in rows
    )


def course_owner(chunk: dict[str, Any]) -> str:
    """The product a table belongs to: the deepest path part that is not a generic '...안내' heading."""
    parts = [p for p in chunk["section_path"].split(" > ") if not re.match(r"PART\s*\d", p)]
    named = [p for p in parts if not GENERIC_TITLE.search(p) and not p.startswith("#")]
    return entity_name(named[-1]) if named else entity_name(chunk["title"])


CATEGORY_COLUMNS = ("이용권", "코스", "구분", "시기", "회차")


def row_subject(chunk: dict[str, Any], key: str) -> str:
    """A table row's subject: '5시간권' alone names nothing, '제천 관광택시 5시간권' does.

    Only rows of category tables (first column 이용권/코스/...) with short keys get their owner
    prefixed; a lodging table's rows are names already."""
    e = entity_name(key)
    rows = _rows(chunk)
    category = bool(rows) and rows[0][0] in CATEGORY_COLUMNS
    owner = course_owner(chunk)
    return f"{owner} {e}" if category and len(e) <= 7 and owner not in e else e


def table_facts(chunk: dict[str, Any], lim: Limits = Limits()) -> list[tuple[str, str, str, str, str]]:
    """(fact, key, column, value, title) for table chunks with a header row 'a | b | c'."""
    rows = _rows(chunk)
    if len(rows) < 3 or _is_label_table(rows):  # one body row: a transposed table (STEP 01 | STEP 02 ...)
        return []
    header, body = rows[0], rows[1:]
    keys = Counter(r[0] for r in body if r)
    out = []
    for row in body:
        if len(row) != len(header) or not row[0] or keys[row[0]] > 1:
            continue
        for col, value in zip(header[1:], row[1:], strict=True):
            if value and value != "-" and col and len(value) <= lim.value_max_chars and "→" not in value:
                fact = next((f for word, f in COLUMN_FACTS.items() if col.startswith(word)), "table")
                out.append((fact, row[0], col, value, chunk["title"]))
    return out


def _table_facts(chunk: dict[str, Any], lim: Limits) -> list[Fact]:
    rows = _rows(chunk)
    owner = course_owner(chunk)
    facts: list[Fact] = []
    if _is_label_table(rows):
        for label, value in rows:
            if len(value) <= lim.value_max_chars:
                facts.append(("label", owner, value, "label", label))
            if "요금" in label and len(PRICE.findall(value)) == 1:
                facts.append(("price", owner, PRICE.search(value).group(0), "price", ""))
            if ("예약" in label or "문의" in label) and len(PHONE.findall(value)) == 1:
                facts.append(("phone", f"{owner} 예약", PHONE.search(value).group(0), "phone", ""))
        return facts
    for fact, key, col, value, title in table_facts(chunk, lim):
        title = course_owner(chunk)
        if fact == "points":
            facts.append(("points", f"{title}/{key}", value, "points", f"{title}\t{key}\t{col}"))
        elif fact == "table":
            facts.append(("table", f"{title}/{key}/{col}", value, "table", f"{title}\t{key}\t{col}"))
        else:
            value = re.sub(r"\s*/\s*1대$", "", value) if fact == "price" else value
            facts.append((fact, row_subject(chunk, key), value, fact, ""))
    return facts


# ------------------------------------------------------------------ courses
ARROW = re.compile(r"\s*→\s*")


def courses(chunk: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """(course name, stops) from arrow rows in tables, arrow lines and numbered lists in entries."""
    out: list[tuple[str, list[str]]] = []
    if chunk["kind"] == "table":
        owner = course_owner(chunk)
        for row in _rows(chunk)[1:]:
            stops_cell = next((c for c in row if "→" in c), "")
            if stops_cell and row[0] and "→" not in row[0]:
                out.append((f"{owner} {row[0]}", [s.strip() for s in ARROW.split(stops_cell) if s.strip()]))
        return out
    m = re.match(r"#?\s*(.+?코스)", chunk["title"])
    if not m or chunk["kind"] != "entry":
        return out
    name = m.group(1)
    if " " not in name:  # '기본코스' alone names nothing: prefix its product
        parts = chunk["section_path"].split(" > ")
        name = f"{parts[-2]} {name}" if len(parts) >= 2 else name
    text = chunk["text"].split("*")[0]
    numbered = re.findall(r"(?m)^\s*\d+\.\s*\n?\s*([^\n]+)", text)
    if len(numbered) >= 3:
        out.append((name, [normalize(s) for s in numbered]))
    elif "→" in text:
        line = next(line for line in text.splitlines() if "→" in line)
        stops = [s.strip() for s in ARROW.split(line) if s.strip()]
        # the line may open with a lead-in ('제천 주요 관광지를 당일 여행으로 의림지')
        stops[0] = stops[0].split("으로 ")[-1]
        out.append((name, stops))
    # prose with arrows ('시대 순서(구·신석기 → 삼한 ...)를 따라') is no course
    return [(n, st) for n, st in out if all(len(x) <= 25 and x.count("(") == x.count(")") for x in st)]


def _is_meal(stop: str) -> bool:
    return bool(re.search(r"중식|석식|식사|이동", stop))


def course_facts(chunk: dict[str, Any]) -> list[Fact]:
    facts: list[Fact] = []
    for name, stops in courses(chunk):
        if len(stops) < 3 or len(set(stops)) != len(stops):
            continue
        facts.append(("course", name, stops[0], "course_first", ""))
        facts.append(("course", name, stops[-1], "course_last", ""))
        for prev, nxt in zip(stops, stops[1:], strict=False):
            if not _is_meal(prev) and not _is_meal(nxt):
                facts.append(("course", f"{name}/{prev}", nxt, "course_next", prev))
    return facts


# ------------------------------------------------------------------ filters
def _squash(s: str) -> str:
    return re.sub(r"[\s,·.:;\-/~()\[\]'\"“”‘’]", "", normalize(s)).lower()


def supported(answer: str, chunk_text: str, min_share: float = 1.0) -> bool:
    """Grounding filter: the answer occurs in its chunk (spacing and punctuation aside), or —
    for free-form (LLM) answers, with min_share < 1 — every number in it occurs in the chunk and
    at least min_share of its content morphemes do."""
    if not answer.strip():
        return False
    if _squash(answer) in _squash(chunk_text):
        return True
    if min_share >= 1.0:
        return False
    from stages.common.korean import morphemes

    numbers = re.findall(r"\d+", answer.replace(",", ""))
    chunk_numbers = set(re.findall(r"\d+", chunk_text.replace(",", "")))
    if any(n not in chunk_numbers for n in numbers):
        return False
    tokens = morphemes(answer)
    squashed = _squash(chunk_text)
    return bool(tokens) and sum(t in squashed for t in tokens) / len(tokens) >= min_share


def leaks_answer(question: str, answer: str) -> bool:
    """A question that already contains its answer tests nothing."""
    a = _squash(answer)
    return len(a) >= 2 and a in _squash(question)


def _grams(text: str, n: int = 3) -> set[str]:
    s = _squash(text)
    return {s[i : i + n] for i in range(max(1, len(s) - n + 1))}


def near_duplicate(a: str, b: str, threshold: float) -> bool:
    ga, gb = _grams(a), _grams(b)
    return len(ga & gb) / max(1, len(ga | gb)) >= threshold


# ------------------------------------------------------------------ records
def _record(chunk, question, answer, qtype, fact, answerable, subject, chunk_ids=None, generator="rules"):
    return {
        "question": question,
        "answer": answer,
        "answerable": answerable,
        "type": qtype,
        "fact": fact,
        "chunk_id": chunk["chunk_id"],
        "chunk_ids": chunk_ids or [chunk["chunk_id"]],
        "section_path": chunk["section_path"],
        "pages": chunk["pages"],
        "generator": generator,
        "_subject": (fact, subject),
    }


def _phrasings(rng: random.Random, key: str, n: int) -> list[str]:
    templates = TEMPLATES.get(key) or next(t for f, p, t in SENTENCE_FACTS if key == f"s:{f}:{p.pattern}")
    return rng.sample(templates, min(n, len(templates)))


def rules_candidates(chunk: dict[str, Any], lim: Limits, rng: random.Random) -> list[dict[str, Any]]:
    """Single-chunk answerable questions (factual, descriptive) of one chunk, all of them."""
    facts: list[Fact] = []
    if chunk["kind"] == "entry":
        facts += _entity_facts(chunk, lim)
    elif chunk["kind"] == "table":
        facts += _table_facts(chunk, lim)
    facts += _list_facts(chunk, lim) + course_facts(chunk)
    out = []
    for fact, e, raw, key, extra in facts:
        # A bare count reads better with its counter: "451" -> "451개" (grounded on the raw "451").
        answer = f"{raw}개" if fact == "rooms" and raw.isdigit() else raw
        if key == "table" and CLOCK_TIME.fullmatch(raw.strip()):
            key = "table_time"  # "3회차는 무엇인가요? -> 20:00" reads wrong: ask for the time
        if key in ("table", "table_time", "points"):
            title, k, col = extra.split("\t")
            questions = [_fill(t, title=title, key=k, col=col) for t in _phrasings(rng, key, lim.questions_per_fact)]
        elif key == "label":
            questions = [_fill(t, e=e, col=extra) for t in _phrasings(rng, key, lim.questions_per_fact)]
        elif key == "course_next":
            x = entity_name(extra)
            questions = [_fill(t, e=e.split("/")[0], x=x) for t in _phrasings(rng, key, lim.questions_per_fact)]
        else:
            questions = [_fill(t, e=e, x=extra) for t in _phrasings(rng, key, lim.questions_per_fact)]
        qtype = "descriptive" if fact in ("sentence", "activity", "famous", "label") else "factual"
        for question in questions:
            rec = _record(chunk, question, answer, qtype, fact, True, e)
            rec["_parts"] = [(raw, 0)]
            out.append(rec)
    return out


def unanswerable_candidates(
    chunk: dict[str, Any], corpus: str, lim: Limits, abstain: str, rng: random.Random, n: int
) -> list[dict[str, Any]]:
    """Plausible questions about a place, lodging or restaurant that the brochure cannot answer."""
    subjects: list[tuple[str, str]] = []
    if is_place(chunk):
        subjects.append(("place", entity_name(chunk["title"])))
    if chunk["kind"] == "table" and any("객실" in c for c in (_rows(chunk) or [[]])[0]):
        subjects += [("lodging", entity_name(r[0])) for r in _rows(chunk)[1:] if r and r[0]]
    subjects += [("restaurant", name) for name in restaurants(chunk, lim)]
    if not subjects:
        return []
    pairs = [(kind, e, k, t) for kind, e in subjects for k, t in UNANSWERABLE[kind] if k not in corpus]
    rng.shuffle(pairs)
    # spread over subjects first: one aspect of each before a second aspect of any
    seen: Counter = Counter()
    ranked = []
    for p in pairs:
        ranked.append((seen[p[1]], len(ranked), p))
        seen[p[1]] += 1
    return [
        _record(chunk, _fill(t, e=e), abstain, "unanswerable", "none", False, f"{e}/{k}")
        for _, _, (_, e, k, t) in sorted(ranked)[:n]
    ]


def filter_records(
    records: list[dict[str, Any]], chunks: dict[str, dict[str, Any]], near_dup: float, min_share: float = 1.0
) -> list[dict[str, Any]]:
    """Grounding, leakage, ambiguity and near-duplicate filters (in that order)."""
    kept = []
    for r in records:
        if r["answerable"]:
            texts = [chunks[c]["text"] for c in r["chunk_ids"]]
            parts = r.pop("_parts", None) or [(r["answer"], 0)]
            if not all(supported(a, texts[i], min_share) for a, i in parts) or leaks_answer(r["question"], r["answer"]):
                continue
        kept.append(r)
    # Same fact of the same subject, or the same question, asked from two chunks: no single gold chunk.
    chunks_per_subject: dict[Any, set[str]] = {}
    chunks_per_question: dict[str, set[str]] = {}
    for r in kept:
        chunks_per_subject.setdefault(r["_subject"], set()).add(r["chunk_id"])
        chunks_per_question.setdefault(_squash(r["question"]), set()).add(r["chunk_id"])
    out: list[dict[str, Any]] = []
    for r in kept:
        subject = r.pop("_subject")
        if len(chunks_per_subject[subject]) > 1 or len(chunks_per_question[_squash(r["question"])]) > 1:
            continue
        if any(near_duplicate(r["question"], o["question"], near_dup) for o in out):
            continue
        out.append(r)
    return out


# ------------------------------------------------------------------ cross-chunk questions
def _number(value: str, dimension: str) -> float | None:
    if dimension == "duration":
        if "~" in value:
            return None
        h = re.search(r"(\d+)\s*시간", value)
        m = re.search(r"(\d+)\s*분", value)
        total = (int(h.group(1)) * 60 if h else 0) + (int(m.group(1)) if m else 0) + (30 if "반" in value else 0)
        return float(total) or None
    digits = re.match(r"\s*([\d,]+)", value)
    return float(digits.group(1).replace(",", "")) if digits else None


def comparables(chunk: dict[str, Any], lim: Limits) -> list[tuple[str, str, str, float, str]]:
    """(dimension, subject, value text, number, value as written) comparable across subjects."""
    out = []
    if chunk["kind"] == "table" and not _is_label_table(_rows(chunk)):
        for fact, key, _col, value, _title in table_facts(chunk, lim):
            if fact in ("rooms", "price", "points", "duration"):
                raw = re.sub(r"\s*/\s*1대$", "", value)
                number = _number(raw, fact)
                if number is not None:
                    shown = f"{raw}개" if fact == "rooms" and raw.isdigit() else raw
                    out.append((fact, row_subject(chunk, key), shown, number, raw))
    return out


def comparison_questions(chunks: list[dict[str, Any]], lim: Limits, rng: random.Random, n: int) -> list[dict]:
    """n comparison questions over pairs of facts from these chunks (preferring two different chunks)."""
    items = [(c, *f) for c in chunks for f in comparables(c, lim)]
    pairs = [
        (a, b) for i, a in enumerate(items) for b in items[i + 1 :] if a[1] == b[1] and a[4] != b[4] and a[2] != b[2]
    ]
    cross = [p for p in pairs if p[0][0]["chunk_id"] != p[1][0]["chunk_id"]]
    same = [p for p in pairs if p[0][0]["chunk_id"] == p[1][0]["chunk_id"]]
    rng.shuffle(cross)
    rng.shuffle(same)
    out, used = [], Counter()
    for a, b in cross + same:
        if len(out) >= n:
            break
        if used[a[2]] >= 2 or used[b[2]] >= 2:  # spread over subjects
            continue
        used[a[2]] += 1
        used[b[2]] += 1
        if rng.random() < 0.5:
            a, b = b, a
        dim = a[1]
        more, less, templates = COMPARISON[dim]
        want_more = rng.random() < 0.5
        how = more if want_more else less
        winner, loser = (a, b) if (a[4] > b[4]) == want_more else (b, a)
        question = rng.choice(templates).format(a_wa=josa(a[2], "과/와"), b=b[2], how=how)
        answer = f"{winner[2]}입니다 ({winner[2]} {winner[3]}, {loser[2]} {loser[3]})."
        ids = [a[0]["chunk_id"], b[0]["chunk_id"]]
        rec = _record(
            winner[0],
            question,
            answer,
            "comparison",
            dim,
            True,
            f"{a[2]}/{b[2]}",
            chunk_ids=list(dict.fromkeys([winner[0]["chunk_id"], *ids])),
        )
        idx = {cid: i for i, cid in enumerate(rec["chunk_ids"])}
        rec["_parts"] = [
            (winner[5], idx[winner[0]["chunk_id"]]),
            (loser[5], idx[loser[0]["chunk_id"]]),
            (winner[2], idx[winner[0]["chunk_id"]]),
            (loser[2], idx[loser[0]["chunk_id"]]),
        ]
        out.append(rec)
    return out


def _same_place(stop: str, entity: str) -> bool:
    # '배론성지 순례' / '의림지 트래킹' visit the place '배론성지' / '의림지(+역사박물관)'
    names = {_squash(entity), *(_squash(p) for p in re.split(r"[+·&]", entity))}
    words = stop.split()
    heads = {_squash(stop), _squash(" ".join(words[:-1]))} if len(words) > 1 else {_squash(stop)}
    return any(len(h) >= 3 and h in names for h in heads)


def multihop_questions(chunks: list[dict[str, Any]], lim: Limits, rng: random.Random, n: int) -> list[dict]:
    """Course stop -> the place's address or the restaurant's menu, from a second chunk."""
    places = {}
    for c in chunks:
        if is_place(c):
            found = sorted({normalize(m.group(0)) for m in ADDRESS.finditer(c["text"])})
            if len(found) == 1:
                places[entity_name(c["title"])] = (c, found[0])
    menus = {name: (c, menu) for c in chunks for name, menu in restaurants(c, lim).items()}
    cands = []
    for c in chunks:
        for course, stops in courses(c):
            for i, stop in enumerate(stops):
                for kind, table in (("address", places), ("menu", menus)):
                    hit = next((v for k, v in sorted(table.items()) if _same_place(stop, k)), None)
                    if hit is None or hit[0]["chunk_id"] == c["chunk_id"]:
                        continue
                    templates = MULTIHOP[kind]
                    if i > 0 and not _is_meal(stops[i - 1]) and len(set(stops)) == len(stops):
                        q = templates[0].format(course=course, x=stops[i - 1])
                    elif i < len(ORDINAL) and len(set(stops)) == len(stops):
                        q = templates[1].format(course=course, nth=ORDINAL[i])
                    else:
                        continue
                    ids = [hit[0]["chunk_id"], c["chunk_id"]]
                    rec = _record(hit[0], q, hit[1], "multihop", kind, True, f"{course}/{stop}", chunk_ids=ids)
                    rec["_parts"] = [(hit[1], 0), (stop, 1)]
                    cands.append(rec)
    rng.shuffle(cands)
    return cands[:n]


# ------------------------------------------------------------------ llm generator
LLM_PROMPT = """다음은 제천 여행 브로셔의 한 부분입니다.

[문서]
{text}

이 문서만 보고 답할 수 있는 서로 다른 질문 {n}개를 만들어 주세요.
- 여행객이 실제로 물어볼 법한 자연스러운 한국어 존댓말 질문으로 쓰세요.
- 답은 문서에 있는 표현 그대로, 짧게(한 문장 이내) 쓰세요. 문서에 없는 내용은 절대 넣지 마세요.
- 질문에 답이 드러나면 안 됩니다.
- 사실형(주소, 전화, 요금, 시간, 개수 등)과 설명형(어떤 곳인지, 무엇을 할 수 있는지)을 섞으세요.
- 다음 JSON 배열만 출력하세요: [{{"question": "...", "answer": "...", "type": "factual 또는 descriptive"}}]"""


def parse_llm_json(text: str) -> list[dict[str, Any]]:
    """Items {question, answer, type?} from an LLM reply: code fences, prose around the JSON,
    a dict wrapping the list, or a list cut off mid-item are all tolerated."""
    text = re.sub(r"```(?:json)?", "", text)
    start = min((i for i in (text.find("["), text.find("{")) if i >= 0), default=-1)
    if start < 0:
        return []
    decoder = json.JSONDecoder()
    try:
        obj, _ = decoder.raw_decode(text[start:])
    except json.JSONDecodeError:
        obj = None
    if isinstance(obj, dict):
        obj = next((v for v in obj.values() if isinstance(v, list)), [obj])
    if not isinstance(obj, list):  # truncated: salvage every complete {...} object
        obj = []
        for m in re.finditer(r"\{[^{}]*\}", text[start:]):
            try:
                obj.append(json.loads(m.group(0)))
            except json.JSONDecodeError:
                continue
    items = []
    for it in obj:
        if isinstance(it, dict) and isinstance(it.get("question"), str) and isinstance(it.get("answer"), str):
            items.append(
                {
                    "question": normalize(it["question"]),
                    "answer": normalize(it["answer"]),
                    "type": it.get("type") if it.get("type") in ("factual", "descriptive") else "factual",
                }
            )
    return items


class ChatClient:
    """One chat turn -> reply text, through an OpenAI-compatible endpoint or a local transformers model."""

    def __init__(self, llm: dict[str, Any]):
        self.backend = P.require(llm, "backend", str, "synthesize.llm")
        self.model = P.require(llm, "model", str, "synthesize.llm")
        self.temperature = float(P.require(llm, "temperature", (int, float), "synthesize.llm"))
        self.max_new_tokens = P.require(llm, "max_new_tokens", int, "synthesize.llm")
        self.timeout = P.require(llm, "timeout_s", int, "synthesize.llm")
        if self.backend == "openai":
            self.base_url = P.require(llm, "base_url", str, "synthesize.llm").rstrip("/")
            if not self.base_url:
                raise UserError(
                    "params: synthesize.llm.base_url is empty (an OpenAI-compatible endpoint, e.g. http://localhost:8000/v1)"
                )
            env = P.require(llm, "api_key_env", str, "synthesize.llm")
            self.endpoint = ChatEndpoint(
                self.base_url,
                self.model,
                os.environ.get(env, "") if env else "",
                self.timeout,
                what="synthesize.llm",
                hint="check synthesize.llm.base_url",
            )
        elif self.backend == "transformers":
            from transformers import AutoModelForCausalLM, AutoTokenizer

            self.tok = AutoTokenizer.from_pretrained(self.model)
            self.lm = AutoModelForCausalLM.from_pretrained(self.model, torch_dtype="auto", device_map="auto")
        else:
            raise UserError(f"params: synthesize.llm.backend={self.backend!r} (known: openai, transformers)")

    def chat(self, prompt: str) -> str:
        if self.backend == "openai":
            return self.endpoint.complete(
                [{"role": "user", "content": prompt}], temperature=self.temperature, max_tokens=self.max_new_tokens
            )
        # transformers 5 returns a BatchEncoding here (not a tensor): ask for it explicitly and pass
        # input_ids + attention_mask (the rehearsal found generate(BatchEncoding) -> AttributeError).
        enc = self.tok.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        ).to(self.lm.device)
        sample = self.temperature > 0
        out = self.lm.generate(
            **enc,
            max_new_tokens=self.max_new_tokens,
            do_sample=sample,
            **({"temperature": self.temperature} if sample else {}),
        )
        return self.tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)


def llm_candidates(chunk: dict[str, Any], client: Any, n: int) -> list[dict[str, Any]]:
    items = parse_llm_json(client.chat(LLM_PROMPT.format(text=chunk["text"], n=n)))
    return [
        _record(chunk, it["question"], it["answer"], it["type"], "llm", True, it["question"], generator="llm")
        for it in items
    ]


# ------------------------------------------------------------------ split
def split_chunks(sizes: dict[str, Counter], ratios: dict[str, float], seed: int) -> dict[str, str]:
    """chunk_id -> split: a group split on chunks that balances question counts per type.

    Chunks, biggest first (seeded order among equals), go to the split whose per-type targets
    (ratio x total) are furthest from met — a greedy stratified group split: counts land close to
    the ratios even when a few table chunks carry many questions.
    """
    names = {"train": "train", "validation": "val", "test": "test"}
    total = sum(ratios.get(names[s], 0) for s in SPLITS)
    if abs(total - 1.0) > 1e-6:
        raise UserError(f"params: synthesize.split ratios must sum to 1, got {total}")
    if len(sizes) < 3:
        raise UserError("synthesize: fewer than 3 source chunks with questions; cannot split train/validation/test")
    totals = sum(sizes.values(), Counter())
    target = {s: {t: ratios[names[s]] * n for t, n in totals.items()} for s in SPLITS}
    have = {s: Counter() for s in SPLITS}
    rng = random.Random(seed)
    order = sorted(sizes)
    rng.shuffle(order)
    order.sort(key=lambda c: -sum(sizes[c].values()))
    out = {}

    def need(s: str, size: Counter) -> float:
        return sum(v * (target[s][t] - have[s][t]) / max(target[s][t], 1e-9) for t, v in size.items())

    for cid in order:
        best = max((s for s in SPLITS if ratios[names[s]] > 0), key=lambda s: need(s, sizes[cid]))
        out[cid] = best
        have[best] += sizes[cid]
    return out


def split_by_chunk(
    records: list[dict[str, Any]], ratios: dict[str, float], seed: int, stratify_by: str = "type"
) -> dict[str, list[dict]]:
    """Group split on chunk_id: every chunk's questions land in exactly one split.

    Counts are balanced per `stratify_by` value (a record field: "type", or the finer "fact":
    with "type", a few big table chunks could all land in test, leaving training with few
    table questions — measured: 9 train vs 30 test table questions).
    """
    sizes: dict[str, Counter] = {}
    for r in records:
        sizes.setdefault(r["chunk_id"], Counter())[r.get(stratify_by) or r.get("type", "x")] += 1
    where = split_chunks(sizes, ratios, seed)
    return {s: [r for r in records if where[r["chunk_id"]] == s] for s in SPLITS}


# ------------------------------------------------------------------ assembly
def build_dataset(
    chunks: list[dict[str, Any]], cfg: dict[str, Any], abstain: str, client: Any = None
) -> dict[str, list[dict[str, Any]]]:
    """All questions, split by source chunk; cross-chunk questions only within one split."""
    from tqdm import tqdm

    lim = Limits.from_cfg(cfg)
    seed = P.require(cfg, "seed", int, "synthesize")
    per_chunk = P.require(cfg, "max_questions_per_chunk", int, "synthesize")
    n_unanswerable = P.require(cfg, "unanswerable_per_chunk", int, "synthesize")
    mix = P.require(cfg, "mix", dict, "synthesize")
    near_dup = float(P.require(cfg, "near_duplicate", (int, float), "synthesize"))
    generator = P.require(cfg, "generator", str, "synthesize")
    by_id = {c["chunk_id"]: c for c in chunks}
    corpus = "\n".join(c["text"] for c in chunks)
    rng = random.Random(seed)

    singles: list[dict[str, Any]] = []
    min_share = 1.0
    if generator == "llm":
        llm = P.require(cfg, "llm", dict, "synthesize")
        min_share = float(P.require(llm, "grounding_min_share", (int, float), "synthesize.llm"))
        client = client or ChatClient(llm)
        n = P.require(llm, "questions_per_chunk", int, "synthesize.llm")
        for c in tqdm(chunks, desc="llm questions", unit="chunk"):
            singles += llm_candidates(c, client, n)
    elif generator == "rules":
        for c in chunks:
            singles += rules_candidates(c, lim, rng)
    else:
        raise UserError(f"params: synthesize.generator={generator!r} is not available (available: rules, llm)")
    singles = filter_records(singles, by_id, near_dup, min_share)
    # Cap per chunk (seeded), keeping fact types varied: round-robin over facts.
    capped: list[dict[str, Any]] = []
    for cid in sorted({r["chunk_id"] for r in singles}):
        mine = [r for r in singles if r["chunk_id"] == cid]
        rng.shuffle(mine)
        seen: Counter = Counter()
        rank = []
        for r in mine:
            rank.append(seen[r["fact"]])
            seen[r["fact"]] += 1
        capped += [r for _, r in sorted(zip(rank, mine, strict=True), key=lambda x: x[0])][:per_chunk]
    unans = [u for c in chunks for u in unanswerable_candidates(c, corpus, lim, abstain, rng, n_unanswerable)]
    unans = filter_records(unans, by_id, near_dup)
    share = float(mix.get("unanswerable", 0.0))
    n_u = round(share / max(1e-9, 1 - share) * len(capped))
    rng.shuffle(unans)
    records = capped + unans[:n_u]

    stratify_by = P.require(cfg, "stratify_by", str, "synthesize")
    if stratify_by not in ("type", "fact"):
        raise UserError(f"params: synthesize.stratify_by must be type or fact, got {stratify_by!r}")
    splits = split_by_chunk(records, P.require(cfg, "split", dict, "synthesize"), seed, stratify_by)
    out: dict[str, list[dict[str, Any]]] = {}
    for name in SPLITS:
        rows = splits[name]
        mine = [by_id[c] for c in sorted({r["chunk_id"] for r in rows})]
        n_ans = sum(r["answerable"] for r in rows)
        extra = comparison_questions(mine, lim, rng, round(float(mix.get("comparison", 0)) * n_ans))
        extra += multihop_questions(mine, lim, rng, round(float(mix.get("multihop", 0)) * n_ans))
        extra = filter_records(extra, by_id, near_dup)
        rows = sorted(rows + extra, key=lambda r: (r["chunk_id"], TYPES.index(r["type"]), r["question"]))
        out[name] = rows
    n = 0
    for name in SPLITS:
        numbered = []
        for r in out[name]:
            n += 1
            numbered.append({"id": f"q{n:04d}", **r})
        out[name] = numbered
    return out


def rules_questions(chunks: list[dict[str, Any]], cfg: dict[str, Any], abstain: str) -> list[dict[str, Any]]:
    """Every question the rules generator keeps (all splits, in split order)."""
    splits = build_dataset(chunks, {**cfg, "generator": "rules"}, abstain)
    return [r for s in SPLITS for r in splits[s]]


def counts(splits: dict[str, list[dict]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, rows in splits.items():
        by_type = Counter(r["type"] for r in rows)
        out[name] = {
            "questions": len(rows),
            "answerable": sum(r["answerable"] for r in rows),
            "unanswerable": sum(not r["answerable"] for r in rows),
            "chunks": len({c for r in rows for c in r.get("chunk_ids", [r["chunk_id"]])}),
            "by_type": {t: by_type.get(t, 0) for t in TYPES},
            "by_fact": dict(sorted(Counter(r["fact"] for r in rows).items())),
        }
    return out


CARD = """---
language: [ko]
license: other
task_categories: [question-answering]
pretty_name: 제천여행 길라잡이 RAG QA
size_categories: [n<1K]
---
# 제천여행 길라잡이 RAG QA (brochure-rag)

Korean question–answer pairs grounded in the 2025 Jecheon tourism brochure ("2025 제천여행 길라잡이"),
built by the `synthesize` stage of brochure-rag with the **{generator}** generator, for training and
evaluating retrieval-augmented answering (with citations and abstention).

## Source
The brochure PDF `{source}` (28 pages, text layer + OCR of image-only regions), cut into
section/entry-aware chunks (one attraction, lodging table, restaurant list, course ...). Every
answerable question names the chunk(s) that answer it.

## Construction
1. `parse`: PDF text layer + Tesseract/PaddleOCR for image-only regions, with page and bbox provenance.
2. `chunk`: section/entry-aware chunks with section path, pages and bboxes.
3. `synthesize`:
   - **factual** / **descriptive** (one chunk): {how}
   - **comparison** (two facts, usually from two chunks: more rooms, cheaper fare, longer course ...), the answer names
     the winner and both values;
   - **multihop** (a course chunk + a place or restaurant chunk: "the address of the stop after X");
   - **unanswerable**: plausible questions about aspects the brochure never states (parking fee, check-in time,
     opening hours of a restaurant ...; a question is dropped when its keyword occurs anywhere in the brochure);
     the expected answer is the abstention phrase "{abstain}".
   - Filters: the answer must occur in its chunk(s) (spacing/punctuation aside{llm_note}); questions containing
     their answer, questions asked from two chunks and near-duplicate questions (character-trigram Jaccard
     ≥ {near_dup}) are dropped. Menus are cleaned of OCR separator noise ("칼국수-떡만두국" → "칼국수, 떡만두국").
   - Mix (params `synthesize.mix`): {mix}; at most {per_chunk} single-chunk questions per chunk.

## Split — by source chunk
Train/validation/test are a **group split on `chunk_id`**: a greedy split that assigns whole chunks, biggest first,
to the split whose per-type targets are least met (ratios {ratios}, seed {seed}). Comparison and multi-hop questions
are built after the split from chunks of one split only, so **no chunk backs questions in two splits** (`chunk_ids`
lists every chunk a question needs). The test set therefore measures reading the retrieved context, not memorising it.

## Fields
| field | meaning |
|---|---|
| `id` | `q0001` ... |
| `question`, `answer` | Korean; `answer` of an unanswerable question is the abstention phrase |
| `answerable` | false for unanswerable questions |
| `type` | factual · descriptive · comparison · multihop · unanswerable |
| `fact` | what is asked (address, phone, price, rooms, hours, course, menu, sentence, ...; `none` for unanswerable) |
| `chunk_id` | the chunk holding the answer (the split group; for unanswerable: the chunk the question is about) |
| `chunk_ids` | every chunk the answer needs (two for comparison / multihop) |
| `section_path`, `pages` | provenance of `chunk_id` |
| `generator` | rules · llm |

## Counts
| split | questions | answerable | unanswerable | chunks | {type_cols} |
|---|---|---|---|---|{type_sep}
{table}

## License
Facts come from a public tourism brochure of Jecheon city (제천시); the brochure's copyright stays with the city.
The questions and answers are generated by this pipeline and shared for research on RAG evaluation; check the
city's terms before redistributing or using commercially.
"""


def dataset_card(stats: dict[str, Any], cfg: dict[str, Any], abstain: str, source: str = "data/sample") -> str:
    table = "\n".join(
        f"| {s} | {v['questions']} | {v['answerable']} | {v['unanswerable']} | {v['chunks']} | "
        + " | ".join(str(v["by_type"].get(t, 0)) for t in TYPES)
        + " |"
        for s, v in stats.items()
    )
    llm = cfg["generator"] == "llm"
    how = (
        "an LLM asked, in Korean, for grounded questions per chunk (JSON)"
        if llm
        else "facts found by rules in each chunk (address, phone, price, rooms, hours, period, duration, menu, course "
        "order, table cells, activities, key sentences) asked with several honorific templates"
    )
    return CARD.format(
        generator=cfg["generator"],
        abstain=abstain,
        ratios=cfg["split"],
        seed=cfg["seed"],
        table=table,
        type_cols=" | ".join(TYPES),
        type_sep="---|" * len(TYPES),
        how=how,
        llm_note=", or for LLM answers: numbers verbatim and most content morphemes" if llm else "",
        near_dup=cfg["near_duplicate"],
        mix=cfg["mix"],
        per_chunk=cfg["max_questions_per_chunk"],
        source=source,
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=Path, required=True, help="chunk stage output directory")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--metrics", type=Path, required=True)
    ap.add_argument("--params", type=Path, default=P.DEFAULT_PARAMS)
    args = ap.parse_args(argv)

    params = P.load(args.params, "synthesize", "prompt", "data")
    cfg, abstain = params["synthesize"], params["prompt"]["abstain"]
    chunks_path = args.chunks / "chunks.jsonl"
    if not chunks_path.is_file():
        raise UserError(f"{chunks_path}: not found (run the chunk stage first)")
    chunks = read_jsonl(chunks_path)
    splits = build_dataset(chunks, cfg, abstain)
    total = sum(len(v) for v in splits.values())
    if not total:
        raise UserError(f"{chunks_path}: no questions could be generated from {len(chunks)} chunks")
    stats = counts(splits)

    from datasets import Dataset, DatasetDict
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()  # one bar per split for a few hundred rows is noise

    with atomic_dir(args.out) as tmp:
        for name, rows in splits.items():
            dump_jsonl(tmp / f"{name}.jsonl", rows)
        DatasetDict({name: Dataset.from_list(rows) for name, rows in splits.items()}).save_to_disk(str(tmp / "hf"))
        source = Path(params["data"].get("pdf", "")).name or "brochure.pdf"
        (tmp / "README.md").write_text(dataset_card(stats, cfg, abstain, source), encoding="utf-8")
    by_type = Counter(r["type"] for rows in splits.values() for r in rows)
    write_json(args.metrics, {"total": total, "by_type": {t: by_type.get(t, 0) for t in TYPES}, **stats})
    log.info(
        "%d questions from %d chunks: %s",
        total,
        len(chunks),
        ", ".join(f"{s} {v['questions']} ({v['unanswerable']} unanswerable)" for s, v in stats.items()),
    )


if __name__ == "__main__":
    run_cli(main)
