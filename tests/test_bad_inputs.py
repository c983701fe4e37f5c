"""Bad inputs through the real stage CLIs: one clear line + exit 1, or graceful handling; never partial outputs.

Whole-file failures run as subprocesses (`python -m stages.<name>`, exactly what dvc runs); the rest call
the same `main(argv)` inside `run_cli`, which is what `python -m` runs, to save interpreter start-ups.
PDFs are tiny and built here with PyMuPDF; OCR pages are small and rendered at 150 dpi.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pymupdf
import pytest
import yaml
from conftest import NANUM_FONT, insert_image, retrieval_options, text_image
from PIL import Image

from stages import chunk, evaluate, sft, synthesize
from stages.common import io
from stages.common.errors import run_cli
from stages.common.retrieval import Retriever
from stages.parse import __main__ as parse
from stages.parse.pdf import capped_dpi

REPO = Path(__file__).resolve().parents[1]
FONT = NANUM_FONT
needs_font = pytest.mark.skipif(not FONT.is_file(), reason="fonts-nanum not installed")


# ---------------------------------------------------------------- helpers


def write_params(tmp_path: Path, name: str = "params.yaml", **overrides: dict) -> Path:
    """The repo's params.yaml (cpu profile), parse at 150 dpi serially, plus ``{section: {key: value}}`` overrides."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    raw["profile"] = "cpu"
    overrides = {"parse": {"dpi": 150, "workers": 1}, **overrides}
    for section, values in overrides.items():
        profile_part = raw["profiles"]["cpu"].get(section) or {}
        for key, value in values.items():
            (profile_part if key in profile_part else raw.setdefault(section, {}))[key] = value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def cli(module: str, *args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"stages.{module}", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def run_main(main, argv: list[str | Path], capsys) -> tuple[int, str]:
    """`python -m stages.x argv` in-process: (exit code, the 'error:' lines on stderr)."""
    try:
        run_cli(main, [str(a) for a in argv])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    return code, "\n".join(errors)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit 1 and exactly one 'error:' line, the last one (progress/log lines before it are fine)."""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert proc.returncode == 1, proc.stderr
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])


def assert_nothing_written(folder: Path, *outputs: Path) -> None:
    for out in outputs:
        assert not out.exists(), out
    leftovers = [p.name for p in folder.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name]
    assert not leftovers, leftovers


def text_page(doc: pymupdf.Document, text: str) -> None:
    page = doc.new_page(width=420, height=300)
    page.insert_text((30, 60), text, fontname="nanum", fontfile=str(FONT), fontsize=11)


def chunk_record(chunk_id: str, title: str, text: str, kind: str = "entry") -> dict:
    """A chunk in the data/chunks contract (docs/data-contracts.md)."""
    return {
        "chunk_id": chunk_id,
        "section_path": title,
        "title": title,
        "kind": kind,
        "text": text,
        "pages": [1],
        "bboxes": [[1, 0.0, 0.0, 100.0, 20.0]],
        "sources": {"textlayer": 1},
    }


def save(doc: pymupdf.Document, path: Path) -> Path:
    doc.subset_fonts()
    doc.save(path, garbage=3, deflate=True)
    return path


# ---------------------------------------------------------------- parse: whole-file failures


def _broken_pdfs(tmp_path: Path) -> dict[str, Path]:
    doc = pymupdf.open()
    text_page(doc, "제천 의림지 안내 문장입니다.")
    good = save(doc, tmp_path / "good.pdf")
    data = good.read_bytes()
    (tmp_path / "notpdf.pdf").write_text("<html>this is not a pdf</html>\n", encoding="utf-8")
    (tmp_path / "truncated.pdf").write_bytes(data[: len(data) // 2])
    pymupdf.open(good).save(
        tmp_path / "encrypted.pdf", encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="u", owner_pw="o"
    )
    (tmp_path / "zero.pdf").write_bytes(
        b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n"
        b"trailer<</Root 1 0 R>>\n%%EOF\n"
    )
    return {
        "file not found": tmp_path / "missing.pdf",
        "not a PDF": tmp_path / "notpdf.pdf",
        "truncated or corrupt PDF": tmp_path / "truncated.pdf",
        "encrypted PDF": tmp_path / "encrypted.pdf",
        "PDF has no pages": tmp_path / "zero.pdf",
    }


@needs_font
def test_parse_rejects_unusable_pdfs_with_one_line(tmp_path):
    params_path = write_params(tmp_path)
    for message, pdf in _broken_pdfs(tmp_path).items():
        out, metrics = tmp_path / f"parsed-{pdf.stem}", tmp_path / f"parse-{pdf.stem}.json"
        proc = cli("parse", "--pdf", pdf, "--out", out, "--metrics", metrics, "--params", params_path)
        assert_one_line_error(proc, f"error: {pdf}: ", message)
        assert_nothing_written(tmp_path, out, metrics)


# ---------------------------------------------------------------- parse: graceful handling


@needs_font
def test_parse_ocrs_image_only_garbage_and_poster_pages(tmp_path):
    """One real CLI run over a PDF whose pages each need a different rescue."""
    cap = 3_000_000  # pixels: the poster page must be rendered below this
    doc = pymupdf.open()
    text_page(doc, "1쪽은 텍스트 레이어로 읽는 의림지 안내 문장입니다.")
    # p2: image only (no text layer at all)
    insert_image(doc.new_page(width=420, height=300), pymupdf.Rect(20, 20, 400, 280), text_image(["청풍호반 케이블카"]))
    # p3: an invisible, mis-encoded text layer (EUC-KR bytes read as Latin-1) over the picture of the real text
    page = doc.new_page(width=420, height=300)
    insert_image(page, pymupdf.Rect(20, 20, 400, 280), text_image(["충청북도 제천시"]))
    page.insert_text((30, 60), "ÇÑ±¹¾î ¹®ÀÚ¿­ ÀÎÄÚµù ¿À·ù ÀÔ´Ï´Ù", fontname="helv", fontsize=11, render_mode=3)
    # p4: a 5000 x 5000 pt poster: 300 Mpx at 250 dpi, ~1 GB of RGB, unless the render is capped
    insert_image(doc.new_page(width=5000, height=5000), pymupdf.Rect(0, 0, 5000, 5000), text_image(["박달재 옛길"]))
    pdf = save(doc, tmp_path / "mixed.pdf")
    out, metrics_path = tmp_path / "parsed", tmp_path / "parse.json"
    params_path = write_params(tmp_path, parse={"dpi": 150, "workers": 1, "max_render_pixels": cap})

    proc = cli("parse", "--pdf", pdf, "--out", out, "--metrics", metrics_path, "--params", params_path)
    assert proc.returncode == 0, proc.stderr
    assert "5000 x 5000 pt page" in proc.stderr  # the cap is logged

    blocks, pages = io.read_jsonl(out / "blocks.jsonl"), io.read_jsonl(out / "pages.jsonl")
    metrics = io.read_json(metrics_path)
    text = {n: " ".join(b["text"] for b in blocks if b["page"] == n) for n in (1, 2, 3, 4)}
    assert "의림지" in text[1] and {b["source"] for b in blocks if b["page"] == 1} == {"textlayer"}
    assert "케이블카" in text[2] and "Ç" not in text[3] and "제천시" in text[3]
    assert "박달재" in text[4]
    assert [p["status"] for p in pages] == ["ok"] * 4 and metrics["failed_pages"] == 0
    assert [p["ocr"] for p in pages] == [False, True, True, True] and metrics["ocr_pages"] == 3
    with Image.open(out / "images" / "page_004.png") as im:
        assert im.width * im.height <= cap and im.width >= 1000  # capped, not shrunk to nothing


def test_capped_dpi():
    assert capped_dpi(595, 842, 250, 25_000_000) == 250  # A4: untouched
    assert capped_dpi(5000, 5000, 250, 25_000_000) == 72  # 5000 px square
    assert capped_dpi(14400, 14400, 72, 25_000_000) == 25  # the largest page PDF allows


@needs_font
def test_parse_records_a_page_that_fails_ocr_and_keeps_the_others(tmp_path, capsys):
    doc = pymupdf.open()
    text_page(doc, "1쪽 본문은 텍스트 레이어에서 그대로 읽힙니다.")
    insert_image(doc.new_page(width=420, height=300), pymupdf.Rect(20, 20, 400, 280), text_image(["의림지"]))
    pdf = save(doc, tmp_path / "two.pdf")
    out, metrics_path = tmp_path / "parsed", tmp_path / "parse.json"
    # Tesseract gets 1 ms for page 2: it is killed, as a hung or crashing OCR run would be.
    params_path = write_params(tmp_path, parse={"dpi": 150, "workers": 1, "ocr_timeout_s": 0.001})
    argv = ["--pdf", pdf, "--out", out, "--metrics", metrics_path, "--params", params_path]
    assert run_main(parse.main, argv, capsys) == (0, "")
    metrics, pages = io.read_json(metrics_path), io.read_jsonl(out / "pages.jsonl")
    assert metrics["failed_pages"] == 1 and metrics["failed"][0]["page"] == 2
    assert "timeout" in metrics["failed"][0]["error"].lower()
    assert [p["status"] for p in pages] == ["ok", "failed"]
    assert {b["page"] for b in io.read_jsonl(out / "blocks.jsonl")} == {1}
    assert "텍스트 레이어" in (out / "pages" / "page_001.md").read_text(encoding="utf-8")

    # Every page failing is a whole-file failure: one line naming the file and the first page.
    doc = pymupdf.open()
    insert_image(doc.new_page(width=420, height=300), pymupdf.Rect(20, 20, 400, 280), text_image(["의림지"]))
    only = save(doc, tmp_path / "only_image.pdf")
    out2, metrics2 = tmp_path / "parsed2", tmp_path / "parse2.json"
    code, err = run_main(
        parse.main, ["--pdf", only, "--out", out2, "--metrics", metrics2, "--params", params_path], capsys
    )
    assert code == 1 and f"{only}: all 1 pages failed (page 1:" in err
    assert_nothing_written(tmp_path, out2, metrics2)


# ---------------------------------------------------------------- downstream stages: empty inputs


def test_chunk_with_nothing_to_chunk(tmp_path, capsys):
    params_path = write_params(tmp_path)
    out = tmp_path / "chunks"
    code, err = run_main(chunk.main, ["--parsed", tmp_path / "none", "--out", out, "--params", params_path], capsys)
    assert code == 1 and f"{tmp_path / 'none' / 'blocks.jsonl'}: not found (run the parse stage first)" in err
    parsed = tmp_path / "parsed"
    parsed.mkdir()
    (parsed / "blocks.jsonl").write_text("", encoding="utf-8")  # e.g. a brochure of blank pages
    code, err = run_main(chunk.main, ["--parsed", parsed, "--out", out, "--params", params_path], capsys)
    assert code == 1 and "blocks.jsonl: no text to chunk (0 blocks)" in err
    assert_nothing_written(tmp_path, out)


def test_synthesize_that_finds_no_questions(tmp_path, capsys):
    chunks = tmp_path / "chunks"
    chunks.mkdir()
    # prose without any fact (address, phone, price, table ...) a rule could ask about
    io.write_jsonl(chunks / "chunks.jsonl", [chunk_record("c001", "인사말", "환영합니다.", kind="section")])
    out, metrics = tmp_path / "qa", tmp_path / "dataset.json"
    argv = ["--chunks", chunks, "--out", out, "--metrics", metrics, "--params", write_params(tmp_path)]
    code, err = run_main(synthesize.main, argv, capsys)
    assert code == 1 and err.count("error:") == 1
    # either the stage's own empty-set check or the split's (a split needs 3 source chunks)
    assert f"{chunks / 'chunks.jsonl'}: no questions could be generated from 1 chunks" in err or (
        "fewer than 3 source chunks with questions" in err
    )
    assert_nothing_written(tmp_path, out, metrics)


def _qa_dir(tmp_path: Path, **splits: list[dict]) -> Path:
    qa = tmp_path / "qa"
    qa.mkdir()
    for name in ("train", "validation", "test"):
        io.write_jsonl(qa / f"{name}.jsonl", splits.get(name, []))
    return qa


QUESTION = {
    "id": "q0001",
    "question": "의림지 주소는?",
    "answer": "제천시 의림대로",
    "answerable": True,
    "type": "factual",
    "chunk_id": "c001",
}


def test_index_with_no_answerable_test_question(tmp_path):
    chunks = tmp_path / "chunks"
    chunks.mkdir()
    io.write_jsonl(chunks / "chunks.jsonl", [chunk_record("c001", "의림지", "의림지: 제천시 의림대로")])
    qa = _qa_dir(tmp_path, train=[QUESTION])
    out, metrics, plot = tmp_path / "index", tmp_path / "retrieval.json", tmp_path / "recall.csv"
    proc = cli("index", "--chunks", chunks, "--qa", qa, "--out", out, "--metrics", metrics, "--plot", plot,
               "--params", write_params(tmp_path))  # fmt: skip
    assert_one_line_error(proc, "the test split has no answerable questions")
    assert_nothing_written(tmp_path, out, metrics, plot)


class _HashEmbedder:
    def embed_passages(self, texts):
        import numpy as np

        return np.ones((len(texts), 8), dtype=np.float32) / 8**0.5


def test_sft_with_an_empty_training_split(tmp_path, capsys):
    index = tmp_path / "index"
    chunks = [chunk_record("c001", "의림지", "의림지: 제천시 의림대로")]
    Retriever.build(chunks, _HashEmbedder(), 60, 20, options=retrieval_options()).save(index, {"embedder": "hash"})
    qa = _qa_dir(tmp_path, test=[QUESTION])  # train and validation empty
    out = tmp_path / "sft"
    params_path = write_params(tmp_path, retrieval={"method": "bm25"})  # no embedder needed
    code, err = run_main(sft.main, ["--qa", qa, "--index", index, "--out", out, "--params", params_path], capsys)
    assert code == 1 and f"{qa / 'train.jsonl'}: empty training split" in err
    assert_nothing_written(tmp_path, out)


def test_evaluate_with_an_empty_or_missing_test_split(tmp_path, capsys):
    qa = _qa_dir(tmp_path, train=[QUESTION])
    out, metrics = tmp_path / "eval", tmp_path / "eval.json"
    argv = ["--name", "baseline", "--base", tmp_path / "no-model", "--index", tmp_path / "no-index"]
    argv += ["--qa", qa, "--out", out, "--metrics", metrics, "--params", write_params(tmp_path)]
    code, err = run_main(evaluate.main, argv, capsys)
    assert code == 1 and f"{qa / 'test.jsonl'}: empty test split" in err
    (qa / "test.jsonl").unlink()
    code, err = run_main(evaluate.main, argv, capsys)
    assert code == 1 and f"{qa / 'test.jsonl'}: not found (run the synthesize stage first)" in err
    assert_nothing_written(tmp_path, out, metrics)


# ---------------------------------------------------------------- params typos


def test_params_typos_name_the_key(tmp_path, capsys):
    parsed = tmp_path / "parsed"
    parsed.mkdir()
    out = tmp_path / "chunks"
    # through the real CLI: an unknown key, with the closest known one suggested
    typo = write_params(tmp_path, "typo.yaml", chunk={"max_charz": 700})
    proc = cli("chunk", "--parsed", parsed, "--out", out, "--params", typo)
    assert_one_line_error(proc, "params: unknown key chunk.max_charz (did you mean chunk.max_chars?)")
    # a wrong type
    raw = yaml.safe_load(typo.read_text(encoding="utf-8"))
    del raw["chunk"]["max_charz"]
    raw["chunk"]["max_chars"] = "seven hundred"
    typo.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    proc = cli("chunk", "--parsed", parsed, "--out", out, "--params", typo)
    assert_one_line_error(proc, "params: chunk.max_chars must be int, got 'seven hundred'")
    raw["chunk"]["max_chars"] = 700
    raw["profiles"]["cpu"]["parse"]["ocr_engine"] = ["tesseract"]  # ...in a profile overlay
    typo.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    code, err = run_main(
        parse.main,
        ["--pdf", tmp_path / "x.pdf", "--out", out, "--metrics", tmp_path / "m.json", "--params", typo],
        capsys,
    )
    assert code == 1 and "params: profiles.cpu.parse.ocr_engine must be str, got ['tesseract']" in err
    assert_nothing_written(tmp_path, out, tmp_path / "m.json")


def test_params_file_itself_broken(tmp_path, capsys):
    out = tmp_path / "chunks"
    argv = ["--parsed", tmp_path, "--out", out, "--params", tmp_path / "nope.yaml"]
    assert run_main(chunk.main, argv, capsys) == (1, f"error: {tmp_path / 'nope.yaml'}: params file not found "
                                                    "(run from the repository root)")  # fmt: skip
    bad = tmp_path / "bad.yaml"
    bad.write_text("chunk: {max_chars: 700\n", encoding="utf-8")
    argv[-1] = bad
    assert run_main(chunk.main, argv, capsys) == (1, f"error: {bad}: not valid YAML (ParserError)")
    assert_nothing_written(tmp_path, out)


def test_outputs_of_a_previous_run_survive_a_failed_run(tmp_path, capsys):
    """A failing stage must leave the previous (good) output exactly as it was."""
    out = tmp_path / "chunks"
    out.mkdir()
    (out / "chunks.jsonl").write_text(json.dumps({"chunk_id": "c001"}) + "\n", encoding="utf-8")
    parsed = tmp_path / "parsed"
    parsed.mkdir()
    (parsed / "blocks.jsonl").write_text("", encoding="utf-8")
    code, _ = run_main(chunk.main, ["--parsed", parsed, "--out", out, "--params", write_params(tmp_path)], capsys)
    assert code == 1
    assert (out / "chunks.jsonl").read_text(encoding="utf-8") == '{"chunk_id": "c001"}\n'
