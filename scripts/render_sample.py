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

The code lives in ``scripts/sample_render/``: ``geometry`` (page geometry, styles, layouts), ``markdown``
(the page dialect), ``blocks`` and ``page`` (layout), ``images`` (decor, rasterisation), ``pdf`` (drawing,
ToUnicode fixes); this script renders and writes the files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import unicodedata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sample_render package beside this script
from sample_render import geometry as G  # noqa: E402
from sample_render.blocks import Fonts  # noqa: E402
from sample_render.geometry import DEFAULT_FONT_DIR, DEFAULT_PDF, DEFAULT_TRUTH, LAYOUTS, RenderError, use_layout  # noqa: E402
from sample_render.markdown import load_page  # noqa: E402
from sample_render.page import header_footer_ops, layout_page  # noqa: E402
from sample_render.pdf import draw_pdf_ops, fix_tounicode  # noqa: E402


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
        page = doc.new_page(width=G.PAGE_W, height=G.PAGE_H)
        if meta["image_only"]:
            full = hf[:2] + ops + hf[2:]
            draw_pdf_ops(
                page, [("raster", 0.0, 0.0, G.PAGE_W, G.PAGE_H, full, {"bg": "plain"})], fonts, fonts.mu, images
            )
            regions = [((0.0, 0.0, G.PAGE_W, G.PAGE_H), truth)]
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
