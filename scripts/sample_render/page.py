"""Page layout: blocks flowed into one or two columns, running header and footer."""

from __future__ import annotations

from . import geometry as G
from .blocks import Ctx, Flow, Fonts, lay_block, style_key
from .geometry import BOX_LINE, COL_GAP, LIGHT, RenderError
from .markdown import Block


def layout_page(meta: dict, blocks: list[Block], fonts: Fonts, where: str) -> tuple[list, list, list]:
    page_no = meta["page"]
    cover = meta.get("header") is None
    top, bottom = (G.COVER_TOP, G.COVER_BOTTOM) if cover else (G.CONTENT_TOP, G.CONTENT_BOTTOM)
    ctx = Ctx(
        fonts=fonts, where=where, page=page_no, raster=bool(meta["image_only"]), scale=float(meta.get("scale", 1.0))
    )
    flow = Flow([(G.MARGIN_X, G.PAGE_W - G.MARGIN_X, top, bottom)], ctx)
    for n, block in enumerate(blocks):
        if block.kind == "columns":
            if meta["layout"] != "two-column":
                raise RenderError(f"{where}: '::: columns' on a one-column page")
            y = flow.y + 4.0 if not flow.at_top else flow.y
            col_w = (G.PAGE_W - 2 * G.MARGIN_X - COL_GAP) / 2
            flow.set_frames(
                [
                    (G.MARGIN_X, G.MARGIN_X + col_w, y, bottom),
                    (G.MARGIN_X + col_w + COL_GAP, G.PAGE_W - G.MARGIN_X, y, bottom),
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
                keep = min(first.height, 60.0) + G.STYLES[style_key(nxt)][4]
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
    hx = G.MARGIN_X if even else G.PAGE_W - G.MARGIN_X - hw
    ops.append(("text", hx, G.HEADER_BASELINE, header, "R", size, LIGHT))
    ops.append(("line", G.MARGIN_X, G.HEADER_RULE_Y, G.PAGE_W - G.MARGIN_X, G.HEADER_RULE_Y, BOX_LINE, 0.6))
    fs = 9.5
    fw = fonts.width(footer, "B", fs)
    fx = G.MARGIN_X if even else G.PAGE_W - G.MARGIN_X - fw
    ops.append(("text", fx, G.FOOTER_BASELINE, footer, "B", fs, G.ACCENT))
    return ops
