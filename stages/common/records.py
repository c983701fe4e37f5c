"""Record shapes of docs/data-contracts.md, as type hints, and the one gold-chunk rule.

These TypedDicts document what flows between stages (files are still plain JSON dicts:
nothing is validated or converted here). ``total=False`` marks records whose older
versions may lack fields (old QA without answer_kind, natural questions without chunk ids).
"""

from __future__ import annotations

from typing import Any, TypedDict


class Block(TypedDict):
    """parse → data/parsed/blocks.jsonl"""

    doc: str
    page: int
    block_id: str
    order: int
    type: str  # title|text|table|list|figure|caption|header|footer
    bbox: list[float]
    text: str
    source: str  # textlayer|ocr
    confidence: float | None
    font_size: float | None
    level: int | None


class Chunk(TypedDict):
    """chunk → data/chunks/chunks.jsonl (also data/index/chunks.jsonl)"""

    chunk_id: str
    section_path: str
    title: str
    kind: str  # entry|section|table
    text: str
    pages: list[int]
    bboxes: list[list[float]]
    sources: dict[str, int]


class Question(TypedDict, total=False):
    """synthesize → data/qa/<split>.jsonl; natural questions carry gold_pages and get chunk ids at evaluation."""

    id: str
    question: str
    answer: str
    answer_short: str
    key_facts: list[str]
    answer_kind: str
    style: str
    answerable: bool
    type: str  # factual|descriptive|comparison|multihop|unanswerable
    fact: str
    chunk_id: str | None
    chunk_ids: list[str]
    section_path: str
    pages: list[int]
    generator: str  # rules|llm
    gold_pages: list[int]


class SftRow(TypedDict):
    """sft → data/sft/<split>.jsonl"""

    messages: list[dict[str, str]]
    meta: dict[str, Any]


class Prediction(TypedDict, total=False):
    """evaluate → data/eval/<model>/<testset>/predictions.jsonl"""

    id: str
    testset: str  # template|natural
    model: str  # baseline|baseline_fewshot|finetuned
    question: str
    type: str
    fact: str | None
    style: str | None
    answer_kind: str | None
    answerable: bool
    gold_answer: str
    gold_answer_short: str
    gold_key_facts: list[str]
    gold_chunk_id: str | None
    gold_chunk_ids: list[str]
    gold_pages: list[int]
    retrieved_ids: list[str]
    answer: str
    cited_ids: list[str]
    latency_s: float
    new_tokens: int
    prompt_tokens: int
    hit_eos: bool
    scores: dict[str, Any]
    judge: dict[str, Any]


def gold_ids(record: Question | Prediction | dict[str, Any], prefix: str = "") -> list[str]:
    """A record's gold chunks: `chunk_ids` (every chunk a comparison / multi-hop answer needs), else
    its one `chunk_id`, else none. prefix="gold_" reads a prediction's gold_chunk_ids / gold_chunk_id."""
    ids = record.get(f"{prefix}chunk_ids")
    if ids:
        return list(ids)
    one = record.get(f"{prefix}chunk_id")
    return [one] if one else []
