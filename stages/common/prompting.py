"""RAG prompt format shared by `sft` (training) and `evaluate` (inference).

One function builds the messages for both, so the fine-tuned model is evaluated
on exactly the prompt shape it was trained on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from .records import gold_ids

CITATION = re.compile(r"\[(c\d{3,})\]")


def format_chunk(chunk: dict[str, Any], max_chars: int, id_after_text: bool = False) -> str:
    text = chunk["text"]
    if len(text) > max_chars:
        text = text[:max_chars].rstrip() + "…"
    tail = f" [{chunk['chunk_id']}]" if id_after_text else ""
    return f"[{chunk['chunk_id']}] {chunk['section_path']}\n{text}{tail}"


@dataclass(frozen=True)
class PromptLayout:
    """How a RAG prompt is laid out: the system prompt, the per-chunk character cap and where the question goes.
    sft rows, evaluation and the demo all build their prompts from one (params ``prompt``)."""

    system: str
    max_chars: int
    question_first: bool = False  # also put the question before the documents (see `user_message`)
    id_after_text: bool = False  # each chunk's id also after its text, next to the values it labels

    @classmethod
    def from_params(cls, prompt: Any) -> PromptLayout:
        """From the ``prompt`` params section."""
        return cls(prompt.system, prompt.max_context_chars, prompt.question_first, prompt.id_after_text)

    def with_max_chars(self, max_chars: int) -> PromptLayout:
        return replace(self, max_chars=max_chars)

    def context(self, chunks: list[dict[str, Any]]) -> str:
        """The documents as the prompt shows them (what an answer may rely on; scoring reads it too)."""
        return "\n\n".join(format_chunk(c, self.max_chars, self.id_after_text) for c in chunks)


def user_message(question: str, chunks: list[dict[str, Any]], layout: PromptLayout) -> str:
    """Documents, then the question. ``layout.question_first`` puts the question before the documents as well: a
    decoder reads each document token only in the light of what came before it, so the documents can be read for
    the question (query-aware contextualization, Liu et al. 2023, "Lost in the Middle")."""
    body = f"문서:\n{layout.context(chunks)}\n\n{question_line(question)}"
    return f"{question_line(question)}\n\n{body}" if layout.question_first else body


def question_line(question: str) -> str:
    """How a question is put: the end of the first user turn, and the whole of an sft follow-up turn."""
    return f"질문: {question}"


def build_messages(question: str, chunks: list[dict[str, Any]], layout: PromptLayout) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": layout.system},
        {"role": "user", "content": user_message(question, chunks, layout)},
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


# ---------------------------------------------------------------- few-shot (the baseline_fewshot model)
# The few-shot baseline is the same base model shown k solved examples from the TRAIN split as earlier
# chat turns: the fairest "good prompt" a reviewer would compare a fine-tune against. Each example is
# compact (one chunk, cut to a few hundred characters) because every prompt token is CPU prefill time.


def fewshot_examples(
    train: list[dict[str, Any]],
    chunks_by_id: dict[str, dict[str, Any]],
    k: int,
    max_chars: int,
    abstain: str,
    seed: int,
) -> list[dict[str, Any]]:
    """k solved examples from the train split: k-1 answered (one per answer kind, round-robin) + 1 abstention.

    Answered examples are single-chunk questions whose short answer (or whole answer)
    lies inside the chunk's first `max_chars` characters, so the cut chunk still backs
    it; their target is the answer sentence plus its `[cNNN]` citation. The abstention
    example shows an unanswerable question with the chunk it was asked about. Returns
    `{"id", "question", "chunk", "answer", "answerable"}` records in a seeded order.
    """
    import random

    if k <= 0:
        return []
    rng = random.Random(seed)

    def backed(q: dict[str, Any]) -> bool:
        chunk = chunks_by_id.get(q.get("chunk_id") or "")
        ids = gold_ids(q)
        if chunk is None or len(ids) != 1:
            return False
        value = (q.get("answer_short") or q.get("answer") or "").strip()
        return bool(value) and _squash(value) in _squash(chunk["text"][:max_chars])

    answerable = sorted((q for q in train if q.get("answerable") and backed(q)), key=lambda q: q["id"])
    unanswerable = sorted(
        (q for q in train if not q.get("answerable") and q.get("chunk_id") in chunks_by_id), key=lambda q: q["id"]
    )
    n_abstain = 1 if unanswerable and k >= 2 else 0
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for q in answerable:
        by_kind.setdefault(str(q.get("answer_kind") or q.get("fact") or q.get("type")), []).append(q)
    for group in by_kind.values():
        rng.shuffle(group)
    picked: list[dict[str, Any]] = []
    kinds = sorted(by_kind)
    while len(picked) < k - n_abstain and any(by_kind.values()):
        for kind in kinds:
            if by_kind[kind] and len(picked) < k - n_abstain:
                picked.append(by_kind[kind].pop())
    if n_abstain:
        picked.append(rng.choice(unanswerable))
    rng.shuffle(picked)
    out = []
    for q in picked:
        chunk = chunks_by_id[q["chunk_id"]]
        answer = target_answer(q["answer"], [chunk["chunk_id"]]) if q["answerable"] else abstain
        out.append(
            {"id": q["id"], "question": q["question"], "chunk": chunk, "answer": answer, "answerable": q["answerable"]}
        )
    return out


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def fewshot_turns(examples: list[dict[str, Any]], layout: PromptLayout) -> list[dict[str, str]]:
    """The examples as earlier user/assistant turns, in the same user-message shape as the real question (their
    chunks cut to ``layout.max_chars``: pass the layout `with_max_chars` of the examples' cap)."""
    turns: list[dict[str, str]] = []
    for ex in examples:
        turns.append({"role": "user", "content": user_message(ex["question"], [ex["chunk"]], layout)})
        turns.append({"role": "assistant", "content": ex["answer"]})
    return turns


def build_fewshot_messages(
    question: str, chunks: list[dict[str, Any]], layout: PromptLayout, turns: list[dict[str, str]]
) -> list[dict[str, str]]:
    """`build_messages` with solved example turns (`fewshot_turns`) between the system prompt and the question."""
    system_msg, user_msg = build_messages(question, chunks, layout)
    return [system_msg, *turns, user_msg]
