"""Assembly: candidates -> filters -> per-chunk cap -> unanswerable mix -> split -> cross-chunk, yes/no -> ids."""

from __future__ import annotations

import logging
import random
from collections import Counter
from typing import Any

from stages.common import params as P
from stages.common.errors import UserError
from stages.common.params_schema import Synthesize
from stages.synthesize.crosschunk import comparison_questions, multihop_questions
from stages.synthesize.filters import drop_natural_overlap, drop_off_truth, filter_records, near_duplicate
from stages.synthesize.limits import SPLITS, TYPES, Limits
from stages.synthesize.llm import ChatClient, llm_candidates
from stages.synthesize.questions import rules_candidates, yes_no_candidates
from stages.synthesize.split import split_by_chunk
from stages.synthesize.styles import STYLES
from stages.synthesize.unanswerable import missing_attribute_candidates, unanswerable_candidates

log = logging.getLogger("synthesize")


# ------------------------------------------------------------------ assembly
def build_dataset(
    chunks: list[dict[str, Any]],
    cfg: Synthesize,
    abstain: str,
    client: Any = None,
    report: dict[str, Any] | None = None,
    natural: list[dict[str, Any]] | None = None,
    truth: dict[int, str] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """All questions, split by source chunk; cross-chunk questions only within one split.

    `report`, when given, receives the quality gates: candidates, drops per filter, content chunks.
    `natural` (the hand-written test set): generated questions near one of it (``synthesize.natural_overlap``) are dropped from
    every split (counted as ``natural_overlap``), so no natural test question is ever trained on.
    `truth` (page -> true page text, parse's truth copy): answerable questions whose key facts are
    not on their true pages (OCR-damaged golds) are dropped (counted as ``truth``)."""
    lim = Limits.from_cfg(cfg)
    seed = cfg.seed
    per_chunk = cfg.max_questions_per_chunk
    n_unanswerable = cfg.unanswerable_per_chunk
    mix = cfg.mix
    near_dup = float(cfg.near_duplicate)
    # decontamination threshold, looser than near_dup: a natural question reworded is still leaked
    overlap = float(cfg.natural_overlap) if natural else 1.0
    by_id = {c["chunk_id"]: c for c in chunks}
    rng = random.Random(seed)
    dropped: Counter = Counter()  # why candidates were dropped: shape, grounding, leak, ambiguous, near_duplicate, cap

    def decontaminate(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Drop questions near a natural test question, then answers not on their true pages."""
        return drop_off_truth(drop_natural_overlap(records, natural or [], overlap, dropped), truth or {}, dropped)

    def screen_unanswerable(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Drop questions near a natural test question, then the filters (no truth check: nothing to back)."""
        return filter_records(
            drop_natural_overlap(records, natural or [], overlap, dropped), by_id, near_dup, stats=dropped
        )

    singles, min_share = _single_candidates(chunks, cfg, lim, rng, client, dropped)
    n_candidates = len(singles)
    singles = filter_records(decontaminate(singles), by_id, near_dup, min_share, dropped)
    capped = _cap_per_chunk(singles, per_chunk, rng, dropped)
    unans = screen_unanswerable(
        [u for c in chunks for u in unanswerable_candidates(c, chunks, lim, abstain, rng, n_unanswerable)]
    )
    share = float(mix.get("unanswerable", 0.0))
    n_u = round(share / max(1e-9, 1 - share) * len(capped))
    rng.shuffle(unans)
    records = capped + unans[:n_u]

    splits = split_by_chunk(records, cfg.split, seed, cfg.stratify_by)  # stratify_by: a choice the schema checked
    n_attr = round(float(mix.get("missing_attribute", 0.0)) * min(n_u, len(unans)))
    if n_attr:  # skipped at 0, so the filter counts in metrics/dataset.json stay as they were
        # its own random stream: every other question is drawn exactly as without the pass
        attr_rng = random.Random(f"{seed}/missing_attribute")
        split_of = {r["chunk_id"]: name for name, rows in splits.items() for r in rows}
        pool = screen_unanswerable(
            [
                q
                for c in chunks
                if c["chunk_id"] in split_of  # chunks with no split get none
                for q in missing_attribute_candidates(c, chunks, lim, abstain, attr_rng, n_unanswerable)
            ]
        )
        splits = _swap_in(splits, split_of, unans[:n_u], pool, n_attr, attr_rng)
    # its own random stream: with mix.yes_no 0 every other question is drawn exactly as before
    yes_no_rng = random.Random(f"{seed}/yes_no")
    yes_no_share = float(mix.get("yes_no", 0.0))
    out: dict[str, list[dict[str, Any]]] = {}
    for name in SPLITS:
        rows = splits[name]
        extra = filter_records(decontaminate(_cross_chunk(rows, by_id, lim, rng, mix)), by_id, near_dup)
        if yes_no_share:  # skipped at 0, so the filter counts in metrics/dataset.json stay as they were
            extra += _yes_no(rows, by_id, lim, yes_no_rng, yes_no_share, near_dup, decontaminate)
        out[name] = sorted(rows + extra, key=lambda r: (r["chunk_id"], TYPES.index(r["type"]), r["question"]))
    if report is not None:
        content = {r["chunk_id"] for r in singles}  # chunks with at least one fact that passed the filters
        report.update(
            chunks=len(chunks),
            candidates=n_candidates,
            filtered=dict(sorted(dropped.items())),
            content_chunks=len(content),
        )
    return _numbered(out)


def _swap_in(
    splits: dict[str, list[dict[str, Any]]],
    split_of: dict[str, str],
    drawn: list[dict[str, Any]],
    pool: list[dict[str, Any]],
    n: int,
    rng: random.Random,
) -> dict[str, list[dict[str, Any]]]:
    """n questions drawn from `pool` (``mix.missing_attribute``'s unanswerable questions) take the place of the
    last-drawn topic questions (`drawn`, in draw order). The split was made before, so every other question stays in
    its split, and each new question goes to its chunk's split (`split_of`: chunk id -> split)."""
    pool = list(pool)
    rng.shuffle(pool)
    picked = pool[:n]
    replaced = {id(r) for r in drawn[len(drawn) - len(picked) :]}
    return {
        name: [r for r in rows if id(r) not in replaced] + [q for q in picked if split_of[q["chunk_id"]] == name]
        for name, rows in splits.items()
    }


def _single_candidates(
    chunks: list[dict[str, Any]],
    cfg: Synthesize,
    lim: Limits,
    rng: random.Random,
    client: Any,
    dropped: Counter,
) -> tuple[list[dict[str, Any]], float]:
    """Single-chunk answerable candidates of the configured generator, and the grounding share they need."""
    generator = cfg.generator
    singles: list[dict[str, Any]] = []
    if generator == "llm":
        from tqdm import tqdm

        llm = cfg.llm  # a nested mapping: a plain dict
        min_share = float(P.require(llm, "grounding_min_share", (int, float), "synthesize.llm"))
        client = client or ChatClient(llm)
        n = P.require(llm, "questions_per_chunk", int, "synthesize.llm")
        for c in tqdm(chunks, desc="llm questions", unit="chunk"):
            singles += llm_candidates(c, client, n, dropped)
        return singles, min_share
    if generator == "rules":
        used_styles: Counter = Counter()
        for c in chunks:
            singles += rules_candidates(c, lim, rng, used_styles, dropped)
        return singles, 1.0
    raise UserError(f"params: synthesize.generator={generator!r} is not available (available: rules, llm)")


def _cap_per_chunk(
    singles: list[dict[str, Any]], per_chunk: int, rng: random.Random, dropped: Counter
) -> list[dict[str, Any]]:
    """At most `per_chunk` questions a chunk (seeded), keeping fact types varied: round-robin over facts."""
    capped: list[dict[str, Any]] = []
    for cid in sorted({r["chunk_id"] for r in singles}):
        mine = [r for r in singles if r["chunk_id"] == cid]
        rng.shuffle(mine)
        seen: Counter = Counter()
        rank = []
        for r in mine:
            rank.append(seen[r["fact"]])
            seen[r["fact"]] += 1
        ranked = [r for _, r in sorted(zip(rank, mine, strict=True), key=lambda x: x[0])]
        capped += ranked[:per_chunk]
        dropped["cap"] += len(ranked[per_chunk:])
    return capped


def _cross_chunk(
    rows: list[dict[str, Any]], by_id: dict[str, dict[str, Any]], lim: Limits, rng: random.Random, mix: dict
) -> list[dict[str, Any]]:
    """Comparison and multi-hop candidates over the chunks of one split, as many as `mix` asks per answerable question."""
    mine = [by_id[c] for c in sorted({r["chunk_id"] for r in rows})]
    n_ans = sum(r["answerable"] for r in rows)
    extra = comparison_questions(mine, lim, rng, round(float(mix.get("comparison", 0)) * n_ans))
    extra += multihop_questions(mine, lim, rng, round(float(mix.get("multihop", 0)) * n_ans))
    return extra


def _yes_no(
    rows: list[dict[str, Any]],
    by_id: dict[str, dict[str, Any]],
    lim: Limits,
    rng: random.Random,
    share: float,
    near_dup: float,
    decontaminate: Any,
) -> list[dict[str, Any]]:
    """Answerable yes/no questions ("...할 수 있나요?" -> "네, ..."), `share` per answerable single-chunk question
    of a split, each about a fact the split already asks (same chunk, fact and value), so it inherits that
    question's grounding and ambiguity checks and its chunk's split."""
    singles = [r for r in rows if r["answerable"] and len(r["chunk_ids"]) == 1]
    asked = {(r["chunk_id"], r["fact"], r["answer_short"]) for r in singles}
    chunk_ids = sorted({r["chunk_id"] for r in singles})
    candidates = [q for cid in chunk_ids for q in yes_no_candidates(by_id[cid], lim, rng)]
    candidates = [q for q in candidates if (q["chunk_id"], q["fact"], q["answer_short"]) in asked]
    candidates = filter_records(decontaminate(candidates), by_id, near_dup)
    questions: dict[str, list[str]] = {}
    for r in rows:
        questions.setdefault(r["chunk_id"], []).append(r["question"])
    # not a rewording of a question its chunk already has (the spec's own yes/no style, say)
    fresh = [
        q for q in candidates if not any(near_duplicate(q["question"], o, near_dup) for o in questions[q["chunk_id"]])
    ]
    return rng.sample(fresh, min(len(fresh), round(share * len(singles))))


def _numbered(out: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Ids q0001, q0002 ... across the splits, in split order."""
    n = 0
    for name in SPLITS:
        numbered = []
        for r in out[name]:
            n += 1
            numbered.append({"id": f"q{n:04d}", **r})
        out[name] = numbered
    return out


def rules_questions(chunks: list[dict[str, Any]], cfg: Synthesize, abstain: str) -> list[dict[str, Any]]:
    """Every question the rules generator keeps (all splits, in split order)."""
    splits = build_dataset(chunks, cfg.replace(generator="rules"), abstain)
    return [r for s in SPLITS for r in splits[s]]


def counts(splits: dict[str, list[dict]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, rows in splits.items():
        by_type = Counter(r["type"] for r in rows)
        by_style = Counter(r.get("style", "direct") for r in rows)
        out[name] = {
            "questions": len(rows),
            "answerable": sum(r["answerable"] for r in rows),
            "unanswerable": sum(not r["answerable"] for r in rows),
            "chunks": len({c for r in rows for c in r.get("chunk_ids", [r["chunk_id"]])}),
            "by_type": {t: by_type.get(t, 0) for t in TYPES},
            "by_style": {s: by_style.get(s, 0) for s in STYLES},
            "by_answer_kind": dict(sorted(Counter(r.get("answer_kind", "text") for r in rows).items())),
            "by_fact": dict(sorted(Counter(r["fact"] for r in rows).items())),
        }
    return out


def quality(splits: dict[str, list[dict]], report: dict[str, Any]) -> dict[str, Any]:
    """Yield and filter gates: answerable single-chunk questions per content chunk (a chunk with at
    least one fact that passed the filters), and how many candidates each filter dropped."""
    per_chunk = Counter(
        r["chunk_id"]
        for rows in splits.values()
        for r in rows
        if r["answerable"] and len(r.get("chunk_ids", [r["chunk_id"]])) == 1
    )
    n_content = max(1, report.get("content_chunks", len(per_chunk)))
    values = sorted(per_chunk.values()) or [0]
    return {
        "yield": {
            "content_chunks": report.get("content_chunks", len(per_chunk)),
            "answerable_single_chunk": sum(per_chunk.values()),
            "answerable_per_content_chunk": round(sum(per_chunk.values()) / n_content, 2),
            "chunks": report.get("chunks", 0),
            "answerable_per_chunk": round(sum(per_chunk.values()) / max(1, report.get("chunks", 0)), 2),
            "min_per_chunk": values[0],
            "median_per_chunk": values[len(values) // 2],
            "chunks_below_3": sum(v < 3 for v in per_chunk.values()),
        },
        "filters": {"candidates": report.get("candidates", 0), **report.get("filtered", {})},
    }
