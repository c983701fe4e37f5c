"""Parse outputs: block and page records, the data/parsed folder (written atomically), run metrics."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from ..common import io
from .layout import to_markdown
from .page import PageResult


def block_records(doc_name: str, results: list[PageResult]) -> list[dict[str, Any]]:
    out = []
    for res in results:
        for i, b in enumerate(res.blocks, start=1):
            out.append(
                {
                    "doc": doc_name,
                    "page": res.page,
                    "block_id": f"p{res.page:03d}-b{i:03d}",
                    "order": i,
                    "type": b.type,
                    "bbox": [round(v, 2) for v in b.bbox],
                    "text": b.text,
                    "source": b.source,
                    "confidence": b.confidence if b.source == "ocr" else None,
                    "font_size": b.font_size if b.source == "textlayer" else None,
                    "level": b.level,
                }
            )
    return out


def page_record(res: PageResult) -> dict[str, Any]:
    return {
        "page": res.page,
        "width": res.width,
        "height": res.height,
        "textlayer_chars": res.textlayer_chars,
        "ocr": res.ocr,
        "status": res.status,
        "error": res.error,
    }


def write_outputs(out_dir: Path, records: list[dict], results: list[PageResult]) -> None:
    with io.atomic_dir(out_dir) as tmp:
        io.dump_jsonl(tmp / "blocks.jsonl", records)
        io.dump_jsonl(tmp / "pages.jsonl", (page_record(r) for r in results))
        (tmp / "pages").mkdir()
        (tmp / "images").mkdir()
        for res in results:
            (tmp / "pages" / f"page_{res.page:03d}.md").write_text(to_markdown(res.blocks), encoding="utf-8")
            if res.png:
                (tmp / "images" / f"page_{res.page:03d}.png").write_bytes(res.png)


def parse_metrics(results: list[PageResult], records: list[dict], seconds: float, engine: str) -> dict[str, Any]:
    types = Counter(r["type"] for r in records)
    chars = Counter()
    for r in records:
        chars[r["source"]] += sum(1 for c in r["text"] if not c.isspace())
    return {
        "pages": len(results),
        "failed_pages": sum(1 for r in results if r.status == "failed"),
        "failed": [{"page": r.page, "error": r.error} for r in results if r.status == "failed"],
        "blocks": len(records),
        "blocks_by_type": dict(sorted(types.items())),
        "chars_by_source": {"textlayer": chars["textlayer"], "ocr": chars["ocr"]},
        "ocr_engine": engine,
        "ocr_pages": sum(1 for r in results if r.ocr_mode == "page"),
        "ocr_region_pages": sum(1 for r in results if r.ocr_mode == "regions"),
        "ocr_regions": sum(r.ocr_regions for r in results if r.ocr_mode == "regions"),
        "photo_regions_not_ocred": sum(r.photos_skipped for r in results),
        "seconds": round(seconds, 2),
        "pages_per_second": round(len(results) / seconds, 3) if seconds else None,
    }
