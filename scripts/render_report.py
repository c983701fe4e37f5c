"""Render report/REPORT.md as a standalone HTML page, optionally screenshot it with headless Chromium.

    python scripts/render_report.py report/REPORT.md -o /tmp/report.html
    python scripts/render_report.py report/REPORT.md -o /tmp/report.html --screenshot docs/report_look.png

Figures stay relative PNG paths in the markdown: a <base href> pointing at the
markdown's folder makes them resolve wherever the HTML is written. The screenshot
is the whole page (a tall window, blank bottom cropped), split into parts of at
most --part-height pixels and quantised to a small palette so it stays small in git.
"""

from __future__ import annotations

import argparse
import html
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import markdown

CSS = """
body { font-family: 'NanumGothic', 'Noto Sans CJK KR', sans-serif; max-width: 1040px; margin: 24px auto;
       padding: 0 16px; line-height: 1.55; color: #1f2328; font-size: 15px; }
h1 { border-bottom: 2px solid #d0d7de; padding-bottom: 6px; }
h2 { border-bottom: 1px solid #d0d7de; padding-bottom: 4px; margin-top: 36px; }
table { border-collapse: collapse; margin: 10px 0 18px; font-size: 13.5px; display: block; overflow-x: auto; }
th, td { border: 1px solid #d0d7de; padding: 4px 9px; vertical-align: top; }
th { background: #f6f8fa; }
tr:nth-child(even) td { background: #fbfcfd; }
td:not(:first-child) { font-variant-numeric: tabular-nums; }
img { max-width: 100%; border: 1px solid #eaeef2; }
code { background: #f3f4f6; padding: 1px 4px; border-radius: 4px; font-size: 90%; }
pre { background: #f6f8fa; padding: 10px; overflow-x: auto; }
pre code { background: none; padding: 0; }
"""


def to_html(md_path: Path) -> str:
    """The markdown (GitHub-like tables, fenced code) as one HTML page whose relative links resolve."""
    text = md_path.read_text(encoding="utf-8")
    body = markdown.markdown(text, extensions=["tables", "fenced_code", "sane_lists"])
    title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), md_path.name)
    base = md_path.resolve().parent.as_uri() + "/"
    return (
        '<!doctype html>\n<html lang="ko"><head><meta charset="utf-8">'
        f'<base href="{html.escape(base)}"><title>{html.escape(title)}</title>'
        f"<style>{CSS}</style></head><body>\n{body}\n</body></html>\n"
    )


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    sys.exit("error: no chromium on PATH (apt-get install chromium) — the HTML was written anyway")


def screenshot(
    html_path: Path, png: Path, width: int, max_height: int, part_height: int, colors: int, scale: float
) -> list[Path]:
    """Full-page PNG(s): render into a tall window, crop the blank bottom, split, quantise."""
    from PIL import Image, ImageChops

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "page.png"
        subprocess.run(
            [
                chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--virtual-time-budget=5000",  # let images load before the shot
                f"--window-size={width},{max_height}",
                f"--screenshot={raw}",
                html_path.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        page = Image.open(raw).convert("RGB")
    bbox = ImageChops.difference(page, Image.new("RGB", page.size, "white")).getbbox()
    if bbox is None:
        sys.exit(f"error: {html_path}: the page rendered blank")
    page = page.crop((0, 0, page.width, min(page.height, bbox[3] + 24)))
    if bbox[3] >= max_height - 1:
        print(f"warning: page is taller than --max-height {max_height}: the bottom is cut", file=sys.stderr)
    parts = []
    n_parts = -(-page.height // part_height)
    for i in range(n_parts):
        part = page.crop((0, i * part_height, page.width, min(page.height, (i + 1) * part_height)))
        out = png if n_parts == 1 else png.with_name(f"{png.stem}-{i + 1}{png.suffix}")
        out.parent.mkdir(parents=True, exist_ok=True)
        if scale != 1.0:
            part = part.resize((round(part.width * scale), round(part.height * scale)), Image.Resampling.LANCZOS)
        # Fast-octree keeps small colour areas (legend swatches) that median-cut merges away.
        part.quantize(colors=colors, method=Image.Quantize.FASTOCTREE).save(out, optimize=True)
        parts.append(out)
    return parts


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("markdown", type=Path, help="e.g. report/REPORT.md")
    ap.add_argument("-o", "--out", type=Path, required=True, help="HTML file to write")
    ap.add_argument("--screenshot", type=Path, default=None, help="PNG path (split as NAME-1.png, NAME-2.png ...)")
    ap.add_argument("--width", type=int, default=1100, help="window width in pixels")
    ap.add_argument("--max-height", type=int, default=24000, help="window height: the page must fit")
    ap.add_argument("--part-height", type=int, default=2400, help="screenshot part height in pixels")
    ap.add_argument("--colors", type=int, default=64, help="palette size of the saved PNGs (smaller files)")
    ap.add_argument("--scale", type=float, default=1.0, help="resize the saved PNGs by this factor")
    args = ap.parse_args(argv)
    if not args.markdown.is_file():
        sys.exit(f"error: {args.markdown}: not found")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(to_html(args.markdown), encoding="utf-8")
    print(args.out)
    if args.screenshot:
        for part in screenshot(
            args.out, args.screenshot, args.width, args.max_height, args.part_height, args.colors, args.scale
        ):
            print(part)


if __name__ == "__main__":
    main()
