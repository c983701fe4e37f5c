"""Compare training-recipe candidates on the VALIDATION split (never on test), for the README's tuning table.

    python scripts/tune_on_validation.py --out runs/tune \
        --candidate current \
        --candidate abstain10 sft.abstain_share=0.1 \
        --candidate all_layers profiles.cpu.train.lora_top_layers=0

Each candidate is params.yaml plus dotted overrides (values parsed as YAML). For each one the real stage CLIs run
on the current pipeline outputs (data/qa, data/index, models/base): sft -> train -> evaluate (the fine-tuned model on
data/qa/validation.jsonl, `--split validation`). Finished steps are skipped, so an interrupted sweep resumes.
The summary (overrides, validation metrics, train time) is written to <out>/summary.json and printed as a table.

Validation questions come from the generator's templates, as the training questions do. params.yaml
`tune.natural_validation` names a second, hand-written set about the validation split's chunks only
(data/tune/natural_validation.jsonl, worded as people ask; data/tune/README.md): when set, each
candidate also answers it (`nat_*` columns), so a round can see how a change carries to natural wording without
touching the natural TEST set.

One training run is not enough to choose between recipes: two seeds of one recipe can differ more than two recipes
do (docs/training-and-cost.md "Tuning on validation"). `--seeds 13 14` trains every candidate once per `train.seed` (folders
<name>@seed<N>) and adds each candidate's mean; `--reference NAME` then applies the adoption rule, seed by seed: a
candidate is adopted only if on every seed its key-fact recall is above the reference's and its wrong-abstention rate
stays at or under `--max-wrong-abstention`.

    python scripts/tune_on_validation.py --out runs/tune --seeds 13 14 --reference current \
        --candidate current --candidate balanced sft.balance_styles=true

A change made to save time rather than to win (fewer context chunks, fewer rows) is judged by the non-inferiority
rule instead: `--margin 0.05` adopts it when, averaged over the seeds, its train time is lower, its key-fact recall,
abstention recall and citation accuracy are at most the margin below the reference's, and its wrong-abstention rate
at most the margin above.
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
sys.path.insert(0, str(ROOT))  # stages.common, when run as `python scripts/tune_on_validation.py`
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
# The same metrics on the hand-written validation questions (tune.natural_validation), when set.
NATURAL_COLUMNS = tuple((f"nat_{label}", path) for label, path in COLUMNS if label != "abstain_f1")


def metric_values(metrics: dict, columns) -> dict:
    row = {}
    for label, path in columns:
        value = metrics
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        row[label] = value
    return row


def natural_validation_file(params: dict) -> Path | None:
    """tune.natural_validation from the params, or None when unset; a set path that does not exist is an error."""
    name = ((params.get("tune") or {}).get("natural_validation") or "").strip()
    if not name:
        return None
    path = ROOT / name
    if not path.is_file():
        raise SystemExit(f"error: tune.natural_validation: {name} not found")
    return Path(name)


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
    row = {"candidate": name, "overrides": overrides, "n": metrics.get("n"), **metric_values(metrics, COLUMNS)}
    natural = natural_validation_file(params)
    if natural is not None:
        evaluate_natural = stage("evaluate", "--model", "finetuned", "--testset", "natural", "--natural", natural,
                                 "--base", "models/base", "--adapter", adapter, "--index", "data/index", "--qa",
                                 "data/qa", "--out", folder / "eval_natural",
                                 "--metrics", folder / "validation_natural.json")  # fmt: skip
        run_step("evaluate natural", evaluate_natural, folder / "validation_natural.json", log)
        nat = json.loads((folder / "validation_natural.json").read_text(encoding="utf-8"))
        row.update({"nat_n": nat.get("n"), **metric_values(nat, NATURAL_COLUMNS)})
    row["train_seconds"] = train_metrics.get("wall_seconds")
    row["val_loss_last"] = train_metrics.get("val_loss_last")
    return row


def outside_validation(records: list[dict], chunks: list[dict], validation_chunk_ids: set[str]) -> list[str]:
    """Ids of answerable hand-written questions whose gold chunks are not all chunks of the validation split: with
    another parse, chunking or split those may be chunks that training prompts show."""
    from stages.common.natural import resolve_gold_chunks

    return [
        r["id"]
        for r in records
        if r["answerable"] and not set(resolve_gold_chunks(r, chunks) or ["?"]) <= validation_chunk_ids
    ]


def check_natural_validation(path: Path, params: dict) -> None:
    """Warn (the round still runs) when the hand-written validation questions reach outside the validation split."""
    from stages.common.io import read_jsonl
    from stages.common.natural import load_natural

    records = load_natural(ROOT / path, params["prompt"]["abstain"])
    chunks = read_jsonl(ROOT / "data/chunks/chunks.jsonl")
    split = {
        cid for q in read_jsonl(ROOT / "data/qa/validation.jsonl") for cid in q.get("chunk_ids") or [q["chunk_id"]]
    }
    outside = outside_validation(records, chunks, split)
    if outside:
        print(f"warning: {path}: {len(outside)} question(s) have gold chunks outside the validation split "
              f"(seen in training): {', '.join(outside)}", flush=True)  # fmt: skip


def mean_row(name: str, rows: list[dict]) -> dict:
    """The mean of each metric over a candidate's seeds (None where a seed lacks it)."""
    row = {"candidate": f"{name} (mean of {len(rows)})", "n": rows[0].get("n") if rows else None}
    for label in [*(label for label, _ in (*COLUMNS, *NATURAL_COLUMNS)), "val_loss_last", "train_seconds"]:
        values = [r.get(label) for r in rows]
        row[label] = round(sum(values) / len(values), 4) if values and None not in values else None
    return row


def verdict(candidate: dict[int, dict], reference: dict[int, dict], max_wrong_abstention: float) -> tuple[bool, str]:
    """The adoption rule over seeds: higher key-fact recall than the reference AND wrong abstentions under the cap,
    on every seed both were trained with. Returns (adopted, why)."""
    seeds = sorted(set(candidate) & set(reference))
    if not seeds:
        return False, "no seed in common with the reference"
    lost = []
    for seed in seeds:
        c, r = candidate[seed], reference[seed]
        run = "params.yaml's seed" if seed is None else f"seed {seed}"  # no --seeds: one run each
        if (c.get("key_fact_recall") or 0.0) <= (r.get("key_fact_recall") or 0.0):
            lost.append(f"{run}: key-fact recall {c.get('key_fact_recall')} <= {r.get('key_fact_recall')}")
        if (c.get("wrong_abstention") or 0.0) > max_wrong_abstention:
            lost.append(f"{run}: wrong abstentions {c.get('wrong_abstention')} > {max_wrong_abstention}")
    if lost:
        return False, "; ".join(lost)
    return True, "wins on one run only (use --seeds)" if seeds == [None] else "wins on seeds " + ", ".join(
        map(str, seeds)
    )


# The non-inferiority rule's metrics: (label, +1 when higher is better, -1 when lower is).
NONINFERIOR = (("key_fact_recall", 1), ("abstain_recall", 1), ("citation_ok", 1), ("wrong_abstention", -1))


def verdict_noninferior(candidate: dict[int, dict], reference: dict[int, dict], margin: float) -> tuple[bool, str]:
    """The rule for a change that saves time: on the means over the seeds both were trained with, lower train time and
    no metric of NONINFERIOR worse than the reference's by more than `margin`. Returns (adopted, why)."""
    seeds = sorted(set(candidate) & set(reference), key=str)
    if not seeds:
        return False, "no seed in common with the reference"
    means = [mean_row("", [runs[s] for s in seeds]) for runs in (candidate, reference)]
    lost, kept = [], []
    for label, sign in NONINFERIOR:
        c, r = (m[label] or 0.0 for m in means)
        line = f"{label} {c:.3f} vs {r:.3f}"
        (lost if sign * (c - r) < -margin else kept).append(line)
    c_time, r_time = (m["train_seconds"] or 0.0 for m in means)
    time_line = f"train {c_time:.0f} s vs {r_time:.0f} s"
    if c_time >= r_time:
        lost.append(time_line + " (no time saved)")
    if lost:
        return False, f"worse by more than {margin}: " + "; ".join(lost)
    return True, f"within {margin} on means over {len(seeds)} run(s): " + "; ".join([*kept, time_line])


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
    ap.add_argument("--seeds", type=int, nargs="+", default=[], help="train every candidate once per train.seed")
    ap.add_argument("--reference", default="", help="candidate the others are judged against (the adoption rule)")
    ap.add_argument("--max-wrong-abstention", type=float, default=0.15, help="the rule's cap (natural-set target)")
    ap.add_argument(
        "--margin",
        type=float,
        default=0.0,
        help="> 0: judge candidates by the non-inferiority rule (a change that saves time), with this margin",
    )
    args = ap.parse_args(argv)
    names = [c[0] for c in args.candidate]
    if len(set(names)) != len(names):
        raise SystemExit("error: candidate names must be unique")
    if args.reference and args.reference not in names:
        raise SystemExit(f"error: --reference {args.reference!r} is not a candidate")
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    natural = natural_validation_file(params)
    if natural is not None:
        check_natural_validation(natural, params)
    rows, by_seed = [], {}
    for name, *overrides in args.candidate:
        by_seed[name] = {}
        for seed in args.seeds or [None]:
            run_name, run_overrides = name, overrides
            if seed is not None:
                run_name, run_overrides = f"{name}@seed{seed}", [*overrides, f"train.seed={seed}"]
            print(f"candidate {run_name}: {' '.join(run_overrides) or '(params.yaml as is)'}", flush=True)
            by_seed[name][seed] = run_candidate(args.out, run_name, run_overrides)
            rows.append(by_seed[name][seed])
        if len(args.seeds) > 1:
            rows.append(mean_row(name, list(by_seed[name].values())))
    summary = args.out / "summary.json"
    tmp = summary.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    tmp.replace(summary)
    labels = ["candidate", *(label for label, _ in COLUMNS), "val_loss_last", "train_seconds"]
    if any("nat_n" in row for row in rows):
        labels += [label for label, _ in NATURAL_COLUMNS]
    print(" | ".join(labels))
    for row in rows:
        print(" | ".join(str(row.get(label)) for label in labels))
    if args.reference:
        for name in names:
            if name != args.reference:
                if args.margin > 0:
                    adopted, why = verdict_noninferior(by_seed[name], by_seed[args.reference], args.margin)
                else:
                    adopted, why = verdict(by_seed[name], by_seed[args.reference], args.max_wrong_abstention)
                print(f"{name} vs {args.reference}: {'ADOPT' if adopted else 'keep the reference'} ({why})")


if __name__ == "__main__":
    main()
