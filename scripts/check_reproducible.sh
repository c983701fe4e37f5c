#!/usr/bin/env bash
# Are the deterministic stages bit-reproducible? Runs `dvc repro --force --single-item` of each stage
# twice, in a scratch copy of the working tree, and compares the output hashes DVC records in dvc.lock.
#
#   scripts/check_reproducible.sh                      # truth parse chunk synthesize index sft
#   scripts/check_reproducible.sh parse chunk          # a subset (in pipeline order)
#   KEEP=1 scripts/check_reproducible.sh               # keep the scratch copy (its path is printed)
#   WORKDIR=/tmp/repro scripts/check_reproducible.sh   # where to make the copy (default: mktemp -d)
#
# The copy holds exactly what `git ls-files -co --exclude-standard` lists (tracked + new, not ignored:
# the code, params.yaml, dvc.yaml, data/sample), so your outputs, metrics and DVC cache stay untouched.
# It prints one row per output: round 1 md5, round 2 md5, the md5 in your dvc.lock, and a verdict.
# Metrics files record timings, so they are listed but never fail the check.
# Exit status: 0 = every data output identical across the two rounds, 1 = a difference, 2 = a run failed.
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STAGES=("$@")
[ ${#STAGES[@]} -gt 0 ] || STAGES=(truth parse chunk synthesize index sft)
VENV="${VENV:-$SRC/.venv}"
[ -x "$VENV/bin/dvc" ] || { echo "check_reproducible: $VENV/bin/dvc not found (run scripts/setup.sh, or set VENV=)" >&2; exit 2; }

WORK="${WORKDIR:-$(mktemp -d -t brochure-repro-XXXXXX)}"
mkdir -p "$WORK"
cleanup() { [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"; }
trap cleanup EXIT

echo "check_reproducible: copying the working tree to $WORK" >&2
(cd "$SRC" && git ls-files -co --exclude-standard -z | xargs -0 -I{} cp --parents -- {} "$WORK/" 2>/dev/null || true)
cd "$WORK"
git init -q . # DVC wants an SCM; nothing is committed
export PATH="$VENV/bin:$PATH" DVC_NO_ANALYTICS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
    DO_NOT_TRACK=1 WANDB_MODE=disabled
cp dvc.lock "$WORK/.dvc.lock.committed" 2>/dev/null || true

for round in 1 2; do
    for stage in "${STAGES[@]}"; do
        echo "check_reproducible: round $round: dvc repro --force --single-item $stage" >&2
        start=$(date +%s)
        if ! dvc repro --force --single-item "$stage" >"$WORK/.repro-$round-$stage.log" 2>&1; then
            tail -n 20 "$WORK/.repro-$round-$stage.log" >&2
            echo "check_reproducible: dvc repro $stage failed in round $round (log: $WORK/.repro-$round-$stage.log; KEEP=1 keeps it)" >&2
            exit 2
        fi
        echo "check_reproducible:   $stage: $(($(date +%s) - start)) s" >&2
    done
    cp dvc.lock "$WORK/.dvc.lock.round$round"
done

python - "${STAGES[@]}" <<'EOF'
import sys
from pathlib import Path

import yaml

stages = sys.argv[1:]
spec = yaml.safe_load(Path("dvc.yaml").read_text(encoding="utf-8"))["stages"]


def outs(lock_path):
    if not Path(lock_path).is_file():
        return {}
    lock = yaml.safe_load(Path(lock_path).read_text(encoding="utf-8"))["stages"]
    return {(s, o["path"]): o.get("md5") for s in stages for o in (lock.get(s) or {}).get("outs", [])}


def metric_paths(stage):
    found = set()
    for m in spec[stage].get("metrics", []) or []:
        found.update(m if isinstance(m, dict) else [m])
    return found


r1, r2, committed = outs(".dvc.lock.round1"), outs(".dvc.lock.round2"), outs(".dvc.lock.committed")
rows, bad = [], 0
for key in sorted(set(r1) | set(r2), key=lambda k: (stages.index(k[0]), k[1])):
    stage, path = key
    a, b, c = r1.get(key), r2.get(key), committed.get(key)
    if path in metric_paths(stage):
        verdict = "same" if a == b else "differs (metrics: timings, not compared)"
    elif a == b and a:
        verdict = "IDENTICAL"
    else:
        verdict, bad = "DIFFERENT", bad + 1
    lock_note = "=" if c == b else ("-" if c is None else "≠")
    rows.append((stage, path, (a or "-")[:12], (b or "-")[:12], lock_note, verdict))
head = ("stage", "output", "round 1", "round 2", "dvc.lock", "verdict")
widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
for r in [head, tuple("-" * w for w in widths), *rows]:
    print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())
print()
print("dvc.lock column: '=' round 2 matches your dvc.lock, '≠' it does not (code/params/machine changed), '-' no entry")
print(f"{len(rows) - bad}/{len(rows)} outputs reproducible" + ("" if not bad else f"; {bad} DIFFERENT"))
sys.exit(1 if bad else 0)
EOF
