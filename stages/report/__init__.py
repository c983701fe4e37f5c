"""report: three models x two test sets — paired-bootstrap comparisons, figures and REPORT.md.

    python -m stages.report --eval data/eval --metrics-dir metrics --plots plots --qa data/qa \
        --out report [--adapter models/adapter] [--comparison metrics/comparison.json]

Inputs: ``data/eval/<model>/<testset>/predictions.jsonl`` for the models ``baseline``
(zero-shot), ``baseline_fewshot`` (k TRAIN examples in the prompt) and ``finetuned``, on
the test sets ``template`` (synthesized test split) and ``natural`` (hand-written), plus
``metrics/eval/<model>/<testset>.json`` (run time, prompt tokens, skipped sets).
The fine-tune is compared with both baselines on every test set (paired bootstrap CIs).

Python computes every number (``compare.py``: comparisons, CIs, targets; ``tables.py``: tables and
formatting; ``context.py``: the template's context; ``figures.py``: figures); the prose and
layout live in the Jinja2 template beside them (``REPORT.md.j2``), so the wording changes
without touching code.
Metric rows come from ``stages.common.metrics.METRICS``: a new metric there appears here.
Optional inputs (dataset/retrieval/train metrics, loss CSVs, axolotl.yaml, the few-shot
model, the natural test set) may be missing: the report says so instead of failing.
No timestamps: same inputs, same bytes.
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from pathlib import Path

from stages.common import params as P
from stages.common.io import atomic_dir, write_json
from stages.report.compare import (  # noqa: F401  (the stage's public names, used by tests and tools)
    MODELS,
    PAIRS,
    TESTSETS,
    build_comparison,
    check_targets,
    load_runs,
    pick_examples,
    plot_rows,
    read_curve,
    write_csv,
)
from stages.report.context import TEMPLATE, build_context, fmt, render  # noqa: F401
from stages.report.figures import make_figures

log = logging.getLogger("report")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m stages.report", description=__doc__.splitlines()[0])
    ap.add_argument("--eval", type=Path, required=True, help="folder with <model>/<testset>/predictions.jsonl")
    ap.add_argument(
        "--metrics-dir", type=Path, required=True, help="folder with eval/, dataset.json, retrieval.json, train.json"
    )
    ap.add_argument("--plots", type=Path, required=True, help="folder with train_loss.csv / val_loss.csv")
    ap.add_argument("--qa", type=Path, required=True, help="QA dataset folder (question examples)")
    ap.add_argument("--out", type=Path, required=True, help="report folder (REPORT.md, figures/)")
    ap.add_argument("--comparison", type=Path, default=None, help="default: <metrics-dir>/comparison.json")
    ap.add_argument("--adapter", type=Path, default=None, help="adapter folder with the resolved axolotl.yaml")
    ap.add_argument("--plot-metrics", type=Path, default=None, help="CSV for `dvc plots`: per-metric bars")
    ap.add_argument("--plot-types", type=Path, default=None, help="CSV for `dvc plots`: per-question-style bars")
    ap.add_argument("--params", type=Path, default=P.DEFAULT_PARAMS)
    args = ap.parse_args(argv)

    params = P.load(args.params, "report", "data", "model", "index", "retrieval", "train", "evaluate", "prompt")
    cfg = params["report"]
    dpi, _ = cfg.figure_dpi, cfg.max_example_chars  # both read before any work: a missing key fails first
    runs = load_runs(args.eval, args.metrics_dir)
    comparison = build_comparison(runs, cfg)
    train_curve = read_curve(args.plots / "train_loss.csv", "loss")
    val_curve = read_curve(args.plots / "val_loss.csv", "val_loss")
    with atomic_dir(args.out) as tmp:
        drawn = make_figures(comparison, train_curve, val_curve, tmp / "figures", dpi)
        ctx = build_context(args, params, runs, comparison, drawn, train_curve, val_curve)
        (tmp / "REPORT.md").write_text(render(ctx), encoding="utf-8")
    write_json(args.comparison or args.metrics_dir / "comparison.json", comparison)
    metric_rows, style_rows = plot_rows(comparison)
    if args.plot_metrics:
        write_csv(args.plot_metrics, metric_rows)
    if args.plot_types:
        write_csv(args.plot_types, style_rows)
    for ts, t in comparison["testsets"].items():
        if t.get("skipped"):
            log.info("report: %s test set skipped (%s)", ts, t["reason"])
            continue
        counts = Counter({m: sum(p["scores"]["correct"] for p in ps) for m, ps in runs[ts]["preds"].items()})
        f1 = t["values"].get("f1_char", {})
        log.info(
            "report: %s n=%d correct %s, f1_char %s",
            ts,
            t["n"],
            " / ".join(f"{m} {counts[m]}" for m in t["models"]),
            " / ".join(f"{m} {fmt(f1.get(m))}" for m in t["models"]),
        )
