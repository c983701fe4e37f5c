"""The page sources: YAML front matter and the small markdown dialect, parsed into ``Block``s."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from .geometry import RenderError


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


# NanumGothic maps U+00B7 (middle dot) and U+30FB (katakana middle dot) to one glyph, and U+0020 and
# U+00A0 to another; the ToUnicode CMaps MuPDF writes name those glyphs U+30FB and U+00A0, so text
# extraction would return '・' and no-break spaces where the sources say '·' and ' '. The sources
# never contain U+30FB or U+00A0 (checked in load_page), so those glyphs are renamed back.
TOUNICODE_FIX = {0x30FB: 0x00B7, 0x00A0: 0x0020}
