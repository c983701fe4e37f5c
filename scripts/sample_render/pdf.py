"""Drawing the laid-out operations into the PDF and fixing the embedded fonts' ToUnicode maps."""

from __future__ import annotations

import re

from .blocks import Fonts
from .geometry import DECOR_PX_PER_PT, PHOTO_RASTER_DPI, RASTER_DPI
from .images import decor_image, encode_jpeg, encode_png, rasterize
from .markdown import TOUNICODE_FIX


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
