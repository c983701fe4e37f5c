"""OCR results (words, lines, blocks with pixel boxes) and how an engine's lines become blocks.

Shared by every engine in ``ocr.py``: lines are split at column gutters and table rules
(``split_line``), rows of aligned pieces become tables, and the rest is grouped into
paragraph-like blocks by line gap and size (``layout_blocks``, ``group_lines``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

BBox = tuple[float, float, float, float]


@dataclass
class OcrWord:
    text: str
    bbox: BBox  # pixels in the image given to the engine
    confidence: float  # 0-1
    space_before: bool = True


@dataclass
class OcrLine:
    words: list[OcrWord] = field(default_factory=list)

    @property
    def text(self) -> str:
        out = []
        for i, w in enumerate(self.words):
            if i and w.space_before:
                out.append(" ")
            out.append(w.text)
        return "".join(out)

    @property
    def bbox(self) -> BBox:
        return union_bbox([w.bbox for w in self.words])


@dataclass
class OcrBlock:
    lines: list[OcrLine] = field(default_factory=list)
    rows: list[list[OcrLine]] | None = None  # tables: cells per row (the cells are also in ``lines``)

    @property
    def text(self) -> str:
        if self.rows is not None:
            return "\n".join(" | ".join(c.text for c in row) for row in self.rows if any(c.words for c in row))
        return "\n".join(line.text for line in self.lines if line.words)

    @property
    def bbox(self) -> BBox:
        return union_bbox([line.bbox for line in self.lines if line.words])

    @property
    def confidence(self) -> float:
        """Mean word confidence weighted by characters."""
        words = [w for line in self.lines for w in line.words]
        total = sum(len(w.text) for w in words)
        if not total:
            return 0.0
        return sum(w.confidence * len(w.text) for w in words) / total


class OcrEngine(Protocol):
    name: str

    def ocr(self, image: Any) -> list[OcrBlock]: ...

    def ocr_many(self, images: list[Any]) -> list[list[OcrBlock]]: ...


def union_bbox(boxes: list[BBox]) -> BBox:
    if not boxes:
        return (0.0, 0.0, 0.0, 0.0)
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


@dataclass(frozen=True)
class LayoutParams:
    """How OCR lines become blocks (params parse.ocr_split_gap, ocr_line_gap, ocr_size_ratio)."""

    split_gap: float  # a gap between words wider than this x line height splits the line (column gutter)
    line_gap: float  # a line joins the block above when the vertical gap is below this x line height
    size_ratio: float  # ...and the two line heights differ by less than this factor
    table_min_cols: int  # consecutive lines cut into at least this many pieces...
    table_min_rows: int  # ...at least this many times in a row form a table


def _height(line: OcrLine) -> float:
    """Typical glyph height of a line: median height of its words with letters or digits."""
    hs = sorted(w.bbox[3] - w.bbox[1] for w in line.words if any(c.isalnum() for c in w.text))
    if not hs:
        b = line.bbox
        return b[3] - b[1]
    return hs[len(hs) // 2]


_BARS = "|｜¦ㅣ"  # table rules read as glyphs (ㅣ is the jamo Tesseract often reads for a rule)
_ONE = re.compile(r"[|｜ㅣ]([.)])")  # ...but 'ㅣ.' / '|)' at a list item's start is the digit 1


def split_line(line: OcrLine, split_gap: float) -> list[OcrLine]:
    """Cut a line at horizontal gaps wider than ``split_gap`` x line height and at table rules (``|``).

    Tesseract reads a line straight across a column gutter, across the cells
    of a table, or across two labels of a map; the pieces are grouped and
    ordered afterwards.
    """
    out: list[OcrLine] = []
    h = _height(line)
    piece: list[OcrWord] = []

    def cut() -> None:
        nonlocal piece
        if piece:
            piece[0].space_before = False
            out.append(OcrLine(piece))
        piece = []

    for w in sorted(line.words, key=lambda w: w.bbox[0]):
        if piece and w.bbox[0] - piece[-1].bbox[2] > split_gap * h:
            cut()
        if _ONE.fullmatch(w.text):
            w.text = "1" + w.text[1:]
        lead, tail = w.text[:1] in _BARS, w.text[-1:] in _BARS
        w.text = w.text.strip(_BARS)
        if lead:
            cut()
        if w.text:
            piece.append(w)
        if tail:
            cut()
    cut()
    return out


def _aligned(row_a: list[OcrLine], row_b: list[OcrLine]) -> bool:
    """Is ``row_b`` the table row after ``row_a``: below it, a similar number of cells, and at least two
    cell positions shared (left edges or centres within a line height)? Map labels are not."""
    h = max(_height(row_b[0]), 1.0)

    def near(a: OcrLine, b: OcrLine) -> bool:
        (ax0, _, ax1, _), (bx0, _, bx1, _) = a.bbox, b.bbox
        return abs(ax0 - bx0) <= h or abs((ax0 + ax1) / 2 - (bx0 + bx1) / 2) <= h

    top_b = min(c.bbox[1] for c in row_b)
    bottom_a = max(c.bbox[3] for c in row_a)
    if top_b < bottom_a - h / 2 or abs(len(row_a) - len(row_b)) > 1:
        return False  # overlapping "rows" or very different cell counts: scattered labels
    return sum(1 for b in row_b if any(near(a, b) for a in row_a)) >= 2


def layout_blocks(lines: list[OcrLine], p: LayoutParams) -> list[OcrBlock]:
    """Lines -> blocks: runs of lines cut into many pieces are table rows; the rest are grouped into paragraphs."""
    split = [(line, split_line(line, p.split_gap)) for line in sorted(lines, key=lambda ln: ln.bbox[1])]
    blocks: list[OcrBlock] = []
    loose: list[OcrLine] = []
    run: list[list[OcrLine]] = []

    def flush() -> None:
        nonlocal run
        if len(run) >= p.table_min_rows:
            blocks.append(OcrBlock([c for row in run for c in row], rows=run))
        else:
            loose.extend(c for row in run for c in row)
        run = []

    for _, pieces in split:
        if len(pieces) >= p.table_min_cols:
            if run and not _aligned(run[-1], pieces):
                flush()
            run.append(pieces)
        else:
            flush()
            loose.extend(pieces)
    flush()
    return blocks + group_lines(loose, p)


def group_lines(lines: list[OcrLine], p: LayoutParams) -> list[OcrBlock]:
    """Group lines into paragraph blocks, top to bottom.

    A line joins the block whose last line it overlaps horizontally, lies
    below within ``line_gap`` x its height, and has a similar height; the
    closest such block wins.
    """
    blocks: list[OcrBlock] = []
    for line in sorted(lines, key=lambda ln: (ln.bbox[1], ln.bbox[0])):
        box, h = line.bbox, _height(line)
        best, best_gap = None, None
        for block in blocks:
            last = block.lines[-1]
            lb, lh = last.bbox, _height(last)
            overlap = min(lb[2], box[2]) - max(lb[0], box[0])
            gap = box[1] - lb[3]
            similar = max(h, lh) <= p.size_ratio * max(min(h, lh), 1e-6)
            if overlap > 0 and -0.5 * h <= gap <= p.line_gap * max(h, lh) and similar:
                if best_gap is None or gap < best_gap:
                    best, best_gap = block, gap
        if best is None:
            blocks.append(OcrBlock([line]))
        else:
            best.lines.append(line)
    return blocks
