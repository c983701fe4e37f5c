"""Page geometry, colours, type styles and the layouts that swap them (``use_layout``).

The layout code reads the swapped constants at call time as ``geometry.NAME`` (``G.NAME``), so
``use_layout`` rewriting this module's globals switches every page drawn after it.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


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
