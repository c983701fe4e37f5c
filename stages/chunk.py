"""chunk: parsed layout blocks -> section-aware chunks with page/bbox provenance.

The brochure's own units drive the cut: a title opens a section; inside a section,
a line shaped like ``이름: 설명`` opens an entry (one attraction, one lodging, ...);
other text accumulates per section and is split at sentence/line boundaries when
it outgrows ``chunk.max_chars``. Tables stay whole (long ones are split by rows,
each part keeping the header row). Headers and footers are dropped.

    python -m stages.chunk --parsed data/parsed --out data/chunks
"""

from __future__ import annotations

import argparse
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stages.common import params as P
from stages.common.errors import UserError, run_cli
from stages.common.io import atomic_dir, dump_jsonl, nfc, read_jsonl
from stages.common.params_schema import Chunk

log = logging.getLogger("chunk")

SKIP_TYPES = {"header", "footer", "figure"}
PART_TITLE = re.compile(r"^PART\s*\d+", re.IGNORECASE)
SENTENCE_END = re.compile(r"(?<=[.!?。])\s+")


@dataclass
class Draft:
    path: list[str]
    title: str
    lines: list[str] = field(default_factory=list)
    pages: list[int] = field(default_factory=list)
    bboxes: list[list[float]] = field(default_factory=list)
    sources: dict[str, int] = field(default_factory=dict)
    kind: str = "section"  # section | entry | table

    def add(self, text: str, block: dict[str, Any]) -> None:
        self.lines.append(text)
        if block["page"] not in self.pages:
            self.pages.append(block["page"])
        box = [block["page"], *[round(float(v), 1) for v in block["bbox"]]]
        if box not in self.bboxes:
            self.bboxes.append(box)
        self.sources[block["source"]] = self.sources.get(block["source"], 0) + len(text)

    @property
    def text(self) -> str:
        return "\n".join(self.lines).strip()


def entry_pattern(max_chars: int) -> re.Pattern[str]:
    """'청풍호반 케이블카: 비봉산의 ...' — a short name (up to max_chars), a colon, then the description."""
    return re.compile(rf"^[-•·]?\s*(?P<name>[^:：\n]{{2,{max_chars}}}?)\s*[:：]\s+(?P<body>\S.*)$")


def _is_entry_name(name: str, max_words: int) -> bool:
    """Entry names are labels: no sentence punctuation, not a number, brackets balanced.

    "운영시간: 10:00" has a number for a name; "의림지 숲길 (소요시간: 30분)" has its colon
    inside a bracket: both are fact lines, not new entries.
    """
    balanced = all(name.count(o) == name.count(c) for o, c in ("()", "[]"))
    return balanced and not re.search(r"[.?!]|^\d", name) and len(name.split()) <= max_words


def title_levels(blocks: list[dict[str, Any]]) -> dict[float, int]:
    """Heading level per title font size, ranked over the whole document (1 = biggest).

    Ranking per document, not per page, keeps "남부권역 주요 관광지" (a section) above
    "청풍호반 케이블카" (an entry) on every page. OCR titles have no font size.
    """
    sizes = sorted({b["font_size"] for b in blocks if b.get("type") == "title" and b.get("font_size")}, reverse=True)
    return {size: rank for rank, size in enumerate(sizes, start=1)}


def heading_level(block: dict[str, Any], size_levels: dict[float, int], deepest: int) -> int:
    """A title's depth: its font-size rank when it has a font size, else parse's `level`, else the deepest.

    parse ranks the same sizes but caps its levels at parse.max_heading_levels, which folds
    20/14.5/12 pt headings (section, sub-section, entry) into one level; the uncapped rank keeps
    them apart. OCR titles carry no font size, so for them parse's level (from OCR line height)
    is the only information there is.
    """
    if block.get("font_size") in size_levels:
        return size_levels[block["font_size"]]
    level = block.get("level")
    return min(int(level), deepest) if isinstance(level, int) and level > 0 else deepest


def running_part(block: dict[str, Any]) -> str | None:
    """'PART 2 · 미리보는 여행지' in a running header -> 'PART 2 미리보는 여행지'."""
    text = " ".join(nfc(block.get("text", "")).replace("·", " ").split())
    return text if block.get("type") == "header" and PART_TITLE.match(text) else None


class _Walk:
    """The state of one walk over the blocks: the PART + heading stack, the drafts cut so far and the
    draft being filled."""

    def __init__(self, entry_level: int, entry: re.Pattern[str], entry_name_max_words: int) -> None:
        self.entry_level = entry_level
        self.entry = entry
        self.entry_name_max_words = entry_name_max_words
        self.stack: list[tuple[int, str]] = []
        self.drafts: list[Draft] = []
        self.current: Draft | None = None
        # A heading with neither text nor sub-headings under it (a festival name above a photo) is a list item
        # of its parent section; without this its name would be in no chunk at all.
        self.bare: dict[tuple[int, str], dict[str, Any]] = {}

    def path(self) -> list[str]:
        return [t for _, t in self.stack]

    def flush(self) -> None:
        if self.current is not None and self.current.text:
            self.drafts.append(self.current)
        self.current = None

    def retire(self, popped: tuple[int, str], parent: list[str]) -> None:
        block = self.bare.pop(popped, None)
        if block is None:
            return
        drafts = self.drafts
        if not (drafts and drafts[-1].path == parent and drafts[-1].kind == "section"):
            drafts.append(Draft(parent, parent[-1] if parent else "", kind="section"))
        drafts[-1].add(popped[1], block)

    def pop_to(self, level: int) -> None:
        while self.stack and self.stack[-1][0] >= level:
            popped = self.stack.pop()
            self.retire(popped, self.path())

    def part(self, part: str) -> None:
        """A running header names a new PART: everything open is closed."""
        if not self.stack or self.stack[0] != (0, part):
            self.flush()
            self.pop_to(0)
            self.stack = [(0, part)]

    def title(self, text: str, level: int, block: dict[str, Any]) -> None:
        """A heading at `level` (0 for a PART title) closes the headings at or below it."""
        self.flush()
        title = " ".join(text.split())
        level = 0 if PART_TITLE.match(title) else level
        self.pop_to(level)
        if self.stack:
            self.bare.pop(self.stack[-1], None)  # the parent has a sub-heading: not bare
        self.stack.append((level, title))
        if level > 0:
            self.bare[(level, title)] = block

    def body(self, btype: str, text: str, block: dict[str, Any]) -> None:
        """Text or a table under the current heading."""
        stack = self.stack
        # Text right under a deep heading is one entry (one attraction, one lodging ...).
        if stack:
            self.bare.pop(stack[-1], None)
        leaf = stack[-1] if stack and stack[-1][0] >= self.entry_level else None
        if btype == "table":
            self.flush()
            table = Draft(self.path(), stack[-1][1] if stack else "", kind="table")
            table.add(text, block)
            self.drafts.append(table)
            return
        for line in text.splitlines():
            line = line.strip()
            if line:
                self.line(line, btype, leaf, block)

    def line(self, line: str, btype: str, leaf: tuple[int, str] | None, block: dict[str, Any]) -> None:
        match = self.entry.match(line)
        if match and _is_entry_name(match["name"], self.entry_name_max_words) and leaf is None:
            self.flush()
            name = match["name"].strip().lstrip("-•· ").strip()
            self.current = Draft([*self.path(), name], name, kind="entry")
            self.current.add(line.lstrip("-•· ").strip(), block)
            return
        current = self.current
        if current is None or (current.kind == "entry" and leaf is None and btype not in ("list", "text")):
            self.flush()
            stack = self.stack
            self.current = Draft(
                self.path(), leaf[1] if leaf else (stack[-1][1] if stack else ""), kind="entry" if leaf else "section"
            )
        self.current.add(line, block)


def build_drafts(
    blocks: list[dict[str, Any]],
    entry_level: int,
    toc_titles: list[str],
    entry_name_max_chars: int = 40,
    entry_name_max_words: int = 6,
) -> list[Draft]:
    """Walk blocks in reading order, tracking PART + heading stack, and cut them into drafts."""
    levels = title_levels(blocks)
    deepest = max(levels.values(), default=1)
    toc = {t.lower() for t in toc_titles}
    toc_pages = {b["page"] for b in blocks if b.get("type") == "title" and b["text"].strip().lower() in toc}
    walk = _Walk(entry_level, entry_pattern(entry_name_max_chars), entry_name_max_words)
    for block in blocks:
        btype = block.get("type", "text")
        text = nfc(block.get("text", "")).strip()
        part = running_part(block)
        if part:
            walk.part(part)
        if btype in SKIP_TYPES or not text or block["page"] in toc_pages:
            continue
        if btype == "title":
            walk.title(text, heading_level(block, levels, deepest), block)
        else:
            walk.body(btype, text, block)
    walk.flush()
    walk.pop_to(0)
    return walk.drafts


def _split_long(text: str, max_chars: int, overlap: int) -> list[str]:
    """Split at line, then sentence boundaries; never inside a sentence unless it alone is too long."""
    pieces: list[str] = []
    for line in text.splitlines():
        pieces.extend(s for s in SENTENCE_END.split(line) if s and s.strip())
    parts: list[list[str]] = [[]]
    for piece in pieces:
        if parts[-1] and len("\n".join(parts[-1] + [piece])) > max_chars:
            carry = parts[-1][-overlap:] if overlap else []
            parts.append(list(carry))
        parts[-1].append(piece)
    return ["\n".join(p) for p in parts if p]


def _split_table(text: str, max_chars: int) -> list[str]:
    """Split a long table by rows; every part repeats the header row (captions stay in the first)."""
    lines = text.splitlines()
    first_row = next((i for i, line in enumerate(lines) if "|" in line), 0)
    caption, header, body = lines[:first_row], lines[first_row], lines[first_row + 1 :]
    if len(text) <= max_chars or len(body) < 2:
        return [text]
    parts: list[list[str]] = [[*caption, header]]
    for row in body:
        if len(parts[-1]) > len(caption) + 1 and len("\n".join(parts[-1] + [row])) > max_chars:
            parts.append([header])
            caption = []
        parts[-1].append(row)
    return ["\n".join(p) for p in parts]


def finalize(drafts: list[Draft], max_chars: int, min_chars: int, overlap: int) -> list[dict[str, Any]]:
    # Merge a tiny draft (an intro line, a sub-heading like "호텔") into the next draft of the same section.
    merged: list[Draft] = []
    pending: Draft | None = None
    for d in drafts:
        if pending is not None:
            if d.path[: len(pending.path)] == pending.path:
                d.lines = pending.lines + d.lines
                d.pages = sorted(set(pending.pages) | set(d.pages))
                d.bboxes = pending.bboxes + [b for b in d.bboxes if b not in pending.bboxes]
                for k, v in pending.sources.items():
                    d.sources[k] = d.sources.get(k, 0) + v
            else:
                merged.append(pending)
            pending = None
        if d.kind != "table" and len(d.text) < min_chars:
            pending = d
            continue
        merged.append(d)
    if pending is not None:
        merged.append(pending)

    chunks: list[dict[str, Any]] = []
    for d in merged:
        texts = _split_table(d.text, max_chars) if d.kind == "table" else _split_long(d.text, max_chars, overlap)
        for text in texts:
            chunks.append(
                {
                    "chunk_id": f"c{len(chunks) + 1:03d}",
                    "section_path": " > ".join(d.path) if d.path else d.title,
                    "title": d.title,
                    "kind": d.kind,
                    "text": text,
                    "pages": sorted(d.pages),
                    "bboxes": d.bboxes,
                    "sources": dict(sorted(d.sources.items())),
                }
            )
    return chunks


def chunk_blocks(blocks: list[dict[str, Any]], cfg: Chunk) -> list[dict[str, Any]]:
    blocks = sorted(blocks, key=lambda b: (b["page"], b["order"]))
    return finalize(
        build_drafts(blocks, cfg.entry_level, cfg.toc_titles, cfg.entry_name_max_chars, cfg.entry_name_max_words),
        cfg.max_chars,
        cfg.min_chars,
        cfg.overlap_sentences,
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parsed", type=Path, required=True, help="parse stage output directory")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--params", type=Path, default=P.DEFAULT_PARAMS)
    args = ap.parse_args(argv)

    cfg = P.load(args.params, "chunk")["chunk"]
    blocks_path = args.parsed / "blocks.jsonl"
    if not blocks_path.is_file():
        raise UserError(f"{blocks_path}: not found (run the parse stage first)")
    blocks = read_jsonl(blocks_path)
    chunks = chunk_blocks(blocks, cfg)
    if not chunks:
        raise UserError(f"{blocks_path}: no text to chunk ({len(blocks)} blocks)")
    with atomic_dir(args.out) as tmp:
        dump_jsonl(tmp / "chunks.jsonl", chunks)
    kinds = {k: sum(c["kind"] == k for c in chunks) for k in ("entry", "section", "table")}
    log.info("%d blocks -> %d chunks (%s)", len(blocks), len(chunks), ", ".join(f"{v} {k}" for k, v in kinds.items()))


if __name__ == "__main__":
    run_cli(main)
