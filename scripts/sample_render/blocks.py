"""Fonts, text measurement and the layout of single blocks (text, lists, tables, decor, containers)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from . import geometry as G
from .geometry import (
    BOX_FILL,
    BOX_LINE,
    MIN_RASTER_AREA,
    RASTER_MIN_SIZE,
    TABLE_HEAD,
    TABLE_LABEL,
    TABLE_LINE,
    RenderError,
)
from .markdown import Block, runs_text


# ---------------------------------------------------------------- fonts & text measurement
class Fonts:
    def __init__(self, font_dir: Path):
        import pymupdf

        self.paths = {}
        for key, name in G.FONT_FILES.items():
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
                raise RenderError(f"{where}: character {ch!r} (U+{ord(ch):04X}) is missing from {G.FONT_FILES[key]}")

    def pil(self, key: str, px: float):
        from PIL import ImageFont

        k = (key, round(px, 2))
        f = self._pil.get(k)
        if f is None:
            f = ImageFont.truetype(str(self.paths[key]), size=k[1], layout_engine=ImageFont.Layout.BASIC)
            self._pil[k] = f
        return f


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
    font, base, color, lh, _, _ = G.STYLES[style]
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
    size = ctx.size(G.STYLES["li"][1])
    indent = 0.0 if block.ordered else size * 1.2
    for runs in block.items:
        laid = lay_text(runs, width, "li", ctx, indent=indent)
        if not block.ordered:
            cy = size * 1.5 / 2 + 0.5
            laid.ops.insert(0, ("dot", size * 0.45, cy, size * 0.16, G.ACCENT))
        out.append(laid)
    return out


def lay_table(block: Block, width: float, ctx: Ctx, kv: bool = False) -> Laid:
    font, base = G.STYLES["table"][:2]
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
        min_h = MIN_RASTER_AREA * G.PAGE_W * G.PAGE_H / width
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
            laid.ops.insert(0, ("line", -7.0, 1.0, -7.0, laid.height - 1.0, G.ACCENT, 2.0))
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
    if block.kind in G.STYLES:
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
        _, _, _, sb, sa = G.STYLES[style_key(block)][1:]
        if block.kind == "list":
            sb = G.STYLES["li"][4]
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
