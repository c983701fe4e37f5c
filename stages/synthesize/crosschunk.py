"""Cross-chunk questions: comparisons of two facts and course stop -> place multi-hops."""

from __future__ import annotations

import logging
import random
import re
from collections import Counter
from typing import Any

from stages.common.korean import josa, normalize
from stages.synthesize.facts import ADDRESS, entity_name, is_place, restaurants
from stages.synthesize.filters import _squash
from stages.synthesize.limits import Limits
from stages.synthesize.questions import _record
from stages.synthesize.tables import (
    NOT_PRICE,
    _is_label_table,
    _is_meal,
    _money,
    _rows,
    courses,
    row_subject,
    table_facts,
)

log = logging.getLogger("synthesize")

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
    "points": ("많은", "적은", ["{a_wa} {b} 중 필요한 포인트가 더 {how} 것은 무엇인가요?"]),
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


# ------------------------------------------------------------------ cross-chunk questions
def _number(value: str, dimension: str) -> float | None:
    if dimension == "duration":
        if "~" in value:
            return None
        h = re.search(r"(\d+)\s*시간", value)
        m = re.search(r"(\d+)\s*분", value)
        total = (int(h.group(1)) * 60 if h else 0) + (int(m.group(1)) if m else 0) + (30 if "반" in value else 0)
        return float(total) or None
    if dimension == "price":  # the facts' money parser: '35만원' is 350,000, OCR '3.000원' is 3,000
        return _money(value)
    digits = re.match(r"\s*([\d,]+)", value)
    return float(digits.group(1).replace(",", "")) if digits else None


def comparables(chunk: dict[str, Any], lim: Limits) -> list[tuple[str, str, str, float, str]]:
    """(dimension, subject, value text, number, value as written) comparable across subjects."""
    out = []
    if chunk["kind"] == "table" and not _is_label_table(_rows(chunk)):
        for fact, key, _col, value, _title in table_facts(chunk, lim):
            if fact == "price" and NOT_PRICE.search(f"{chunk['title']} {chunk['section_path']} {_col}"):
                continue  # a subsidy or discount is not a price to call 'more expensive'
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
        noun, pred = VERDICT[(dim, how)]
        answer = f"{josa(winner[2], '이/가')} {noun} 더 {pred} ({winner[2]} {winner[3]}, {loser[2]} {loser[3]})."
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
            short=winner[2],
            facts=[winner[2]],
            kind="name",
            style="difference",
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


# (dimension, how) -> (what is compared, predicate): '65리조트가 객실이 더 많습니다'
VERDICT = {
    ("rooms", "많은"): ("객실이", "많습니다"),
    ("rooms", "적은"): ("객실이", "적습니다"),
    ("price", "비싼"): ("요금이", "비쌉니다"),
    ("price", "저렴한"): ("요금이", "저렴합니다"),
    ("points", "많은"): ("필요한 포인트가", "많습니다"),
    ("points", "적은"): ("필요한 포인트가", "적습니다"),
    ("duration", "긴"): ("소요시간이", "깁니다"),
    ("duration", "짧은"): ("소요시간이", "짧습니다"),
}


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
                    place = next(k for k, v in sorted(table.items()) if v is hit)
                    if kind == "address":
                        answer = f"{josa(place, '은/는')} {hit[1]}에 있습니다."
                        facts, answer_kind = [hit[1]], "address"
                    else:
                        answer = f"{place}의 대표 메뉴는 {hit[1]}입니다."
                        facts, answer_kind = [i.strip() for i in hit[1].split(",")][:4], "list"
                    rec = _record(
                        hit[0],
                        q,
                        answer,
                        "multihop",
                        kind,
                        True,
                        f"{course}/{stop}",
                        chunk_ids=ids,
                        short=hit[1],
                        facts=facts,
                        kind=answer_kind,
                        style="direct",
                    )
                    rec["_parts"] = [(hit[1], 0), (stop, 1)]
                    cands.append(rec)
    rng.shuffle(cands)
    return cands[:n]
