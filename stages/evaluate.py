"""evaluate: answer a test set with RAG (retrieve → prompt → greedy generate) and score it.

    python -m stages.evaluate --model baseline --testset template --base models/base \
        --index data/index --qa data/qa --out data/eval/baseline/template \
        --metrics metrics/eval/baseline/template.json
    python -m stages.evaluate --model baseline_fewshot --testset natural \
        --natural data/sample/natural_questions.jsonl ...
    python -m stages.evaluate --model finetuned --adapter models/adapter ...

Three models, one code path, the same questions, retriever and decoding:

* ``baseline``: the base model, zero-shot (the prompt the fine-tune is trained on);
* ``baseline_fewshot``: the same base model with ``evaluate.fewshot_k`` solved TRAIN-split
  examples as earlier chat turns (answer sentence + ``[cNNN]`` citation, one abstention) —
  what the base model does with a good prompt, the comparison a reviewer asks for;
* ``finetuned``: the base model + LoRA adapter, zero-shot prompt.

Two test sets: ``template`` (the synthesized test split, ``data/qa/test.jsonl``) and
``natural`` (hand-written questions, ``evaluate.natural_questions``; gold chunks resolved
from their pages and key facts by ``stages.common.natural``). A missing natural file (or
the param set to '') skips that set cleanly: the metrics file says ``skipped`` and why.
Chunks stay in retrieval order. Outputs: predictions.jsonl (one record per question,
with per-example scores), fewshot.json (the example ids, few-shot model only) and the
metrics json (``stages.common.metrics.aggregate`` + model, testset, wall_seconds).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import time
from pathlib import Path
from typing import Any

from stages.common import judge as J
from stages.common import metrics as M
from stages.common import params as P
from stages.common.env import setup_env
from stages.common.errors import UserError, run_cli
from stages.common.generation import generate, generation_dtype, load_model, render_prompts
from stages.common.io import atomic_dir, dump_jsonl, read_jsonl, write_json
from stages.common.params_schema import Evaluate
from stages.common.prompting import (
    PromptLayout,
    build_fewshot_messages,
    build_messages,
    cited_ids,
    fewshot_examples,
    fewshot_turns,
)
from stages.common.records import gold_ids
from stages.common.retrieval import Retriever, needs_dense

log = logging.getLogger("evaluate")

MODELS = ("baseline", "baseline_fewshot", "finetuned")
TESTSETS = ("template", "natural")
QUESTION_KEYS = ("id", "question", "answer", "answerable", "type", "chunk_id")
NATURAL_KEYS = ("id", "question", "answer", "answerable", "type", "gold_pages")
# Fields of the question copied into every prediction record (docs/data-contracts.md).
GOLD_COPY = {
    "gold_answer_short": ("answer_short", ""),
    "gold_key_facts": ("key_facts", []),
    "answer_kind": ("answer_kind", None),
    "style": ("style", None),
}


# ---------------------------------------------------------------- inputs
def _validate(questions: list[dict[str, Any]], path: Path, keys: tuple[str, ...]) -> None:
    for n, q in enumerate(questions, start=1):
        missing = [k for k in keys if k not in q]
        if missing:
            raise UserError(f"{path}: record {n} lacks {', '.join(missing)} (see docs/data-contracts.md)")


def load_questions(qa_dir: Path, limit: int, split: str = "test") -> list[dict[str, Any]]:
    """The template test set: the synthesized test split (``validation`` when tuning: scripts/tune_on_validation.py)."""
    path = qa_dir / f"{split}.jsonl"
    if not path.is_file():
        raise UserError(f"{path}: not found (run the synthesize stage first)")
    questions = read_jsonl(path)
    if not questions:
        raise UserError(f"{path}: empty {split} split")
    _validate(questions, path, QUESTION_KEYS)
    return questions[:limit] if limit > 0 else questions


def natural_skip_reason(path: Path | None) -> str | None:
    """Why the natural test set is skipped (None = it runs): param empty, or the file absent (another brochure)."""
    if path is None or str(path) in ("", "."):
        return "evaluate.natural_questions is empty: no hand-written test set for this brochure"
    if not path.is_file():
        return f"{path}: not found (hand-written questions exist for the sample brochure only)"
    return None


def natural_mismatch_reason(
    path: Path, questions: list[dict[str, Any]], chunks: list[dict[str, Any]], min_share: float
) -> str | None:
    """Why the natural set does not belong to this brochure (None = it does): too few of its answerable
    questions find a key fact on their gold pages (``evaluate.natural_min_fact_share``)."""
    natural = importlib.import_module("stages.common.natural")
    found, answerable = natural.found_on_gold_pages(questions, chunks)
    if not answerable or found / answerable >= min_share:
        return None
    return (
        f"{path}: only {found} of {answerable} answerable questions find a key fact on their gold pages in this "
        f"brochure (evaluate.natural_min_fact_share {min_share}): written for another brochure"
    )


def load_natural_questions(path: Path, chunks: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """Hand-written questions with their gold chunks resolved against the index's chunks.

    `stages.common.natural` (load_natural, resolve_gold_chunks) is imported here, not at
    the top, so the template test set runs without it.
    """
    natural = importlib.import_module("stages.common.natural")
    records = natural.load_natural(path)
    if not records:
        raise UserError(f"{path}: no questions")
    _validate(records, path, NATURAL_KEYS)
    out = []
    unresolved = 0
    for r in records:
        golds = list(natural.resolve_gold_chunks(r, chunks)) if r["answerable"] else []
        if r["answerable"] and not golds:
            unresolved += 1
        out.append({**r, "chunk_id": golds[0] if golds else None, "chunk_ids": golds})
    if unresolved:
        # Scored as "gold not retrieved": the record stays, so every model answers the same questions.
        log.warning("%s: %d answerable questions have no resolvable gold chunk", path, unresolved)
    return out[:limit] if limit > 0 else out


def retrieve(retriever: Retriever, questions: list[dict[str, Any]], k: int, method: str) -> list[list[dict[str, Any]]]:
    ranked = retriever.rank([q["question"] for q in questions], k, method)
    return [[retriever.by_id[cid] for cid in ids] for ids in ranked]


# ---------------------------------------------------------------- prompts
def select_fewshot(
    model_name: str, qa_dir: Path, chunks_by_id: dict[str, dict[str, Any]], params: dict[str, Any]
) -> list[dict[str, Any]]:
    """The few-shot model's solved examples (TRAIN split only); [] for the zero-shot models."""
    if model_name != "baseline_fewshot":
        return []
    ecfg = params["evaluate"]
    k = ecfg.fewshot_k
    if k < 1:
        raise UserError("params: evaluate.fewshot_k must be ≥ 1 for the baseline_fewshot model")
    path = qa_dir / "train.jsonl"
    if not path.is_file():
        raise UserError(f"{path}: not found (few-shot examples come from the train split)")
    examples = fewshot_examples(
        read_jsonl(path),
        chunks_by_id,
        k,
        ecfg.fewshot_chunk_chars,
        params["prompt"].abstain,
        ecfg.fewshot_seed,
    )
    if len(examples) < k:
        raise UserError(f"{path}: only {len(examples)} usable few-shot examples for evaluate.fewshot_k={k}")
    return examples


def prompt_messages(
    questions: list[dict[str, Any]],
    contexts: list[list[dict[str, Any]]],
    layout: PromptLayout,
    examples: list[dict[str, Any]],
    example_chars: int,
) -> list[list[dict[str, str]]]:
    """Chat messages per question: zero-shot (`build_messages`, as sft trains) or with the example turns, whose
    chunks are cut to `example_chars`."""
    pairs = list(zip(questions, contexts, strict=True))
    if not examples:
        return [build_messages(q["question"], c, layout) for q, c in pairs]
    turns = fewshot_turns(examples, layout.with_max_chars(example_chars))
    return [build_fewshot_messages(q["question"], c, layout, turns) for q, c in pairs]


# ---------------------------------------------------------------- predictions
def make_predictions(
    questions: list[dict[str, Any]],
    contexts: list[list[dict[str, Any]]],
    generations: list[dict[str, Any]],
    score_cfg: M.ScoreConfig,
    layout: PromptLayout,
    model_name: str = "baseline",
    testset: str = "template",
) -> list[dict[str, Any]]:
    preds = []
    for q, chunks, g in zip(questions, contexts, generations, strict=True):
        pred = {
            "id": q["id"],
            "testset": testset,
            "model": model_name,
            "question": q["question"],
            "type": q["type"],
            "fact": q.get("fact"),
            "answerable": bool(q["answerable"]),
            "gold_answer": q["answer"],
            **{dst: q.get(src, default) for dst, (src, default) in GOLD_COPY.items()},
            "gold_chunk_id": q.get("chunk_id"),
            "gold_chunk_ids": gold_ids(q),
            "retrieved_ids": [c["chunk_id"] for c in chunks],
            "answer": g["answer"],
            "cited_ids": cited_ids(g["answer"]),
            "latency_s": g["latency_s"],
            "new_tokens": g["new_tokens"],
            "prompt_tokens": g["prompt_tokens"],
            "hit_eos": g["hit_eos"],
        }
        if "gold_pages" in q:
            pred["gold_pages"] = list(q["gold_pages"])
        pred["scores"] = M.score_example(pred, layout.context(chunks), score_cfg)
        preds.append(pred)
    return preds


def run(
    questions: list[dict[str, Any]],
    retriever: Retriever,
    model,
    tokenizer,
    params: dict[str, Any],
    examples: list[dict[str, Any]] | None = None,
    model_name: str = "baseline",
    testset: str = "template",
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Retrieve, prompt, generate and score; returns (predictions, metrics). Pure apart from the model."""
    ecfg, rcfg, pcfg = params["evaluate"], params["retrieval"], params["prompt"]
    k = rcfg.top_k
    max_new = ecfg.max_new_tokens
    judge_cfg = judge_config(ecfg)  # checked before generating: a bad judge setup fails in seconds, not after
    contexts = retrieve(retriever, questions, k, rcfg.method)
    example_chars = ecfg.fewshot_chunk_chars if examples else pcfg.max_context_chars
    layout = PromptLayout.from_params(pcfg)
    messages = prompt_messages(questions, contexts, layout, examples or [], example_chars)
    prompts = render_prompts(tokenizer, messages)
    stop_at_line_end = ecfg.stop_at_line_end
    generations = generate(
        model,
        tokenizer,
        prompts,
        max_new,
        ecfg.batch_size,
        ecfg.prefill_tokens,
        stop_at_line_end,
        ecfg.min_shared_prefix,
    )
    preds = make_predictions(
        questions, contexts, generations, M.ScoreConfig.from_params(ecfg, pcfg), layout, model_name, testset
    )
    if judge_cfg is not None:
        add_judge_verdicts(preds, J.judge_predictions(preds, judge_cfg))
    report = M.aggregate([p["scores"] for p in preds], preds)
    return preds, report


def judge_config(ecfg: Evaluate) -> J.JudgeConfig | None:
    """The LLM judge's settings when evaluate.judge.enabled, else None; the API key must be in the env."""
    if not J.enabled(ecfg):
        return None
    cfg = J.JudgeConfig.from_params(ecfg.judge)
    cfg.api_key()
    return cfg


def add_judge_verdicts(preds: list[dict[str, Any]], verdicts: list[dict[str, Any]]) -> None:
    """Store each verdict with its prediction; `scores.judge_correct` feeds the aggregates and the bootstrap."""
    for pred, verdict in zip(preds, verdicts, strict=True):
        pred["judge"] = verdict
        pred["scores"]["judge_correct"] = None if verdict["correct"] is None else bool(verdict["correct"])


def run_info(model_name: str, testset: str, preds: list[dict[str, Any]], examples: list[dict[str, Any]]) -> dict:
    """What the metrics file adds to the aggregates: which run this is and what its prompts cost."""
    tokens = [int(p.get("prompt_tokens") or 0) for p in preds]
    return {
        "model": model_name,
        "testset": testset,
        "skipped": False,
        "fewshot_k": len(examples),
        "prompt_tokens_mean": round(sum(tokens) / len(tokens), 1) if tokens else None,
        "prompt_tokens_max": max(tokens) if tokens else None,
        "new_tokens_mean": round(sum(int(p.get("new_tokens") or 0) for p in preds) / len(preds), 1) if preds else None,
    }


def write_skipped(out: Path, metrics: Path, model_name: str, testset: str, reason: str) -> None:
    """A skipped test set still writes its declared outputs (empty predictions, a metrics file saying why)."""
    with atomic_dir(out) as tmp:
        dump_jsonl(tmp / "predictions.jsonl", [])
    write_json(metrics, {"model": model_name, "testset": testset, "skipped": True, "reason": reason, "n": 0})
    log.info("%s/%s: skipped — %s", model_name, testset, reason)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", "--name", dest="model", required=True, choices=MODELS, help="which model to run")
    ap.add_argument("--testset", choices=TESTSETS, default="template")
    ap.add_argument("--base", type=Path, required=True, help="base model folder (prepare_model)")
    ap.add_argument("--adapter", type=Path, default=None, help="LoRA adapter folder (train); finetuned only")
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--qa", type=Path, required=True, help="QA folder: test.jsonl (template), train.jsonl (few-shot)")
    ap.add_argument("--natural", type=Path, default=None, help="hand-written questions (natural test set)")
    ap.add_argument("--out", type=Path, required=True, help="folder for predictions.jsonl")
    ap.add_argument("--metrics", type=Path, required=True, help="metrics json to write")
    ap.add_argument("--params", type=Path, default=P.DEFAULT_PARAMS)
    ap.add_argument(
        "--split",
        choices=("test", "validation"),
        default="test",
        help="template questions from this split: validation is for tuning choices, never reported as test",
    )
    args = ap.parse_args(argv)
    if (args.adapter is not None) != (args.model == "finetuned"):
        raise UserError("--adapter is required for --model finetuned and only for it")
    return args


def log_summary(model_name: str, testset: str, info: dict[str, Any], report: dict[str, Any]) -> None:
    a = report["answer"]
    log.info(
        "%s/%s: n=%d em=%s f1_char=%s abstain_f1=%s faithfulness=%s format_fail=%s prompt_tokens=%s wall=%.0f s",
        model_name,
        testset,
        report["n"],
        a.get("em"),
        a.get("f1_char"),
        report["abstention"]["f1"],
        report.get("faithfulness"),
        report["format"]["fail_rate"],
        info["prompt_tokens_mean"],
        info["wall_seconds"],
    )
    if "judge" in report:
        j = report["judge"]
        log.info(
            "%s: judge correct=%s agreement with deterministic=%s kappa=%s (n=%d)",
            model_name,
            j.get("correct"),
            j.get("agreement"),
            j.get("kappa"),
            j.get("n_judged", 0),
        )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    t_start = time.perf_counter()
    params = P.load(args.params, "evaluate", "retrieval", "prompt", "machine")
    setup_env(offline=params["machine"].offline)
    ecfg = params["evaluate"]
    device, dtype, limit, backend, attention = ecfg.device, ecfg.dtype, ecfg.limit, ecfg.backend, ecfg.attention

    if args.testset == "natural":
        reason = natural_skip_reason(args.natural)
        if reason:  # before loading anything: a skipped set costs nothing
            write_skipped(args.out, args.metrics, args.model, args.testset, reason)
            return
    # The template questions are checked before the (slower) index loads; natural ones need its chunks.
    questions = load_questions(args.qa, limit, args.split) if args.testset == "template" else []
    retriever = Retriever.load(args.index, with_dense=needs_dense(params["retrieval"].method))
    if args.testset == "natural":
        questions = load_natural_questions(args.natural, retriever.chunks, limit)
        reason = natural_mismatch_reason(args.natural, questions, retriever.chunks, ecfg.natural_min_fact_share)
        if reason:  # a set written for another brochure: its "gold chunks" would be whatever sits on those pages
            log.warning(reason)
            write_skipped(args.out, args.metrics, args.model, args.testset, reason)
            return
    examples = select_fewshot(args.model, args.qa, retriever.by_id, params)
    t0 = time.perf_counter()
    model, tokenizer = load_model(args.base, args.adapter, device, dtype, backend=backend, attention=attention)
    log.info(
        "%s/%s: model loaded in %.1f s (%s, %s, %s%s)",
        args.model,
        args.testset,
        time.perf_counter() - t0,
        backend,
        device,
        dtype,
        ", with adapter" if args.adapter else f", {len(examples)}-shot" if examples else ", zero-shot",
    )
    preds, report = run(questions, retriever, model, tokenizer, params, examples, args.model, args.testset)

    with atomic_dir(args.out) as tmp:
        dump_jsonl(tmp / "predictions.jsonl", preds)
        if examples:
            write_json(tmp / "fewshot.json", [{k: ex[k] for k in ("id", "question", "answer")} for ex in examples])
    # wall_seconds: the whole run (index + model load + generation + scoring) — what the pipeline budget pays.
    dtype_used, dtype_reason = generation_dtype(dtype, device)
    info = {
        **run_info(args.model, args.testset, preds, examples),
        "dtype": dtype_used,  # what `auto` resolved to on this machine, and why (issue 14: CPUs differ)
        "dtype_reason": dtype_reason,
        "wall_seconds": round(time.perf_counter() - t_start, 1),
    }
    write_json(args.metrics, {**info, **report})
    log_summary(args.model, args.testset, info, report)


if __name__ == "__main__":
    run_cli(main)
