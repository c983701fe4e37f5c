"""Parse accuracy against a ground truth: character error rate overall, by layout, on image-only pages
and on raster regions. Optional: a brochure without ground truth gets no CER (see ``NO_TRUTH``)."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ..common import io
from ..common.errors import UserError
from ..common.params_schema import Parse
from .layout import Block, covered_share
from .page import PageResult
from .pdf import one_line

log = logging.getLogger("parse")

NOT_IN_TEXT = ("header", "footer", "figure")  # block types left out of page text (markdown, CER)

# metrics/parse.json without a ground truth: the CER keys are there, empty, and say why.
NO_TRUTH: dict[str, Any] = {
    "ground_truth": False,
    "cer_definition": "not measured: no ground truth was given (data.truth is empty)",
    "cer": None,
}


def cer_normalise(text: str) -> str:
    """CER compares NFC text with ALL whitespace removed (line breaks and spacing are layout, not content)."""
    return "".join(io.nfc(text).split())


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (unit costs), row-by-row DP vectorised with numpy."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    bb = np.frombuffer(b.encode("utf-32-le"), dtype=np.uint32)
    idx = np.arange(len(b) + 1)
    prev = idx.copy()
    for i, ch in enumerate(a, start=1):
        sub = prev[:-1] + (bb != ord(ch))
        cur = np.empty_like(prev)
        cur[0] = i
        cur[1:] = np.minimum(prev[1:] + 1, sub)
        # insertions: cur[j] = min(cur[j], cur[j-1] + 1)  <=>  running minimum of cur - j
        cur = np.minimum.accumulate(cur - idx) + idx
        prev = cur
    return int(prev[-1])


def cer(hyp: str, ref: str) -> float:
    """Character error rate of ``hyp`` against ``ref`` after ``cer_normalise`` (1.0 for any text vs empty ref)."""
    h, r = cer_normalise(hyp), cer_normalise(ref)
    if not r:
        return 0.0 if not h else 1.0
    return edit_distance(h, r) / len(r)


def load_truth(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise UserError(f"{path}: ground truth file not found")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            int(row["page"])
            str(row["text"])
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{path}:{n}: not a ground-truth record ({one_line(exc)})") from exc
        rows.append(row)
    return rows


def truth_metrics(results: list[PageResult], truth: list[dict[str, Any]], cfg: Parse) -> dict[str, Any]:
    """CER overall (reading order), by layout, on image-only pages and on raster-only regions."""
    by_page = {r.page: r for r in results}

    def page_text(blocks: list[Block]) -> str:
        return "".join(b.text for b in blocks if b.type not in NOT_IN_TEXT)

    totals: Counter[str] = Counter()
    per_page = []
    for row in truth:
        res = by_page.get(int(row["page"]))
        blocks = res.blocks if res else []
        hyp, ref = cer_normalise(page_text(blocks)), cer_normalise(row["text"])
        dist = edit_distance(hyp, ref)
        groups = ["all", f"layout:{row.get('layout') or 'unknown'}"]
        if row.get("image_only"):
            groups.append("image_only")
        for g in groups:
            totals[f"{g}:dist"] += dist
            totals[f"{g}:chars"] += len(ref)
        per_page.append((dist / max(len(ref), 1), int(row["page"])))
        for region in row.get("raster_regions") or []:
            box = tuple(region["bbox"])
            inside = [
                b for b in blocks if b.type not in NOT_IN_TEXT and covered_share(b.bbox, box) >= cfg.truth_overlap
            ]
            r_ref = cer_normalise(region.get("text", ""))
            totals["raster:dist"] += edit_distance(cer_normalise(page_text(inside)), r_ref)
            totals["raster:chars"] += len(r_ref)
            totals["raster:regions"] += 1

    def rate(g: str) -> float | None:
        return round(totals[f"{g}:dist"] / totals[f"{g}:chars"], 4) if totals[f"{g}:chars"] else None

    layouts = sorted({k.split(":")[1] for k in totals if k.startswith("layout:") and k.endswith(":chars")})
    worst = sorted(per_page, reverse=True)[:3]
    log.info("worst pages by CER: %s", ", ".join(f"p{p} {c:.3f}" for c, p in worst))
    return {
        "ground_truth": True,
        "cer_definition": "Levenshtein distance / truth characters, NFC, all whitespace removed, "
        "page text in reading order without headers/footers",
        "truth_pages": len(truth),
        "truth_chars": totals["all:chars"],
        "cer": rate("all"),
        "cer_image_only": rate("image_only"),
        "cer_raster_regions": rate("raster"),
        "raster_regions": totals["raster:regions"],
        "cer_by_layout": {name: rate(f"layout:{name}") for name in layouts},
    }
