"""scripts/check_golds.py on a tiny made-up brochure: OCR-damaged golds are listed, good ones pass."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_golds.py"


@pytest.fixture(scope="module")
def cg():
    spec = importlib.util.spec_from_file_location("check_golds", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


TRUTH = [
    {"page": 4, "text": "디지털 관광주민증\n시티투어 요금 3,000원 할인\n문의 043-641-5114", "header": "", "footer": ""},
    {
        "page": 22,
        "text": "숙박시설 | 객실수 | 전화\nES리조트 | 255 | 043-648-0480",
        "raster_regions": [{"bbox": [0, 0, 1, 1], "text": "운영 09:00~18:00"}],
    },
]


def _rec(rid, kind, short, facts, pages, answerable=True):
    return {"id": rid, "question": "?", "answer": "…", "answer_short": short, "key_facts": facts,
            "answer_kind": kind, "answerable": answerable, "type": "factual", "pages": pages}  # fmt: skip


def test_lists_each_missing_value_once_and_exits_1(cg, tmp_path, capsys):
    truth = _jsonl(tmp_path / "truth.jsonl", TRUTH)
    qa = tmp_path / "qa"
    qa.mkdir()
    _jsonl(
        qa / "test.jsonl",
        [
            _rec("q1", "price", "3,000원", ["3,000원"], [4]),  # found (twice: short and key fact)
            _rec("q2", "phone", "043 641 5114", ["043.641.5114"], [4]),  # other separators: found
            _rec("q3", "name", "65리조트", ["65리조트"], [22]),  # OCR damage: ES리조트
            _rec("q4", "count", "255개", ["255개"], [22]),  # unit only in the table header: found
            _rec("q5", "phone", "043-652-9222", ["043-652-9222"], [22]),  # not on that page
            _rec("q6", "time", "09:00~18:00", ["9:00~18:00"], [22]),  # in a raster region: found
            _rec("q7", "abstain", "", [], [4], answerable=False),  # nothing to check
            _rec("q8", "text", "다른 말로 쓴 설명", ["시티투어"], [4]),  # text: key facts only
        ],
    )
    # an old record (no answer_kind): the bare answer of a factual question is checked
    with (qa / "train.jsonl").open("w", encoding="utf-8") as f:
        old = {
            "id": "q9",
            "question": "?",
            "answer": "43-641-5114",
            "answerable": True,
            "type": "factual",
            "pages": [4],
        }
        f.write(json.dumps(old, ensure_ascii=False) + "\n")
    assert cg.main(["--qa", str(qa), "--truth", str(truth)]) == 1
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert lines == [
        f"{qa / 'test.jsonl'}:3 q3 answer_short '65리조트' not in page(s) [22]",
        f"{qa / 'test.jsonl'}:3 q3 key_facts[0] '65리조트' not in page(s) [22]",
        f"{qa / 'test.jsonl'}:5 q5 answer_short '043-652-9222' not in page(s) [22]",
        f"{qa / 'test.jsonl'}:5 q5 key_facts[0] '043-652-9222' not in page(s) [22]",
        f"{qa / 'train.jsonl'}:1 q9 answer '43-641-5114' not in page(s) [4]",
    ]
    assert "14 values checked, 5 not in the truth pages" in out.err


def test_all_found_exits_0(cg, tmp_path):
    truth = _jsonl(tmp_path / "truth.jsonl", TRUTH)
    qa = _jsonl(tmp_path / "natural.jsonl", [{**_rec("n001", "price", "3천원", ["3,000원"], []), "gold_pages": [4]}])
    assert cg.main(["--qa", str(qa), "--truth", str(truth)]) == 0


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([_rec("q1", "price", "3,000원", ["3,000원"], [99])], "pages [99] not in"),
        ([_rec("q1", "price", "3,000원", ["3,000원"], [])], "pages [] not in"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cg, tmp_path, capsys, records, message):
    truth = _jsonl(tmp_path / "truth.jsonl", TRUTH)
    qa = _jsonl(tmp_path / "qa.jsonl", records)
    assert cg.main(["--qa", str(qa), "--truth", str(truth)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_missing_file_and_broken_json(cg, tmp_path, capsys):
    truth = _jsonl(tmp_path / "truth.jsonl", TRUTH)
    assert cg.main(["--qa", str(tmp_path / "nope"), "--truth", str(truth)]) == 2
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "q1"\n', encoding="utf-8")
    assert cg.main(["--qa", str(broken), "--truth", str(truth)]) == 2
    err = capsys.readouterr().err
    assert "nope: not found" in err and "broken.jsonl:1: not JSON" in err
