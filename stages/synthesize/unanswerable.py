"""Unanswerable questions: plausible aspects the brochure never states."""

from __future__ import annotations

import logging
import random
from collections import Counter
from typing import Any

from stages.synthesize.facts import (
    _fill,
    _rows,
    entity_name,
    is_place,
    restaurants,
)
from stages.synthesize.limits import Limits
from stages.synthesize.questions import _record

log = logging.getLogger("synthesize")


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
