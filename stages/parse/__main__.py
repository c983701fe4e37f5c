"""parse: brochure PDF -> layout blocks in reading order (text layer first, OCR where needed).

    python -m stages.parse --pdf data/sample/jecheon_2025_sample.pdf --out data/parsed \\
        --metrics metrics/parse.json [--truth data/sample/ground_truth.jsonl] [--params params.yaml]

How a page is read: see the package docstring (stages/parse/__init__.py).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from ..common import io, params
from ..common.env import check_machine, setup_env
from ..common.errors import UserError, run_cli
from .cer import NO_TRUTH, load_truth, truth_metrics
from .config import check_parse
from .layout import assign_levels
from .ocr import make_engine
from .outputs import block_records, parse_metrics, write_outputs
from .pdf import open_pdf
from .runner import run_pages

log = logging.getLogger("parse")


def run(pdf: Path, out: Path, metrics_path: Path, truth_path: Path | None, params_path: Path) -> dict[str, Any]:
    start = time.perf_counter()
    loaded = params.load(params_path, "parse", "machine")
    setup_env(offline=loaded["machine"].offline)
    check_machine({"name": loaded["profile"], **loaded["machine"]})  # runpod: fail here, not inside PaddleOCR
    cfg = check_parse(loaded["parse"])
    # no path, or an empty file (what the dvc `truth` stage writes for data.truth ''): no ground truth
    truth = (load_truth(truth_path) or None) if truth_path else None
    for tool in ("pdftoppm", "pdfinfo"):
        if shutil.which(tool) is None:
            raise UserError(f"{tool} not found: install poppler-utils (pdf2image renders pages with it)")
    doc = open_pdf(pdf)
    n_pages = doc.page_count
    doc.close()
    engine = make_engine(cfg)
    results = run_pages(pdf, n_pages, cfg, engine)
    failed = [r for r in results if r.status == "failed"]
    if len(failed) == len(results):
        raise UserError(f"{pdf}: all {len(results)} pages failed (page {failed[0].page}: {failed[0].error})")
    for r in failed:
        log.warning("page %d failed: %s", r.page, r.error)
    assign_levels([b for r in results for b in r.blocks], cfg.max_heading_levels)
    records = block_records(pdf.stem, results)
    write_outputs(out, records, results)
    seconds = time.perf_counter() - start
    metrics = parse_metrics(results, records, seconds, engine.name)
    metrics.update(truth_metrics(results, truth, cfg) if truth is not None else NO_TRUTH)
    io.write_json(metrics_path, metrics)
    summary = (
        f"{metrics['pages']} pages ({metrics['failed_pages']} failed), {metrics['blocks']} blocks, "
        f"{metrics['ocr_pages']} OCR pages + {metrics['ocr_regions']} OCR regions, "
        f"{seconds:.1f} s ({metrics['pages_per_second']} pages/s)"
    )
    summary += f", CER {metrics['cer']}" if truth is not None else ", no ground truth (no CER)"
    log.info("%s -> %s: %s", pdf, out, summary)
    return metrics


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m stages.parse", description=__doc__.split("\n")[0])
    ap.add_argument("--pdf", required=True, type=Path, help="input brochure PDF")
    ap.add_argument("--out", required=True, type=Path, help="output folder (data/parsed)")
    ap.add_argument("--metrics", required=True, type=Path, help="metrics JSON (metrics/parse.json)")
    ap.add_argument(
        "--truth", default="", help="ground-truth jsonl for CER (optional; '' or an empty file: no CER is measured)"
    )
    ap.add_argument("--params", type=Path, default=params.DEFAULT_PARAMS, help="params.yaml")
    args = ap.parse_args(argv)
    run(args.pdf, args.out, args.metrics, Path(args.truth) if args.truth else None, args.params)


if __name__ == "__main__":
    run_cli(main)
