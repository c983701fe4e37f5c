"""RAG prompt format shared by `sft` (training) and `evaluate` (inference).

One function builds the messages for both, so the fine-tuned model is evaluated
on exactly the prompt shape it was trained on.
"""

from __future__ import annotations

import re
from typing import Any

CITATION = re.compile(r"\[(c\d{3,})\]")


def format_chunk(chunk: dict[str, Any], max_chars: int) -> str:
    text = chunk["text"]
    if len(text) > max_chars:
        text = text[:max_chars].rstrip() + "…"
    return f"[{chunk['chunk_id']}] {chunk['section_path']}\n{text}"


def user_message(question: str, chunks: list[dict[str, Any]], max_chars: int) -> str:
    context = "\n\n".join(format_chunk(c, max_chars) for c in chunks)
    return f"문서:\n{context}\n\n질문: {question}"


def build_messages(question: str, chunks: list[dict[str, Any]], system: str, max_chars: int) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": user_message(question, chunks, max_chars)},
    ]


def target_answer(answer: str, cited_ids: list[str]) -> str:
    """The assistant turn we train on: the answer, then its citations."""
    cites = "".join(f"[{cid}]" for cid in cited_ids)
    return f"{answer} {cites}".strip()


def cited_ids(text: str) -> list[str]:
    seen: list[str] = []
    for cid in CITATION.findall(text):
        if cid not in seen:
            seen.append(cid)
    return seen


def strip_citations(text: str) -> str:
    return re.sub(r"\s+", " ", CITATION.sub("", text)).strip()
