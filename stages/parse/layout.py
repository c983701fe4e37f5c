"""Layout for the parse stage (part of the stages.parse package): text-layer lines,
normalisation, garbage detection, block typing, tables and reading order.

Everything here is pure (plain data in, plain data out) except the two
functions that read a PyMuPDF page (``textlayer_lines``, ``table_blocks``).
Coordinates are PDF points, origin top-left, as PyMuPDF gives them.
"""

from __future__ import annotations

import re
import statistics
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from stages.parse.text import (  # noqa: F401  (re-exported: callers import them from layout)
    content_share,
    is_content,
    is_hangul,
    join_lines,
    list_marker,
    nfc,
    normalise,
    normalise_ocr,
    strip_ocr_junk,
)

BBox = tuple[float, float, float, float]

TEXT_TYPES = ("title", "text", "list", "table", "caption")
DROPPED_FROM_MARKDOWN = ("header", "footer", "figure")


@dataclass
class Line:
    """One text-layer line (a PyMuPDF line: spans on one baseline)."""

    text: str  # raw span text joined, NFC
    bbox: BBox
    size: float  # median span font size, weighted by characters
    bold: bool
    spans: list[BBox] = field(default_factory=list)


@dataclass
class Block:
    type: str
    bbox: BBox
    text: str
    source: str  # textlayer | ocr
    confidence: float | None = None
    font_size: float | None = None
    level: int | None = None
    size: float | None = None  # font size (text layer) or line height in points (OCR): for title ranking
    bold: bool = False
    items: list[str] = field(default_factory=list)  # list items / table rows, for markdown
    lines: int = 1  # text lines (OCR) or layout lines (text layer) in the block

    @property
    def chars(self) -> int:
        return sum(1 for c in self.text if not c.isspace())


# ---------------------------------------------------------------- garbage text layers

_CID = re.compile(r"\(cid:\d+\)")


def textlayer_verdict(text: str, cfg: Any) -> tuple[str, str | None]:
    """('ok', None), ('sparse', why) or ('garbage', why) for a page's text layer.

    Sparse: fewer than ``textlayer_min_chars`` characters (the page is OCR'd
    whole, the few text-layer lines are kept). Garbage (the text layer is
    dropped and the page OCR'd): a high share of replacement (U+FFFD),
    private-use, control or ``(cid:N)`` characters; or no Hangul at all while
    most letters are Latin-1 accented/symbol characters (a Korean encoding read
    as Latin-1: 'ÇÑ±¹¾î').
    """
    text = nfc(text)
    cids = len(_CID.findall(text))
    chars = [c for c in _CID.sub("", text) if not c.isspace()]
    total = len(chars) + cids  # a (cid:N) placeholder stands for one character
    if total < cfg.textlayer_min_chars:
        return "sparse", f"{total} text-layer characters"
    bad = cids + sum(1 for c in chars if c == "\ufffd" or unicodedata.category(c) in ("Co", "Cc", "Cs", "Cn"))
    if bad / total > cfg.garbage_max_share:
        return "garbage", f"{bad} of {total} characters are replacement/private-use/control/CID"
    hangul = sum(1 for c in chars if is_hangul(c))
    latin1 = sum(1 for c in chars if "\u00a1" <= c <= "\u00ff")
    if hangul == 0 and latin1 / max(len(chars), 1) > cfg.garbage_max_share:
        return "garbage", f"no Hangul and {latin1} of {len(chars)} characters are Latin-1 symbols (mis-encoded text)"
    return "ok", None


# ---------------------------------------------------------------- text layer

_BOLD_FONT = re.compile(r"bold|black|heavy|extrab", re.IGNORECASE)


def textlayer_lines(page_dict: dict) -> list[list[Line]]:
    """Lines grouped by PyMuPDF text block (``page.get_text('dict')``)."""
    groups: list[list[Line]] = []
    for block in page_dict.get("blocks", []):
        if block.get("type", 0) != 0:
            continue
        lines: list[Line] = []
        for line in block.get("lines", []):
            spans = [s for s in line.get("spans", []) if s.get("text")]
            text = nfc("".join(s["text"] for s in spans))
            if not text.strip():
                continue
            weights = [max(1, len(s["text"].strip())) for s in spans]
            sizes = [s["size"] for s in spans]
            size = _weighted_median(sizes, weights)
            bold_chars = sum(
                w
                for s, w in zip(spans, weights, strict=True)
                if s.get("flags", 0) & 16 or _BOLD_FONT.search(s.get("font", ""))
            )
            lines.append(
                Line(
                    text=text,
                    bbox=tuple(line["bbox"]),
                    size=round(size, 2),
                    bold=bold_chars * 2 >= sum(weights),
                    spans=[tuple(s["bbox"]) for s in spans if s["text"].strip()],
                )
            )
        if lines:
            groups.append(lines)
    return groups


def _weighted_median(values: list[float], weights: list[int]) -> float:
    pairs = sorted(zip(values, weights, strict=True))
    half = sum(weights) / 2
    acc = 0
    for value, weight in pairs:
        acc += weight
        if acc >= half:
            return value
    return pairs[-1][0]


def body_size(lines: list[Line]) -> float | None:
    """The page's body font size: median line size weighted by characters."""
    if not lines:
        return None
    return _weighted_median([ln.size for ln in lines], [max(1, len(ln.text.strip())) for ln in lines])


def split_strips(lines: list[Line], cfg: Any) -> list[list[Line]]:
    """Split a PyMuPDF block at vertical gaps (>= ``column_min_gap``) that no line crosses.

    PyMuPDF groups lines that share baselines into one block even across a
    column gutter; the columns come apart here, left to right.
    """
    if len(lines) < 2:
        return [lines]
    spans = sorted((ln.bbox[0], ln.bbox[2]) for ln in lines)
    cuts = []
    reach = spans[0][1]
    for x0, x1 in spans[1:]:
        if x0 - reach >= cfg.column_min_gap:
            cuts.append((reach + x0) / 2)
        reach = max(reach, x1)
    if not cuts:
        return [lines]
    edges = [float("-inf"), *cuts, float("inf")]
    strips = [[ln for ln in lines if lo <= ln.bbox[0] < hi] for lo, hi in zip(edges, edges[1:], strict=False)]
    return [s for s in strips if s]


def merge_rows(lines: list[Line]) -> list[Line]:
    """Merge PyMuPDF lines that sit side by side on one row (tab-separated fields) into one line."""
    out: list[Line] = []
    for ln in lines:
        prev = out[-1] if out else None
        if prev is not None and ln.bbox[0] >= prev.bbox[2] - 1 and _v_overlap(prev.bbox, ln.bbox) >= 0.5:
            glue = "" if prev.text[-1:].isspace() or ln.text[:1].isspace() else " "
            weights = [max(1, len(prev.text.strip())), max(1, len(ln.text.strip()))]
            out[-1] = Line(
                text=prev.text + glue + ln.text,
                bbox=_union([prev.bbox, ln.bbox]),
                size=_weighted_median([prev.size, ln.size], weights),
                bold=prev.bold if weights[0] >= weights[1] else ln.bold,
                spans=prev.spans + ln.spans,
            )
        else:
            out.append(ln)
    return out


def _v_overlap(a: BBox, b: BBox) -> float:
    """Vertical overlap as a share of the shorter box's height."""
    inter = min(a[3], b[3]) - max(a[1], b[1])
    return inter / max(min(a[3] - a[1], b[3] - b[1]), 1e-6)


def blocks_from_lines(groups: list[list[Line]], cfg: Any) -> list[Block]:
    """Turn PyMuPDF blocks into blocks: rows merged, split at font-size changes, big gaps and list
    starts, and consecutive pieces of one paragraph that PyMuPDF split re-joined."""
    runs: list[tuple[list[Line], bool]] = []
    for lines in (strip for group in groups for strip in split_strips(group, cfg)):
        run: list[Line] = []
        run_list = False
        for line in merge_rows(lines):
            marker, _ = list_marker(line.text)
            if run and (_size_change(run, line, cfg) or _big_gap(run[-1], line, cfg) or (marker and not run_list)):
                runs.append((run, run_list))
                run = []
            if not run:
                run_list = marker is not None
            run.append(line)
        if run:
            runs.append((run, run_list))
    merged: list[tuple[list[Line], bool]] = []
    for run, is_list in runs:
        if merged and _continues(merged[-1], (run, is_list), cfg):
            merged[-1] = (merged[-1][0] + run, merged[-1][1])
        else:
            merged.append((run, is_list))
    blocks = [_make_block(run, is_list, cfg) for run, is_list in merged]
    return [b for b in blocks if b.text]


def _size_change(run: list[Line], line: Line, cfg: Any) -> bool:
    ref = statistics.median(ln.size for ln in run)
    return abs(line.size - ref) > cfg.block_split_size_ratio * ref


def _big_gap(prev: Line, line: Line, cfg: Any) -> bool:
    return line.bbox[1] - prev.bbox[3] > cfg.paragraph_gap * (prev.bbox[3] - prev.bbox[1])


def _bold(lines: list[Line]) -> bool:
    return sum(len(ln.text) for ln in lines if ln.bold) * 2 >= sum(len(ln.text) for ln in lines)


def _continues(prev: tuple[list[Line], bool], cur: tuple[list[Line], bool], cfg: Any) -> bool:
    """Is ``cur`` the next piece of the paragraph ``prev`` (same style, same left edge, normal line gap)?"""
    (plines, plist), (clines, clist) = prev, cur
    if clist and not plist:
        return False  # a list starts after a paragraph
    if not clist and list_marker(clines[0].text)[0] is not None:
        return False
    if not plist and _bold(plines) != _bold(clines):
        return False
    last, first = plines[-1], clines[0]
    if _size_change(plines, first, cfg) or _big_gap(last, first, cfg) or first.bbox[1] < last.bbox[1]:
        return False
    left = min(ln.bbox[0] for ln in plines)
    return abs(first.bbox[0] - left) <= cfg.line_tolerance or (plist and first.bbox[0] > left)


def _wrapped(lines: list[Line], cfg: Any) -> list[bool]:
    """Was each line broken by the width inside a word?

    Yes when it has no trailing space and ends within ``wrap_margin`` x font
    size of the block's right margin, and that margin is real: reached by at
    least two lines, or the block is a two-line paragraph. (A lone widest line
    of a box of tab-separated fields is not wrapped.)
    """
    right = max(ln.bbox[2] for ln in lines)
    reach = [ln.bbox[2] >= right - cfg.wrap_margin * ln.size for ln in lines]
    margin_is_real = sum(reach) >= 2 or len(lines) == 2
    return [margin_is_real and r and not ln.text[-1:].isspace() for ln, r in zip(lines, reach, strict=True)]


def _make_block(lines: list[Line], is_list: bool, cfg: Any) -> Block:
    bbox = _union([ln.bbox for ln in lines])
    size = round(_weighted_median([ln.size for ln in lines], [max(1, len(ln.text.strip())) for ln in lines]), 2)
    bold = _bold(lines)
    wrapped = _wrapped(lines, cfg)
    if is_list:
        items: list[tuple[list[str], list[bool]]] = []
        for ln, wrap in zip(lines, wrapped, strict=True):
            marker, rest = list_marker(ln.text)
            if marker or not items:
                items.append(([], []))
            items[-1][0].append(normalise(rest))
            items[-1][1].append(wrap)
        texts = [t for t in (join_lines(t, w) for t, w in items) if t]
        return Block(
            "list",
            bbox,
            "\n".join(texts),
            "textlayer",
            font_size=size,
            size=size,
            bold=bold,
            items=texts,
            lines=len(lines),
        )
    texts = [normalise(ln.text) for ln in lines]
    return Block(
        "text", bbox, join_lines(texts, wrapped), "textlayer", font_size=size, size=size, bold=bold, lines=len(lines)
    )


def table_blocks(page: Any, cfg: Any) -> list[Block]:
    """Ruled tables found by PyMuPDF, as 'a | b | c' rows."""
    out: list[Block] = []
    try:
        found = page.find_tables(strategy=cfg.table_strategy, use_layout=cfg.table_use_layout)
    except Exception:  # find_tables fails on some vector soups; a page without tables is the safe answer
        return out
    words = page.get_text("words", sort=False) if found.tables else []
    for table in found.tables:
        rows = []
        for row in table.rows:
            # cell text straight from the text layer: Table.extract() drops spaces and misplaces commas
            cells = [_cell_text(words, cell) if cell else "" for cell in row.cells]
            if any(cells):
                rows.append(" | ".join(cells))
        if len(rows) < cfg.table_min_rows or table.col_count < cfg.table_min_cols:
            continue
        out.append(Block("table", tuple(table.bbox), "\n".join(rows), "textlayer", items=rows))
    return out


def _cell_text(words: list[tuple], cell: BBox) -> str:
    """The text-layer words whose centre lies in ``cell``, in text order (one word list per page:
    ``page.get_textbox`` per cell re-extracts the whole page every time, ~20 ms a cell)."""
    x0, y0, x1, y1 = cell
    inside = [w for w in words if x0 <= (w[0] + w[2]) / 2 <= x1 and y0 <= (w[1] + w[3]) / 2 <= y1]
    return normalise(" ".join(w[4] for w in sorted(inside, key=lambda w: (w[5], w[6], w[7]))))


# ---------------------------------------------------------------- block typing


def classify(
    blocks: list[Block], width: float, height: float, body: float | None, cfg: Any, ocr_body: float | None = None
) -> None:
    """Set header/footer/title/caption on text and list blocks in place.

    ``body`` is the page's body size (text-layer font size); OCR blocks are
    measured against ``ocr_body`` instead (their size is a line height in
    points, the median over the page's OCR text), and an OCR block of more
    than ``ocr_title_max_lines`` lines is never a title: the body text of a
    raster card is often set larger than the page's body font.
    """
    if ocr_body is None:
        ocr_body = body
    top = cfg.header_band * height
    bottom = height - cfg.header_band * height
    for b in blocks:
        if b.type not in ("text", "list", "title"):
            continue
        short = b.chars <= cfg.header_max_chars
        if short and b.bbox[3] <= top:
            b.type = "header"
            continue
        if short and b.bbox[1] >= bottom:
            b.type = "footer"
            continue
        ref = ocr_body if b.source == "ocr" else body
        if b.type != "text" or ref is None or b.size is None:
            continue
        if b.source == "ocr" and b.lines > cfg.ocr_title_max_lines:
            continue
        if b.size >= cfg.title_size_ratio * ref and b.chars <= cfg.title_max_chars:
            b.type = "title"
        elif b.bold and b.size >= ref and b.chars <= cfg.title_bold_max_chars and "\n" not in b.text:
            b.type = "title"
    mark_captions(blocks, body, ocr_body, cfg)


def mark_captions(blocks: list[Block], body: float | None, ocr_body: float | None, cfg: Any) -> None:
    """Short text blocks set smaller than the body, just above or below a figure and overlapping it
    horizontally, become its caption (body-size lines there are lead paragraphs or call-outs)."""
    figures = [b for b in blocks if b.type == "figure"]
    for b in blocks:
        ref = ocr_body if b.source == "ocr" else body
        if b.type != "text" or b.chars > cfg.caption_max_chars or not figures:
            continue
        if ref is None or b.size is None or b.size >= ref:
            continue
        width = max(b.bbox[2] - b.bbox[0], 1e-6)
        for f in figures:
            overlap = min(b.bbox[2], f.bbox[2]) - max(b.bbox[0], f.bbox[0])
            below, above = b.bbox[1] - f.bbox[3], f.bbox[1] - b.bbox[3]
            if overlap >= 0.5 * width and (0 <= below <= cfg.caption_max_gap or 0 <= above <= cfg.caption_max_gap):
                b.type = "caption"
                break


def assign_levels(blocks: list[Block], max_levels: int) -> None:
    """Heading level per title from its size rank over the whole document (1 = biggest)."""
    sizes = sorted({round(b.size or 0.0) for b in blocks if b.type == "title"}, reverse=True)
    rank = {s: min(i + 1, max_levels) for i, s in enumerate(sizes)}
    for b in blocks:
        b.level = rank[round(b.size or 0.0)] if b.type == "title" else None


# ---------------------------------------------------------------- geometry


def _union(boxes: list[BBox]) -> BBox:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def area(b: BBox) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def intersection(a: BBox, b: BBox) -> float:
    return area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))


def covered_share(inner: BBox, outer: BBox) -> float:
    """Share of ``inner``'s area inside ``outer``."""
    a = area(inner)
    return intersection(inner, outer) / a if a else 0.0


# ---------------------------------------------------------------- markdown


def to_markdown(blocks: list[Block]) -> str:
    parts = []
    for b in blocks:
        if b.type in DROPPED_FROM_MARKDOWN or not b.text:
            continue
        if b.type == "title":
            parts.append("#" * min(6, 1 + (b.level or 1)) + " " + b.text.replace("\n", " "))
        elif b.type == "list":
            parts.append("\n".join(f"- {item}" for item in (b.items or b.text.split("\n"))))
        elif b.type == "table":
            rows = b.items or b.text.split("\n")
            if rows:
                ncols = rows[0].count(" | ") + 1
                parts.append("\n".join([f"| {rows[0]} |", "|" + " --- |" * ncols] + [f"| {r} |" for r in rows[1:]]))
        else:
            parts.append(b.text)
    return "\n\n".join(parts) + ("\n" if parts else "")
