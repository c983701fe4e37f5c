"""Compare training-recipe candidates on the VALIDATION split (never on test), for the README's tuning table.

    python scripts/tune_on_validation.py --out runs/tune \
        --candidate current \
        --candidate abstain10 sft.abstain_share=0.1 \
        --candidate all_layers profiles.cpu.train.lora_top_layers=0

Each candidate is params.yaml plus dotted overrides (values parsed as YAML). For each one the real stage CLIs run
on the current pipeline outputs (data/qa, data/index, models/base): sft -> train -> evaluate (the fine-tuned model on
data/qa/validation.jsonl, `--split validation`). Finished steps are skipped, so an interrupted sweep resumes.
The summary (overrides, validation metrics, train time) is written to <out>/summary.json and printed as a table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# What the table shows: (label, path in the evaluate metrics json); the #13 targets are about these.
COLUMNS = (
    ("correct", ("correct",)),
    ("key_fact_recall", ("answer", "key_fact_recall")),
    ("f1_char", ("answer", "f1_char")),
    ("wrong_abstention", ("abstention", "wrong_rate")),
    ("abstain_recall", ("abstention", "recall")),
    ("abstain_f1", ("abstention", "f1")),
    ("citation_ok", ("citation_acc",)),
    ("format_fail", ("format", "fail_rate")),
)


def apply_override(params: dict, dotted: str) -> None:
    """`a.b.c=value` sets params[a][b][c] (value parsed as YAML); every key but the last must exist."""
    key, sep, raw = dotted.partition("=")
    if not sep:
        raise SystemExit(f"error: override {dotted!r} is not key=value")
    *parents, leaf = key.split(".")
    node = params
    for part in parents:
        if not isinstance(node.get(part), dict):
            raise SystemExit(f"error: override {dotted!r}: no params section {part!r}")
        node = node[part]
    if leaf not in node:
        raise SystemExit(f"error: override {dotted!r}: params has no key {key!r}")
    node[leaf] = yaml.safe_load(raw)


def run_step(name: str, cmd: list[str], done: Path, log: Path) -> float:
    """Run one stage CLI unless its output exists; returns wall seconds (0 when skipped)."""
    if done.exists():
        print(f"  {name}: done already ({done})", flush=True)
        return 0.0
    print(f"  {name}: {' '.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    with log.open("a") as fh:
        rc = subprocess.call(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, env=os.environ.copy())
    if rc != 0:
        raise SystemExit(f"error: {name} failed (exit {rc}); see {log}")
    return time.perf_counter() - t0


def run_candidate(out: Path, name: str, overrides: list[str]) -> dict:
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    for dotted in overrides:
        apply_override(params, dotted)
    params_path = folder / "params.yaml"
    params_path.write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False), encoding="utf-8")
    log = folder / "log.txt"

    def stage(module: str, *args: str | Path) -> list[str]:
        return [sys.executable, "-m", f"stages.{module}", *map(str, args), "--params", str(params_path)]

    sft, adapter = folder / "sft", folder / "adapter"
    run_step("sft", stage("sft", "--qa", "data/qa", "--index", "data/index", "--out", sft), sft, log)
    train = stage("train", "--base", "models/base", "--data", sft, "--out", adapter, "--plots", folder / "plots",
                  "--metrics", folder / "train.json")  # fmt: skip
    run_step("train", train, folder / "train.json", log)
    evaluate = stage("evaluate", "--model", "finetuned", "--testset", "template", "--split", "validation",
                     "--base", "models/base", "--adapter", adapter, "--index", "data/index", "--qa", "data/qa",
                     "--out", folder / "eval", "--metrics", folder / "validation.json")  # fmt: skip
    run_step("evaluate", evaluate, folder / "validation.json", log)
    metrics = json.loads((folder / "validation.json").read_text(encoding="utf-8"))
    train_metrics = json.loads((folder / "train.json").read_text(encoding="utf-8"))
    row = {"candidate": name, "overrides": overrides, "n": metrics.get("n")}
    for label, path in COLUMNS:
        value = metrics
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        row[label] = value
    row["train_seconds"] = train_metrics.get("wall_seconds")
    row["val_loss_last"] = train_metrics.get("val_loss_last")
    return row


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/tune"), help="one folder per candidate + summary.json")
    ap.add_argument(
        "--candidate",
        nargs="+",
        action="append",
        required=True,
        metavar=("NAME", "KEY=VALUE"),
        help="a name and its params overrides (repeat the flag per candidate)",
    )
    args = ap.parse_args(argv)
    names = [c[0] for c in args.candidate]
    if len(set(names)) != len(names):
        raise SystemExit("error: candidate names must be unique")
    rows = []
    for name, *overrides in args.candidate:
        print(f"candidate {name}: {' '.join(overrides) or '(params.yaml as is)'}", flush=True)
        rows.append(run_candidate(args.out, name, overrides))
    summary = args.out / "summary.json"
    tmp = summary.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    tmp.replace(summary)
    labels = ["candidate", *(label for label, _ in COLUMNS), "val_loss_last", "train_seconds"]
    print(" | ".join(labels))
    for row in rows:
        print(" | ".join(str(row.get(label)) for label in labels))


if __name__ == "__main__":
    main()
