"""The hand-written natural-question test set: load, validate, resolve gold chunks.

`data/sample/natural_questions.jsonl` is written by people reading the sample
brochure's pages, not by the generator, and is frozen (see
data/sample/NATURAL_QUESTIONS.md). Its records name gold *pages*, not chunk ids:
chunk ids change whenever parse or chunk change, so the gold chunks are resolved
at evaluation time from the pages and the key facts (``resolve_gold_chunks``).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import UserError

TYPES = ("factual", "descriptive", "comparison", "multihop", "unanswerable")
STYLES = (
    "direct", "polite", "colloquial", "yes_no", "how_to", "when", "recommendation",
    "difference", "where_to_book", "multi_part", "policy",
)  # fmt: skip
ANSWER_KINDS = ("phone", "time", "price", "address", "count", "date", "url", "name", "list", "text", "abstain")
MAX_KEY_FACTS = 4

REQUIRED: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "question": str,
    "answer": str,
    "answer_short": str,
    "key_facts": list,
    "answerable": bool,
    "type": str,
    "style": str,
    "answer_kind": str,
    "gold_pages": list,
}
# `computed`: answer_short/key_facts hold a value worked out from the page (a price
# difference, a discounted price), so they are not verbatim page text; `source_facts`
# then lists the verbatim page values it is worked out from (they locate the gold chunks).
OPTIONAL: dict[str, type | tuple[type, ...]] = {"computed": bool, "source_facts": list}
_ID = re.compile(r"^n\d{3}$")

# Variants that carry no meaning when looking for a value in a text: every tilde and
# dash form (OCR and typists mix them: 7~8월, 7-8월, 10:00∼17:30), every middle dot.
_DASHES = str.maketrans({c: "~" for c in "~∼～〜‐‑‒–—―−-"})
_DOTS = str.maketrans({c: "·" for c in "·ㆍ・•‧"})
# Thousands separators ("3,000원" = "3000원"); OCR also reads the comma as a dot ("3.000원").
_DIGIT_SEP = re.compile(r"(?<=\d)[,.](?=\d)")


def norm_fact(text: str) -> str:
    """Normalised form for fact lookup: NFC, lower case, no spaces or commas, one tilde, one middle dot."""
    text = unicodedata.normalize("NFC", text).lower().translate(_DASHES).translate(_DOTS)
    text = _DIGIT_SEP.sub("", text)
    text = text.replace(",", "")
    return re.sub(r"\s+", "", text)


def contains_fact(text: str, fact: str) -> bool:
    return norm_fact(fact) in norm_fact(text)


def _nfc(value: Any) -> Any:
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, list):
        return [_nfc(v) for v in value]
    return value


def validate_record(rec: Any, abstain: str | None = None) -> dict[str, Any]:
    """Check one record against the schema; return it NFC-normalised. Raises ValueError (one line)."""
    if not isinstance(rec, dict):
        raise ValueError("not a JSON object")
    missing = sorted(set(REQUIRED) - set(rec))
    if missing:
        raise ValueError(f"missing field(s): {', '.join(missing)}")
    unknown = sorted(set(rec) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(unknown)}")
    for key, kind in {**REQUIRED, **OPTIONAL}.items():
        # bool is an int subclass: check it exactly so `"answerable": 1` is refused
        if key in rec and not (type(rec[key]) is bool if kind is bool else isinstance(rec[key], kind)):
            raise ValueError(f"field {key!r} must be {getattr(kind, '__name__', kind)}, got {type(rec[key]).__name__}")
    rec = {k: _nfc(v) for k, v in rec.items()}
    if not _ID.match(rec["id"]):
        raise ValueError(f"id {rec['id']!r} is not like 'n001'")
    for key, allowed in (("type", TYPES), ("style", STYLES), ("answer_kind", ANSWER_KINDS)):
        if rec[key] not in allowed:
            raise ValueError(f"{key} {rec[key]!r} is not one of {'|'.join(allowed)}")
    if not rec["question"].strip() or not rec["answer"].strip():
        raise ValueError("empty question or answer")
    pages = rec["gold_pages"]
    if not pages or not all(type(p) is int and p > 0 for p in pages):
        raise ValueError("gold_pages must be a non-empty list of page numbers")
    facts = rec["key_facts"]
    if not all(isinstance(f, str) and f.strip() for f in facts):
        raise ValueError("key_facts must be non-empty strings")
    sources = rec.get("source_facts", [])
    if not all(isinstance(f, str) and f.strip() for f in sources):
        raise ValueError("source_facts must be non-empty strings")
    if bool(rec.get("computed")) != bool(sources):
        raise ValueError("a computed record needs source_facts, and only a computed one has them")
    if rec["answerable"]:
        if rec["type"] == "unanswerable" or rec["answer_kind"] == "abstain":
            raise ValueError("answerable record with type/answer_kind of an unanswerable one")
        if not 1 <= len(facts) <= MAX_KEY_FACTS:
            raise ValueError(f"an answerable record needs 1-{MAX_KEY_FACTS} key_facts, got {len(facts)}")
        # the gold must pass its own scorer: every key fact and the short value inside the sentence
        for value in [*facts, rec["answer_short"]]:
            if value and not contains_fact(rec["answer"], value):
                raise ValueError(f"answer does not contain {value!r}")
    else:
        if rec["type"] != "unanswerable" or rec["answer_kind"] != "abstain":
            raise ValueError("unanswerable record needs type 'unanswerable' and answer_kind 'abstain'")
        if facts or rec["answer_short"]:
            raise ValueError("unanswerable record must have key_facts [] and answer_short ''")
        if rec.get("computed"):
            raise ValueError("unanswerable record cannot be computed")
        if abstain is not None and rec["answer"] != unicodedata.normalize("NFC", abstain):
            raise ValueError(f"unanswerable answer must be the abstain text {abstain!r}")
    return rec


def load_natural(path: str | Path, abstain: str | None = None) -> list[dict[str, Any]]:
    """Read and validate the natural-question jsonl. Bad input -> UserError naming file and line.

    ``abstain`` (params prompt.abstain), when given, must be the answer of every unanswerable record.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: natural-question file not found")
    records: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = validate_record(json.loads(line), abstain)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            except ValueError as exc:
                raise UserError(f"{path}:{lineno}: {exc}") from None
            if rec["id"] in seen:
                raise UserError(f"{path}:{lineno}: duplicate id {rec['id']} (first on line {seen[rec['id']]})")
            seen[rec["id"]] = lineno
            records.append(rec)
    if not records:
        raise UserError(f"{path}: no natural questions in the file")
    return records


def _fact_hits(record: dict[str, Any], chunks: Iterable[dict[str, Any]]):
    """(chunks sharing a page with ``gold_pages``, the facts looked up, hits[chunk][fact])."""
    pages = set(record["gold_pages"])
    cands = [c for c in chunks if pages & set(c.get("pages") or [])]
    facts = [*record["key_facts"], *record.get("source_facts", [])]
    texts = [norm_fact(f"{c.get('title') or ''}\n{c.get('text') or ''}") for c in cands]
    return cands, facts, [[norm_fact(f) in t for f in facts] for t in texts]


def found_on_gold_pages(records: Iterable[dict[str, Any]], chunks: Iterable[dict[str, Any]]) -> tuple[int, int]:
    """(answerable records with at least one key fact in a chunk of their gold pages, answerable records).

    Tells whether the set was written for this brochure: on the sample every answerable question finds one
    (93 of 93); a set written for another brochure finds almost none, while ``resolve_gold_chunks`` would still
    fall back to whatever chunks sit on those page numbers.
    """
    chunks = list(chunks)
    answerable = [r for r in records if r.get("answerable")]
    found = sum(any(any(row) for row in _fact_hits(r, chunks)[2]) for r in answerable)
    return found, len(answerable)


def resolve_gold_chunks(record: dict[str, Any], chunks: Iterable[dict[str, Any]]) -> list[str]:
    """Chunk ids (in corpus order) that hold the record's key facts on its gold pages.

    The facts looked up are ``key_facts`` plus, for a computed answer, its ``source_facts``.

    Candidates are the chunks sharing a page with ``gold_pages``. Each key fact goes to the
    candidates containing it (normalised); when several do, only those holding the most of the
    record's facts count, so a short fact ("13") is not credited to an unrelated chunk that
    happens to contain it. A fact found in no candidate (OCR damage, a computed value) falls
    back to the candidates with the most facts, or to every candidate when none holds any.
    Unanswerable records have no gold chunk.
    """
    if not record.get("answerable"):
        return []
    cands, facts, hits = _fact_hits(record, chunks)
    if not cands:
        return []
    counts = [sum(h) for h in hits]
    best = max(counts)
    chosen: set[int] = set()
    for j in range(len(facts)):
        holders = [i for i in range(len(cands)) if hits[i][j]]
        if holders:
            top = max(counts[i] for i in holders)
            chosen.update(i for i in holders if counts[i] == top)
        else:
            chosen.update(i for i in range(len(cands)) if counts[i] == best)
    return [cands[i]["chunk_id"] for i in sorted(chosen)]
