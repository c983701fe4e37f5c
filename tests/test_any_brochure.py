"""Any brochure end to end (issue #12): a second synthetic brochure of another layout, optional ground truth.

The "entries" brochure (scripts/render_sample.py --layout entries: an A5 booklet about the fictional
솔내군, one attraction per page, ruled fare/hours tables, NanumBarunGothic/NanumSquare, two raster-only
cards) is rendered into tmp_path and run through parse -> chunk -> synthesize. Chunk and synthesize run as CLIs, so these tests do not depend on their internals.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pymupdf
import pytest
import yaml
from conftest import NANUM_FONT

from stages.common import io
from stages.common.errors import UserError
from stages.parse.__main__ import run as parse_run
from stages.parse.truth import copy_truth

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
needs_fonts = pytest.mark.skipif(
    not (NANUM_FONT.parent / "NanumBarunGothic.ttf").is_file(), reason="fonts-nanum not installed"
)

# The entries brochure's attractions: name -> (address, phone) as its pages state them.
ATTRACTIONS = {
    "솔내호수공원": ("강원 솔내군 솔내읍 호수로 45", "033-570-2230"),
    "바람재 전망대": ("강원 솔내군 북면 바람재길 210", "033-570-2241"),
    "은빛동굴": ("강원 솔내군 동면 은빛동굴길 88", "033-570-2265"),
    "솔내자연휴양림": ("강원 솔내군 서면 금강송로 512", "033-570-2288"),
    "옛골 민속마을": ("강원 솔내군 남면 옛골길 17", "033-570-2277"),
    "솔내 향교": ("강원 솔내군 솔내읍 향교길 9", "033-570-2290"),
}


def params_file(tmp: Path, **parse_overrides) -> Path:
    """The repo's params.yaml on the cpu profile, parse serial at 150 dpi (tests share 2 cores)."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    raw["profile"] = "cpu"
    profile_parse = raw["profiles"]["cpu"].setdefault("parse", {})
    for key, value in {"dpi": 150, "workers": 1, **parse_overrides}.items():
        (profile_parse if key in profile_parse else raw["parse"])[key] = value
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def stage_cli(name: str, *args: str | Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", f"stages.{name}", *map(str, args)], cwd=REPO, capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, f"stages.{name} failed:\n{proc.stderr[-3000:]}"
    return proc


def render_entries(out: Path) -> tuple[Path, Path]:
    spec = importlib.util.spec_from_file_location("render_sample", REPO / "scripts" / "render_sample.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    assert mod.main(["--layout", "entries", "--out", str(out)]) == 0
    return out / "sollae_entries_sample.pdf", out / "ground_truth.jsonl"


@pytest.fixture(scope="module")
def entries(tmp_path_factory) -> dict:
    """Render the entries brochure once, parse it against its own truth, chunk it."""
    tmp = tmp_path_factory.mktemp("entries")
    pdf, truth = render_entries(tmp / "brochure")
    params = params_file(tmp)
    metrics = parse_run(pdf, tmp / "parsed", tmp / "parse.json", truth, params)
    stage_cli("chunk", "--parsed", tmp / "parsed", "--out", tmp / "chunks", "--params", params)
    return {
        "tmp": tmp,
        "pdf": pdf,
        "truth": truth,
        "params": params,
        "metrics": metrics,
        "blocks": io.read_jsonl(tmp / "parsed" / "blocks.jsonl"),
        "chunks": io.read_jsonl(tmp / "chunks" / "chunks.jsonl"),
    }


# ---------------------------------------------------------------- the entries brochure


@needs_fonts
def test_entries_brochure_has_its_own_layout_fonts_and_raster_text(entries):
    doc = pymupdf.open(entries["pdf"])
    assert doc.page_count == 9
    assert (round(doc[0].rect.width), round(doc[0].rect.height)) == (420, 595)  # A5, the sample is A4
    fonts = {f[3] for p in doc for f in p.get_fonts()}
    assert any("NanumBarunGothic" in f for f in fonts) and any("NanumSquare" in f for f in fonts)
    assert not any(f.endswith("NanumGothic") for f in fonts)
    truth = io.read_jsonl(entries["truth"])
    rasters = [r for row in truth for r in row["raster_regions"]]
    assert len(rasters) == 2 and "12도" in rasters[0]["text"] and "5,000원" in rasters[1]["text"]
    # the raster cards' words are not in the text layer: only OCR can find them
    assert "안전모" not in doc[3].get_text() and "시티투어" not in doc[8].get_text()


@needs_fonts
def test_entries_parse_against_its_own_truth(entries):
    m = entries["metrics"]
    assert m["ground_truth"] is True and m["truth_pages"] == 9 and m["failed_pages"] == 0
    assert m["cer"] <= 0.02, m
    assert m["raster_regions"] == 2 and m["cer_raster_regions"] <= 0.15, m
    assert m["ocr_regions"] == 2 and m["ocr_pages"] == 0
    tables = [b["text"].split("\n") for b in entries["blocks"] if b["type"] == "table"]
    assert len(tables) >= 13
    heads = {t[0] for t in tables}
    assert "구분 | 하절기(3~10월) | 동절기(11~2월)" in heads  # the hours table keeps its header row
    assert "구분 | 개인 | 단체(20인 이상)" in heads
    assert "음식점 | 대표 메뉴 | 가격 | 전화" in heads
    cave = next(t for t in tables if t[0] == "구분 | 개인 | 단체(20인 이상)" and "성인 | 6,000원 | 5,000원" in t)
    assert cave[1:] == ["성인 | 6,000원 | 5,000원", "청소년 | 4,000원 | 3,000원", "어린이 | 3,000원 | 2,000원"]
    ocr = " ".join(b["text"] for b in entries["blocks"] if b["source"] == "ocr")
    assert "안전모" in ocr and "033-570-2114" in ocr


@needs_fonts
def test_entries_become_chunks_with_their_facts(entries):
    chunks = entries["chunks"]
    for name, (address, phone) in ATTRACTIONS.items():
        mine = [c for c in chunks if c["section_path"].split(" > ")[0] == name]
        assert mine, name
        assert {p for c in mine for p in c["pages"]} == {mine[0]["pages"][0]}, name  # one entry per page
        text = "\n".join(c["text"] for c in mine)
        assert address in text and phone in text, (name, text)
    fares = [c for c in chunks if c["text"].startswith("구분 | 현금 | 교통카드")]
    assert len(fares) == 1 and "성인 | 1,500원 | 1,400원" in fares[0]["text"]  # header kept with its rows
    assert fares[0]["section_path"] == "군내버스 이용 안내"
    hours = next(c for c in chunks if c["text"].startswith("구분 | 하절기"))
    assert "운영시간 | 09:00~18:00 | 10:00~17:00" in hours["text"] and hours["section_path"] == "바람재 전망대"


# ---------------------------------------------------------------- no ground truth


@needs_fonts
def test_parse_without_truth_says_so_and_writes_the_same_blocks(entries, tmp_path):
    empty = tmp_path / "truth.jsonl"
    empty.write_text("", encoding="utf-8")  # what the dvc `truth` stage writes for data.truth ''
    for n, truth in enumerate((None, empty)):
        out, metrics_path = tmp_path / f"parsed{n}", tmp_path / f"parse{n}.json"
        parse_run(entries["pdf"], out, metrics_path, truth, entries["params"])
        m = io.read_json(metrics_path)
        assert m["ground_truth"] is False and m["cer"] is None
        assert "no ground truth" in m["cer_definition"]
        assert not {"truth_pages", "cer_by_layout", "cer_raster_regions"} & set(m)
        assert (out / "blocks.jsonl").read_bytes() == (entries["tmp"] / "parsed" / "blocks.jsonl").read_bytes()


def test_truth_stage_copies_checks_or_empties(tmp_path, caplog):
    good = tmp_path / "good.jsonl"
    good.write_text('{"page": 1, "text": "의림지"}\n{"page": 2, "text": "청풍호"}\n', encoding="utf-8")
    out = tmp_path / "data" / "truth.jsonl"
    assert copy_truth(str(good), out) == 2 and out.read_bytes() == good.read_bytes()
    assert copy_truth("", out) == 0 and out.read_bytes() == b""
    blank = tmp_path / "blank.jsonl"
    blank.write_text("\n", encoding="utf-8")
    with pytest.raises(UserError, match="has no records"):
        copy_truth(str(blank), out)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"page": 1}\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"bad.jsonl:1: not a ground-truth record"):
        copy_truth(str(bad), out)
    with pytest.raises(UserError, match="ground truth file not found"):
        copy_truth(str(tmp_path / "missing.jsonl"), out)
    assert out.read_bytes() == b""  # failures leave the last good output alone


def test_dvc_pipeline_resolves_with_an_empty_truth(tmp_path):
    """`dvc exp run -S data.truth=''` must resolve: no stage may list ${data.truth} as a dependency."""
    pytest.importorskip("dvc")
    from dvc.repo import Repo

    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    raw["data"] = {"pdf": "data/other.pdf", "truth": ""}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    (tmp_path / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    Repo.init(str(tmp_path), no_scm=True)
    with Repo(str(tmp_path)) as repo:
        stages = {s.name: s for s in repo.index.stages}
    assert stages["truth"].cmd == "python -m stages.parse.truth --truth '' --out data/truth.jsonl"
    assert stages["truth"].always_changed
    parse_deps = [str(d.def_path) for d in stages["parse"].deps]
    assert parse_deps[:2] == ["data/other.pdf", "data/truth.jsonl"] and "" not in parse_deps


# ---------------------------------------------------------------- a real brochure, no truth


@pytest.mark.skipif(not (SHARED / "fixtures" / "pdfs").is_dir(), reason="../shared fixtures not present")
def test_real_themebook_pages_without_truth_reach_chunks(tmp_path):
    pdf = SHARED / "fixtures" / "pdfs" / "jeju_oreum_themebook.pdf"
    doc = pymupdf.open(pdf)
    doc.select([7, 8])  # pages 8-9: oreum entries as text with photos
    sub = tmp_path / "themebook_p8_9.pdf"
    doc.save(sub)
    params = params_file(tmp_path)
    metrics = parse_run(sub, tmp_path / "parsed", tmp_path / "parse.json", None, params)
    assert metrics["ground_truth"] is False and metrics["cer"] is None and metrics["failed_pages"] == 0
    stage_cli("chunk", "--parsed", tmp_path / "parsed", "--out", tmp_path / "chunks", "--params", params)
    chunks = io.read_jsonl(tmp_path / "chunks" / "chunks.jsonl")
    assert len(chunks) >= 3 and all(c["pages"] and c["text"].strip() for c in chunks)
    assert sum(len(re.findall(r"[가-힣]+", c["text"])) for c in chunks) >= 100


# ---------------------------------------------------------------- synthesize on the entries brochure


def _qa(folder: Path) -> list[dict]:
    return [r for f in sorted(folder.glob("*.jsonl")) for r in io.read_jsonl(f)]


@needs_fonts
def test_synthesize_yield_on_the_entries_brochure(entries):
    tmp = entries["tmp"]
    stage_cli(
        "synthesize", "--chunks", tmp / "chunks", "--out", tmp / "qa", "--metrics", tmp / "dataset.json",
        "--params", entries["params"],
    )  # fmt: skip
    qa = _qa(tmp / "qa")
    chunks = {c["chunk_id"]: c for c in entries["chunks"]}
    answerable = [q for q in qa if q["answerable"]]
    assert len(answerable) >= 3 * len(chunks), (len(answerable), len(chunks))
    fare_tables = {
        cid for cid, c in chunks.items() if c["text"].startswith(("구분 | 현금", "구분 | 개인", "구분 | 입장료"))
    }
    on_fares = [q for q in answerable if q["chunk_id"] in fare_tables]
    prices = [q for q in on_fares if q.get("answer_kind") == "price" or q.get("fact") == "price"]
    assert prices and all(re.search(r"\d[\d,]*원", q["answer"]) for q in prices), on_fares[:5]
    assert not [q for q in on_fares if q.get("fact") == "menu" or "음식" in q["question"]], on_fares
    print(json.dumps({"answerable": len(answerable), "chunks": len(chunks)}))


# ---------------------------------------------------------------- scripts/bench_dataset_fixtures.py


def test_dataset_bench_summary_counts_splits_styles_and_per_chunk_yield(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "bench_dataset_fixtures", REPO / "scripts" / "bench_dataset_fixtures.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    qa = tmp_path / "qa"
    qa.mkdir()

    def q(cid, answerable=True, style="direct", **kw):
        return {"chunk_id": cid, "chunk_ids": [cid], "answerable": answerable, "type": "factual", "style": style, **kw}

    io.write_jsonl(qa / "train.jsonl", [q("c1"), q("c1", style="yes_no"), q("c2", answerable=False, style="policy")])
    io.write_jsonl(qa / "test.jsonl", [q("c3"), {**q("c3"), "chunk_ids": ["c3", "c1"], "type": "comparison"}])
    chunks = [{"chunk_id": c} for c in ("c1", "c2", "c3", "c4")]
    s = bench.qa_summary(qa, chunks)
    assert (s["questions"], s["answerable"], s["unanswerable"]) == (5, 4, 1)
    assert s["splits"]["train"] == {"questions": 3, "answerable": 2, "unanswerable": 1}
    assert s["by_style"] == {"direct": 3, "policy": 1, "yes_no": 1} and s["by_answer_kind"] == {"missing": 5}
    # single-chunk answerable questions per chunk: c1 2, c2 0, c3 1 (the comparison spans two), c4 0
    assert s["yield_per_chunk"] == {"chunks": 4, "mean": 0.75, "median": 0.5, "min": 0, "chunks_without_questions": 2}
    params = bench.cpu_params(REPO / "params.yaml", Path("/x/b.pdf"), tmp_path / "p.yaml")
    raw = yaml.safe_load(params.read_text(encoding="utf-8"))
    assert raw["profile"] == "cpu" and raw["data"] == {"pdf": "/x/b.pdf", "truth": ""}
