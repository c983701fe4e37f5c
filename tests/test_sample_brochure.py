"""The committed sample brochure (data/sample) and its renderer (scripts/render_sample.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
from collections import Counter
from pathlib import Path

import pymupdf
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
PDF = SAMPLE / "jecheon_2025_sample.pdf"
TRUTH = SAMPLE / "ground_truth.jsonl"
PAGES = SAMPLE / "pages"
SCRIPT = ROOT / "scripts" / "render_sample.py"
FONT_DIR = Path(os.environ.get("BROCHURE_FONT_DIR", "/usr/share/fonts/truetype/nanum"))
HAVE_FONTS = all((FONT_DIR / f).is_file() for f in ("NanumGothic.ttf", "NanumGothicBold.ttf", "NanumMyeongjo.ttf"))

IMAGE_ONLY_PAGES = {21, 28}
COVERS = {1, 28}


def load_renderer():
    spec = importlib.util.spec_from_file_location("render_sample", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses need the module registered
    spec.loader.exec_module(mod)
    return mod


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.fixture(scope="module")
def doc():
    d = pymupdf.open(PDF)
    yield d
    d.close()


@pytest.fixture(scope="module")
def truth():
    return [json.loads(line) for line in TRUTH.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def renders(tmp_path_factory):
    """Render the page sources twice into a temp dir (not the committed paths)."""
    if not HAVE_FONTS:
        pytest.skip(f"Nanum fonts not found in {FONT_DIR} (apt-get install fonts-nanum)")
    mod = load_renderer()
    out = []
    for n in (1, 2):
        d = tmp_path_factory.mktemp(f"render{n}")
        pdf, jsonl = d / "sample.pdf", d / "truth.jsonl"
        mod.render(PAGES, pdf, jsonl, FONT_DIR)
        out.append((pdf, jsonl))
    return out


# ------------------------------------------------------------------ committed files


def test_committed_pdf_shape(doc):
    assert doc.page_count == 28
    assert PDF.stat().st_size < 10 * 1024 * 1024
    for page in doc:
        assert abs(page.rect.width - 595.28) < 0.5 and abs(page.rect.height - 841.89) < 0.5  # A4
    fonts = {f[3].split("+")[-1] for page in doc for f in page.get_fonts()}
    assert any(f.startswith("NanumGothic") for f in fonts)
    assert all("+" in f[3] for page in doc for f in page.get_fonts()), "fonts must be subset"
    assert doc.metadata["creationDate"] == doc.metadata["modDate"] != ""


def test_ground_truth_schema(truth):
    assert [t["page"] for t in truth] == list(range(1, 29))
    for t in truth:
        assert set(t) == {"page", "text", "header", "footer", "raster_regions", "image_only", "layout"}
        assert t["layout"] in ("one-column", "two-column")
        assert t["text"].strip(), f"page {t['page']} has no text"
        for r in t["raster_regions"]:
            x0, y0, x1, y1 = r["bbox"]
            assert 0 <= x0 < x1 <= 595.3 and 0 <= y0 < y1 <= 842
            assert r["text"] and r["text"] in t["text"]
        if t["page"] in COVERS:
            assert t["header"] == "" and t["footer"] == ""
        else:
            assert t["header"] and t["footer"] == str(t["page"])
    assert {t["page"] for t in truth if t["image_only"]} == IMAGE_ONLY_PAGES
    assert {t["page"] for t in truth if t["layout"] == "two-column"} >= {12, 13, 14, 15}
    # the layer-free content the parse stage must recover with OCR
    by_page = {t["page"]: t for t in truth}
    assert sum(1 for t in truth if t["raster_regions"] and not t["image_only"]) >= 5
    assert "열두달밥상(가마솥약초밥상)" in by_page[21]["text"]
    assert "포레스트 리솜 (레스트리 리솜) | 451 | 제천시 백운면 금봉로 365 | 043-649-6000" in by_page[22]["text"]


def test_raster_only_content_has_no_text_layer(doc, truth):
    probes = {
        1: ["제천여행 길라잡이", "휴식 바이블"],
        4: ["5,000원 할인", "3,000원 할인", "주요혜택"],
        6: ["60,000원", "85,000원", "이용요금"],
        14: ["비봉산", "문화재길 166"],
        17: ["이연순 명인", "본초다담", "1박 2일 코스"],
        21: ["열두달밥상", "카우보이그릴", "아오바바"],
        22: ["포레스트 리솜", "043-649-6000", "칙칙폭폭999", "객실"],
        28: ["자연치유도시", "HEALING"],
    }
    by_page = {t["page"]: t for t in truth}
    for pno, words in probes.items():
        layer = doc[pno - 1].get_text()
        for w in words:
            assert w not in layer, f"page {pno}: {w!r} must exist only as an image"
            assert w.replace(" ", "") in squash(by_page[pno]["text"]), f"page {pno}: {w!r} missing from ground truth"
    for pno in IMAGE_ONLY_PAGES:
        page = doc[pno - 1]
        assert page.get_text().strip() == ""
        assert len(page.get_images()) == 1
        (info,) = page.get_image_info()
        assert all(abs(a - b) < 0.05 for a, b in zip(info["bbox"], page.rect, strict=True))


def test_text_layer_matches_ground_truth(doc, truth):
    """Text-layer characters == truth minus raster regions, plus header/footer (table ' | ' aside)."""
    for t in truth:
        layer = doc[t["page"] - 1].get_text()
        expected = "" if t["image_only"] else t["text"]
        for r in t["raster_regions"]:
            expected = expected.replace(r["text"], "", 1)
        if not t["image_only"]:
            expected += t["header"] + t["footer"]
        got = Counter(squash(layer).replace("|", ""))
        want = Counter(squash(expected).replace("|", ""))
        assert got == want, f"page {t['page']}: extra {dict(got - want)}, missing {dict(want - got)}"


def test_raster_regions_are_high_resolution_images(doc, truth):
    for t in truth:
        page = doc[t["page"] - 1]
        infos = page.get_image_info()
        for r in t["raster_regions"]:
            rect = pymupdf.Rect(r["bbox"])
            match = [
                i
                for i in infos
                if abs(pymupdf.Rect(i["bbox"]).x0 - rect.x0) < 0.5 and abs(pymupdf.Rect(i["bbox"]).y0 - rect.y0) < 0.5
            ]
            assert match, f"page {t['page']}: no image at raster region {r['bbox']}"
            dpi = match[0]["width"] / (rect.width / 72)
            assert dpi >= 199, f"page {t['page']}: raster region only {dpi:.0f} dpi"
            # big enough that a parser does not dismiss it as decoration (params parse.min_image_area)
            assert rect.width * rect.height >= 0.045 * page.rect.width * page.rect.height


def test_two_column_pages_have_two_text_columns(doc, truth):
    for t in truth:
        if t["layout"] != "two-column" or t["image_only"]:
            continue
        page = doc[t["page"] - 1]
        mid = page.rect.width / 2
        blocks = [b for b in page.get_text("blocks") if b[6] == 0 and 50 < b[1] and b[3] < 790 and b[4].strip()]
        left = [b for b in blocks if b[2] <= mid]
        right = [b for b in blocks if b[0] >= mid]
        straddling = [b for b in blocks if b[0] < mid < b[2]]
        assert len(left) >= 3 and len(right) >= 3, f"page {t['page']}: expected two columns of text"
        top_of_columns = min(b[1] for b in right)
        # only full-width top matter (titles, intro) may cross the gutter, and only above the columns
        assert all(b[3] <= top_of_columns + 1 for b in straddling), f"page {t['page']}: text crosses the gutter"
        assert max(b[2] for b in left) < min(b[0] for b in right)
        # reading order of the text layer: the whole left column comes before the right column
        text = squash(page.get_text())
        assert text.index(squash(left[-1][4])) < text.index(squash(right[0][4]))


def test_headers_and_page_numbers_in_bands(doc, truth):
    for t in truth:
        if t["image_only"] or t["page"] in COVERS:
            continue
        page = doc[t["page"] - 1]
        h = page.rect.height
        top = page.get_text(clip=pymupdf.Rect(0, 0, page.rect.width, 0.06 * h)).strip()
        bottom = page.get_text(clip=pymupdf.Rect(0, 0.94 * h, page.rect.width, h)).strip()
        assert top == t["header"], f"page {t['page']}: header band reads {top!r}"
        assert bottom == t["footer"]


def test_tables_are_drawn_with_lines(doc):
    def tables(pno):
        return doc[pno - 1].find_tables().tables

    t24 = tables(24)
    assert any(tb.row_count >= 13 and tb.col_count == 4 for tb in t24)
    assert len(tables(26)) == 3
    for pno in (5, 6, 7, 8, 16):
        assert tables(pno), f"page {pno}: no drawn table found"
    # (PyMuPDF 2.0's Table.extract() drops spaces and moves commas even for Helvetica; compare loosely)
    cells = max(t24, key=lambda tb: tb.row_count).extract()
    assert cells[0] == ["답례품", "용량", "제공처", "포인트"]
    assert [squash(c) for c in cells[1][:3]] == ["옥순봉출렁다리입장권", "-", "-"]


# ------------------------------------------------------------------ the renderer


def test_render_is_deterministic_and_committed_files_are_current(renders, doc, truth):
    (pdf1, jsonl1), (pdf2, jsonl2) = renders
    assert pdf1.read_bytes() == pdf2.read_bytes()
    assert jsonl1.read_bytes() == jsonl2.read_bytes()
    # the committed ground truth is what the committed page sources render to
    assert jsonl1.read_text(encoding="utf-8") == TRUTH.read_text(encoding="utf-8"), (
        "data/sample is stale: run python scripts/render_sample.py"
    )
    fresh = pymupdf.open(pdf1)
    assert fresh.page_count == doc.page_count
    for a, b in zip(fresh, doc, strict=True):
        assert a.get_text() == b.get_text()
    fresh.close()


def test_missing_font_is_a_one_line_error(tmp_path, capsys):
    mod = load_renderer()
    rc = mod.main(
        [
            "--font-dir",
            str(tmp_path / "nofonts"),
            "--out-pdf",
            str(tmp_path / "x.pdf"),
            "--out-truth",
            str(tmp_path / "x.jsonl"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 1
    assert err.startswith("error: font not found") and "\n" not in err
    assert not (tmp_path / "x.pdf").exists()


def test_overflowing_page_is_rejected(tmp_path, capsys):
    if not HAVE_FONTS:
        pytest.skip("Nanum fonts not installed")
    mod = load_renderer()
    pages = tmp_path / "pages"
    pages.mkdir()
    body = "\n\n".join(["제천 관광 안내 문단입니다. " * 12] * 40)
    (pages / "page_01.md").write_text(f'---\npage: 1\nlayout: one-column\nheader: "T"\n---\n{body}\n', encoding="utf-8")
    rc = mod.main(
        [
            "--pages",
            str(pages),
            "--font-dir",
            str(FONT_DIR),
            "--out-pdf",
            str(tmp_path / "x.pdf"),
            "--out-truth",
            str(tmp_path / "x.jsonl"),
        ]
    )
    assert rc == 1
    assert "overflows" in capsys.readouterr().err
