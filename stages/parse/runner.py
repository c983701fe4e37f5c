"""Running every page, in a process pool of ``parse.workers`` when the OCR engine allows it."""

from __future__ import annotations

import io as _io
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from ..common.errors import UserError
from ..common.params_schema import Parse
from .ocr import OcrEngine, make_engine
from .page import PageResult, parse_page
from .pdf import capped_dpi, one_line, render_page

_WORKER: dict[str, Any] = {}


def _init_worker(pdf_path: str, cfg: Parse, need_engine: bool) -> None:
    import pymupdf

    _WORKER.clear()
    _WORKER.update(pdf=Path(pdf_path), cfg=cfg, doc=pymupdf.open(pdf_path), engine=None, need_engine=need_engine)


def _engine() -> OcrEngine | None:
    if _WORKER["engine"] is None and _WORKER["need_engine"]:
        _WORKER["engine"] = make_engine(_WORKER["cfg"])
    return _WORKER["engine"]


def _run_page(pno: int) -> PageResult:
    """Parse one page and render its citation image; failures become a failed PageResult."""
    cfg: Parse = _WORKER["cfg"]
    try:
        res = parse_page(_WORKER["doc"], _WORKER["pdf"], pno, cfg, _engine())
    except UserError:
        raise
    except Exception as exc:  # one bad page must not sink the document
        res = PageResult(page=pno, status="failed", error=one_line(exc))
        try:
            r = _WORKER["doc"][pno - 1].rect
            res.width, res.height = round(r.width, 2), round(r.height, 2)
        except Exception:  # the page object itself may be unreadable
            pass
    try:
        buf = _io.BytesIO()
        r = _WORKER["doc"][pno - 1].rect
        dpi = capped_dpi(r.width, r.height, cfg.image_dpi, cfg.max_render_pixels)
        render_page(_WORKER["pdf"], pno, dpi).save(buf, format="PNG")
        res.png = buf.getvalue()
    except Exception as exc:  # a missing citation image is recorded, not fatal
        if res.status == "ok":
            res.status, res.error = "failed", f"page image: {one_line(exc)}"
    return res


def run_pages(pdf_path: Path, n_pages: int, cfg: Parse, engine: OcrEngine | None) -> list[PageResult]:
    """All pages in order, in a process pool of ``cfg.workers`` when the engine allows it."""
    from tqdm import tqdm

    pages = list(range(1, n_pages + 1))
    parallel = cfg.workers > 1 and n_pages > 1 and getattr(engine, "parallel_safe", True)
    bar = dict(total=n_pages, desc="parse", unit="page", leave=False)
    if not parallel:
        _init_worker(str(pdf_path), cfg, need_engine=False)
        _WORKER["engine"] = engine
        try:
            return [_run_page(p) for p in tqdm(pages, **bar)]
        finally:
            _WORKER["doc"].close()
            _WORKER.clear()
    with ProcessPoolExecutor(
        max_workers=min(cfg.workers, n_pages),
        initializer=_init_worker,
        initargs=(str(pdf_path), cfg, engine is not None),
    ) as pool:
        return list(tqdm(pool.map(_run_page, pages), **bar))
