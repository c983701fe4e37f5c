"""Quality filters: grounding, answer leakage, ambiguity, near-duplicates."""

from __future__ import annotations

import logging
import re
from collections import Counter
from typing import Any

from stages.common.korean import normalize

log = logging.getLogger("synthesize")


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
    return bool(tokens) and sum(_squash(t) in squashed for t in tokens) / len(tokens) >= min_share


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


def filter_records(
    records: list[dict[str, Any]],
    chunks: dict[str, dict[str, Any]],
    near_dup: float,
    min_share: float = 1.0,
    stats: Counter | None = None,
) -> list[dict[str, Any]]:
    """Grounding, leakage, ambiguity and near-duplicate filters (in that order); `stats` counts drops.

    Grounding checks the value(s) a record was built from (``_parts``), else its bare answer
    (``answer_short``): the full-sentence ``answer`` is phrased by us, its value is what must be in
    the chunk. A question that contains its bare answer tests nothing (leak)."""
    stats = Counter() if stats is None else stats
    kept = []
    for r in records:
        if r["answerable"]:
            texts = [chunks[c]["text"] for c in r["chunk_ids"]]
            bare = r.get("answer_short") or r["answer"]
            parts = r.pop("_parts", None) or [(bare, 0)]
            if not all(supported(a, texts[i], min_share) for a, i in parts):
                stats["grounding"] += 1
                continue
            # a comparison names both candidates by design: its answer (the winner) is in the question
            if r.get("type") != "comparison" and leaks_answer(r["question"], bare):
                stats["leak"] += 1
                continue
        kept.append(r)
    # Same fact of the same subject, or the same question, asked from two chunks: no single gold chunk.
    chunks_per_subject: dict[Any, set[str]] = {}
    chunks_per_question: dict[str, set[str]] = {}
    for r in kept:
        chunks_per_subject.setdefault(r["_subject"], set()).add(r["chunk_id"])
        chunks_per_question.setdefault(_squash(r["question"]), set()).add(r["chunk_id"])
    out: list[dict[str, Any]] = []
    grams: dict[str, list[set[str]]] = {}
    for r in kept:
        subject = r.pop("_subject")
        if len(chunks_per_subject[subject]) > 1 or len(chunks_per_question[_squash(r["question"])]) > 1:
            stats["ambiguous"] += 1
            continue
        # Near-duplicates are compared within a chunk (two phrasings of one fact that read alike);
        # 'X은 어디에 있나요?' and 'Y는 어디에 있나요?' about two places are different questions.
        g = _grams(r["question"])
        seen = grams.setdefault(r["chunk_id"], [])
        if any(len(g & o) / max(1, len(g | o)) >= near_dup for o in seen):
            stats["near_duplicate"] += 1
            continue
        seen.append(g)
        out.append(r)
    return out


def drop_natural_overlap(
    records: list[dict[str, Any]],
    natural: list[dict[str, Any]],
    near_dup: float,
    stats: Counter | None = None,
) -> list[dict[str, Any]]:
    """Decontamination: the hand-written natural test set must never be trained on (or validated on).

    Drops every generated question whose wording is near a natural question (character-trigram
    Jaccard >= near_dup) or, if answerable, whose full-sentence answer equals a natural answer.
    Unanswerable answers are the shared abstention phrase, so they are not compared."""
    stats = Counter() if stats is None else stats
    stats["natural_overlap"] += 0  # reported even when nothing overlapped
    if not natural:
        return records
    nat_grams = [_grams(n["question"]) for n in natural]
    nat_answers = {_squash(n["answer"]) for n in natural if n.get("answerable")}
    out = []
    for r in records:
        g = _grams(r["question"])
        if any(len(g & o) / max(1, len(g | o)) >= near_dup for o in nat_grams) or (
            r["answerable"] and _squash(r["answer"]) in nat_answers
        ):
            stats["natural_overlap"] += 1
            continue
        out.append(r)
    return out


SLOT_KINDS = ("phone", "time", "price", "address", "count", "date", "url")


def truth_pages(rows: list[dict[str, Any]]) -> dict[int, str]:
    """Page number -> the page's true text (text layer and raster-region text) from parse's truth copy."""
    out = {}
    for r in rows:
        regions = [x.get("text", "") for x in r.get("raster_regions") or []]
        out[int(r["page"])] = "\n".join([r.get("text", ""), *regions])
    return out


def drop_off_truth(
    records: list[dict[str, Any]], pages: dict[int, str], stats: Counter | None = None
) -> list[dict[str, Any]]:
    """Drops answerable records whose key facts (and slot ``answer_short``) are not on their true pages.

    OCR damage ('김치음밥' for '김치알밥') is grounded in its chunk but is no true fact: a gold
    like that trains and scores a misreading. Values we compute (a price difference) are not on any
    page and are kept; so are records whose pages the truth does not cover."""
    from stages.common.metrics import key_fact_found

    stats = Counter() if stats is None else stats
    stats["truth"] += 0  # reported even when nothing was dropped
    if not pages:
        return records
    morphs: dict[int, set[str]] = {}

    def found(fact: str, page: int) -> bool:
        if page not in morphs:
            from stages.common.korean import morphemes

            morphs[page] = set(morphemes(pages[page]))
        return key_fact_found(pages[page], fact, morphs[page])

    out = []
    for r in records:
        mine = [p for p in r.get("pages", []) if p in pages]
        if not r["answerable"] or r.get("fact") == "difference" or not mine:
            out.append(r)
            continue
        facts = list(r.get("key_facts") or [])
        if r.get("answer_kind") in SLOT_KINDS and r.get("answer_short"):
            facts.append(r["answer_short"])
        # '276개': the counter is ours (a rooms cell reads '276'), the number is what must be on the page
        facts = [re.sub(r"(?<=\d)개$", "", f) for f in facts]
        if all(any(found(f, p) for p in mine) for f in dict.fromkeys(facts)):
            out.append(r)
        else:
            stats["truth"] += 1
    return out
