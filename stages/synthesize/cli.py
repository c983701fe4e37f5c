"""synthesize: chunks -> Korean QA pairs split BY SOURCE CHUNK into train/validation/test.

Generators behind one interface (``synthesize.generator``, profile-specific):

* ``rules`` (offline, deterministic): facts found in each chunk — address, phone, price,
  rooms, hours, period, closing day, duration, counts, lengths, menus, table cells, course
  order, activities, key sentences — asked with several honorific templates;
* ``llm``: an OpenAI-compatible chat endpoint or a local transformers model asked, in Korean,
  for N grounded questions per chunk (JSON, parsed robustly).

Both feed the same filters (answer grounded in its chunk, no answer leaking into the
question, near-duplicate questions dropped). Comparison (two facts, usually two chunks),
multi-hop (a course stop -> that place's address / menu) and unanswerable questions
(plausible aspects the brochure never states; answer: the abstention phrase) are added
by rule for either generator, in the mix set by ``synthesize.mix``.

Splitting by chunk (not by pair) is the point: a test question's chunk never backs
a training question, so the test measures reading the context, not memorisation.
Cross-chunk questions are built after the split, only from chunks of one split.

    python -m stages.synthesize --chunks data/chunks --out data/qa --metrics metrics/dataset.json
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from pathlib import Path

from stages.common import params as P
from stages.common.errors import UserError
from stages.common.io import atomic_dir, dump_jsonl, read_jsonl, write_json
from stages.common.natural import load_natural
from stages.synthesize.card import dataset_card
from stages.synthesize.dataset import build_dataset, counts, quality
from stages.synthesize.filters import truth_pages
from stages.synthesize.limits import TYPES, Limits
from stages.synthesize.questions import chunk_facts
from stages.synthesize.styles import STYLES

log = logging.getLogger("synthesize")
REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=Path, required=True, help="chunk stage output directory")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--metrics", type=Path, required=True)
    ap.add_argument(
        "--truth",
        type=Path,
        default=None,
        help="parse's ground-truth copy (data/truth.jsonl; empty or absent = no truth filter)",
    )
    ap.add_argument("--params", type=Path, default=P.DEFAULT_PARAMS)
    args = ap.parse_args(argv)

    params = P.load(args.params, "synthesize", "prompt", "data", "evaluate")
    cfg, abstain = params["synthesize"], params["prompt"].abstain
    # The natural test set is decontaminated out of every split ('' = another brochure: no natural set).
    natural_path = params["evaluate"].natural_questions
    if natural_path and not Path(natural_path).is_file() and (REPO / natural_path).is_file():
        natural_path = str(REPO / natural_path)  # run from another directory (a copied params.yaml)
    natural = load_natural(natural_path, abstain) if natural_path else []
    chunks_path = args.chunks / "chunks.jsonl"
    if not chunks_path.is_file():
        raise UserError(f"{chunks_path}: not found (run the chunk stage first)")
    chunks = read_jsonl(chunks_path)
    if cfg.generator == "rules" and not any(chunk_facts(c, Limits.from_cfg(cfg)) for c in chunks):
        raise UserError(
            f"{chunks_path}: no questions could be generated from {len(chunks)} chunks "
            "(no extractable facts: no address, phone, price, hours, table, list or descriptive sentence found)"
        )
    # Golds checked against the true page text when the brochure has one (OCR-damaged values dropped).
    if args.truth and not args.truth.is_file():
        raise UserError(f"{args.truth}: truth file not found (parse's truth stage writes data/truth.jsonl)")
    truth = truth_pages(read_jsonl(args.truth)) if args.truth else {}
    report: dict = {}
    splits = build_dataset(chunks, cfg, abstain, report=report, natural=natural, truth=truth)
    total = sum(len(v) for v in splits.values())
    if not total:
        raise UserError(f"{chunks_path}: no questions could be generated from {len(chunks)} chunks")
    stats = counts(splits)

    from datasets import Dataset, DatasetDict
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()  # one bar per split for a few hundred rows is noise

    with atomic_dir(args.out) as tmp:
        for name, rows in splits.items():
            dump_jsonl(tmp / f"{name}.jsonl", rows)
        DatasetDict({name: Dataset.from_list(rows) for name, rows in splits.items()}).save_to_disk(str(tmp / "hf"))
        source = Path(params["data"].pdf).name or "brochure.pdf"
        (tmp / "README.md").write_text(dataset_card(stats, cfg, abstain, source), encoding="utf-8")
    by_type = Counter(r["type"] for rows in splits.values() for r in rows)
    by_style = Counter(r["style"] for rows in splits.values() for r in rows)
    write_json(
        args.metrics,
        {
            "total": total,
            "by_type": {t: by_type.get(t, 0) for t in TYPES},
            "by_style": {s: by_style.get(s, 0) for s in STYLES},
            **quality(splits, report),
            **stats,
        },
    )
    log.info(
        "%d questions from %d chunks: %s",
        total,
        len(chunks),
        ", ".join(f"{s} {v['questions']} ({v['unanswerable']} unanswerable)" for s, v in stats.items()),
    )
