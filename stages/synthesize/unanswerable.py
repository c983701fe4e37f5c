"""Unanswerable questions: plausible aspects the brochure never states."""

from __future__ import annotations

import logging
import random
import re
from collections import Counter
from typing import Any

from stages.synthesize.facts import (
    CLOSED,
    HOURS,
    PHONE,
    PRICE,
    course_owner,
    entity_name,
    is_place,
    restaurants,
    subject,
)
from stages.synthesize.filters import _squash
from stages.synthesize.limits import DEFAULTS, Limits
from stages.synthesize.questions import _record, fill
from stages.synthesize.styles import SPECS
from stages.synthesize.tables import _is_label_table, _rows

log = logging.getLogger("synthesize")


# Topics people ask about that brochures rarely state. Per topic: the words that would show the
# brochure does cover it (any of them near the subject drops the question: conservative), the kinds
# of subject it suits, and several wordings in several styles, so that abstaining cannot be learned
# from the wording alone (the same styles ask answerable questions).
TOPICS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[tuple[str, str], ...]]] = {
    "payment": (
        ("카드", "결제", "현금", "페이", "계좌", "지역화폐"),
        ("paid_place", "product", "restaurant", "lodging"),
        (
            ("policy", "{e}에서 신용카드로 결제할 수 있나요?"),
            ("policy", "{e_eun} 카드 결제가 되나요, 아니면 현금만 받나요?"),
            ("colloquial", "{e} 갈 때 현금 챙겨가야 돼요?"),
            ("yes_no", "{e}에서 간편결제를 쓸 수 있나요?"),
        ),
    ),
    "refund": (
        ("환불", "취소", "위약"),
        ("product", "lodging"),
        (
            ("policy", "{e} 예약을 취소하면 환불받을 수 있나요?"),
            ("policy", "{e_eui} 환불 규정은 어떻게 되나요?"),
            ("colloquial", "{e} 당일에 취소해도 돈 돌려받을 수 있어요?"),
        ),
    ),
    "pets": (
        ("반려", "애견", "강아지", "펫", "동물 동반"),
        ("place", "product", "lodging", "restaurant"),
        (
            ("policy", "{e}에 반려견을 데리고 가도 되나요?"),
            ("policy", "{e_eun} 반려동물 동반이 가능한가요?"),
            ("colloquial", "강아지랑 같이 {e}에 들어갈 수 있어요?"),
        ),
    ),
    "parking": (
        ("주차",),
        ("place", "restaurant", "lodging"),
        (
            ("policy", "{e}에 주차할 곳이 있나요?"),
            ("direct", "{e_eui} 주차 요금은 얼마인가요?"),
            ("colloquial", "차 가져가면 {e} 근처에 댈 데 있어요?"),
        ),
    ),
    "accessibility": (
        ("휠체어", "장애인", "무장애", "유모차", "교통약자", "엘리베이터", "경사로", "노약자"),
        ("place", "product"),
        (
            ("policy", "{e_eun} 휠체어를 타고도 둘러볼 수 있나요?"),
            ("yes_no", "유모차를 끌고 {e}에 가도 괜찮을까요?"),
            ("policy", "{e}에 장애인 편의시설이 있나요?"),
        ),
    ),
    "wifi": (
        ("와이파이", "wifi", "wi-fi", "인터넷"),
        ("paid_place", "lodging", "restaurant"),
        (
            ("yes_no", "{e}에서 와이파이를 쓸 수 있나요?"),
            ("colloquial", "{e} 와이파이 돼요?"),
        ),
    ),
    "age": (
        ("나이", "연령", "어린이", "유아", "아동", "청소년", "세 이상", "세 미만", "남녀노소", "키 "),
        ("paid_place", "product"),
        (
            ("policy", "{e}에 나이 제한이 있나요?"),
            ("policy", "초등학생 아이도 {e_eul} 이용할 수 있나요?"),
            ("direct", "{e_eui} 어린이 요금은 얼마인가요?"),
        ),
    ),
    "reservation": (
        ("예약", "예매", "사전", "신청"),
        ("restaurant",),
        (
            ("policy", "{e_eun} 미리 예약해야 하나요?"),
            ("where_to_book", "{e_eun} 어디에서 예약하나요?"),
            ("colloquial", "{e} 예약 없이 그냥 가도 돼요?"),
        ),
    ),
    "restroom": (
        ("화장실",),
        ("place",),
        (
            ("yes_no", "{e}에 화장실이 있나요?"),
            ("colloquial", "{e} 근처에 화장실 있어요?"),
        ),
    ),
    "luggage": (
        ("물품보관", "보관함", "사물함", "짐", "캐리어"),
        ("paid_place", "product"),
        (
            ("yes_no", "{e}에 짐을 맡길 수 있는 보관함이 있나요?"),
            ("policy", "{e}에 캐리어를 가지고 가도 되나요?"),
        ),
    ),
    "language": (
        ("외국어", "영어", "통역", "외국인", "다국어"),
        ("paid_place", "product"),
        (
            ("yes_no", "{e}에서 외국어 안내를 받을 수 있나요?"),
            ("policy", "{e_eun} 영어 안내도 해 주나요?"),
        ),
    ),
    "hours": (
        ("시간", "영업", ":", "휴무", "휴일"),
        ("restaurant",),
        (
            ("direct", "{e_eui} 영업시간은 어떻게 되나요?"),
            ("when", "{e_eun} 몇 시까지 문을 여나요?"),
            ("when", "{e_eun} 언제 쉬나요?"),
        ),
    ),
    "takeout": (
        ("포장", "배달", "테이크아웃"),
        ("restaurant",),
        (
            ("yes_no", "{e}에서 음식을 포장할 수 있나요?"),
            ("colloquial", "{e} 배달도 돼요?"),
        ),
    ),
    "price_menu": (
        ("원", "가격", "요금"),
        ("restaurant",),
        (
            ("direct", "{e_eui} 대표 메뉴 가격은 얼마인가요?"),
            ("colloquial", "{e} 1인분에 얼마 정도 해요?"),
        ),
    ),
    "checkin": (
        ("체크인", "입실", "퇴실", "체크아웃"),
        ("lodging",),
        (
            ("when", "{e_eui} 체크인 시간은 몇 시인가요?"),
            ("direct", "{e}에서 퇴실은 몇 시까지 해야 하나요?"),
        ),
    ),
    "breakfast": (
        ("조식", "아침", "식사"),
        ("lodging",),
        (
            ("yes_no", "{e}에서 조식을 제공하나요?"),
            ("colloquial", "{e} 아침밥 나와요?"),
        ),
    ),
    "lodging_price": (
        ("1박", "숙박비", "요금", "원"),
        ("lodging",),
        (
            ("direct", "{e}의 1박 요금은 얼마인가요?"),
            ("colloquial", "{e} 하룻밤에 얼마예요?"),
        ),
    ),
}


def _abstention(chunk: dict[str, Any], e: str, about: str, style: str, template: str, abstain: str) -> dict[str, Any]:
    """An unanswerable question about subject e (``about``: its topic or attribute), answered by the abstention."""
    return _record(
        chunk, fill(template, e), abstain, "unanswerable", "none", False, f"{e}/{about}",
        short="", facts=[], kind="abstain", style=style,
    )  # fmt: skip


def _about(text: str, entity: str) -> bool:
    return len(_squash(entity)) >= 2 and _squash(entity) in _squash(text)


def covered(
    topic_words: tuple[str, ...],
    entity: str,
    own: dict[str, Any],
    chunks: list[dict[str, Any]],
    pattern: re.Pattern[str] | None = None,
    general_rules: bool = True,
) -> bool:
    """True when the brochure may answer the topic for this subject: a topic word (or a value matching `pattern`)
    in the subject's own chunk, in any chunk naming the subject, or in three or more entries (a field of the
    brochure's layout, '주차장 화장실 ...': an entry without it may be saying 'none'), or, with `general_rules`, in a
    chunk about no place in particular (a rule like '주차장이 따로 없는 곳이 많다' may apply to every place)."""

    def states(text: str) -> bool:
        return (pattern is not None and pattern.search(text) is not None) or any(w in text.lower() for w in topic_words)

    if sum(is_place(c) and states(c["text"]) for c in chunks) >= 3:
        return True
    for c in chunks:
        if not states(c["text"]):
            continue
        if c["chunk_id"] == own["chunk_id"] or _about(c["text"], entity):
            return True
        if general_rules and not (is_place(c) or c["kind"] == "table" or restaurants(c, DEFAULTS)):
            return True
    return False


def _asked_of(kind: str, kinds: tuple[str, ...]) -> bool:
    """A topic or attribute for places is asked of places that charge too."""
    return kind in kinds or (kind == "paid_place" and "place" in kinds)


def subjects_of(chunk: dict[str, Any], lim: Limits) -> list[tuple[str, str]]:
    """(kind, name) of the real entries a chunk is about: places, lodgings, restaurants, products."""
    subjects: list[tuple[str, str]] = []
    if is_place(chunk):
        # payment, age limits, lockers, wifi are asked of places that charge or sell (a museum, a cable car,
        # a cafe), not of a mountain or a stone pagoda
        own = re.split(r"주변\s*(?:여행|관광지|명소)", chunk["text"])[0]  # not the nearby list ('..., 해녀박물관')
        paid = re.search(r"\d원|입장료|이용료|관람료|요금|유료|체험|카페|박물관|전시관|케이블카|유람선|판매", own)
        subjects.append(("paid_place" if paid else "place", subject(chunk)))
    rows = _rows(chunk)
    if chunk["kind"] == "table" and any("객실" in c for c in (rows or [[]])[0]):
        subjects += [("lodging", entity_name(r[0])) for r in rows[1:] if r and r[0]]
    elif chunk["kind"] == "table" and _is_label_table(rows) and any("예약" in r[0] for r in rows):
        subjects.append(("product", course_owner(chunk)))
    subjects += [("restaurant", name) for name in restaurants(chunk, lim)]
    return subjects


def unanswerable_candidates(
    chunk: dict[str, Any], chunks: list[dict[str, Any]], lim: Limits, abstain: str, rng: random.Random, n: int
) -> list[dict[str, Any]]:
    """Up to n plausible questions about a real entry of this chunk that no chunk answers."""
    subjects = subjects_of(chunk, lim)
    if not subjects:
        return []
    pairs = []
    for kind, e in subjects:
        for topic, (words, kinds, wordings) in sorted(TOPICS.items()):
            if _asked_of(kind, kinds) and not covered(words, e, chunk, chunks):
                style, template = rng.choice(wordings)
                pairs.append((e, topic, style, template))
    rng.shuffle(pairs)
    # spread over subjects first: one topic of each before a second topic of any
    seen: Counter = Counter()
    ranked = []
    for p in pairs:
        ranked.append((seen[p[0]], len(ranked), p))
        seen[p[0]] += 1
    return [_abstention(chunk, e, topic, style, t, abstain) for _, _, (e, topic, style, t) in sorted(ranked)[:n]]


# Attributes the brochure gives for some entries and not for others (synthesize.mix.missing_attribute). Asked with
# the very templates that ask them answerably (styles.SPECS), so neither the wording nor a topic word tells the
# two apart: only the context does. Per attribute: the pattern of its value, words that would show the brochure
# states it, and the kinds of subject it is asked of (opening hours of a museum or a cable car, not of a pass).
ATTRIBUTES: dict[str, tuple[re.Pattern[str], tuple[str, ...], tuple[str, ...]]] = {
    "hours": (
        HOURS,
        ("운영시간", "영업시간", "이용시간", "관람시간", "운영 시간", "개장", "폐장", "24시간"),
        ("paid_place",),
    ),
    "closed": (CLOSED, ("휴무", "휴관", "휴장", "쉬는 날", "정기휴일", "연중무휴"), ("paid_place",)),
    "price": (PRICE, ("입장료", "관람료", "이용료", "요금", "무료", "유료"), ("paid_place",)),
    "phone": (PHONE, ("전화", "문의", "tel", "☎"), ("place",)),
}


def missing_attribute_candidates(
    chunk: dict[str, Any], chunks: list[dict[str, Any]], lim: Limits, abstain: str, rng: random.Random, n: int
) -> list[dict[str, Any]]:
    """Up to n questions about an attribute of this chunk's place that other entries state and it does not
    ('청풍랜드의 운영시간은 어떻게 되나요?' where only other entries give hours), worded as the answerable ones are."""
    stated_somewhere = {
        a for a, (pattern, _, _) in ATTRIBUTES.items() if any(pattern.search(c["text"]) for c in chunks)
    }
    pairs = []
    for kind, e in subjects_of(chunk, lim):
        for attr in sorted(stated_somewhere):
            pattern, words, kinds = ATTRIBUTES[attr]
            # an attribute is a field of an entry: a general chunk's word ('요금') says nothing of this place's
            if _asked_of(kind, kinds) and not covered(words, e, chunk, chunks, pattern, general_rules=False):
                # yes/no templates presuppose the value ('{day}에 가도 문을 여나요?'): not asked
                wordings = [(style, q) for style, q, _ in SPECS[attr].styles if style != "yes_no"]
                style, template = rng.choice(wordings)
                pairs.append((e, attr, style, template))
    rng.shuffle(pairs)
    return [_abstention(chunk, e, attr, style, t, abstain) for e, attr, style, t in pairs[:n]]
