"""Dataset yield on brochures the pipeline was not tuned on (issue #12): parse -> chunk -> synthesize.

    python scripts/bench_dataset_fixtures.py [--fixtures ../shared/fixtures/pdfs] \\
        [--out metrics/dataset_fixtures.json] [--params params.yaml] [--no-entries]

Runs the three stages as CLIs (``python -m stages.<name>``, exactly as dvc.yaml does, with the cpu
profile of the given params and no ground truth) in a temp dir on:

* every ``*.pdf`` in ``--fixtures`` (real Korean brochures kept outside the repo; absent: skipped);
* the second synthetic brochure, ``scripts/render_sample.py --layout entries`` (rendered here, parsed
  against its own ground truth so its CER is recorded too).

Per brochure it records pages, chunks (by kind), questions per split (answerable / unanswerable),
counts per type, style, answer kind and fact, the per-chunk yield of answerable single-chunk
questions (mean, median, minimum, chunks with none) and the wall time of each stage. A stage that
fails (e.g. "no extractable facts") is recorded with its one-line error and the next brochure runs.
The sample brochure's own numbers are in metrics/dataset.json (the synthesize stage writes them).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import REPO, fixture_cli  # noqa: E402  (puts the repo on sys.path: the script runs from anywhere)

from stages.common import io  # noqa: E402

ENTRIES = "sollae_entries_sample"  # the entries layout's PDF name (scripts/render_sample.py LAYOUTS)
OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "DO_NOT_TRACK": "1",
    "WANDB_MODE": "disabled",
}


def cpu_params(src: Path, pdf: Path, dest: Path) -> Path:
    """``src`` on the cpu profile, naming ``pdf`` (the dataset card cites data.pdf) and no ground truth."""
    raw = yaml.safe_load(src.read_text(encoding="utf-8"))
    raw["profile"] = "cpu"
    raw["data"] = {**raw.get("data", {}), "pdf": str(pdf), "truth": ""}
    dest.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return dest


def stage(name: str, *args: str | Path) -> tuple[float, str | None]:
    """Run ``python -m stages.<name>``; (seconds, None) or (seconds, its last 'error:' line)."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", f"stages.{name}", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, **OFFLINE, "PYTHONPATH": str(REPO)},
    )
    seconds = round(time.perf_counter() - start, 2)
    if proc.returncode == 0:
        return seconds, None
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    return seconds, (errors or lines or [f"exit {proc.returncode}"])[-1][:300]


def qa_summary(qa_dir: Path, chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts per split/type/style/answer kind/fact and the per-chunk yield of answerable questions."""
    splits: dict[str, list[dict[str, Any]]] = {f.stem: io.read_jsonl(f) for f in sorted(qa_dir.glob("*.jsonl"))}
    records = [r for rows in splits.values() for r in rows]
    per_chunk = Counter(r["chunk_id"] for r in records if r.get("answerable") and len(r.get("chunk_ids") or [1]) <= 1)
    yields = [per_chunk.get(c["chunk_id"], 0) for c in chunks]

    def counts(key: str, rows: list[dict[str, Any]]) -> dict[str, int]:
        return dict(sorted(Counter(str(r.get(key, "missing")) for r in rows).items()))

    return {
        "questions": len(records),
        "answerable": sum(1 for r in records if r.get("answerable")),
        "unanswerable": sum(1 for r in records if not r.get("answerable")),
        "splits": {
            name: {
                "questions": len(rows),
                "answerable": sum(1 for r in rows if r.get("answerable")),
                "unanswerable": sum(1 for r in rows if not r.get("answerable")),
            }
            for name, rows in splits.items()
        },
        "by_type": counts("type", records),
        "by_style": counts("style", records),
        "by_answer_kind": counts("answer_kind", records),
        "by_fact": counts("fact", records),
        "yield_per_chunk": {
            "chunks": len(chunks),
            "mean": round(statistics.mean(yields), 2) if yields else 0.0,
            "median": statistics.median(yields) if yields else 0,
            "min": min(yields, default=0),
            "chunks_without_questions": sum(1 for y in yields if y == 0),
        },
    }


def bench_one(pdf: Path, params_src: Path, tmp: Path, truth: Path | None = None) -> dict[str, Any]:
    """parse -> chunk -> synthesize on one PDF in ``tmp``; numbers for metrics/dataset_fixtures.json."""
    params = cpu_params(params_src, pdf, tmp / "params.yaml")
    result: dict[str, Any] = {"seconds": {}}
    steps = [
        ("parse", ["--pdf", pdf, "--out", tmp / "parsed", "--metrics", tmp / "parse.json", "--truth", truth or ""]),
        ("chunk", ["--parsed", tmp / "parsed", "--out", tmp / "chunks"]),
        ("synthesize", ["--chunks", tmp / "chunks", "--out", tmp / "qa", "--metrics", tmp / "dataset.json"]),
    ]
    for name, args in steps:
        seconds, error = stage(name, *args, "--params", params)
        result["seconds"][name] = seconds
        if error:
            result["failed_stage"], result["error"] = name, error
            break
    result["seconds"]["total"] = round(sum(result["seconds"].values()), 2)
    if (tmp / "parse.json").is_file():
        parsed = io.read_json(tmp / "parse.json")
        result["pages"] = parsed["pages"]
        result["failed_pages"] = parsed["failed_pages"]
        if parsed.get("ground_truth"):
            result["cer"] = parsed["cer"]
    if (tmp / "chunks" / "chunks.jsonl").is_file():
        chunks = io.read_jsonl(tmp / "chunks" / "chunks.jsonl")
        result["chunks"] = len(chunks)
        result["chunks_by_kind"] = dict(sorted(Counter(c.get("kind", "missing") for c in chunks).items()))
        if "error" not in result:
            result.update(qa_summary(tmp / "qa", chunks))
    return result


def render_entries(out: Path) -> tuple[Path, Path]:
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "render_sample.py"), "--layout", "entries", "--out", str(out)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"error: rendering the entries brochure failed: {proc.stderr.strip()[-300:]}")
    return out / f"{ENTRIES}.pdf", out / "ground_truth.jsonl"


def bench(fixtures: Path, params_src: Path, entries: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-dataset-") as tmp_name:
        tmp = Path(tmp_name)
        todo = [(pdf.stem, pdf, None) for pdf in sorted(fixtures.glob("*.pdf"))] if fixtures.is_dir() else []
        if entries:
            pdf, truth = render_entries(tmp / "entries_pdf")
            todo.append((ENTRIES, pdf, truth))
        for name, pdf, truth in todo:
            work = tmp / name
            work.mkdir()
            print(f"bench_dataset_fixtures: {name} ...", file=sys.stderr, flush=True)
            out[name] = bench_one(pdf, params_src, work, truth)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = fixture_cli(__doc__, "dataset_fixtures.json")
    ap.add_argument("--no-entries", action="store_true", help="skip the synthetic entries brochure")
    args = ap.parse_args(argv)
    if not args.fixtures.is_dir():
        print(f"note: {args.fixtures} not found (the shared fixtures are not here): only the entries brochure runs")
        if args.no_entries:
            return 0
    result = bench(args.fixtures, args.params, entries=not args.no_entries)
    io.write_json(args.out, result)
    for name, r in result.items():
        if "error" in r:
            print(f"{name}: {r['failed_stage']} failed: {r['error']}")
        else:
            y = r["yield_per_chunk"]
            test = r["splits"].get("test", {})
            print(
                f"{name}: {r['pages']} pages, {r['chunks']} chunks, {r['questions']} questions "
                f"({r['answerable']} answerable; test {test.get('answerable', 0)} + {test.get('unanswerable', 0)}), "
                f"{y['mean']} answerable per chunk, {r['seconds']['total']} s"
            )
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
