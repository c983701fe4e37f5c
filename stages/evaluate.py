"""evaluate: answer the test split with RAG (retrieve → prompt → greedy generate) and score it.

    python -m stages.evaluate --name baseline  --base models/base --index data/index --qa data/qa \
        --out data/eval/baseline --metrics metrics/eval/baseline.json
    python -m stages.evaluate --name finetuned --base models/base --adapter models/adapter ...

Baseline and fine-tuned runs share everything — retriever, prompt (built by
stages.common.prompting, the code the sft stage trains on), decoding — except
the LoRA adapter: merged into the base weights (transformers backend) or served
by vLLM's LoRARequest (vllm backend, CUDA only). An optional LLM judge
(stages.common.judge) adds a correctness verdict per example.
Chunks stay in retrieval order (sft shuffles them; at test time there is no
gold to hide). Outputs: predictions.jsonl (one record per question, with
per-example scores) and the metrics json (stages.common.metrics.aggregate).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from stages.common import judge as J
from stages.common import metrics as M
from stages.common import params as P
from stages.common.env import setup_env
from stages.common.errors import UserError, run_cli
from stages.common.generation import build_prompts, generate, load_model
from stages.common.io import atomic_dir, dump_jsonl, read_jsonl, write_json
from stages.common.prompting import cited_ids, format_chunk
from stages.common.retrieval import Retriever

log = logging.getLogger("evaluate")

QUESTION_KEYS = ("id", "question", "answer", "answerable", "type", "chunk_id")


# ---------------------------------------------------------------- inputs
def load_questions(qa_dir: Path, limit: int) -> list[dict[str, Any]]:
    path = qa_dir / "test.jsonl"
    if not path.is_file():
        raise UserError(f"{path}: not found (run the synthesize stage first)")
    questions = read_jsonl(path)
    if not questions:
        raise UserError(f"{path}: empty test split")
    for n, q in enumerate(questions, start=1):
        missing = [k for k in QUESTION_KEYS if k not in q]
        if missing:
            raise UserError(f"{path}: record {n} lacks {', '.join(missing)} (see docs/data-contracts.md)")
    return questions[:limit] if limit > 0 else questions


def retrieve(retriever: Retriever, questions: list[dict[str, Any]], k: int, method: str) -> list[list[dict[str, Any]]]:
    ranked = retriever.rank([q["question"] for q in questions], k, method)
    return [[retriever.by_id[cid] for cid in ids] for ids in ranked]


def context_text(chunks: list[dict[str, Any]], max_chars: int) -> str:
    """The context exactly as the prompt shows it (what an answer may rely on)."""
    return "\n\n".join(format_chunk(c, max_chars) for c in chunks)


# ---------------------------------------------------------------- predictions
def make_predictions(
    questions: list[dict[str, Any]],
    contexts: list[list[dict[str, Any]]],
    generations: list[dict[str, Any]],
    score_cfg: M.ScoreConfig,
    max_chars: int,
) -> list[dict[str, Any]]:
    preds = []
    for q, chunks, g in zip(questions, contexts, generations, strict=True):
        pred = {
            "id": q["id"],
            "question": q["question"],
            "type": q["type"],
            "fact": q.get("fact"),
            "answerable": bool(q["answerable"]),
            "gold_answer": q["answer"],
            "gold_chunk_id": q["chunk_id"],
            "gold_chunk_ids": list(q.get("chunk_ids") or [q["chunk_id"]]),
            "retrieved_ids": [c["chunk_id"] for c in chunks],
            "answer": g["answer"],
            "cited_ids": cited_ids(g["answer"]),
            "latency_s": g["latency_s"],
            "new_tokens": g["new_tokens"],
            "prompt_tokens": g["prompt_tokens"],
            "hit_eos": g["hit_eos"],
        }
        pred["scores"] = M.score_example(pred, context_text(chunks, max_chars), score_cfg)
        preds.append(pred)
    return preds


def run(
    questions: list[dict[str, Any]],
    retriever: Retriever,
    model,
    tokenizer,
    params: dict[str, Any],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Retrieve, prompt, generate and score; returns (predictions, metrics). Pure apart from the model."""
    ecfg, rcfg, pcfg, scfg = params["evaluate"], params["retrieval"], params["prompt"], params["sft"]
    k = P.require(rcfg, "top_k", int, "retrieval")
    max_chars = P.require(scfg, "max_context_chars", int, "sft")
    max_new = P.require(ecfg, "max_new_tokens", int, "evaluate")
    batch_size = P.require(ecfg, "batch_size", int, "evaluate")
    if max_new < 1 or batch_size < 1:
        raise UserError("params: evaluate.max_new_tokens and evaluate.batch_size must be ≥ 1")
    judge_cfg = judge_config(ecfg)  # checked before generating: a bad judge setup fails in seconds, not after
    contexts = retrieve(retriever, questions, k, rcfg["method"])
    prompts = build_prompts(tokenizer, questions, contexts, pcfg["system"], max_chars)
    generations = generate(model, tokenizer, prompts, max_new, batch_size)
    preds = make_predictions(questions, contexts, generations, M.ScoreConfig.from_params(ecfg, pcfg), max_chars)
    if judge_cfg is not None:
        add_judge_verdicts(preds, J.judge_predictions(preds, judge_cfg))
    report = M.aggregate([p["scores"] for p in preds], preds)
    return preds, report


def judge_config(ecfg: dict[str, Any]) -> J.JudgeConfig | None:
    """The LLM judge's settings when evaluate.judge.enabled, else None; the API key must be in the env."""
    if not J.enabled(ecfg):
        return None
    cfg = J.JudgeConfig.from_params(ecfg["judge"])
    cfg.api_key()
    return cfg


def add_judge_verdicts(preds: list[dict[str, Any]], verdicts: list[dict[str, Any]]) -> None:
    """Store each verdict with its prediction; `scores.judge_correct` feeds the aggregates and the bootstrap."""
    for pred, verdict in zip(preds, verdicts, strict=True):
        pred["judge"] = verdict
        pred["scores"]["judge_correct"] = None if verdict["correct"] is None else bool(verdict["correct"])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True, help="run name: baseline | finetuned")
    ap.add_argument("--base", type=Path, required=True, help="base model folder (prepare_model)")
    ap.add_argument("--adapter", type=Path, default=None, help="LoRA adapter folder (train); omit for the baseline")
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--qa", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="folder for predictions.jsonl")
    ap.add_argument("--metrics", type=Path, required=True, help="metrics json to write")
    ap.add_argument("--params", type=Path, default=P.DEFAULT_PARAMS)
    args = ap.parse_args(argv)

    params = P.load(args.params, "evaluate", "retrieval", "prompt", "sft", "machine")
    setup_env(offline=params["machine"].get("offline", True))
    ecfg = params["evaluate"]
    device = P.require(ecfg, "device", str, "evaluate")
    dtype = P.require(ecfg, "dtype", str, "evaluate")
    limit = P.require(ecfg, "limit", int, "evaluate")
    backend = P.require(ecfg, "backend", str, "evaluate")

    questions = load_questions(args.qa, limit)
    retriever = Retriever.load(args.index, with_dense=params["retrieval"]["method"] != "bm25")
    t0 = time.perf_counter()
    model, tokenizer = load_model(args.base, args.adapter, device, dtype, backend=backend)
    log.info(
        "%s: model loaded in %.1f s (%s, %s, %s%s)",
        args.name,
        time.perf_counter() - t0,
        backend,
        device,
        dtype,
        ", with adapter" if args.adapter else "",
    )
    preds, report = run(questions, retriever, model, tokenizer, params)

    with atomic_dir(args.out) as tmp:
        dump_jsonl(tmp / "predictions.jsonl", preds)
    write_json(args.metrics, report)
    a = report["answer"]
    log.info(
        "%s: n=%d em=%s f1_char=%s abstain_f1=%s faithfulness=%s format_fail=%s",
        args.name,
        report["n"],
        a["em"],
        a["f1_char"],
        report["abstention"]["f1"],
        report["faithfulness"],
        report["format"]["fail_rate"],
    )
    if "judge" in report:
        j = report["judge"]
        log.info(
            "%s: judge correct=%s agreement with deterministic=%s kappa=%s (n=%d)",
            args.name,
            j.get("correct"),
            j.get("agreement"),
            j.get("kappa"),
            j.get("n_judged", 0),
        )


if __name__ == "__main__":
    run_cli(main)
