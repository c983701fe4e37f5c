"""index: chunks -> BM25 (Kiwi morphemes) + dense FAISS index; retrieval metrics on the test split.

    python -m stages.index --chunks data/chunks --qa data/qa --out data/index \
        --metrics metrics/retrieval.json --plot plots/retrieval_recall.csv
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
from stages.common.io import atomic_dir, read_jsonl, write_json, write_text
from stages.common.retrieval import METHODS, Retriever, load_embedder, ranking_metrics

log = logging.getLogger("index")


def evaluate_retrievers(
    retriever: Retriever, questions: list[dict[str, Any]], ks: list[int]
) -> dict[str, dict[str, float]]:
    """Ranking metrics per method on answerable questions (unanswerable ones have no gold chunk)."""
    answerable = [q for q in questions if q["answerable"]]
    if not answerable:
        raise UserError("index: the test split has no answerable questions to measure retrieval on")
    texts = [q["question"] for q in answerable]
    gold = [q["chunk_id"] for q in answerable]
    out: dict[str, dict[str, float]] = {}
    for method in METHODS:
        start = time.perf_counter()
        ranked = retriever.rank(texts, max(ks), method)
        elapsed = time.perf_counter() - start
        out[method] = {
            **ranking_metrics(ranked, gold, ks),
            "latency_ms_per_query": round(1000 * elapsed / len(texts), 2),
        }
    out["n_questions"] = len(answerable)  # type: ignore[assignment]
    return out


def recall_curve_csv(metrics: dict[str, Any], ks: list[int]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["k", *METHODS])
    for k in ks:
        writer.writerow([k, *[round(metrics[m][f"recall@{k}"], 4) for m in METHODS]])
    return buf.getvalue()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=Path, required=True)
    ap.add_argument("--qa", type=Path, required=True, help="synthesize output (test.jsonl is used for metrics)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--metrics", type=Path, required=True)
    ap.add_argument("--plot", type=Path, required=True, help="CSV of recall@k per method")
    ap.add_argument("--params", type=Path, default=P.DEFAULT_PARAMS)
    args = ap.parse_args(argv)

    params = P.load(args.params, "index", "retrieval", "machine")
    setup_env(offline=params["machine"].get("offline", True))
    check_machine({"name": params["profile"], **params["machine"]})
    spec, rcfg = params["index"], params["retrieval"]
    ks = sorted(P.require(rcfg, "eval_k", list, "retrieval"))

    for path, stage in ((args.chunks / "chunks.jsonl", "chunk"), (args.qa / "test.jsonl", "synthesize")):
        if not path.is_file():
            raise UserError(f"{path}: not found (run the {stage} stage first)")
    chunks = read_jsonl(args.chunks / "chunks.jsonl")
    test = read_jsonl(args.qa / "test.jsonl")
    start = time.perf_counter()
    retriever = Retriever.build(
        chunks,
        load_embedder(spec),
        P.require(rcfg, "rrf_k", int, "retrieval"),
        P.require(rcfg, "fusion_depth", int, "retrieval"),
    )
    build_s = time.perf_counter() - start
    metrics = evaluate_retrievers(retriever, test, ks)
    metrics["embedder"] = spec["embedder"]  # type: ignore[assignment]
    metrics["n_chunks"] = len(chunks)  # type: ignore[assignment]
    metrics["build_seconds"] = round(build_s, 2)  # type: ignore[assignment]

    with atomic_dir(args.out) as tmp:
        retriever.save(tmp, spec)
    write_json(args.metrics, metrics)
    write_text(args.plot, recall_curve_csv(metrics, ks))
    k5 = f"recall@{max([k for k in ks if k <= 5] or ks[:1])}"
    log.info(
        "%d chunks indexed; %s",
        len(chunks),
        ", ".join(f"{m} {k5}={metrics[m][k5]:.3f} mrr={metrics[m]['mrr']:.3f}" for m in METHODS),
    )


if __name__ == "__main__":
    run_cli(main)
