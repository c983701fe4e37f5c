"""Procedural decorative images and the rasterisation of raster-only regions (Pillow)."""

from __future__ import annotations

import io
import math

from .blocks import Fonts
from .geometry import DECOR_PX_PER_PT, RASTER_BOX_FILL, RASTER_BOX_LINE, RenderError

# ---------------------------------------------------------------- decorative images
# (sky top, sky bottom), (foreground near, foreground far) per decor style; 'qr' is drawn apart.
DECOR_PALETTES = {
    "lake": [((0.72, 0.85, 0.95), (0.95, 0.90, 0.80)), ((0.30, 0.50, 0.45), (0.20, 0.38, 0.35))],
    "mountains": [((0.80, 0.88, 0.96), (0.98, 0.93, 0.85)), ((0.35, 0.52, 0.40), (0.18, 0.32, 0.25))],
    "autumn": [((0.95, 0.85, 0.70), (0.98, 0.95, 0.88)), ((0.75, 0.40, 0.20), (0.55, 0.22, 0.12))],
    "blossom": [((0.98, 0.88, 0.92), (0.95, 0.95, 0.98)), ((0.95, 0.70, 0.80), (0.85, 0.55, 0.65))],
    "forest": [((0.85, 0.93, 0.85), (0.96, 0.98, 0.92)), ((0.22, 0.45, 0.28), (0.12, 0.30, 0.18))],
    "night": [((0.10, 0.14, 0.30), (0.30, 0.25, 0.45)), ((0.15, 0.18, 0.28), (0.08, 0.10, 0.18))],
    "food": [((0.96, 0.90, 0.80), (0.90, 0.80, 0.66)), ((0.85, 0.55, 0.30), (0.70, 0.35, 0.20))],
    "map": [((0.93, 0.95, 0.90), (0.93, 0.95, 0.90)), ((0.78, 0.88, 0.76), (0.70, 0.82, 0.90))],
}


def decor_image(style: str, w_px: int, h_px: int, seed: int):
    """A procedural, text-free 'photo' (PIL RGB image, or L for qr)."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    w_px, h_px = max(w_px, 8), max(h_px, 8)
    if style == "qr":
        return _qr_image(rng, w_px, h_px)
    if style not in DECOR_PALETTES:
        raise RenderError(f"unknown decor style {style!r} (one of {', '.join(sorted(DECOR_PALETTES) + ['qr'])})")
    (sky_top, sky_bot), (fg1, fg2) = DECOR_PALETTES[style]
    jitter = rng.uniform(-0.04, 0.04, 3)
    t = np.linspace(0, 1, h_px)[:, None, None]
    img = (np.array(sky_top) + jitter) * (1 - t) + np.array(sky_bot) * t
    img = np.broadcast_to(img, (h_px, w_px, 3)).copy()
    if style in ("lake", "mountains", "autumn", "forest", "night"):
        _draw_landscape(img, style, rng, DECOR_PALETTES[style])
    pil = Image.fromarray((img.clip(0, 1) * 255).astype("uint8"))
    draw = ImageDraw.Draw(pil, "RGBA")
    if style in ("blossom", "food", "autumn"):
        _draw_blobs(draw, style, rng, w_px, h_px, (fg1, fg2))
    if style == "forest":
        _draw_trees(draw, rng, w_px, h_px, fg2)
    if style == "map":
        _draw_map(draw, rng, w_px, h_px)
    radius = (
        1.2 if style == "map" else max(1.0, min(w_px, h_px) / (50 if style in ("blossom", "food", "autumn") else 120))
    )
    return pil.filter(ImageFilter.GaussianBlur(radius))


def _qr_image(rng, w_px: int, h_px: int):
    """A QR-like 25x25 module grid with its three finder squares."""
    import numpy as np
    from PIL import Image

    n = 25
    grid = rng.random((n, n)) < 0.5
    for ox, oy in ((0, 0), (n - 7, 0), (0, n - 7)):
        grid[oy : oy + 7, ox : ox + 7] = False
        grid[oy : oy + 7, ox] = grid[oy : oy + 7, ox + 6] = True
        grid[oy, ox : ox + 7] = grid[oy + 6, ox : ox + 7] = True
        grid[oy + 2 : oy + 5, ox + 2 : ox + 5] = True
    arr = np.where(grid, 20, 250).astype("uint8")
    arr = np.pad(arr, 2, constant_values=250)
    return Image.fromarray(arr).resize((w_px, h_px), Image.NEAREST).convert("RGB")


def _ridge(rng, w_px: int, h_px: int, base: float, amp: float, smooth: int):
    """A smoothed random-walk skyline: per column, the y (px) where the ridge starts."""
    import numpy as np

    walk = np.cumsum(rng.normal(0, 1, w_px + 2 * smooth))
    kernel = np.hanning(2 * smooth + 1)
    kernel /= kernel.sum()
    walk = np.convolve(walk, kernel, mode="same")[smooth : smooth + w_px]
    walk = (walk - walk.min()) / (np.ptp(walk) or 1.0)
    return (base - amp * walk) * h_px


def _draw_landscape(img, style: str, rng, palette) -> None:
    """Ridges fading into the distance (in place), plus water for 'lake' and stars for 'night'."""
    import numpy as np

    h_px, w_px = img.shape[:2]
    (_sky_top, sky_bot), (fg1, fg2) = palette
    yy = np.arange(h_px)[:, None]
    layers = 4 if style != "lake" else 3
    for n in range(layers):
        f = n / max(layers - 1, 1)
        col = np.array(fg1) * (1 - f) + np.array(fg2) * f
        col = col * (1 - 0.35 * (1 - f)) + np.array(sky_bot) * 0.35 * (1 - f)  # aerial perspective
        base = 0.45 + 0.12 * n if style != "lake" else 0.42 + 0.07 * n
        top = _ridge(rng, w_px, h_px, base, 0.22 - 0.03 * n, max(4, w_px // (6 + 3 * n)))
        mask = yy >= top[None, :]
        img[mask] = img[mask] * 0.15 + col * 0.85
    if style == "lake":
        y_w = int(h_px * 0.62)
        wt = np.linspace(0, 1, h_px - y_w)[:, None, None]
        wcol = np.array((0.45, 0.65, 0.78)) * (1 - wt) + np.array((0.25, 0.42, 0.58)) * wt
        ripple = 0.03 * np.sin(np.arange(h_px - y_w) * 0.9 + rng.uniform(0, 6))[:, None, None]
        img[y_w:] = np.broadcast_to(wcol + ripple, (h_px - y_w, w_px, 3))
    if style == "night":
        stars = rng.random((h_px, w_px)) > 0.997
        img[stars & (yy < h_px * 0.45)] = 0.9


def _draw_blobs(draw, style: str, rng, w_px: int, h_px: int, colours) -> None:
    """Petals or leaves (blossom, autumn), or a few plates seen from above (food)."""
    import numpy as np

    fg1, fg2 = colours
    count = 60 if style != "food" else 7
    for _ in range(count):
        cx, cy = rng.uniform(0, w_px), rng.uniform(0, h_px)
        r = rng.uniform(0.02, 0.08 if style != "food" else 0.22) * min(w_px, h_px) * (2 if style == "food" else 1)
        col = np.array(fg1 if rng.random() < 0.5 else fg2) * 255
        a = int(rng.uniform(60, 130))
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(*col.astype(int).tolist(), a))
        if style == "food":
            draw.ellipse([cx - r * 0.6, cy - r * 0.6, cx + r * 0.6, cy + r * 0.6], fill=(250, 245, 235, 200))


def _draw_trees(draw, rng, w_px: int, h_px: int, fg2) -> None:
    import numpy as np

    for _ in range(40):
        cx, by = rng.uniform(0, w_px), rng.uniform(0.55, 1.0) * h_px
        hh, ww = rng.uniform(0.15, 0.35) * h_px, rng.uniform(0.04, 0.08) * w_px
        col = (np.array(fg2) * 255 * rng.uniform(0.8, 1.1)).clip(0, 255).astype(int).tolist()
        draw.polygon([(cx, by - hh), (cx - ww, by), (cx + ww, by)], fill=(*col, 200))


def _draw_map(draw, rng, w_px: int, h_px: int) -> None:
    """Fields, lakes, roads and markers of a tourist map."""
    for _ in range(6):
        pts = [(rng.uniform(0, w_px), rng.uniform(0, h_px)) for _ in range(6)]
        draw.polygon(pts, fill=(190, 215, 185, 110))
    for _ in range(2):  # lake / river
        cx, cy = rng.uniform(0.2, 0.8) * w_px, rng.uniform(0.2, 0.8) * h_px
        r = 0.12 * min(w_px, h_px)
        draw.ellipse([cx - 2 * r, cy - r, cx + 2 * r, cy + r], fill=(150, 190, 225, 220))
    for _ in range(5):  # roads
        pts = [(0, rng.uniform(0, h_px))]
        for k in range(1, 7):
            pts.append((k * w_px / 6, pts[-1][1] + rng.uniform(-0.15, 0.15) * h_px))
        draw.line(pts, fill=(235, 200, 120, 255), width=max(2, w_px // 150))
    for _ in range(12):  # markers
        cx, cy = rng.uniform(0.05, 0.95) * w_px, rng.uniform(0.05, 0.95) * h_px
        r = max(3, w_px // 90)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(200, 70, 60, 255))


def encode_jpeg(img, quality: int = 82) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, optimize=False, progressive=False, subsampling="4:2:0")
    return buf.getvalue()


def encode_png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=False, compress_level=1)  # MuPDF re-compresses the pixels anyway
    return buf.getvalue()


# ---------------------------------------------------------------- rasterisation (Pillow)
def rgb255(c) -> tuple[int, int, int]:
    return tuple(int(round(v * 255)) for v in c)


def rasterize(ops: list, w_pt: float, h_pt: float, fonts: Fonts, bg: str, dpi: int):
    """Draw ops (relative to the region's top-left) into a Pillow image."""
    from PIL import Image, ImageDraw

    s = dpi / 72.0
    w_px, h_px = int(math.ceil(w_pt * s)), int(math.ceil(h_pt * s))
    img = Image.new("RGB", (w_px, h_px), (255, 255, 255))
    d = ImageDraw.Draw(img)
    if bg == "box":
        lw = max(1, round(1.0 * s))
        d.rounded_rectangle(
            [lw, lw, w_px - 1 - lw, h_px - 1 - lw],
            radius=round(6 * s),
            fill=rgb255(RASTER_BOX_FILL),
            outline=rgb255(RASTER_BOX_LINE),
            width=lw,
        )
    for op in ops:
        k = op[0]
        if k == "rect":
            _, x0, y0, x1, y1, fill, stroke, width = op
            d.rectangle(
                [x0 * s, y0 * s, x1 * s, y1 * s],
                fill=rgb255(fill) if fill else None,
                outline=rgb255(stroke) if stroke else None,
                width=max(1, round(width * s)) if stroke else 0,
            )
        elif k == "line":
            _, x0, y0, x1, y1, color, width = op
            d.line([x0 * s, y0 * s, x1 * s, y1 * s], fill=rgb255(color), width=max(1, round(width * s)))
        elif k == "dot":
            _, cx, cy, r, color = op
            d.ellipse([(cx - r) * s, (cy - r) * s, (cx + r) * s, (cy + r) * s], fill=rgb255(color))
        elif k == "decor":
            _, x0, y0, x1, y1, style, seed = op
            pw, ph = round((x1 - x0) * s), round((y1 - y0) * s)
            photo = decor_image(style, round((x1 - x0) * DECOR_PX_PER_PT), round((y1 - y0) * DECOR_PX_PER_PT), seed)
            img.paste(photo.resize((pw, ph), Image.BILINEAR), (round(x0 * s), round(y0 * s)))
    for op in ops:  # text last, on top
        if op[0] == "text":
            _, x, y, text, font, size, color = op
            d.text((x * s, y * s), text, font=fonts.pil(font, size * s), fill=rgb255(color), anchor="ls")
    return img
