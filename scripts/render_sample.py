#!/usr/bin/env python3
"""Render the committed sample brochure and its per-page ground truth.

Input: ``data/sample/pages/page_NN.md`` (YAML front matter + a small markdown dialect).
Output: ``data/sample/jecheon_2025_sample.pdf`` and ``data/sample/ground_truth.jsonl``.

The PDF imitates an image-heavy Korean tourism brochure: A4 pages, Korean fonts embedded
(NanumGothic/NanumMyeongjo, subset), headings, one- and two-column pages, tables drawn with
lines, running headers and page numbers, procedural decorative "photos", and content that
exists only as raster images (no text layer) so that a parser must OCR it.

Page file format (see data/sample/README.md):

    ---
    page: 12
    layout: two-column            # one-column | two-column
    header: "PART 2 · 미리보는 여행지"   # running header; null = cover (no header, no page number)
    image_only: false             # true = the whole page (header/footer too) is one raster image
    ---
    # heading 1 .. #### heading 4
    paragraph lines (consecutive lines join with a space; blank line ends a paragraph)
    _whole paragraph in underscores_ = small grey "meta" line (addresses, sources)
    > quote (serif)
    - bullet item            1. numbered item
    | pipe | table |  (first row = header row)
    ![](decor:lake?h=120&w=200&seed=3)   decorative image, no text (consecutive ones form a row)
    ::: raster [box] [center] [scale=1.5]  ...  :::   rendered ONLY as an image (no text layer)
    ::: box [center] ... :::                        boxed callout in the text layer
    ::: kv ... :::                                  a table without header row, first column as labels
    ::: center ... :::                              centred blocks
    ::: columns                                     two-column pages: everything after this flows in 2 columns
    ::: colbreak                                    continue in the next column
    <!-- comment -->                                ignored
    **bold** inline anywhere.

Deterministic: fixed metadata and dates, no new /ID, seeded procedural images, sorted inputs.

A second brochure of a different layout (``--layout entries``: an A5 booklet about a fictional county,
one attraction per page, ruled fare/hours tables, NanumBarunGothic/NanumSquare instead of NanumGothic,
raster-only notice cards) comes from ``data/sample_entries/pages``; tests and the dataset benchmark
render it into a temp folder:

    python scripts/render_sample.py --layout entries --out /tmp/entries   # sollae_entries_sample.pdf + ground_truth.jsonl
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import re
import sys
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PAGES = ROOT / "data" / "sample" / "pages"
DEFAULT_PDF = ROOT / "data" / "sample" / "jecheon_2025_sample.pdf"
DEFAULT_TRUTH = ROOT / "data" / "sample" / "ground_truth.jsonl"
DEFAULT_FONT_DIR = "/usr/share/fonts/truetype/nanum"
FONT_FILES = {
    "R": "NanumGothic.ttf",
    "B": "NanumGothicBold.ttf",
    "M": "NanumMyeongjo.ttf",
    "MB": "NanumMyeongjoBold.ttf",
}

# ---------------------------------------------------------------- geometry & style (PDF points)
PAGE_W, PAGE_H = 595.28, 841.89  # A4
MARGIN_X = 50.0
CONTENT_TOP = 68.0
CONTENT_BOTTOM = 782.0
COVER_TOP = 48.0
COVER_BOTTOM = 800.0
COL_GAP = 22.0
HEADER_BASELINE = 34.0
HEADER_RULE_Y = 42.0
FOOTER_BASELINE = 818.0
RASTER_DPI = 300  # text-only raster regions (grayscale PNG)
PHOTO_RASTER_DPI = 200  # raster regions that contain a decorative photo (RGB JPEG)
DECOR_PX_PER_PT = 1.6  # ~115 dpi for decorative photos
MIN_RASTER_AREA = 0.05  # raster text regions are padded to at least this share of the page

BLACK = (0.13, 0.13, 0.13)
GREY = (0.40, 0.40, 0.40)
LIGHT = (0.55, 0.55, 0.55)
ACCENT = (0.06, 0.36, 0.42)  # deep teal
ACCENT2 = (0.55, 0.22, 0.10)  # brick
BOX_FILL = (0.93, 0.96, 0.95)
BOX_LINE = (0.55, 0.75, 0.72)
TABLE_HEAD = (0.86, 0.93, 0.92)
TABLE_LABEL = (0.95, 0.97, 0.96)
TABLE_LINE = (0.45, 0.55, 0.55)
RASTER_BOX_FILL = (0.94, 0.94, 0.94)
RASTER_BOX_LINE = (0.45, 0.45, 0.45)

# kind: (font, size, color, line-height factor, space before, space after)
STYLES = {
    "h1": ("B", 20.0, ACCENT, 1.25, 6.0, 6.0),
    "h2": ("B", 14.5, BLACK, 1.3, 10.0, 4.0),
    "h3": ("B", 12.0, ACCENT2, 1.3, 9.0, 3.0),
    "h4": ("B", 10.5, ACCENT, 1.35, 8.0, 3.0),
    "p": ("R", 10.5, BLACK, 1.5, 4.0, 0.0),
    "meta": ("R", 9.5, GREY, 1.4, 2.0, 0.0),
    "quote": ("M", 11.5, BLACK, 1.5, 4.0, 2.0),
    "li": ("R", 10.5, BLACK, 1.5, 2.0, 0.0),
    "table": ("R", 10.0, BLACK, 1.35, 6.0, 4.0),
    "decor": (None, 0.0, None, 1.0, 6.0, 4.0),
    "box": (None, 0.0, None, 1.0, 8.0, 4.0),
}
RASTER_MIN_SIZE = 10.0  # raster text is never smaller than this (OCR readability)

# Layouts: the constants above are the sample brochure's ("brochure"). Another layout replaces some of
# them before rendering (the layout code reads them at call time), so one markdown dialect and one
# renderer make brochures that look different to the parser: page size, margins, fonts, type sizes.
LAYOUTS: dict[str, dict] = {
    "brochure": {
        "pages": DEFAULT_PAGES,
        "name": DEFAULT_PDF.stem,
        "metadata": {
            "title": "2025 제천여행 길라잡이 (sample rendering)",
            "subject": "Sample Korean tourism brochure with raster-only regions, rendered from data/sample/pages",
            "keywords": "제천, 관광, brochure, sample",
        },
        "constants": {},
    },
    "entries": {
        "pages": ROOT / "data" / "sample_entries" / "pages",
        "name": "sollae_entries_sample",
        "metadata": {
            "title": "2026 솔내군 여행 안내 (synthetic, entries layout)",
            "subject": "Fictional county brochure: one entry per page, ruled fare and hours tables, raster cards",
            "keywords": "솔내군, 관광, brochure, synthetic",
        },
        "constants": {
            "PAGE_W": 419.53,  # A5
            "PAGE_H": 595.28,
            "MARGIN_X": 36.0,
            "CONTENT_TOP": 58.0,
            "CONTENT_BOTTOM": 552.0,
            "COVER_TOP": 40.0,
            "COVER_BOTTOM": 560.0,
            "HEADER_BASELINE": 28.0,
            "HEADER_RULE_Y": 36.0,
            "FOOTER_BASELINE": 578.0,
            "FONT_FILES": {
                "R": "NanumBarunGothic.ttf",
                "B": "NanumSquareB.ttf",
                "M": "NanumMyeongjo.ttf",
                "MB": "NanumMyeongjoBold.ttf",
            },
            "ACCENT": (0.45, 0.18, 0.38),  # plum
            "STYLES": {
                "h1": ("B", 18.0, (0.45, 0.18, 0.38), 1.25, 4.0, 8.0),
                "h2": ("B", 13.0, BLACK, 1.3, 10.0, 4.0),
                "h3": ("B", 11.5, (0.20, 0.35, 0.20), 1.3, 8.0, 3.0),
                "h4": ("B", 10.5, BLACK, 1.35, 8.0, 3.0),
                "p": ("R", 10.0, BLACK, 1.55, 4.0, 2.0),
                "meta": ("R", 9.0, GREY, 1.4, 2.0, 0.0),
                "quote": ("M", 10.5, BLACK, 1.5, 6.0, 2.0),
                "li": ("R", 10.0, BLACK, 1.5, 2.0, 0.0),
                "table": ("R", 9.5, BLACK, 1.35, 8.0, 6.0),
                "decor": (None, 0.0, None, 1.0, 6.0, 4.0),
                "box": (None, 0.0, None, 1.0, 10.0, 4.0),
            },
        },
    },
}


_DEFAULTS = {k: globals()[k] for spec in LAYOUTS.values() for k in spec["constants"]}  # the sample's values


def use_layout(name: str) -> dict:
    """Switch the module's geometry/fonts/styles to layout ``name``; returns its settings."""
    if name not in LAYOUTS:
        raise RenderError(f"unknown layout {name!r} (choose from {', '.join(LAYOUTS)})")
    globals().update(_DEFAULTS)
    globals().update(LAYOUTS[name]["constants"])
    return LAYOUTS[name]


class RenderError(Exception):
    """A problem with the page sources or the environment, reported as one line."""


# ---------------------------------------------------------------- markdown dialect
@dataclass
class Block:
    kind: str  # h1..h4 p meta quote list table decor raster box kv center columns colbreak
    runs: list = field(default_factory=list)  # [(text, bold)]
    items: list = field(default_factory=list)  # list: [runs]; table: [[runs]]; decor: [spec]
    ordered: bool = False
    opts: dict = field(default_factory=dict)
    children: list = field(default_factory=list)


INLINE_BOLD = re.compile(r"\*\*(.+?)\*\*")
DECOR_RE = re.compile(r"^!\[\]\(decor:([a-z]+)(?:\?([^)]*))?\)$")


def parse_runs(text: str) -> list[tuple[str, bool]]:
    runs: list[tuple[str, bool]] = []
    pos = 0
    for m in INLINE_BOLD.finditer(text):
        if m.start() > pos:
            runs.append((text[pos : m.start()], False))
        runs.append((m.group(1), True))
        pos = m.end()
    if pos < len(text):
        runs.append((text[pos:], False))
    return runs


def runs_text(runs) -> str:
    return re.sub(r"\s+", " ", "".join(t for t, _ in runs)).strip()


def parse_opts(words: list[str]) -> dict:
    opts: dict = {}
    for w in words:
        if "=" in w:
            k, v = w.split("=", 1)
            opts[k] = v
        else:
            opts[w] = True
    return opts


def split_cells(line: str) -> list[str]:
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|"):
        line = line[:-1]
    return [c.strip() for c in line.split("|")]


class _BodyParser:
    """The state of one parse: the finished top-level blocks, the open ':::' blocks, the paragraph
    lines not yet joined and the next line to read."""

    def __init__(self, lines: list[str], where: str) -> None:
        self.lines, self.where = lines, where
        self.root: list[Block] = []
        self.stack: list[Block] = []
        self.para: list[str] = []
        self.i = 0

    def target(self) -> list[Block]:
        return self.stack[-1].children if self.stack else self.root

    def last(self) -> Block | None:
        return self.target()[-1] if self.target() else None

    def flush(self) -> None:
        if not self.para:
            return
        text = " ".join(s.strip() for s in self.para)
        self.para.clear()
        if len(text) > 2 and text.startswith("_") and text.endswith("_"):
            self.target().append(Block("meta", runs=parse_runs(text[1:-1])))
        else:
            self.target().append(Block("p", runs=parse_runs(text)))

    def parse(self) -> list[Block]:
        lines = self.lines
        in_comment = False
        while self.i < len(lines):
            line = lines[self.i].rstrip()
            self.i += 1
            if in_comment:
                if "-->" in line:
                    in_comment = False
                continue
            s = line.strip()
            if s.startswith("<!--"):
                self.flush()
                if "-->" not in s:
                    in_comment = True
                continue
            if not s:
                self.flush()
                if self.target():
                    self.target()[-1].opts["closed"] = True  # a blank line ends a list or a row of images
                continue
            if not self.block_line(s):
                # plain paragraph line; a blank line closes lists/decor rows
                self.para.append(s)
        self.flush()
        if self.stack:
            raise RenderError(f"{self.where}: unclosed '::: {self.stack[-1].kind}' block")
        return self.root

    def block_line(self, s: str) -> bool:
        """Handle a line that opens or closes a block (fence, heading, image, table, list item, quote);
        False for a paragraph line."""
        heading = re.match(r"^(#{1,4})\s+(.*)$", s)
        decor = DECOR_RE.match(s)
        item = re.match(r"^(-|\d+\.)\s+(.*)$", s)
        if not (s.startswith((":::", "|", ">")) or heading or decor or item):
            return False
        self.flush()
        if s.startswith(":::"):
            self.fence(s[3:].split())
        elif heading:
            self.target().append(Block(f"h{len(heading.group(1))}", runs=parse_runs(heading.group(2).strip())))
        elif decor:
            self.decor(decor)
        elif s.startswith("|"):
            self.table(s)
        elif item:
            self.list_item(item)
        else:
            self.target().append(Block("quote", runs=parse_runs(s[1:].strip())))
        return True

    def fence(self, words: list[str]) -> None:
        where, i = self.where, self.i
        if not words:  # closing fence
            if not self.stack:
                raise RenderError(f"{where}: unmatched ':::' at line {i}")
            blk = self.stack.pop()
            self.target().append(blk)
            return
        kind, opts = words[0], parse_opts(words[1:])
        if kind in ("columns", "colbreak"):
            if self.stack:
                raise RenderError(f"{where}: '::: {kind}' inside a block at line {i}")
            self.root.append(Block(kind))
            return
        if kind not in ("raster", "box", "kv", "center"):
            raise RenderError(f"{where}: unknown block '::: {kind}' at line {i}")
        self.stack.append(Block(kind, opts=opts))

    def decor(self, m: re.Match[str]) -> None:
        spec = {"style": m.group(1)}
        for kv in (m.group(2) or "").split("&"):
            if kv:
                k, _, v = kv.partition("=")
                if k not in ("h", "w", "seed"):
                    raise RenderError(f"{self.where}: unknown decor option {k!r} at line {self.i} (h, w, seed)")
                spec[k] = float(v) if k in ("h", "w") else int(v)
        prev = self.last()
        if prev is not None and prev.kind == "decor" and not prev.opts.get("closed"):
            prev.items.append(spec)
        else:
            self.target().append(Block("decor", items=[spec]))

    def table(self, first: str) -> None:
        """A table: this row and the '|' rows right after it (a separator row '|---|' is dropped)."""
        lines, rows = self.lines, [first]
        while self.i < len(lines) and lines[self.i].strip().startswith("|"):
            rows.append(lines[self.i].strip())
            self.i += 1
        cells = [split_cells(r) for r in rows]
        cells = [r for r in cells if not all(re.fullmatch(r":?-{2,}:?", c) for c in r)]
        ncol = len(cells[0])
        for r in cells:
            if len(r) != ncol:
                raise RenderError(f"{self.where}: table row with {len(r)} cells, expected {ncol}: {r}")
        self.target().append(Block("table", items=[[parse_runs(c) for c in r] for r in cells]))

    def list_item(self, m: re.Match[str]) -> None:
        ordered = m.group(1) != "-"
        prev = self.last()
        runs = parse_runs((m.group(1) + " " if ordered else "") + m.group(2))
        if prev is not None and prev.kind == "list" and prev.ordered == ordered and not prev.opts.get("closed"):
            prev.items.append(runs)
        else:
            self.target().append(Block("list", items=[runs], ordered=ordered))


def parse_body(lines: list[str], where: str) -> list[Block]:
    """Parse the markdown dialect into a tree of blocks."""
    return _BodyParser(lines, where).parse()


def load_page(path: Path) -> tuple[dict, list[Block]]:
    import yaml

    text = unicodedata.normalize("NFC", path.read_text(encoding="utf-8"))
    for cp in TOUNICODE_FIX:
        if chr(cp) in text:
            raise RenderError(f"{path.name}: U+{cp:04X} is not allowed in the sources (use U+{TOUNICODE_FIX[cp]:04X})")
    if not text.startswith("---\n"):
        raise RenderError(f"{path}: missing YAML front matter")
    end = text.find("\n---\n", 4)
    if end < 0:
        raise RenderError(f"{path}: unterminated YAML front matter")
    meta = yaml.safe_load(text[4:end]) or {}
    body = text[end + 5 :].splitlines()
    blocks = parse_body(body, str(path.name))
    layout = meta.get("layout", "one-column")
    if layout not in ("one-column", "two-column"):
        raise RenderError(f"{path}: layout must be one-column or two-column, not {layout!r}")
    meta["layout"] = layout
    meta.setdefault("header", None)
    meta["image_only"] = bool(meta.get("image_only", False))
    return meta, blocks


# ---------------------------------------------------------------- fonts & text measurement
class Fonts:
    def __init__(self, font_dir: Path):
        import pymupdf

        self.paths = {}
        for key, name in FONT_FILES.items():
            p = font_dir / name
            if not p.is_file():
                raise RenderError(
                    f"font not found: {p} (install the Debian package fonts-nanum, or pass --font-dir / set BROCHURE_FONT_DIR)"
                )
            self.paths[key] = p
        self.mu = {k: pymupdf.Font(fontfile=str(p)) for k, p in self.paths.items()}
        self._pil: dict = {}
        self._w: dict = {}

    def width(self, text: str, key: str, size: float) -> float:
        k = (text, key)
        w = self._w.get(k)
        if w is None:
            w = self.mu[key].text_length(text, fontsize=1.0)
            self._w[k] = w
        return w * size

    def check_glyphs(self, text: str, key: str, where: str) -> None:
        font = self.mu[key]
        for ch in set(text):
            if ch.isspace():
                continue
            if not font.has_glyph(ord(ch)):
                raise RenderError(f"{where}: character {ch!r} (U+{ord(ch):04X}) is missing from {FONT_FILES[key]}")

    def pil(self, key: str, px: float):
        from PIL import ImageFont

        k = (key, round(px, 2))
        f = self._pil.get(k)
        if f is None:
            f = ImageFont.truetype(str(self.paths[key]), size=k[1], layout_engine=ImageFont.Layout.BASIC)
            self._pil[k] = f
        return f


# ---------------------------------------------------------------- layout
# ops (coordinates relative to the block's top-left until translated):
#   ("text", x, baseline, text, font, size, color)
#   ("rect", x0, y0, x1, y1, fill|None, stroke|None, width)
#   ("line", x0, y0, x1, y1, color, width)
#   ("dot", cx, cy, r, color)
#   ("decor", x0, y0, x1, y1, style, seed)
#   ("raster", x0, y0, x1, y1, ops, opts)


def translate(ops: list, dx: float, dy: float) -> list:
    out = []
    for op in ops:
        k = op[0]
        if k == "text":
            out.append((k, op[1] + dx, op[2] + dy, *op[3:]))
        elif k in ("rect", "line", "decor", "raster"):
            out.append((k, op[1] + dx, op[2] + dy, op[3] + dx, op[4] + dy, *op[5:]))
        elif k == "dot":
            out.append((k, op[1] + dx, op[2] + dy, *op[3:]))
    return out


@dataclass
class Ctx:
    fonts: Fonts
    where: str
    raster: bool = False
    scale: float = 1.0
    center: bool = False
    page: int = 0
    decor_counter: list = field(default_factory=lambda: [0])

    def size(self, base: float) -> float:
        s = base * self.scale
        return max(s, RASTER_MIN_SIZE) if self.raster else s

    def child(self, **kw) -> Ctx:
        d = dict(
            fonts=self.fonts,
            where=self.where,
            raster=self.raster,
            scale=self.scale,
            center=self.center,
            page=self.page,
            decor_counter=self.decor_counter,
        )
        d.update(kw)
        return Ctx(**d)


@dataclass
class Laid:
    height: float
    ops: list
    truth: list  # lines of ground truth text
    regions: list = field(default_factory=list)  # [(bbox relative, text)]


def wrap_runs(runs, width: float, base_font: str, size: float, ctx: Ctx) -> list[list[tuple[str, str]]]:
    """Greedy word wrap of styled runs. Returns lines of (text, font) segments."""
    bold_font = {"R": "B", "M": "MB", "B": "B", "MB": "MB"}[base_font]
    # words as lists of (text, font) segments; words are separated by single spaces
    words: list[list[tuple[str, str]]] = []
    cur: list[tuple[str, str]] = []
    pending_space = False
    for text, bold in runs:
        font = bold_font if bold else base_font
        ctx.fonts.check_glyphs(text, font, ctx.where)
        for part in re.split(r"(\s+)", text):
            if not part:
                continue
            if part.isspace():
                pending_space = True
                continue
            if pending_space and cur:
                words.append(cur)
                cur = []
            pending_space = False
            cur.append((part, font))
    if cur:
        words.append(cur)

    def wlen(segs):
        return sum(ctx.fonts.width(t, f, size) for t, f in segs)

    space = ctx.fonts.width(" ", base_font, size)
    lines: list[list[tuple[str, str]]] = []
    line: list[tuple[str, str]] = []
    line_w = 0.0

    def split_long(word):  # break a word wider than the line by characters
        chunks, piece = [], []
        for t, f in word:
            for ch in t:
                if piece and wlen(piece + [(ch, f)]) > width:
                    chunks.append(piece)
                    piece = []
                piece.append((ch, f))
        return chunks + [piece]

    for word in words:
        ww = wlen(word)
        if ww > width:
            if line:
                lines.append(line)
            *full, last = split_long(word)
            lines.extend(full)
            line, line_w = list(last), wlen(last)
            continue
        need = ww + (space if line else 0.0)
        if line and line_w + need > width:
            lines.append(line)
            line, line_w = [], 0.0
            need = ww
        if line:
            line.append((" ", base_font))
        line.extend(word)
        line_w += need
    if line:
        lines.append(line)
    # merge consecutive segments with the same font
    merged = []
    for ln in lines:
        out: list[tuple[str, str]] = []
        for t, f in ln:
            if out and out[-1][1] == f:
                out[-1] = (out[-1][0] + t, f)
            else:
                out.append((t, f))
        merged.append(out)
    return merged


def lay_text(runs, width: float, style: str, ctx: Ctx, indent: float = 0.0) -> Laid:
    font, base, color, lh, _, _ = STYLES[style]
    size = ctx.size(base)
    lines = wrap_runs(runs, width - indent, font, size, ctx)
    line_h = size * lh
    ops = []
    for n, ln in enumerate(lines):
        lw = sum(ctx.fonts.width(t, f, size) for t, f in ln)
        x = indent + ((width - indent - lw) / 2 if ctx.center else 0.0)
        baseline = n * line_h + size * 0.92 + (line_h - size * 1.15) / 2
        for t, f in ln:
            ops.append(("text", x, baseline, t, f, size, color))
            x += ctx.fonts.width(t, f, size)
    return Laid(len(lines) * line_h, ops, [runs_text(runs)] if lines else [])


def lay_list(block: Block, width: float, ctx: Ctx) -> list[Laid]:
    """One Laid per item (items may flow into the next column separately)."""
    out = []
    size = ctx.size(STYLES["li"][1])
    indent = 0.0 if block.ordered else size * 1.2
    for runs in block.items:
        laid = lay_text(runs, width, "li", ctx, indent=indent)
        if not block.ordered:
            cy = size * 1.5 / 2 + 0.5
            laid.ops.insert(0, ("dot", size * 0.45, cy, size * 0.16, ACCENT))
        out.append(laid)
    return out


def lay_table(block: Block, width: float, ctx: Ctx, kv: bool = False) -> Laid:
    font, base = STYLES["table"][:2]
    size = ctx.size(base)
    pad_x, pad_y = 4.5, 3.5
    rows = block.items
    ncol = len(rows[0])
    bold = "B"

    def cell_font(r, c):
        return bold if (r == 0 and not kv) or (c == 0 and kv) else font

    nat = [0.0] * ncol
    minw = [0.0] * ncol
    for r, row in enumerate(rows):
        for c, runs in enumerate(row):
            f = cell_font(r, c)
            txt = runs_text(runs)
            nat[c] = max(nat[c], ctx.fonts.width(txt, f, size) + 2 * pad_x)
            longest = max((ctx.fonts.width(w, f, size) for w in txt.split()), default=0.0)
            minw[c] = max(minw[c], min(longest, width / ncol) + 2 * pad_x)
    if sum(nat) <= width:
        widths = [n * width / sum(nat) for n in nat]
    else:
        # water-filling: cap the widest columns first so short columns stay on one line
        lo, hi = 0.0, max(nat)
        for _ in range(60):
            cap = (lo + hi) / 2
            if sum(max(m, min(n, cap)) for n, m in zip(nat, minw, strict=True)) > width:
                hi = cap
            else:
                lo = cap
        widths = [max(m, min(n, lo)) for n, m in zip(nat, minw, strict=True)]
        if sum(widths) > width:  # even the minimum widths do not fit: scale down (words will break)
            widths = [w * width / sum(widths) for w in widths]
        else:  # hand the rounding slack to the capped columns
            capped = [i for i, n in enumerate(nat) if n > lo] or list(range(ncol))
            extra = (width - sum(widths)) / len(capped)
            for i in capped:
                widths[i] += extra
    ops: list = []
    text_ops: list = []
    truth = []
    y = 0.0
    for r, row in enumerate(rows):
        cells = []
        row_h = 0.0
        for c, runs in enumerate(row):
            f = cell_font(r, c)
            rr = [(t, True if f == bold else b) for t, b in runs]
            laid = lay_text(rr, widths[c] - 2 * pad_x, "table", ctx.child(center=False))
            cells.append(laid)
            row_h = max(row_h, laid.height)
        row_h += 2 * pad_y
        x = 0.0
        for c, laid in enumerate(cells):
            fill = TABLE_HEAD if (r == 0 and not kv) else (TABLE_LABEL if (c == 0 and kv) else None)
            if fill:
                ops.append(("rect", x, y, x + widths[c], y + row_h, fill, None, 0))
            text_ops += translate(laid.ops, x + pad_x, y + pad_y)
            x += widths[c]
        truth.append(" | ".join(runs_text(runs) for runs in row))
        y += row_h
        ops.append(("line", 0.0, y, width, y, TABLE_LINE, 0.6))
    # grid: outer frame, column lines, header line
    ops.append(("line", 0.0, 0.0, width, 0.0, TABLE_LINE, 1.0))
    ops.append(("line", 0.0, y, width, y, TABLE_LINE, 1.0))
    x = 0.0
    for c in range(ncol + 1):
        ops.append(("line", x, 0.0, x, y, TABLE_LINE, 0.6))
        if c < ncol:
            x += widths[c]
    return Laid(y, ops + text_ops, truth)


def lay_decor(block: Block, width: float, ctx: Ctx) -> Laid:
    gap = 8.0
    specs = block.items
    fixed = sum(s.get("w", 0) for s in specs)
    free = [s for s in specs if "w" not in s]
    free_w = (width - fixed - gap * (len(specs) - 1)) / len(free) if free else 0.0
    if free and free_w < 20:
        raise RenderError(f"{ctx.where}: decorative row too wide for its frame")
    total = fixed + free_w * len(free) + gap * (len(specs) - 1)
    x = (width - total) / 2 if total < width else 0.0
    ops = []
    h_max = 0.0
    for s in specs:
        w = s.get("w", free_w)
        h = s.get("h", 100.0)
        ctx.decor_counter[0] += 1
        seed = s.get("seed", ctx.page * 100 + ctx.decor_counter[0])
        ops.append(("decor", x, 0.0, x + w, h, s["style"], seed))
        x += w + gap
        h_max = max(h_max, h)
    return Laid(h_max, ops, [])


def lay_container(block: Block, width: float, ctx: Ctx) -> Laid:
    """box / raster / kv / center: lay the children in a single frame."""
    opts = block.opts
    if block.kind == "kv":
        tables = [c for c in block.children if c.kind == "table"]
        if len(tables) != 1 or len(block.children) != 1:
            raise RenderError(f"{ctx.where}: '::: kv' must contain exactly one table")
        return lay_table(tables[0], width, ctx, kv=True)
    boxed = block.kind == "box" or (block.kind == "raster" and opts.get("box"))
    pad = 10.0 if boxed else (6.0 if block.kind == "raster" else 0.0)
    sub = ctx.child(
        raster=ctx.raster or block.kind == "raster",
        scale=float(opts.get("scale", ctx.scale)),
        center=bool(opts.get("center") or block.kind == "center" or ctx.center),
    )
    inner_w = width - 2 * pad
    flow = Flow([(0.0, inner_w, 0.0, 1e9)], sub)
    for child in block.children:
        flow.add(child)
    h = flow.bottom() + 2 * pad
    ops = translate(flow.ops, pad, pad)
    truth = flow.truth
    if block.kind == "raster":
        min_h = MIN_RASTER_AREA * PAGE_W * PAGE_H / width
        h = max(h, min_h)
        bg = "box" if boxed else "plain"
        return Laid(
            h, [("raster", 0.0, 0.0, width, h, ops, {"bg": bg})], truth, regions=[((0.0, 0.0, width, h), truth)]
        )
    if boxed:
        ops = [("rect", 0.0, 0.0, width, h, BOX_FILL, BOX_LINE, 0.8)] + ops
    return Laid(h, ops, truth, regions=flow.regions)


def lay_block(block: Block, width: float, ctx: Ctx) -> list[Laid]:
    k = block.kind
    if k in ("h1", "h2", "h3", "h4", "p", "meta", "quote"):
        laid = lay_text(block.runs, width, k, ctx)
        if k == "quote" and not ctx.center:
            laid.ops.insert(0, ("line", -7.0, 1.0, -7.0, laid.height - 1.0, ACCENT, 2.0))
        return [laid]
    if k == "list":
        return lay_list(block, width, ctx)
    if k == "table":
        return [lay_table(block, width, ctx)]
    if k == "decor":
        return [lay_decor(block, width, ctx)]
    if k in ("box", "raster", "kv", "center"):
        return [lay_container(block, width, ctx)]
    raise RenderError(f"{ctx.where}: block {k!r} not allowed here")


def style_key(block: Block) -> str:
    if block.kind in STYLES:
        return block.kind
    if block.kind == "list":
        return "li"
    if block.kind in ("raster", "kv", "center"):
        return "table" if block.kind == "kv" else "box"
    return "p"


class Flow:
    """Flow blocks through frames (x0, x1, y0, y1); the next frame when one is full."""

    def __init__(self, frames, ctx: Ctx):
        self.frames = list(frames)
        self.ctx = ctx
        self.i = 0
        self.y = self.frames[0][2]
        self.at_top = True
        self.ops: list = []
        self.truth: list = []
        self.regions: list = []
        self.max_y = self.y
        self.overflow = 0.0

    def set_frames(self, frames) -> None:
        self.frames = list(frames)
        self.i = 0
        self.y = self.frames[0][2]
        self.at_top = True

    def next_frame(self) -> bool:
        if self.i + 1 >= len(self.frames):
            return False
        self.i += 1
        self.y = self.frames[self.i][2]
        self.at_top = True
        return True

    def bottom(self) -> float:
        return self.max_y

    def add(self, block: Block, keep_next: float = 0.0) -> None:
        x0, x1, _, _ = self.frames[self.i]
        laids = lay_block(block, x1 - x0, self.ctx)
        _, _, _, sb, sa = STYLES[style_key(block)][1:]
        if block.kind == "list":
            sb = STYLES["li"][4]
        for n, laid in enumerate(laids):
            before = 0.0 if self.at_top else (sb if n == 0 or block.kind == "list" else 0.0)
            if block.kind == "list" and n == 0 and not self.at_top:
                before = 5.0
            self.place(laid, before, sa, keep_next if n == len(laids) - 1 else 0.0)

    def place(self, laid: Laid, before: float, after: float, keep_next: float) -> None:
        x0, x1, y0, y1 = self.frames[self.i]
        need = before + laid.height + (keep_next if keep_next else 0.0)
        if self.y + need > y1 and not self.at_top:
            if self.next_frame():
                return self.place(laid, 0.0, after, keep_next)
        x0, x1, y0, y1 = self.frames[self.i]
        top = self.y + before
        if top + laid.height > y1 + 0.01:
            self.overflow = max(self.overflow, top + laid.height - y1)
        self.ops += translate(laid.ops, x0, top)
        self.truth += laid.truth
        for (bx0, by0, bx1, by1), text in laid.regions:
            self.regions.append(((bx0 + x0, by0 + top, bx1 + x0, by1 + top), text))
        self.y = top + laid.height + after
        self.max_y = max(self.max_y, top + laid.height)
        self.at_top = False


def layout_page(meta: dict, blocks: list[Block], fonts: Fonts, where: str) -> tuple[list, list, list]:
    page_no = meta["page"]
    cover = meta.get("header") is None
    top, bottom = (COVER_TOP, COVER_BOTTOM) if cover else (CONTENT_TOP, CONTENT_BOTTOM)
    ctx = Ctx(
        fonts=fonts, where=where, page=page_no, raster=bool(meta["image_only"]), scale=float(meta.get("scale", 1.0))
    )
    flow = Flow([(MARGIN_X, PAGE_W - MARGIN_X, top, bottom)], ctx)
    for n, block in enumerate(blocks):
        if block.kind == "columns":
            if meta["layout"] != "two-column":
                raise RenderError(f"{where}: '::: columns' on a one-column page")
            y = flow.y + 4.0 if not flow.at_top else flow.y
            col_w = (PAGE_W - 2 * MARGIN_X - COL_GAP) / 2
            flow.set_frames(
                [
                    (MARGIN_X, MARGIN_X + col_w, y, bottom),
                    (MARGIN_X + col_w + COL_GAP, PAGE_W - MARGIN_X, y, bottom),
                ]
            )
            continue
        if block.kind == "colbreak":
            if not flow.next_frame():
                raise RenderError(f"{where}: '::: colbreak' with no next column")
            continue
        keep = 0.0
        if block.kind in ("h1", "h2", "h3", "h4") and n + 1 < len(blocks):
            nxt = blocks[n + 1]
            if nxt.kind not in ("columns", "colbreak"):
                x0, x1 = flow.frames[flow.i][:2]
                first = lay_block(nxt, x1 - x0, ctx.child(decor_counter=[0]))[0]
                keep = min(first.height, 60.0) + STYLES[style_key(nxt)][4]
        flow.add(block, keep_next=keep)
    if meta["layout"] == "two-column" and not any(b.kind == "columns" for b in blocks):
        raise RenderError(f"{where}: two-column page without a '::: columns' marker")
    if flow.overflow > 0:
        raise RenderError(f"{where}: content overflows the page by {flow.overflow:.0f} pt")
    return flow.ops, flow.truth, flow.regions


def header_footer_ops(meta: dict, fonts: Fonts) -> list:
    if meta.get("header") is None:
        return []
    page_no = meta["page"]
    header = str(meta["header"])
    footer = str(page_no)
    even = page_no % 2 == 0
    ops = []
    size = 8.5
    hw = fonts.width(header, "R", size)
    hx = MARGIN_X if even else PAGE_W - MARGIN_X - hw
    ops.append(("text", hx, HEADER_BASELINE, header, "R", size, LIGHT))
    ops.append(("line", MARGIN_X, HEADER_RULE_Y, PAGE_W - MARGIN_X, HEADER_RULE_Y, BOX_LINE, 0.6))
    fs = 9.5
    fw = fonts.width(footer, "B", fs)
    fx = MARGIN_X if even else PAGE_W - MARGIN_X - fw
    ops.append(("text", fx, FOOTER_BASELINE, footer, "B", fs, ACCENT))
    return ops


# ---------------------------------------------------------------- decorative images
# (sky top, sky bottom), (foreground near, foreground far) per decor style; 'qr' is drawn apart.
DECOR_PALETTES = {
    "lake": [((0.72, 0.85, 0.95), (0.95, 0.90, 0.80)), ((0.30, 0.50, 0.45), (0.20, 0.38, 0.35))],
    "mountains": [((0.80, 0.88, 0.96), (0.98, 0.93, 0.85)), ((0.35, 0.52, 0.40), (0.18, 0.32, 0.25))],
    "autumn": [((0.95, 0.85, 0.70), (0.98, 0.95, 0.88)), ((0.75, 0.40, 0.20), (0.55, 0.22, 0.12))],
    "blossom": [((0.98, 0.88, 0.92), (0.95, 0.95, 0.98)), ((0.95, 0.70, 0.80), (0.85, 0.55, 0.65))],
    "forest": [((0.85, 0.93, 0.85), (0.96, 0.98, 0.92)), ((0.22, 0.45, 0.28), (0.12, 0.30, 0.18))],
    "night": [((0.10, 0.14, 0.30), (0.30, 0.25, 0.45)), ((0.15, 0.18, 0.28), (0.08, 0.10, 0.18))],
    "food": [((0.96, 0.90, 0.80), (0.90, 0.80, 0.66)), ((0.85, 0.55, 0.30), (0.70, 0.35, 0.20))],
    "map": [((0.93, 0.95, 0.90), (0.93, 0.95, 0.90)), ((0.78, 0.88, 0.76), (0.70, 0.82, 0.90))],
}


def decor_image(style: str, w_px: int, h_px: int, seed: int):
    """A procedural, text-free 'photo' (PIL RGB image, or L for qr)."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    w_px, h_px = max(w_px, 8), max(h_px, 8)
    if style == "qr":
        return _qr_image(rng, w_px, h_px)
    if style not in DECOR_PALETTES:
        raise RenderError(f"unknown decor style {style!r} (one of {', '.join(sorted(DECOR_PALETTES) + ['qr'])})")
    (sky_top, sky_bot), (fg1, fg2) = DECOR_PALETTES[style]
    jitter = rng.uniform(-0.04, 0.04, 3)
    t = np.linspace(0, 1, h_px)[:, None, None]
    img = (np.array(sky_top) + jitter) * (1 - t) + np.array(sky_bot) * t
    img = np.broadcast_to(img, (h_px, w_px, 3)).copy()
    if style in ("lake", "mountains", "autumn", "forest", "night"):
        _draw_landscape(img, style, rng, DECOR_PALETTES[style])
    pil = Image.fromarray((img.clip(0, 1) * 255).astype("uint8"))
    draw = ImageDraw.Draw(pil, "RGBA")
    if style in ("blossom", "food", "autumn"):
        _draw_blobs(draw, style, rng, w_px, h_px, (fg1, fg2))
    if style == "forest":
        _draw_trees(draw, rng, w_px, h_px, fg2)
    if style == "map":
        _draw_map(draw, rng, w_px, h_px)
    radius = (
        1.2 if style == "map" else max(1.0, min(w_px, h_px) / (50 if style in ("blossom", "food", "autumn") else 120))
    )
    return pil.filter(ImageFilter.GaussianBlur(radius))


def _qr_image(rng, w_px: int, h_px: int):
    """A QR-like 25x25 module grid with its three finder squares."""
    import numpy as np
    from PIL import Image

    n = 25
    grid = rng.random((n, n)) < 0.5
    for ox, oy in ((0, 0), (n - 7, 0), (0, n - 7)):
        grid[oy : oy + 7, ox : ox + 7] = False
        grid[oy : oy + 7, ox] = grid[oy : oy + 7, ox + 6] = True
        grid[oy, ox : ox + 7] = grid[oy + 6, ox : ox + 7] = True
        grid[oy + 2 : oy + 5, ox + 2 : ox + 5] = True
    arr = np.where(grid, 20, 250).astype("uint8")
    arr = np.pad(arr, 2, constant_values=250)
    return Image.fromarray(arr).resize((w_px, h_px), Image.NEAREST).convert("RGB")


def _ridge(rng, w_px: int, h_px: int, base: float, amp: float, smooth: int):
    """A smoothed random-walk skyline: per column, the y (px) where the ridge starts."""
    import numpy as np

    walk = np.cumsum(rng.normal(0, 1, w_px + 2 * smooth))
    kernel = np.hanning(2 * smooth + 1)
    kernel /= kernel.sum()
    walk = np.convolve(walk, kernel, mode="same")[smooth : smooth + w_px]
    walk = (walk - walk.min()) / (np.ptp(walk) or 1.0)
    return (base - amp * walk) * h_px


def _draw_landscape(img, style: str, rng, palette) -> None:
    """Ridges fading into the distance (in place), plus water for 'lake' and stars for 'night'."""
    import numpy as np

    h_px, w_px = img.shape[:2]
    (_sky_top, sky_bot), (fg1, fg2) = palette
    yy = np.arange(h_px)[:, None]
    layers = 4 if style != "lake" else 3
    for n in range(layers):
        f = n / max(layers - 1, 1)
        col = np.array(fg1) * (1 - f) + np.array(fg2) * f
        col = col * (1 - 0.35 * (1 - f)) + np.array(sky_bot) * 0.35 * (1 - f)  # aerial perspective
        base = 0.45 + 0.12 * n if style != "lake" else 0.42 + 0.07 * n
        top = _ridge(rng, w_px, h_px, base, 0.22 - 0.03 * n, max(4, w_px // (6 + 3 * n)))
        mask = yy >= top[None, :]
        img[mask] = img[mask] * 0.15 + col * 0.85
    if style == "lake":
        y_w = int(h_px * 0.62)
        wt = np.linspace(0, 1, h_px - y_w)[:, None, None]
        wcol = np.array((0.45, 0.65, 0.78)) * (1 - wt) + np.array((0.25, 0.42, 0.58)) * wt
        ripple = 0.03 * np.sin(np.arange(h_px - y_w) * 0.9 + rng.uniform(0, 6))[:, None, None]
        img[y_w:] = np.broadcast_to(wcol + ripple, (h_px - y_w, w_px, 3))
    if style == "night":
        stars = rng.random((h_px, w_px)) > 0.997
        img[stars & (yy < h_px * 0.45)] = 0.9


def _draw_blobs(draw, style: str, rng, w_px: int, h_px: int, colours) -> None:
    """Petals or leaves (blossom, autumn), or a few plates seen from above (food)."""
    import numpy as np

    fg1, fg2 = colours
    count = 60 if style != "food" else 7
    for _ in range(count):
        cx, cy = rng.uniform(0, w_px), rng.uniform(0, h_px)
        r = rng.uniform(0.02, 0.08 if style != "food" else 0.22) * min(w_px, h_px) * (2 if style == "food" else 1)
        col = np.array(fg1 if rng.random() < 0.5 else fg2) * 255
        a = int(rng.uniform(60, 130))
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(*col.astype(int).tolist(), a))
        if style == "food":
            draw.ellipse([cx - r * 0.6, cy - r * 0.6, cx + r * 0.6, cy + r * 0.6], fill=(250, 245, 235, 200))


def _draw_trees(draw, rng, w_px: int, h_px: int, fg2) -> None:
    import numpy as np

    for _ in range(40):
        cx, by = rng.uniform(0, w_px), rng.uniform(0.55, 1.0) * h_px
        hh, ww = rng.uniform(0.15, 0.35) * h_px, rng.uniform(0.04, 0.08) * w_px
        col = (np.array(fg2) * 255 * rng.uniform(0.8, 1.1)).clip(0, 255).astype(int).tolist()
        draw.polygon([(cx, by - hh), (cx - ww, by), (cx + ww, by)], fill=(*col, 200))


def _draw_map(draw, rng, w_px: int, h_px: int) -> None:
    """Fields, lakes, roads and markers of a tourist map."""
    for _ in range(6):
        pts = [(rng.uniform(0, w_px), rng.uniform(0, h_px)) for _ in range(6)]
        draw.polygon(pts, fill=(190, 215, 185, 110))
    for _ in range(2):  # lake / river
        cx, cy = rng.uniform(0.2, 0.8) * w_px, rng.uniform(0.2, 0.8) * h_px
        r = 0.12 * min(w_px, h_px)
        draw.ellipse([cx - 2 * r, cy - r, cx + 2 * r, cy + r], fill=(150, 190, 225, 220))
    for _ in range(5):  # roads
        pts = [(0, rng.uniform(0, h_px))]
        for k in range(1, 7):
            pts.append((k * w_px / 6, pts[-1][1] + rng.uniform(-0.15, 0.15) * h_px))
        draw.line(pts, fill=(235, 200, 120, 255), width=max(2, w_px // 150))
    for _ in range(12):  # markers
        cx, cy = rng.uniform(0.05, 0.95) * w_px, rng.uniform(0.05, 0.95) * h_px
        r = max(3, w_px // 90)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(200, 70, 60, 255))


def encode_jpeg(img, quality: int = 82) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, optimize=False, progressive=False, subsampling="4:2:0")
    return buf.getvalue()


def encode_png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=False, compress_level=1)  # MuPDF re-compresses the pixels anyway
    return buf.getvalue()


# ---------------------------------------------------------------- rasterisation (Pillow)
def rgb255(c) -> tuple[int, int, int]:
    return tuple(int(round(v * 255)) for v in c)


def rasterize(ops: list, w_pt: float, h_pt: float, fonts: Fonts, bg: str, dpi: int):
    """Draw ops (relative to the region's top-left) into a Pillow image."""
    from PIL import Image, ImageDraw

    s = dpi / 72.0
    w_px, h_px = int(math.ceil(w_pt * s)), int(math.ceil(h_pt * s))
    img = Image.new("RGB", (w_px, h_px), (255, 255, 255))
    d = ImageDraw.Draw(img)
    if bg == "box":
        lw = max(1, round(1.0 * s))
        d.rounded_rectangle(
            [lw, lw, w_px - 1 - lw, h_px - 1 - lw],
            radius=round(6 * s),
            fill=rgb255(RASTER_BOX_FILL),
            outline=rgb255(RASTER_BOX_LINE),
            width=lw,
        )
    for op in ops:
        k = op[0]
        if k == "rect":
            _, x0, y0, x1, y1, fill, stroke, width = op
            d.rectangle(
                [x0 * s, y0 * s, x1 * s, y1 * s],
                fill=rgb255(fill) if fill else None,
                outline=rgb255(stroke) if stroke else None,
                width=max(1, round(width * s)) if stroke else 0,
            )
        elif k == "line":
            _, x0, y0, x1, y1, color, width = op
            d.line([x0 * s, y0 * s, x1 * s, y1 * s], fill=rgb255(color), width=max(1, round(width * s)))
        elif k == "dot":
            _, cx, cy, r, color = op
            d.ellipse([(cx - r) * s, (cy - r) * s, (cx + r) * s, (cy + r) * s], fill=rgb255(color))
        elif k == "decor":
            _, x0, y0, x1, y1, style, seed = op
            pw, ph = round((x1 - x0) * s), round((y1 - y0) * s)
            photo = decor_image(style, round((x1 - x0) * DECOR_PX_PER_PT), round((y1 - y0) * DECOR_PX_PER_PT), seed)
            img.paste(photo.resize((pw, ph), Image.BILINEAR), (round(x0 * s), round(y0 * s)))
    for op in ops:  # text last, on top
        if op[0] == "text":
            _, x, y, text, font, size, color = op
            d.text((x * s, y * s), text, font=fonts.pil(font, size * s), fill=rgb255(color), anchor="ls")
    return img


# ---------------------------------------------------------------- PDF writing
def draw_pdf_ops(page, ops: list, fonts: Fonts, doc_fonts: dict, images: list) -> None:
    import pymupdf

    # shapes and images first (background), then text in reading order
    shape = page.new_shape()
    for op in ops:
        k = op[0]
        if k == "rect":
            _, x0, y0, x1, y1, fill, stroke, width = op
            shape.draw_rect(pymupdf.Rect(x0, y0, x1, y1))
            shape.finish(fill=fill, color=stroke, width=width if stroke else 0)
        elif k == "line":
            _, x0, y0, x1, y1, color, width = op
            shape.draw_line((x0, y0), (x1, y1))
            shape.finish(color=color, width=width, lineCap=0)
        elif k == "dot":
            _, cx, cy, r, color = op
            shape.draw_circle((cx, cy), r)
            shape.finish(fill=color, color=None, width=0)
    shape.commit()
    for op in ops:
        k = op[0]
        if k == "decor":
            _, x0, y0, x1, y1, style, seed = op
            photo = decor_image(style, round((x1 - x0) * DECOR_PX_PER_PT), round((y1 - y0) * DECOR_PX_PER_PT), seed)
            page.insert_image(pymupdf.Rect(x0, y0, x1, y1), stream=encode_jpeg(photo), keep_proportion=False)
        elif k == "raster":
            _, x0, y0, x1, y1, inner, opts = op
            has_photo = any(o[0] == "decor" for o in inner)
            dpi = PHOTO_RASTER_DPI if has_photo else RASTER_DPI
            img = rasterize(inner, x1 - x0, y1 - y0, fonts, opts.get("bg", "plain"), dpi)
            data = encode_jpeg(img, quality=90) if has_photo else encode_png(img.convert("L"))
            page.insert_image(pymupdf.Rect(x0, y0, x1, y1), stream=data, keep_proportion=False)
            images.append((page.number + 1, (x0, y0, x1, y1)))
    # text, batched by colour while keeping the reading order in the content stream
    writer = None
    cur_color = None
    for op in ops:
        if op[0] != "text":
            continue
        _, x, y, text, font, size, color = op
        if writer is None or color != cur_color:
            if writer is not None:
                writer.write_text(page, color=cur_color)
            writer = pymupdf.TextWriter(page.rect)
            cur_color = color
        writer.append((x, y), text, font=doc_fonts[font], fontsize=size)
    if writer is not None:
        writer.write_text(page, color=cur_color)


def render(pages_dir: Path, out_pdf: Path, out_truth: Path, font_dir: Path, layout: str = "brochure") -> dict:
    import pymupdf

    use_layout(layout)
    fonts = Fonts(font_dir)
    files = sorted(pages_dir.glob("page_*.md"))
    if not files:
        raise RenderError(f"no page_*.md files in {pages_dir}")
    doc = pymupdf.open()
    truth_lines = []
    images: list = []
    for n, path in enumerate(files, start=1):
        meta, blocks = load_page(path)
        if meta.get("page") != n or path.name != f"page_{n:02d}.md":
            raise RenderError(f"{path.name}: expected page {n} (file page_{n:02d}.md with 'page: {n}')")
        ops, truth, regions = layout_page(meta, blocks, fonts, path.name)
        hf = header_footer_ops(meta, fonts)
        page = doc.new_page(width=PAGE_W, height=PAGE_H)
        if meta["image_only"]:
            full = hf[:2] + ops + hf[2:]
            draw_pdf_ops(page, [("raster", 0.0, 0.0, PAGE_W, PAGE_H, full, {"bg": "plain"})], fonts, fonts.mu, images)
            regions = [((0.0, 0.0, PAGE_W, PAGE_H), truth)]
        else:
            draw_pdf_ops(page, hf[:2] + ops + hf[2:], fonts, fonts.mu, images)
        record = {
            "page": n,
            "text": unicodedata.normalize("NFC", "\n".join(truth)),
            "header": "" if meta["header"] is None else str(meta["header"]),
            "footer": "" if meta["header"] is None else str(n),
            "raster_regions": [
                {"bbox": [round(v, 2) for v in bbox], "text": unicodedata.normalize("NFC", "\n".join(text))}
                for bbox, text in regions
            ],
            "image_only": meta["image_only"],
            "layout": meta["layout"],
        }
        truth_lines.append(json.dumps(record, ensure_ascii=False))
    fixed_date = "D:20250401000000+09'00'"
    doc.set_metadata(
        {
            "title": LAYOUTS[layout]["metadata"]["title"],
            "author": "brochure-rag",
            "subject": LAYOUTS[layout]["metadata"]["subject"],
            "keywords": LAYOUTS[layout]["metadata"]["keywords"],
            "creator": "brochure-rag scripts/render_sample.py",
            "producer": "PyMuPDF",
            "creationDate": fixed_date,
            "modDate": fixed_date,
        }
    )
    doc.subset_fonts()
    fix_tounicode(doc)
    pdf_bytes = doc.tobytes(garbage=4, deflate=True, deflate_images=True, deflate_fonts=True, no_new_id=True)
    doc.close()
    atomic_write(out_pdf, pdf_bytes)
    atomic_write(out_truth, ("\n".join(truth_lines) + "\n").encode("utf-8"))
    return {"pages": len(files), "pdf_bytes": len(pdf_bytes), "raster_images": len(images)}


# NanumGothic maps U+00B7 (middle dot) and U+30FB (katakana middle dot) to one glyph, and U+0020 and
# U+00A0 to another; the ToUnicode CMaps MuPDF writes name those glyphs U+30FB and U+00A0, so text
# extraction would return '・' and no-break spaces where the sources say '·' and ' '. The sources
# never contain U+30FB or U+00A0 (checked in load_page), so those glyphs are renamed back.
TOUNICODE_FIX = {0x30FB: 0x00B7, 0x00A0: 0x0020}
HEX = r"<([0-9a-fA-F]+)>"


def parse_tounicode(cmap: str) -> dict[int, str]:
    """glyph code -> destination hex string (UTF-16BE), from bfchar and bfrange sections."""
    out: dict[int, str] = {}
    for body in re.findall(r"beginbfchar(.*?)endbfchar", cmap, flags=re.S):
        for src, dst in re.findall(HEX + r"\s*" + HEX, body):
            out[int(src, 16)] = dst.lower()
    for body in re.findall(r"beginbfrange(.*?)endbfrange", cmap, flags=re.S):
        for lo, hi, dst, arr in re.findall(HEX + r"\s*" + HEX + r"\s*(?:" + HEX + r"|\[([^\]]*)\])", body):
            lo_i, hi_i = int(lo, 16), int(hi, 16)
            if arr:
                for k, d in enumerate(re.findall(HEX, arr)):
                    out[lo_i + k] = d.lower()
            else:
                base = int(dst, 16)
                for k in range(hi_i - lo_i + 1):
                    out[lo_i + k] = f"{base + k:0{len(dst)}x}"
    return out


def build_tounicode(mapping: dict[int, str]) -> str:
    head = (
        "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n"
        "/CIDSystemInfo <</Registry(Adobe)/Ordering(UCS)/Supplement 0>> def\n"
        "/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n"
        "1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n"
    )
    items = sorted(mapping.items())
    parts = [head]
    for i in range(0, len(items), 100):
        chunk = items[i : i + 100]
        parts.append(f"{len(chunk)} beginbfchar\n")
        parts.extend(f"<{g:04x}> <{d}>\n" for g, d in chunk)
        parts.append("endbfchar\n")
    parts.append("endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n")
    return "".join(parts)


def fix_tounicode(doc) -> None:
    fixes = {f"{a:04x}": f"{b:04x}" for a, b in TOUNICODE_FIX.items()}
    seen = set()
    for xref in range(1, doc.xref_length()):
        kind, val = doc.xref_get_key(xref, "ToUnicode")
        if kind != "xref" or val in seen:
            continue
        seen.add(val)
        cmap_xref = int(val.split()[0])
        mapping = parse_tounicode(doc.xref_stream(cmap_xref).decode("latin-1"))
        if not any(d in fixes for d in mapping.values()):
            continue
        mapping = {g: fixes.get(d, d) for g, d in mapping.items()}
        doc.update_stream(cmap_xref, build_tounicode(mapping).encode("latin-1"))


def atomic_write(target: Path, data: bytes) -> None:
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; these are committed, world-readable files
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layout", choices=sorted(LAYOUTS), default="brochure", help="page design (default: %(default)s)")
    ap.add_argument("--pages", type=Path, default=None, help="directory with page_NN.md (default: the layout's)")
    ap.add_argument("--out", type=Path, default=None, help="folder for <layout name>.pdf and ground_truth.jsonl")
    ap.add_argument("--out-pdf", type=Path, default=None, help=f"PDF to write (default: {DEFAULT_PDF})")
    ap.add_argument("--out-truth", type=Path, default=None, help=f"ground truth jsonl (default: {DEFAULT_TRUTH})")
    ap.add_argument(
        "--font-dir",
        type=Path,
        default=Path(os.environ.get("BROCHURE_FONT_DIR", DEFAULT_FONT_DIR)),
        help="directory with the Nanum TTF fonts (default: $BROCHURE_FONT_DIR or %(default)s)",
    )
    args = ap.parse_args(argv)
    spec = LAYOUTS[args.layout]
    if args.out is not None and (args.out_pdf or args.out_truth):
        ap.error("--out and --out-pdf/--out-truth are alternatives")
    if args.out is not None:
        args.out_pdf, args.out_truth = args.out / f"{spec['name']}.pdf", args.out / "ground_truth.jsonl"
    elif args.layout != "brochure" and not (args.out_pdf and args.out_truth):
        ap.error(
            f"--layout {args.layout}: give --out DIR (or --out-pdf and --out-truth); the defaults are the sample's"
        )
    args.pages = args.pages or spec["pages"]
    args.out_pdf, args.out_truth = args.out_pdf or DEFAULT_PDF, args.out_truth or DEFAULT_TRUTH
    try:
        info = render(args.pages, args.out_pdf, args.out_truth, args.font_dir, args.layout)
    except RenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"wrote {args.out_pdf} ({info['pdf_bytes'] / 1e6:.2f} MB, {info['pages']} pages, "
        f"{info['raster_images']} raster text images) and {args.out_truth}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
