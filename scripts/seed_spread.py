"""How much the fine-tune's TEST numbers move from one training to the next: the spread behind README's claims.

    python scripts/seed_spread.py --run committed=data/eval,metrics/eval \
        --run seed14=runs/seeds/seed14/eval,runs/seeds/seed14/metrics [...] [--out metrics/seed_spread.json]

Each --run NAME=EVAL_DIR,METRICS_DIR names one training of the committed recipe (same data/sft, another
`train.seed` or the same seed again: CPU training is not bit-reproducible) whose fine-tuned model was evaluated on
both test sets by `python -m stages.evaluate` (EVAL_DIR/finetuned/<testset>/predictions.jsonl, METRICS_DIR/
finetuned/<testset>.json). The baselines' predictions are the pipeline's own (data/eval): they do not depend on
the adapter. Each run is compared with them by the report stage's own functions (paired bootstrap, params
report.targets), so every row reads exactly like metrics/comparison.json. A training in runs/<x>/adapter is
answered the way the pipeline's evaluate stage answers (once per test set, template and natural):

    python -m stages.evaluate --model finetuned --testset template --base models/base --adapter runs/<x>/adapter \
        --index data/index --qa data/qa --natural data/sample/natural_questions.jsonl \
        --out runs/seeds/<x>/eval/finetuned/template --metrics runs/seeds/<x>/metrics/finetuned/template.json

A training whose predictions are gone (a fresh checkout has no runs/, and the committed adapter is replaced by the
next full run) keeps its recorded row: --keep FILE carries the rows of an earlier seed_spread.json over, --rename
OLD=NEW renames one of them (the adapter that was `committed` before a retraining), and the summary is computed
over kept and new rows alike:

    python scripts/seed_spread.py --keep metrics/seed_spread.json --rename committed=seed13a \
        --run committed=data/eval,metrics/eval

Reporting only: nothing is chosen from these numbers (choices are made on validation).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from stages.common import params as P  # noqa: E402
from stages.common.io import write_json  # noqa: E402
from stages.report.compare import MODELS, TESTSETS, build_comparison, finetuned_values, load_runs  # noqa: E402

# The fine-tune's values shown per run: (test set, metric key in comparison.json's values).
HEADLINE = (
    ("template", "key_fact_recall"),
    ("template", "f1_char"),
    ("template", "abstain_f1"),
    ("template", "citation_ok"),
    ("natural", "key_fact_recall"),
    ("natural", "f1_char"),
    ("natural", "abstain_r"),
    ("natural", "citation_ok"),
)


def parse_dirs(option: str, spec: str) -> tuple[Path, Path]:
    eval_dir, comma, metrics_dir = spec.partition(",")
    if not (comma and eval_dir and metrics_dir):
        raise SystemExit(f"error: {option} {spec!r} is not EVAL_DIR,METRICS_DIR")
    return Path(eval_dir), Path(metrics_dir)


def parse_run(spec: str) -> tuple[str, Path, Path]:
    name, sep, dirs = spec.partition("=")
    if not (sep and name):
        raise SystemExit(f"error: --run {spec!r} is not NAME=EVAL_DIR,METRICS_DIR")
    return (name, *parse_dirs("--run", dirs))


def assemble(tmp: Path, baselines: tuple[Path, Path], run: tuple[Path, Path]) -> tuple[Path, Path]:
    """An eval tree and a metrics tree as the report stage reads them: the baselines' folders and this run's
    fine-tune, linked (not copied) side by side."""
    eval_dir, metrics_dir = tmp / "eval", tmp / "metrics" / "eval"
    for model in MODELS:
        src_eval, src_metrics = run if model == "finetuned" else baselines
        for ts in TESTSETS:
            src, dst = src_eval / model / ts, eval_dir / model / ts
            if src.is_dir():
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.symlink_to(src.resolve(), target_is_directory=True)
            m = src_metrics / model / f"{ts}.json"
            if m.is_file():
                (metrics_dir / model).mkdir(parents=True, exist_ok=True)
                (metrics_dir / model / f"{ts}.json").symlink_to(m.resolve())
    return eval_dir, metrics_dir.parent


def run_row(comparison: dict[str, Any]) -> dict[str, Any]:
    """One run's line: the fine-tune's headline values, its deltas vs few-shot, and each target's status."""
    every = finetuned_values(comparison)
    shown = [f"{ts}.{key}" for ts, key in HEADLINE] + [f"{ts}.wrong_abstention_share" for ts in TESTSETS]
    values = {k: every[k] for k in shown if k in every}
    deltas = {}
    for ts, key in HEADLINE:
        pairs = (comparison["testsets"].get(ts) or {}).get("pairs") or {}
        pair = (pairs.get("finetuned-baseline_fewshot") or {}).get(key) or {}
        if pair.get("delta") is not None:
            deltas[f"{ts}.{key}"] = {"delta": pair["delta"], "ci": [pair["ci_low"], pair["ci_high"]]}
    targets = [{k: r[k] for k in ("testset", "metric", "condition", "value", "status")} for r in comparison["targets"]]
    return {
        "finetuned": values,
        "vs_fewshot": deltas,
        "targets_met": sum(r["status"] == "met" for r in targets),
        "targets": targets,
    }


def summarize(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Across runs: mean, sd, min and max of each value; per target, how many runs met it."""
    keys = sorted({k for r in rows.values() for k in r["finetuned"]})
    spread = {}
    for k in keys:
        xs = [r["finetuned"][k] for r in rows.values() if r["finetuned"].get(k) is not None]
        if xs:
            spread[k] = {
                "mean": round(statistics.fmean(xs), 4),
                "sd": round(statistics.stdev(xs), 4) if len(xs) > 1 else 0.0,
                "min": round(min(xs), 4),
                "max": round(max(xs), 4),
            }
    first = next(iter(rows.values()))["targets"]
    met = [
        {
            **{k: t[k] for k in ("testset", "metric", "condition")},
            "runs_met": sum(r["targets"][i]["status"] == "met" for r in rows.values()),
        }
        for i, t in enumerate(first)
    ]

    def ci_above_zero(row: dict[str, Any], key: str) -> bool:
        low = (row["vs_fewshot"].get(key) or {}).get("ci", [None])[0]
        return low is not None and low > 0

    pairs = sorted({k for r in rows.values() for k in r["vs_fewshot"]})
    beats_fewshot = {k: sum(ci_above_zero(r, k) for r in rows.values()) for k in pairs}
    return {"runs": len(rows), "spread": spread, "targets": met, "ci_above_fewshot_runs": beats_fewshot}


def kept_rows(path: Path | None, renames: list[str]) -> dict[str, dict[str, Any]]:
    """The rows of an earlier seed_spread.json, in their order, with --rename OLD=NEW applied."""
    if path is None:
        if renames:
            raise SystemExit("error: --rename renames rows kept with --keep; no --keep given")
        return {}
    if not path.is_file():
        raise SystemExit(f"error: --keep {path}: not found")
    rows = dict(json.loads(path.read_text(encoding="utf-8")).get("runs") or {})
    for spec in renames:
        old, sep, new = spec.partition("=")
        if not (sep and old and new):
            raise SystemExit(f"error: --rename {spec!r} is not OLD=NEW")
        if old not in rows:
            raise SystemExit(f"error: --rename {spec!r}: {path} has no run {old!r} (it has {', '.join(rows)})")
        if new in rows:
            raise SystemExit(f"error: --rename {spec!r}: {path} already has a run {new!r}")
        rows = {new if name == old else name: row for name, row in rows.items()}
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", action="append", required=True, help="NAME=EVAL_DIR,METRICS_DIR (repeat)")
    ap.add_argument("--baselines", default="data/eval,metrics/eval", help="EVAL_DIR,METRICS_DIR of the baselines")
    ap.add_argument("--out", type=Path, default=REPO / "metrics" / "seed_spread.json")
    ap.add_argument("--params", type=Path, default=REPO / "params.yaml")
    ap.add_argument(
        "--keep", type=Path, help="an earlier seed_spread.json whose rows are kept (predictions not needed)"
    )
    ap.add_argument("--rename", action="append", default=[], help="OLD=NEW: rename a kept row (repeat)")
    args = ap.parse_args(argv)
    cfg = P.load(args.params, "report")["report"]
    baselines = parse_dirs("--baselines", args.baselines)
    rows = kept_rows(args.keep, args.rename)
    for spec in args.run:
        name, eval_dir, metrics_dir = parse_run(spec)
        if name in rows:
            raise SystemExit(f"error: --run {name}: a kept row has that name (rename it with --rename)")
        if not (eval_dir / "finetuned" / "template" / "predictions.jsonl").is_file():
            raise SystemExit(
                f"error: {eval_dir}/finetuned/template/predictions.jsonl: not found (evaluate that run first)"
            )
        with tempfile.TemporaryDirectory() as tmp:
            tree = assemble(Path(tmp), baselines, (eval_dir, metrics_dir))
            rows[name] = run_row(build_comparison(load_runs(*tree), cfg))
        print(f"{name}: {rows[name]['targets_met']} of {len(rows[name]['targets'])} targets met", flush=True)
    write_json(args.out, {"summary": summarize(rows), "runs": rows})
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
