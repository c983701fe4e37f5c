"""parse: brochure PDF -> layout blocks in reading order (text layer first, OCR where needed).

    python -m stages.parse --pdf data/sample/jecheon_2025_sample.pdf --out data/parsed \\
        --metrics metrics/parse.json [--truth data/sample/ground_truth.jsonl] [--params params.yaml]

Per page:
1. the PyMuPDF text layer (``get_text('dict')``: lines, boxes, font sizes) when it is usable;
   a sparse one (< ``textlayer_min_chars``) is kept and the page is also OCR'd whole,
   a garbage one (replacement/private-use/CID/mis-encoded characters) is dropped and the page OCR'd;
2. ruled tables (``find_tables``) as 'a | b' rows, their text-layer lines removed;
3. OCR (engine from ``parse.ocr_engine``) of the page render (pdf2image) for whole-page OCR, or of
   each embedded raster image larger than ``min_image_area`` on text pages that is not a photo (a
   flat-background test: photos become figure blocks without OCR); scattered whole pages (maps,
   covers) get a second, sparse-text pass; OCR words that repeat the text layer (or another OCR
   region or pass) are dropped, and OCR blocks must look like text (confidence, share of
   Hangul/letters/digits) so photo noise is discarded;
4. block types (title/text/list/table/caption/header/footer/figure) and column-aware reading order,
   figures in place.

Outputs follow docs/data-contracts.md (parse section); metrics add CER against a ground truth.
"""

from __future__ import annotations

import argparse
import io as _io
import json
import logging
import shutil
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ._parse_layout import (
    Block,
    assign_levels,
    blocks_from_lines,
    body_size,
    classify,
    content_share,
    covered_share,
    is_content,
    list_marker,
    normalise_ocr,
    order_blocks,
    strip_ocr_junk,
    table_blocks,
    textlayer_lines,
    textlayer_verdict,
    to_markdown,
)
from ._parse_ocr import OcrBlock, OcrEngine, make_engine
from .common import io, params
from .common.env import check_machine, setup_env
from .common.errors import UserError, run_cli

log = logging.getLogger("parse")

NOT_IN_TEXT = ("header", "footer", "figure")  # block types left out of page text (markdown, CER)


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class ParseConfig:
    """params.yaml ``parse:`` merged with ``profiles.<profile>.parse`` (see params.yaml for meanings)."""

    dpi: int
    image_dpi: int
    max_render_pixels: int
    textlayer_min_chars: int
    garbage_max_share: float
    min_image_area: float
    background_image_area: float
    ocr_engine: str
    ocr_lang: str
    ocr_min_confidence: float
    ocr_min_block_confidence: float
    ocr_min_content_share: float
    ocr_min_block_chars: int
    ocr_timeout_s: float
    ocr_split_gap: float
    ocr_line_gap: float
    ocr_size_ratio: float
    ocr_table_min_cols: int
    ocr_sparse_line_chars: float
    ocr_photo_max_flat_share: float
    photo_check_dpi: int
    dedupe_overlap: float
    header_band: float
    header_max_chars: int
    title_size_ratio: float
    title_max_chars: int
    title_bold_max_chars: int
    ocr_title_max_lines: int
    caption_max_chars: int
    caption_max_gap: float
    max_heading_levels: int
    block_split_size_ratio: float
    paragraph_gap: float
    wrap_margin: float
    table_strategy: str
    table_use_layout: bool
    table_min_rows: int
    table_min_cols: int
    column_min_gap: float
    column_min_chars_share: float
    line_tolerance: float
    truth_overlap: float
    workers: int
    # engine-specific: required only for the selected engine
    tesseract_psm: int | None = None
    tesseract_threads: int | None = None
    tesseract_sparse_psm: int | None = None
    paddle_model_dir: str | None = None
    paddle_det_model: str | None = None
    paddle_rec_model: str | None = None
    paddle_device: str | None = None

    @classmethod
    def from_params(cls, section: dict[str, Any]) -> ParseConfig:
        engine_keys = {
            "tesseract": ("tesseract_psm", "tesseract_threads", "tesseract_sparse_psm"),
            "paddleocr": (
                "paddle_model_dir",
                "paddle_det_model",
                "paddle_rec_model",
                "paddle_device",
            ),
        }
        values: dict[str, Any] = {}
        engine = params.require(section, "ocr_engine", str, "parse")
        if engine not in engine_keys:
            raise UserError(f"params: parse.ocr_engine must be one of {', '.join(engine_keys)}, got {engine!r}")
        for f in fields(cls):
            optional = f.default is None
            if optional and f.name not in engine_keys[engine] and f.name not in section:
                continue
            kind = _KINDS[f.name]
            values[f.name] = params.require(section, f.name, kind, "parse")
        unknown = sorted(set(section) - {f.name for f in fields(cls)})
        if unknown:
            raise UserError(f"params: unknown key parse.{unknown[0]}")
        return cls(**values)


_NUM = (int, float)
_KINDS: dict[str, Any] = {
    f.name: {"int": int, "float": _NUM, "str": str, "bool": bool}[f.type.split(" |")[0]] for f in fields(ParseConfig)
}


# ---------------------------------------------------------------- input checks


def open_pdf(path: Path) -> Any:
    """Open and validate the input PDF; every problem is one UserError line naming the file."""
    import pymupdf

    if not path.exists():
        raise UserError(f"{path}: file not found")
    if not path.is_file():
        raise UserError(f"{path}: not a file")
    head = path.read_bytes()[:1024]
    if b"%PDF-" not in head:
        raise UserError(f"{path}: not a PDF (no %PDF header)")
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        fh.seek(max(0, size - 2048))
        tail = fh.read()
    if b"%%EOF" not in tail:
        raise UserError(f"{path}: truncated or corrupt PDF (no %%EOF trailer)")
    try:
        doc = pymupdf.open(path, filetype="pdf")
    except Exception as exc:  # pymupdf raises FileDataError / RuntimeError subclasses
        raise UserError(f"{path}: corrupt PDF ({_one_line(exc)})") from exc
    if doc.needs_pass:
        doc.close()
        raise UserError(f"{path}: encrypted PDF (needs a password)")
    if doc.page_count == 0:
        doc.close()
        raise UserError(f"{path}: PDF has no pages")
    return doc


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}" if exc.__class__.__name__ not in text else text


# ---------------------------------------------------------------- per page


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


def parse_page(doc: Any, pdf_path: Path, pno: int, cfg: ParseConfig, engine: OcrEngine | None) -> PageResult:
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
            images_px = [_render(pdf_path, pno, dpi)]  # the whole page, through pdf2image/poppler
        else:
            images_px = [_render_clip(page, r, dpi) for r in targets]  # image regions, through PyMuPDF
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


def _with_sparse_pass(engine: OcrEngine, image: Any, found: list[OcrBlock], cfg: ParseConfig) -> list[OcrBlock]:
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


def _ocr_score(found: list[OcrBlock], cfg: ParseConfig) -> float:
    """Letters read with at least the minimum confidence, weighted by confidence."""
    return sum(
        w.confidence * sum(1 for c in w.text if is_content(c))
        for ob in found
        for ln in ob.lines
        for w in ln.words
        if w.confidence * 100 >= cfg.ocr_min_confidence
    )


def _is_photo(page: Any, region: tuple, page_box: tuple, cfg: ParseConfig) -> bool:
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


def _image_regions(page: Any, page_box: tuple, cfg: ParseConfig) -> list[tuple]:
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


def capped_dpi(width_pt: float, height_pt: float, dpi: int, max_pixels: int) -> int:
    """``dpi``, lowered so a page renders to at most ``max_pixels`` (a poster-sized page must not eat the RAM)."""
    pixels = width_pt * height_pt * (dpi / 72) ** 2
    if pixels <= max_pixels:
        return dpi
    capped = max(1, int(72 * (max_pixels / (width_pt * height_pt)) ** 0.5))
    log.info("%.0f x %.0f pt page: %d dpi instead of %d (parse.max_render_pixels)", width_pt, height_pt, capped, dpi)
    return capped


def _render(pdf_path: Path, pno: int, dpi: int) -> Any:
    from pdf2image import convert_from_path

    images = convert_from_path(str(pdf_path), dpi=dpi, first_page=pno, last_page=pno, use_cropbox=True, thread_count=1)
    if not images:
        raise RuntimeError(f"pdftoppm rendered nothing for page {pno}")
    return images[0].convert("RGB")


def _render_clip(page: Any, region: tuple, dpi: int) -> Any:
    import pymupdf
    from PIL import Image

    pix = page.get_pixmap(clip=pymupdf.Rect(region), dpi=dpi, alpha=False, colorspace=pymupdf.csRGB)
    return Image.frombytes("RGB", (pix.width, pix.height), pix.samples)


def _ocr_to_blocks(
    found: list[OcrBlock],
    region: tuple,
    scale: float,
    taken: list[tuple],
    accepted: list[tuple],
    cfg: ParseConfig,
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


# ---------------------------------------------------------------- running pages (optionally in a pool)

_WORKER: dict[str, Any] = {}


def _init_worker(pdf_path: str, cfg: ParseConfig, need_engine: bool) -> None:
    import pymupdf

    _WORKER.clear()
    _WORKER.update(pdf=Path(pdf_path), cfg=cfg, doc=pymupdf.open(pdf_path), engine=None, need_engine=need_engine)


def _engine() -> OcrEngine | None:
    if _WORKER["engine"] is None and _WORKER["need_engine"]:
        _WORKER["engine"] = make_engine(_WORKER["cfg"])
    return _WORKER["engine"]


def _run_page(pno: int) -> PageResult:
    """Parse one page and render its citation image; failures become a failed PageResult."""
    cfg: ParseConfig = _WORKER["cfg"]
    try:
        res = parse_page(_WORKER["doc"], _WORKER["pdf"], pno, cfg, _engine())
    except UserError:
        raise
    except Exception as exc:  # one bad page must not sink the document
        res = PageResult(page=pno, status="failed", error=_one_line(exc))
        try:
            r = _WORKER["doc"][pno - 1].rect
            res.width, res.height = round(r.width, 2), round(r.height, 2)
        except Exception:  # the page object itself may be unreadable
            pass
    try:
        buf = _io.BytesIO()
        r = _WORKER["doc"][pno - 1].rect
        dpi = capped_dpi(r.width, r.height, cfg.image_dpi, cfg.max_render_pixels)
        _render(_WORKER["pdf"], pno, dpi).save(buf, format="PNG")
        res.png = buf.getvalue()
    except Exception as exc:  # a missing citation image is recorded, not fatal
        if res.status == "ok":
            res.status, res.error = "failed", f"page image: {_one_line(exc)}"
    return res


def run_pages(pdf_path: Path, n_pages: int, cfg: ParseConfig, engine: OcrEngine | None) -> list[PageResult]:
    """All pages in order, in a process pool of ``cfg.workers`` when the engine allows it."""
    from tqdm import tqdm

    pages = list(range(1, n_pages + 1))
    parallel = cfg.workers > 1 and n_pages > 1 and getattr(engine, "parallel_safe", True)
    bar = dict(total=n_pages, desc="parse", unit="page", leave=False)
    if not parallel:
        _init_worker(str(pdf_path), cfg, need_engine=False)
        _WORKER["engine"] = engine
        try:
            return [_run_page(p) for p in tqdm(pages, **bar)]
        finally:
            _WORKER["doc"].close()
            _WORKER.clear()
    with ProcessPoolExecutor(
        max_workers=min(cfg.workers, n_pages),
        initializer=_init_worker,
        initargs=(str(pdf_path), cfg, engine is not None),
    ) as pool:
        return list(tqdm(pool.map(_run_page, pages), **bar))


# ---------------------------------------------------------------- records and outputs


def block_records(doc_name: str, results: list[PageResult]) -> list[dict[str, Any]]:
    out = []
    for res in results:
        for i, b in enumerate(res.blocks, start=1):
            out.append(
                {
                    "doc": doc_name,
                    "page": res.page,
                    "block_id": f"p{res.page:03d}-b{i:03d}",
                    "order": i,
                    "type": b.type,
                    "bbox": [round(v, 2) for v in b.bbox],
                    "text": b.text,
                    "source": b.source,
                    "confidence": b.confidence if b.source == "ocr" else None,
                    "font_size": b.font_size if b.source == "textlayer" else None,
                    "level": b.level,
                }
            )
    return out


def page_record(res: PageResult) -> dict[str, Any]:
    return {
        "page": res.page,
        "width": res.width,
        "height": res.height,
        "textlayer_chars": res.textlayer_chars,
        "ocr": res.ocr,
        "status": res.status,
        "error": res.error,
    }


def write_outputs(out_dir: Path, records: list[dict], results: list[PageResult]) -> None:
    with io.atomic_dir(out_dir) as tmp:
        io.dump_jsonl(tmp / "blocks.jsonl", records)
        io.dump_jsonl(tmp / "pages.jsonl", (page_record(r) for r in results))
        (tmp / "pages").mkdir()
        (tmp / "images").mkdir()
        for res in results:
            (tmp / "pages" / f"page_{res.page:03d}.md").write_text(to_markdown(res.blocks), encoding="utf-8")
            if res.png:
                (tmp / "images" / f"page_{res.page:03d}.png").write_bytes(res.png)


# ---------------------------------------------------------------- CER


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
            raise UserError(f"{path}:{n}: not a ground-truth record ({_one_line(exc)})") from exc
        rows.append(row)
    return rows


def truth_metrics(results: list[PageResult], truth: list[dict[str, Any]], cfg: ParseConfig) -> dict[str, Any]:
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


def parse_metrics(results: list[PageResult], records: list[dict], seconds: float, engine: str) -> dict[str, Any]:
    types = Counter(r["type"] for r in records)
    chars = Counter()
    for r in records:
        chars[r["source"]] += sum(1 for c in r["text"] if not c.isspace())
    return {
        "pages": len(results),
        "failed_pages": sum(1 for r in results if r.status == "failed"),
        "failed": [{"page": r.page, "error": r.error} for r in results if r.status == "failed"],
        "blocks": len(records),
        "blocks_by_type": dict(sorted(types.items())),
        "chars_by_source": {"textlayer": chars["textlayer"], "ocr": chars["ocr"]},
        "ocr_engine": engine,
        "ocr_pages": sum(1 for r in results if r.ocr_mode == "page"),
        "ocr_region_pages": sum(1 for r in results if r.ocr_mode == "regions"),
        "ocr_regions": sum(r.ocr_regions for r in results if r.ocr_mode == "regions"),
        "photo_regions_not_ocred": sum(r.photos_skipped for r in results),
        "seconds": round(seconds, 2),
        "pages_per_second": round(len(results) / seconds, 3) if seconds else None,
    }


# ---------------------------------------------------------------- CLI


def run(pdf: Path, out: Path, metrics_path: Path, truth_path: Path | None, params_path: Path) -> dict[str, Any]:
    start = time.perf_counter()
    loaded = params.load(params_path, "parse", "machine")
    setup_env(offline=bool(loaded["machine"].get("offline", True)))
    check_machine({"name": loaded["profile"], **loaded["machine"]})  # runpod: fail here, not inside PaddleOCR
    cfg = ParseConfig.from_params(loaded["parse"])
    truth = load_truth(truth_path) if truth_path else None
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
    if truth is not None:
        metrics.update(truth_metrics(results, truth, cfg))
    io.write_json(metrics_path, metrics)
    summary = (
        f"{metrics['pages']} pages ({metrics['failed_pages']} failed), {metrics['blocks']} blocks, "
        f"{metrics['ocr_pages']} OCR pages + {metrics['ocr_regions']} OCR regions, "
        f"{seconds:.1f} s ({metrics['pages_per_second']} pages/s)"
    )
    if truth is not None:
        summary += f", CER {metrics['cer']}"
    log.info("%s -> %s: %s", pdf, out, summary)
    return metrics


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m stages.parse", description=__doc__.split("\n")[0])
    ap.add_argument("--pdf", required=True, type=Path, help="input brochure PDF")
    ap.add_argument("--out", required=True, type=Path, help="output folder (data/parsed)")
    ap.add_argument("--metrics", required=True, type=Path, help="metrics JSON (metrics/parse.json)")
    ap.add_argument("--truth", type=Path, default=None, help="ground-truth jsonl for CER (optional)")
    ap.add_argument("--params", type=Path, default=params.DEFAULT_PARAMS, help="params.yaml")
    args = ap.parse_args(argv)
    run(args.pdf, args.out, args.metrics, args.truth, args.params)


if __name__ == "__main__":
    run_cli(main)
