"""Question phrasings (templates) and answerable single-chunk question records."""

from __future__ import annotations

import logging
import random
from typing import Any

from stages.synthesize.facts import (
    CLOCK_TIME,
    SENTENCE_FACTS,
    Fact,
    _entity_facts,
    _fill,
    _list_facts,
    _table_facts,
    course_facts,
    entity_name,
)
from stages.synthesize.limits import Limits

log = logging.getLogger("synthesize")

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
