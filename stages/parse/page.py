"""One page: text layer, ruled tables, OCR of image regions or the whole page, block types and reading order."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..common.params_schema import Parse
from .layout import (
    Block,
    blocks_from_lines,
    body_size,
    classify,
    content_share,
    covered_share,
    is_content,
    list_marker,
    normalise_ocr,
    strip_ocr_junk,
    table_blocks,
    textlayer_lines,
    textlayer_verdict,
)
from .ocr import OcrBlock, OcrEngine
from .pdf import capped_dpi, render_clip, render_page
from .reading_order import order_blocks

log = logging.getLogger("parse")


@dataclass
class PageResult:
    page: int
    width: float = 0.0
    height: float = 0.0
    textlayer_chars: int = 0
    ocr: bool = False
    ocr_mode: str = "none"  # none | regions | page
    ocr_regions: int = 0
    photos_skipped: int = 0  # image regions not OCR'd: photos (see _is_photo)
    status: str = "ok"
    error: str | None = None
    blocks: list[Block] = field(default_factory=list)
    png: bytes | None = None


def parse_page(doc: Any, pdf_path: Path, pno: int, cfg: Parse, engine: OcrEngine | None) -> PageResult:
    """Parse one page (1-based); exceptions are the caller's to record."""
    import pymupdf

    page = doc[pno - 1]
    rect = page.rect
    res = PageResult(page=pno, width=round(rect.width, 2), height=round(rect.height, 2))
    page_dict = page.get_text("dict", flags=pymupdf.TEXTFLAGS_DICT & ~pymupdf.TEXT_PRESERVE_IMAGES)
    groups = textlayer_lines(page_dict)
    raw = "\n".join(ln.text for g in groups for ln in g)
    res.textlayer_chars = sum(1 for c in raw if not c.isspace())
    verdict, why = textlayer_verdict(raw, cfg)
    if verdict == "garbage":
        log.debug("page %d: text layer dropped (%s)", pno, why)
        groups = []

    blocks: list[Block] = []
    if groups:
        tables = table_blocks(page, cfg)
        if tables:
            groups = [[ln for ln in g if not any(_center_in(ln.bbox, t.bbox) for t in tables)] for g in groups]
            groups = [g for g in groups if g]
        blocks = blocks_from_lines(groups, cfg) + tables
    kept_lines = [ln for g in groups for ln in g]
    taken = [sb for ln in kept_lines for sb in ln.spans] + [b.bbox for b in blocks if b.type == "table"]

    page_box = (0.0, 0.0, rect.width, rect.height)
    images = _image_regions(page, page_box, cfg)
    if verdict != "ok":
        targets = [page_box]
        res.ocr_mode = "page"
    else:
        targets = [r for r in images if not _is_photo(page, r, page_box, cfg)]
        res.photos_skipped = len(images) - len(targets)
        res.ocr_mode = "regions" if targets else "none"
    ocr_blocks: list[Block] = []
    if targets:
        if engine is None:
            raise RuntimeError("page needs OCR but no OCR engine was given")
        dpi = capped_dpi(rect.width, rect.height, cfg.dpi, cfg.max_render_pixels)
        if res.ocr_mode == "page":
            images_px = [render_page(pdf_path, pno, dpi)]  # the whole page, through pdf2image/poppler
        else:
            images_px = [render_clip(page, r, dpi) for r in targets]  # image regions, through PyMuPDF
        found_all = engine.ocr_many(images_px)
        if res.ocr_mode == "page":
            found_all = [_with_sparse_pass(engine, images_px[0], found_all[0], cfg)]
        accepted: list[tuple[float, float, float, float]] = []
        for region, image, found in zip(targets, images_px, found_all, strict=True):
            scale = image.width / (region[2] - region[0])
            ocr_blocks += _ocr_to_blocks(found, region, scale, taken, accepted, cfg)
        res.ocr = True
        res.ocr_regions = len(targets)
    blocks += ocr_blocks
    for region in images:
        if covered_share(region, page_box) and not any(_center_in(b.bbox, region) for b in ocr_blocks):
            if _area(region) < cfg.background_image_area * _area(page_box):
                blocks.append(Block("figure", region, "", "textlayer" if verdict == "ok" else "ocr"))

    body = body_size(kept_lines)
    sizes = [b.size for b in ocr_blocks if b.size]
    weights = [max(1, b.chars) for b in ocr_blocks if b.size]
    ocr_body = _weighted_median(sizes, weights) if sizes else None
    if body is None:
        body = ocr_body
    if ocr_body is None or sum(weights) <= cfg.title_max_chars:
        ocr_body = body  # too little OCR text to know its body size: compare with the text layer's
    classify(blocks, rect.width, rect.height, body, cfg, ocr_body=ocr_body)
    res.blocks = order_blocks(blocks, cfg)
    return res


def _with_sparse_pass(engine: OcrEngine, image: Any, found: list[OcrBlock], cfg: Parse) -> list[OcrBlock]:
    """Whole-page OCR of a map, cover or leaflet: add a sparse-text pass and put the better pass first.

    Tesseract's column segmentation (psm 4) reads paragraphs well but merges,
    misreads or drops scattered labels; its sparse-text mode (psm 11) finds
    those but breaks paragraphs into fragments. Pages whose first pass averages
    fewer than ``ocr_sparse_line_chars`` letters per line are scattered text:
    both passes are kept, the one with more confident letters first, and
    ``_ocr_to_blocks`` drops the other's words that repeat it (box overlap).
    """
    sparse = getattr(engine, "ocr_sparse", None)
    lines = [ln for ob in found for ln in ob.lines if ln.words]
    letters = sum(1 for ln in lines for c in ln.text if is_content(c))
    if sparse is None or (lines and letters / len(lines) >= cfg.ocr_sparse_line_chars):
        return found
    other = sparse(image)
    if other is None:
        return found
    return found + other if _ocr_score(found, cfg) >= _ocr_score(other, cfg) else other + found


def _ocr_score(found: list[OcrBlock], cfg: Parse) -> float:
    """Letters read with at least the minimum confidence, weighted by confidence."""
    return sum(
        w.confidence * sum(1 for c in w.text if is_content(c))
        for ob in found
        for ln in ob.lines
        for w in ln.words
        if w.confidence * 100 >= cfg.ocr_min_confidence
    )


def _is_photo(page: Any, region: tuple, page_box: tuple, cfg: Parse) -> bool:
    """Is an image region a photo (not worth OCR)? Its most common colour covers less than
    ``ocr_photo_max_flat_share`` of it (8 levels per channel, on a small render). Text cards, menus and
    tables sit on flat backgrounds (sample at 72 dpi: 80-94% of the region), photos do not (16-69%); on the
    sample 48 of 54 regions are photos and their OCR was ~60% of the parse time. Page-sized images
    (backgrounds, scans) are always OCR'd."""
    if cfg.ocr_photo_max_flat_share <= 0 or _area(region) >= cfg.background_image_area * _area(page_box):
        return False
    import pymupdf

    pix = page.get_pixmap(clip=pymupdf.Rect(region), dpi=cfg.photo_check_dpi, alpha=False, colorspace=pymupdf.csRGB)
    px = np.frombuffer(pix.samples, dtype=np.uint8).reshape(-1, 3) // 32
    counts = np.bincount(px[:, 0].astype(np.int32) * 64 + px[:, 1] * 8 + px[:, 2], minlength=512)
    return counts.max() / max(len(px), 1) < cfg.ocr_photo_max_flat_share


def _center_in(inner: tuple, outer: tuple) -> bool:
    cx, cy = (inner[0] + inner[2]) / 2, (inner[1] + inner[3]) / 2
    return outer[0] <= cx <= outer[2] and outer[1] <= cy <= outer[3]


def _area(b: tuple) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def _weighted_median(values: list[float], weights: list[int]) -> float:
    pairs = sorted(zip(values, weights, strict=True))
    half, acc = sum(weights) / 2, 0
    for value, weight in pairs:
        acc += weight
        if acc >= half:
            return value
    return pairs[-1][0]


def _image_regions(page: Any, page_box: tuple, cfg: Parse) -> list[tuple]:
    """Raster image boxes (clipped to the page) big enough to hold text, largest first, nested ones dropped."""
    boxes = []
    for info in page.get_image_info():
        b = info["bbox"]
        clip = (max(b[0], page_box[0]), max(b[1], page_box[1]), min(b[2], page_box[2]), min(b[3], page_box[3]))
        if _area(clip) >= cfg.min_image_area * _area(page_box):
            boxes.append(tuple(round(v, 2) for v in clip))
    boxes.sort(key=lambda b: (-_area(b), b[1], b[0]))
    out: list[tuple] = []
    for b in boxes:
        if not any(covered_share(b, o) >= cfg.dedupe_overlap for o in out):
            out.append(b)
    return out


def _ocr_to_blocks(
    found: list[OcrBlock],
    region: tuple,
    scale: float,
    taken: list[tuple],
    accepted: list[tuple],
    cfg: Parse,
) -> list[Block]:
    """Map OCR blocks (crop pixels) to page points, drop duplicates and noise, build Blocks."""
    out: list[Block] = []
    ox, oy = region[0], region[1]
    # only text-layer spans that touch the region can repeat its words (a page holds thousands)
    taken = [t for t in taken if t[0] < region[2] and t[2] > region[0] and t[1] < region[3] and t[3] > region[1]]
    for ob in found:
        for line in ob.lines:
            kept = []
            for w in line.words:
                box = (ox + w.bbox[0] / scale, oy + w.bbox[1] / scale, ox + w.bbox[2] / scale, oy + w.bbox[3] / scale)
                if w.confidence * 100 < cfg.ocr_min_confidence:
                    continue
                w.text = strip_ocr_junk(w.text)
                if not w.text:
                    continue
                if any(covered_share(box, t) >= cfg.dedupe_overlap for t in taken):
                    continue  # already in the text layer (text drawn over the image) or a table
                if any(covered_share(box, a) >= cfg.dedupe_overlap for a in accepted):
                    continue  # already read from an overlapping region
                w.bbox = box
                kept.append(w)
            if kept:
                kept[0].space_before = False
            line.words = kept if content_share("".join(w.text for w in kept)) >= cfg.ocr_min_content_share else []
        ob.lines = [ln for ln in ob.lines if ln.words]
        if not ob.lines:
            continue
        if ob.rows is not None and sum(sum(1 for c in r if c.words) >= 2 for r in ob.rows) < cfg.table_min_rows:
            ob.rows = None  # too few real rows left after filtering: map labels, not a table
        plain = " ".join(ln.text for ln in ob.lines)  # without table separators
        text_chars = sum(1 for c in plain if is_content(c))
        if ob.confidence < cfg.ocr_min_block_confidence or text_chars < cfg.ocr_min_block_chars:
            continue
        if content_share(plain) < cfg.ocr_min_content_share:
            continue
        accepted.extend(w.bbox for ln in ob.lines for w in ln.words)
        out.append(_ocr_block(ob))
    return out


def _ocr_block(ob: OcrBlock) -> Block:
    heights = sorted(ln.bbox[3] - ln.bbox[1] for ln in ob.lines)
    size = round(heights[len(heights) // 2], 2)
    bbox = tuple(round(v, 2) for v in ob.bbox)
    conf = round(ob.confidence, 3)
    if ob.rows is not None:
        rows = [" | ".join(normalise_ocr(c.text) for c in row) for row in ob.rows if any(c.words for c in row)]
        return Block("table", bbox, "\n".join(rows), "ocr", confidence=conf, size=size, items=rows, lines=len(rows))
    texts = [normalise_ocr(ln.text) for ln in ob.lines]
    if list_marker(texts[0])[0]:
        items: list[list[str]] = []
        for t in texts:
            marker, rest = list_marker(t)
            if marker or not items:
                items.append([])
            items[-1].append(normalise_ocr(rest))
        joined = [" ".join(i) for i in items if any(i)]
        return Block("list", bbox, "\n".join(joined), "ocr", confidence=conf, size=size, items=joined, lines=len(texts))
    return Block("text", bbox, " ".join(t for t in texts if t), "ocr", confidence=conf, size=size, lines=len(texts))
