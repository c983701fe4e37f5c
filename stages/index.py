"""index: chunks -> BM25 (Kiwi morphemes) + dense FAISS index(es); retrieval metrics on the test split.

    python -m stages.index --chunks data/chunks --qa data/qa --retriever-model models/retriever \
        --out data/index --metrics metrics/retrieval.json --plot plots/retrieval_recall.csv

Every retriever variant (bm25, dense, hybrid, and dense_ft/hybrid_ft/reranked when
the fine-tuned embedder / cross-encoder exist) is measured on the test split's
answerable questions; variants that are off get a "disabled: why" entry.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import time
from pathlib import Path
from typing import Any

from stages.common import params as P
from stages.common.env import check_machine, setup_env
from stages.common.errors import UserError, run_cli
from stages.common.io import atomic_dir, read_json, read_jsonl, write_json, write_text
from stages.common.retrieval import (
    METHODS,
    RetrievalOptions,
    Retriever,
    gold_ids,
    load_embedder,
    load_reranker,
    ranking_metrics,
)

log = logging.getLogger("index")


def evaluate_retrievers(
    retriever: Retriever, questions: list[dict[str, Any]], ks: list[int]
) -> dict[str, dict[str, Any]]:
    """Ranking metrics per method on answerable questions (unanswerable ones have no gold chunk)."""
    answerable = [q for q in questions if q["answerable"]]
    if not answerable:
        raise UserError("index: the test split has no answerable questions to measure retrieval on")
    texts = [q["question"] for q in answerable]
    gold = [gold_ids(q) for q in answerable]
    out: dict[str, Any] = {}
    for method, why_not in retriever.available_methods().items():
        if why_not:
            out[method] = {"status": why_not}
            continue
        retriever.rank(texts[:1], 1, method)  # load lazy models outside the timed run
        start = time.perf_counter()
        ranked = retriever.rank(texts, max(ks), method)
        elapsed = time.perf_counter() - start
        out[method] = {
            **ranking_metrics(ranked, gold, ks),
            "latency_ms_per_query": round(1000 * elapsed / len(texts), 2),
        }
    out["n_questions"] = len(answerable)
    return out


def measured_methods(metrics: dict[str, Any]) -> list[str]:
    return [m for m in METHODS if isinstance(metrics.get(m), dict) and "mrr" in metrics[m]]


def recall_curve_csv(metrics: dict[str, Any], ks: list[int]) -> str:
    """One column per variant; disabled variants' columns stay empty so the plot's columns are fixed."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["k", *METHODS])
    measured = set(measured_methods(metrics))
    for k in ks:
        writer.writerow([k, *[round(metrics[m][f"recall@{k}"], 4) if m in measured else "" for m in METHODS]])
    return buf.getvalue()


def fine_tuned_spec(model_dir: Path | None) -> dict[str, Any] | None:
    """The train_retriever output's embedder spec, or None when that stage is disabled."""
    if model_dir is None:
        return None
    info_path = model_dir / "info.json"
    if not info_path.is_file():
        raise UserError(f"{info_path}: not found (run the train_retriever stage first)")
    info = read_json(info_path)
    if not info.get("enabled"):
        return None
    return {
        "embedder": str(model_dir / "model"),
        "query_prefix": info.get("query_prefix", ""),
        "passage_prefix": info.get("passage_prefix", ""),
        "device": info.get("device"),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=Path, required=True)
    ap.add_argument("--qa", type=Path, required=True, help="synthesize output (test.jsonl is used for metrics)")
    ap.add_argument("--retriever-model", type=Path, help="train_retriever output (adds dense_ft / hybrid_ft)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--metrics", type=Path, required=True)
    ap.add_argument("--plot", type=Path, required=True, help="CSV of recall@k per method")
    ap.add_argument("--params", type=Path, default=P.DEFAULT_PARAMS)
    args = ap.parse_args(argv)

    params = P.load(args.params, "index", "retrieval", "machine")
    setup_env(offline=params["machine"].offline)
    check_machine({"name": params["profile"], **params["machine"]})
    spec, rcfg = params["index"], params["retrieval"]
    ks = sorted(rcfg.eval_k)
    options = RetrievalOptions.from_params(rcfg)

    for path, stage in ((args.chunks / "chunks.jsonl", "chunk"), (args.qa / "test.jsonl", "synthesize")):
        if not path.is_file():
            raise UserError(f"{path}: not found (run the {stage} stage first)")
    chunks = read_jsonl(args.chunks / "chunks.jsonl")
    test = read_jsonl(args.qa / "test.jsonl")
    dense_spec = {k: v for k, v in spec.items() if k in ("embedder", "query_prefix", "passage_prefix", "device")}
    ft_spec = fine_tuned_spec(args.retriever_model)
    reranker_spec = {k: v for k, v in spec.items() if k.startswith("reranker") or k == "device"}
    start = time.perf_counter()
    retriever = Retriever.build(
        chunks,
        load_embedder(dense_spec),
        rcfg.rrf_k,
        rcfg.fusion_depth,
        options=options,
        ft_embedder=load_embedder(ft_spec) if ft_spec else None,
        reranker=load_reranker(reranker_spec) if spec.get("reranker") else None,
    )
    build_s = time.perf_counter() - start
    metrics: dict[str, Any] = evaluate_retrievers(retriever, test, ks)
    metrics["embedder"] = spec.embedder
    metrics["embedder_ft"] = ft_spec["embedder"] if ft_spec else None
    metrics["reranker"] = spec.get("reranker") or None
    metrics["n_chunks"] = len(chunks)
    metrics["build_seconds"] = round(build_s, 2)
    method = rcfg.method
    why_not = retriever.available_methods().get(method, "unknown method")
    if why_not:
        raise UserError(f"params: retrieval.method={method} cannot be served by this index ({why_not})")

    with atomic_dir(args.out) as tmp:
        retriever.save(tmp, dense_spec, ft_spec, reranker_spec)
    write_json(args.metrics, metrics)
    write_text(args.plot, recall_curve_csv(metrics, ks))
    k5 = f"recall@{max([k for k in ks if k <= 5] or ks[:1])}"
    log.info(
        "%d chunks indexed; %s",
        len(chunks),
        ", ".join(f"{m} {k5}={metrics[m][k5]:.3f} mrr={metrics[m]['mrr']:.3f}" for m in measured_methods(metrics)),
    )


if __name__ == "__main__":
    run_cli(main)
