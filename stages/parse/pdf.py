"""The input PDF: opening and checking it (one clear error per problem), rendering pages and regions."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..common.errors import UserError

log = logging.getLogger("parse")


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
        raise UserError(f"{path}: corrupt PDF ({one_line(exc)})") from exc
    if doc.needs_pass:
        doc.close()
        raise UserError(f"{path}: encrypted PDF (needs a password)")
    if doc.page_count == 0:
        doc.close()
        raise UserError(f"{path}: PDF has no pages")
    return doc


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}" if exc.__class__.__name__ not in text else text


def capped_dpi(width_pt: float, height_pt: float, dpi: int, max_pixels: int) -> int:
    """``dpi``, lowered so a page renders to at most ``max_pixels`` (a poster-sized page must not eat the RAM)."""
    pixels = width_pt * height_pt * (dpi / 72) ** 2
    if pixels <= max_pixels:
        return dpi
    capped = max(1, int(72 * (max_pixels / (width_pt * height_pt)) ** 0.5))
    log.info("%.0f x %.0f pt page: %d dpi instead of %d (parse.max_render_pixels)", width_pt, height_pt, capped, dpi)
    return capped


def render_page(pdf_path: Path, pno: int, dpi: int) -> Any:
    from pdf2image import convert_from_path

    images = convert_from_path(str(pdf_path), dpi=dpi, first_page=pno, last_page=pno, use_cropbox=True, thread_count=1)
    if not images:
        raise RuntimeError(f"pdftoppm rendered nothing for page {pno}")
    return images[0].convert("RGB")


def render_clip(page: Any, region: tuple, dpi: int) -> Any:
    import pymupdf
    from PIL import Image

    pix = page.get_pixmap(clip=pymupdf.Rect(region), dpi=dpi, alpha=False, colorspace=pymupdf.csRGB)
    return Image.frombytes("RGB", (pix.width, pix.height), pix.samples)
