"""Reading order of a page's blocks: column-aware (gutters found from the blocks' geometry), headers first and
footers last (used by stages.parse.page)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .layout import Block


def order_blocks(blocks: list[Block], cfg: Any) -> list[Block]:
    """Column-aware reading order: headers, body (by column, figures where they sit), footers."""
    headers = [b for b in blocks if b.type == "header"]
    footers = [b for b in blocks if b.type == "footer"]
    body = [b for b in blocks if b.type not in ("header", "footer")]
    return _rows(headers, cfg.line_tolerance) + _order(body, cfg) + _rows(footers, cfg.line_tolerance)


def _order(blocks: list[Block], cfg: Any) -> list[Block]:
    if len(blocks) <= 1:
        return list(blocks)
    gutters = _gutters(blocks, cfg)
    if not gutters:
        return _rows(blocks, cfg.line_tolerance)
    # blocks crossing a gutter (titles, full-width paragraphs and photos) separate column sections
    separators = sorted(
        (b for b in blocks if any(b.bbox[0] < g < b.bbox[2] for g in gutters)), key=lambda b: (b.bbox[1], b.bbox[0])
    )
    remaining = [b for b in blocks if not any(b is s for s in separators)]
    edges = [float("-inf"), *gutters, float("inf")]
    out: list[Block] = []
    for i, limit in enumerate([s.bbox[1] for s in separators] + [float("inf")]):
        section = [b for b in remaining if (b.bbox[1] + b.bbox[3]) / 2 < limit]
        remaining = [b for b in remaining if not any(b is s for s in section)]
        for lo, hi in zip(edges, edges[1:], strict=False):
            column = [b for b in section if lo <= (b.bbox[0] + b.bbox[2]) / 2 < hi]
            out.extend(_order(column, cfg) if len(column) < len(blocks) else _rows(column, cfg.line_tolerance))
        if i < len(separators):
            out.append(separators[i])
    return out


def _gutters(blocks: list[Block], cfg: Any) -> list[float]:
    """x positions of column gutters.

    A gutter is an empty vertical band at least ``column_min_gap`` wide
    between the blocks entirely left and entirely right of it (blocks crossing
    it are ignored: they become section separators), with at least
    ``column_min_chars_share`` of the region's characters on each side.
    """
    total = sum(b.chars for b in blocks) or 1
    edges = sorted({b.bbox[0] for b in blocks} | {b.bbox[2] for b in blocks})
    seen: set[tuple[float, float]] = set()
    out = []
    for a, b in zip(edges, edges[1:], strict=False):
        g = (a + b) / 2
        left = [x for x in blocks if x.bbox[2] <= g]
        right = [x for x in blocks if x.bbox[0] >= g]
        if not left or not right:
            continue
        band = (max(x.bbox[2] for x in left), min(x.bbox[0] for x in right))
        if band[1] - band[0] < cfg.column_min_gap or band in seen:
            continue
        seen.add(band)
        if min(sum(x.chars for x in left), sum(x.chars for x in right)) >= cfg.column_min_chars_share * total:
            out.append((band[0] + band[1]) / 2)
    return _one_per_gap(sorted(out), blocks)


def _one_per_gap(gutters: list[float], blocks: list[Block]) -> list[float]:
    """One gutter per stretch of whitespace: candidates with no block wholly between them are one gap seen
    from different pairs of blocks. An indented block in the right column ('ㆍ' lines under a heading) makes a
    second candidate inside that column, crossed by its headings, which would then be read as full-width
    separators; the candidate crossed by the fewest characters is the gap (the leftmost on ties)."""

    def crossing(g: float) -> int:
        return sum(b.chars for b in blocks if b.bbox[0] < g < b.bbox[2])

    out: list[float] = []
    for g in gutters:
        if out and not any(out[-1] <= b.bbox[0] and b.bbox[2] <= g for b in blocks):
            if crossing(g) < crossing(out[-1]):
                out[-1] = g
            continue
        out.append(g)
    return out


def _rows(blocks: list[Block], tolerance: float) -> list[Block]:
    """Top to bottom; blocks starting within ``tolerance`` points of each other read left to right."""
    out: list[Block] = []
    row: list[Block] = []
    for b in sorted(blocks, key=lambda b: (b.bbox[1], b.bbox[0])):
        if row and b.bbox[1] - row[0].bbox[1] > tolerance:
            out.extend(sorted(row, key=lambda b: b.bbox[0]))
            row = []
        row.append(b)
    out.extend(sorted(row, key=lambda b: b.bbox[0]))
    return out
