"""sft: QA pairs -> chat-format RAG training examples (retrieved context, distractors, abstention).

For each question the context is what the real retriever returns (top-k). Following
RAFT / Finetune-RAG, the model must learn both to use the gold chunk among hard
distractors and to abstain when it is missing:

* answerable, gold kept (share `sft.gold_share`): gold forced into the top-k if the
  retriever missed it; target = answer + citation of the gold chunk(s);
* answerable, gold removed (the rest): only distractors; target = abstention phrase;

Comparison and multi-hop questions need several chunks (`chunk_ids`): all of them
count as gold, are kept or removed together, and are all cited.
* unanswerable: retrieved chunks as they are; target = abstention phrase.

Chunks are shuffled inside the prompt so the gold's position carries no signal.

    python -m stages.sft --qa data/qa --index data/index --out data/sft
"""

from __future__ import annotations

import argparse
import logging
import random
from pathlib import Path
from typing import Any

from tqdm import tqdm

from stages.common import params as P
from stages.common.env import setup_env
from stages.common.errors import UserError, run_cli
from stages.common.io import atomic_dir, dump_jsonl, read_jsonl
from stages.common.prompting import build_messages, target_answer
from stages.common.retrieval import Retriever

log = logging.getLogger("sft")


def gold_ids(question: dict[str, Any]) -> list[str]:
    """Every chunk the answer needs: `chunk_ids` for cross-chunk questions, else the one `chunk_id`."""
    return list(question.get("chunk_ids") or [question["chunk_id"]])


def make_context(
    question: dict[str, Any], retrieved: list[str], k: int, keep_gold: bool, distractor_pool: list[str]
) -> list[str]:
    """Chunk ids for the prompt: top-k retrieved, with the gold chunk(s) forced in or taken out."""
    if not question["answerable"]:
        return retrieved[:k]
    golds = gold_ids(question)
    others = [cid for cid in retrieved if cid not in golds] + [
        c for c in distractor_pool if c not in golds and c not in retrieved
    ]
    if keep_gold:
        return [*golds, *others[: max(k - len(golds), 0)]]
    return others[:k]


def build_example(
    question: dict[str, Any],
    context_ids: list[str],
    by_id: dict[str, dict[str, Any]],
    prompt_cfg: dict[str, Any],
    max_chars: int,
    rng: random.Random,
) -> dict[str, Any]:
    ids = list(context_ids)
    rng.shuffle(ids)
    golds = gold_ids(question)
    gold_in = question["answerable"] and all(g in ids for g in golds)
    answer = target_answer(question["answer"], golds) if gold_in else prompt_cfg["abstain"]
    messages = build_messages(question["question"], [by_id[c] for c in ids], prompt_cfg["system"], max_chars)
    return {
        "messages": [*messages, {"role": "assistant", "content": answer}],
        "meta": {
            "qa_id": question["id"],
            "type": question["type"],
            "gold_chunk_id": question["chunk_id"],
            "gold_chunk_ids": golds,
            "context_ids": ids,
            "gold_in_context": gold_in,
            "target": "answer" if gold_in else "abstain",
        },
    }


def build_split(
    questions: list[dict[str, Any]],
    retriever: Retriever,
    cfg: dict[str, Any],
    rcfg: dict[str, Any],
    prompt_cfg: dict[str, Any],
    seed_offset: int = 0,
) -> list[dict[str, Any]]:
    rng = random.Random(P.require(cfg, "seed", int, "sft") + seed_offset)
    gold_share = float(P.require(cfg, "gold_share", (int, float), "sft"))
    max_chars = P.require(cfg, "max_context_chars", int, "sft")
    k = P.require(rcfg, "top_k", int, "retrieval")
    method = rcfg["method"]
    ranked = retriever.rank([q["question"] for q in questions], k + 1, method) if questions else []
    all_ids = sorted(retriever.by_id)
    examples = []
    for q, retrieved in tqdm(list(zip(questions, ranked, strict=True)), desc="sft", unit="q", leave=False):
        keep_gold = rng.random() < gold_share
        pool = rng.sample(all_ids, min(len(all_ids), k + 1))
        ids = make_context(q, retrieved, k, keep_gold, pool)
        examples.append(build_example(q, ids, retriever.by_id, prompt_cfg, max_chars, rng))
    return examples


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qa", type=Path, required=True)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--params", type=Path, default=P.DEFAULT_PARAMS)
    args = ap.parse_args(argv)

    params = P.load(args.params, "sft", "retrieval", "prompt", "machine")
    setup_env(offline=params["machine"].get("offline", True))
    retriever = Retriever.load(args.index, with_dense=params["retrieval"]["method"] != "bm25")
    out: dict[str, list[dict[str, Any]]] = {}
    for offset, split in enumerate(("train", "validation")):
        path = args.qa / f"{split}.jsonl"
        if not path.is_file():
            raise UserError(f"{path}: not found (run the synthesize stage first)")
        questions = read_jsonl(path)
        if split == "train" and not questions:
            raise UserError(f"{path}: empty training split")
        out[split] = build_split(questions, retriever, params["sft"], params["retrieval"], params["prompt"], offset)
    with atomic_dir(args.out) as tmp:
        for split, rows in out.items():
            dump_jsonl(tmp / f"{split}.jsonl", rows)
    for split, rows in out.items():
        abstain = sum(r["meta"]["target"] == "abstain" for r in rows)
        log.info("%s: %d examples (%d abstention targets)", split, len(rows), abstain)


if __name__ == "__main__":
    run_cli(main)
