"""The frozen natural-question test set and its loader / gold-chunk resolver (stages/common/natural.py)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml

from stages.common.errors import UserError
from stages.common.natural import (
    STYLES,
    contains_fact,
    found_on_gold_pages,
    load_natural,
    norm_fact,
    resolve_gold_chunks,
)

ROOT = Path(__file__).resolve().parents[1]
NATURAL = ROOT / "data" / "sample" / "natural_questions.jsonl"
TRUTH = ROOT / "data" / "sample" / "ground_truth.jsonl"
ABSTAIN = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))["prompt"]["abstain"]


@pytest.fixture(scope="module")
def natural() -> list[dict]:
    return load_natural(NATURAL, ABSTAIN)


@pytest.fixture(scope="module")
def truth() -> dict[int, str]:
    pages = [json.loads(line) for line in TRUTH.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {p["page"]: p["text"] for p in pages}


# ---------------------------------------------------------------- the committed file
def test_counts_styles_and_coverage(natural):
    ids = [r["id"] for r in natural]
    assert len(ids) == len(set(ids)) >= 100
    assert ids == sorted(ids)
    unanswerable = [r for r in natural if not r["answerable"]]
    assert len(unanswerable) >= 15
    assert len(natural) - len(unanswerable) >= 80
    assert set(Counter(r["style"] for r in natural)) == set(STYLES)
    # every content page of the brochure (4-26) is asked about
    assert set(range(4, 27)) <= {p for r in natural if r["answerable"] for p in r["gold_pages"]}


def test_every_key_fact_is_verbatim_on_its_gold_pages(natural, truth):
    checked = 0
    for r in natural:
        if not r["answerable"]:
            continue
        text = "\n".join(truth[p] for p in r["gold_pages"])
        verbatim = r.get("source_facts", []) if r.get("computed") else [*r["key_facts"], r["answer_short"]]
        for fact in filter(None, verbatim):
            assert fact in text, f"{r['id']}: {fact!r} is not on page(s) {r['gold_pages']}"
            checked += 1
    assert checked > 150


def test_computed_answers_are_not_on_the_page_but_their_sources_are(natural, truth):
    computed = [r for r in natural if r.get("computed")]
    assert computed
    for r in computed:
        text = "\n".join(truth[p] for p in r["gold_pages"])
        assert r["source_facts"] and all(f in text for f in r["source_facts"])


def test_unanswerable_records_abstain(natural):
    for r in natural:
        if r["answerable"]:
            continue
        assert r["answer"] == ABSTAIN and r["answer_short"] == "" and r["key_facts"] == []
        assert r["answer_kind"] == "abstain" and r["type"] == "unanswerable"


def test_resolves_to_real_chunks_with_a_page_split_like_the_pipelines(natural, truth):
    # one "chunk" per ground-truth line: every answerable question finds a chunk holding all its facts
    chunks = [
        {"chunk_id": f"p{page:02d}l{i:03d}", "pages": [page], "title": "", "text": line}
        for page, text in sorted(truth.items())
        for i, line in enumerate(text.splitlines())
    ]
    for r in natural:
        gold = resolve_gold_chunks(r, chunks)
        if not r["answerable"]:
            assert gold == []
            continue
        assert all(int(cid[1:3]) in r["gold_pages"] for cid in gold), r["id"]
        texts = [c["text"] for c in chunks if c["chunk_id"] in gold]
        for fact in r.get("source_facts") or r["key_facts"]:
            assert any(contains_fact(t, fact) for t in texts), f"{r['id']}: {fact!r} not in {gold}"


def test_found_on_gold_pages_tells_this_brochure_from_another(natural, truth):
    lines = [(page, i, line) for page, text in sorted(truth.items()) for i, line in enumerate(text.splitlines())]
    chunks = [{"chunk_id": f"p{p:02d}l{i:03d}", "pages": [p], "title": "", "text": t} for p, i, t in lines]
    answerable = sum(r["answerable"] for r in natural)
    assert found_on_gold_pages(natural, chunks) == (answerable, answerable)
    # the same pages, each moved to the next page number: another brochure of the same length
    last = max(truth)
    moved = [{**c, "pages": [c["pages"][0] % last + 1]} for c in chunks]
    found, n = found_on_gold_pages(natural, moved)
    assert n == answerable and found / n < 0.2, found


# ---------------------------------------------------------------- normalisation
# ---------------------------------------------------------------- the hand-written VALIDATION questions
NATURAL_VALIDATION = ROOT / "data" / "tune" / "natural_validation.jsonl"


def test_natural_validation_set_is_well_formed_on_its_pages_and_apart_from_the_test_set(natural, truth):
    """data/sample/natural_validation.jsonl (scripts/tune_on_validation.py, params tune.natural_validation): valid
    records, facts verbatim on their pages, ids and wording apart from the natural TEST set (the synthesize stage's
    decontamination threshold), so tuning on it is not tuning on test."""
    from stages.synthesize.filters import drop_natural_overlap

    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    assert params["tune"]["natural_validation"] == str(NATURAL_VALIDATION.relative_to(ROOT))
    validation = load_natural(NATURAL_VALIDATION, ABSTAIN)
    ids = [r["id"] for r in validation]
    assert ids == sorted(ids) and not set(ids) & {r["id"] for r in natural}
    assert len(validation) >= 40 and sum(not r["answerable"] for r in validation) >= 8
    for r in validation:
        if r["answerable"]:
            text = "\n".join(truth[p] for p in r["gold_pages"])
            for fact in filter(None, [*r["key_facts"], r["answer_short"]]):
                assert fact in text, f"{r['id']}: {fact!r} is not on page(s) {r['gold_pages']}"
    records = [{**r, "chunk_id": "x"} for r in validation]
    kept = drop_natural_overlap(records, natural, params["synthesize"]["natural_overlap"])
    assert [r["id"] for r in kept] == ids, "a validation question reads like a natural test question"


def test_norm_fact_ignores_spacing_commas_and_dash_variants():
    assert contains_fact("운영시간: 09:00 ~ 18:00", "09:00~18:00")
    assert contains_fact("운영기간: 7-8월", "7~8월")
    assert contains_fact("요금 3.000원 할인", "3,000원")  # OCR reads the comma as a dot
    assert contains_fact("유·무료", "유ㆍ무료")
    assert norm_fact("제천시 송학면 의림대로 47길 7") == "제천시송학면의림대로47길7"
    assert not contains_fact("043-648-0480", "043-652-9222")
    assert not contains_fact("10:54 ~ 11:24", "14:54~15:24")


# ---------------------------------------------------------------- resolve_gold_chunks
CHUNKS = [
    {"chunk_id": "c001", "pages": [5], "title": "제천 시티투어", "text": "요금안내 | 30,000원 (1인 기준)"},
    {"chunk_id": "c002", "pages": [5], "title": "기본코스", "text": "1. 제천역 2. 청풍호반 케이블카"},
    {"chunk_id": "c003", "pages": [22], "title": "호텔", "text": "서울관광호텔 | 42 | 제천시 의병대로13길 10"},
    {"chunk_id": "c004", "pages": [22], "title": "게스트하우스", "text": "목화 게스트하우스 | 13 | 제천시 명륜로 132"},
    {"chunk_id": "c005", "pages": [21, 22], "title": "맛집", "text": "아오바바(베트남쌀국수·반미샌드위치)"},
    {"chunk_id": "c006", "pages": [6], "title": "이용요금", "text": "5시간권 | 60.000원 / 1대"},
    {"chunk_id": "c007", "pages": [6], "title": "관광택시", "text": "전세 택시형 관광상품"},
]


def _rec(facts, pages, **extra):
    return {"answerable": True, "key_facts": facts, "gold_pages": pages, **extra}


def test_resolve_picks_the_chunk_with_the_fact_on_the_gold_pages():
    assert resolve_gold_chunks(_rec(["30,000원"], [5]), CHUNKS) == ["c001"]
    assert resolve_gold_chunks(_rec(["청풍호반케이블카"], [5]), CHUNKS) == ["c002"]  # spacing ignored
    # the same fact on a page that is not a gold page does not count
    assert resolve_gold_chunks(_rec(["30,000원"], [22]), CHUNKS) == ["c003", "c004", "c005"]


def test_resolve_prefers_the_chunk_holding_most_facts_for_a_short_fact():
    # "13" also occurs in "의병대로13길" (c003); the chunk holding both facts wins
    assert resolve_gold_chunks(_rec(["목화 게스트하우스", "13"], [22]), CHUNKS) == ["c004"]


def test_resolve_unions_chunks_of_different_facts_and_keeps_corpus_order():
    assert resolve_gold_chunks(_rec(["서울관광호텔", "반미샌드위치"], [22]), CHUNKS) == ["c003", "c005"]


def test_resolve_falls_back_to_the_best_chunks_when_a_fact_is_missing():
    # "85,000원" is nowhere: fall back to the chunk(s) holding the most facts (c006 holds the OCR'd 60,000원)
    assert resolve_gold_chunks(_rec(["60,000원", "85,000원"], [6]), CHUNKS) == ["c006"]
    # no fact found anywhere on the pages: every chunk on them
    assert resolve_gold_chunks(_rec(["없는 값"], [6]), CHUNKS) == ["c006", "c007"]


def test_resolve_uses_source_facts_of_computed_answers():
    rec = _rec(["25,000원"], [6], computed=True, source_facts=["60,000원"])
    assert resolve_gold_chunks(rec, CHUNKS) == ["c006"]


def test_found_on_gold_pages_counts_answerable_records_with_a_fact_there():
    records = [_rec(["30,000원"], [5]), _rec(["30,000원"], [22]), _rec(["없는 값", "서울관광호텔"], [22])]
    records.append({"answerable": False, "key_facts": [], "gold_pages": [5]})
    assert found_on_gold_pages(records, CHUNKS) == (2, 3)
    assert found_on_gold_pages([], CHUNKS) == (0, 0)


def test_resolve_unanswerable_and_pageless():
    assert resolve_gold_chunks({"answerable": False, "key_facts": [], "gold_pages": [5]}, CHUNKS) == []
    assert resolve_gold_chunks(_rec(["30,000원"], [99]), CHUNKS) == []


# ---------------------------------------------------------------- load errors
GOOD = {
    "id": "n001", "question": "시티투어 요금은?", "answer": "시티투어 요금은 30,000원입니다.", "answer_short": "30,000원",
    "key_facts": ["30,000원"], "answerable": True, "type": "factual", "style": "direct", "answer_kind": "price",
    "gold_pages": [5],
}  # fmt: skip
BAD_UNANSWERABLE = {
    "id": "n002", "question": "카드 결제 되나요?", "answer": ABSTAIN, "answer_short": "", "key_facts": [],
    "answerable": False, "type": "unanswerable", "style": "policy", "answer_kind": "abstain", "gold_pages": [6],
}  # fmt: skip


def _write(tmp_path, *lines) -> Path:
    path = tmp_path / "natural.jsonl"
    path.write_text(
        "\n".join(x if isinstance(x, str) else json.dumps(x, ensure_ascii=False) for x in lines) + "\n",
        encoding="utf-8",
    )
    return path


def test_load_accepts_a_good_file(tmp_path):
    recs = load_natural(_write(tmp_path, GOOD, "", BAD_UNANSWERABLE), ABSTAIN)
    assert [r["id"] for r in recs] == ["n001", "n002"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"style": "casual"}, r":2: style 'casual' is not one of direct\|"),
        ({"answer_kind": "money"}, r":2: answer_kind 'money'"),
        ({"key_facts": []}, r":2: an answerable record needs 1-4 key_facts"),
        ({"key_facts": ["a", "b", "c", "d", "e"]}, r":2: an answerable record needs 1-4 key_facts"),
        ({"key_facts": ["31,000원"]}, r":2: answer does not contain '31,000원'"),
        ({"answer_short": "3,000원"}, r":2: answer does not contain '3,000원'"),
        ({"answerable": 1}, r":2: field 'answerable' must be bool"),
        ({"gold_pages": []}, r":2: gold_pages must be a non-empty list"),
        ({"gold_pages": ["5"]}, r":2: gold_pages must be a non-empty list"),
        ({"id": "q1"}, r":2: id 'q1' is not like 'n001'"),
        ({"chunk_id": "c001"}, r":2: unknown field\(s\): chunk_id"),
        ({"computed": True}, r":2: a computed record needs source_facts"),
        ({"type": "unanswerable"}, r":2: answerable record with type/answer_kind"),
    ],
)
def test_load_names_the_line_and_the_problem(tmp_path, change, message):
    path = _write(tmp_path, BAD_UNANSWERABLE | {"id": "n000"}, GOOD | change)
    with pytest.raises(UserError, match=message):
        load_natural(path, ABSTAIN)


def test_load_errors_for_file_json_duplicates_and_unanswerable(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_natural(tmp_path / "missing.jsonl")
    with pytest.raises(UserError, match=r":1: not valid JSON"):
        load_natural(_write(tmp_path, "{oops"))
    with pytest.raises(UserError, match=r":2: duplicate id n001 \(first on line 1\)"):
        load_natural(_write(tmp_path, GOOD, GOOD))
    with pytest.raises(UserError, match="no natural questions"):
        load_natural(_write(tmp_path, ""))
    with pytest.raises(UserError, match=r":1: missing field\(s\): answer_kind"):
        load_natural(_write(tmp_path, {k: v for k, v in GOOD.items() if k != "answer_kind"}))
    with pytest.raises(UserError, match=r":1: unanswerable record must have key_facts \[\]"):
        load_natural(_write(tmp_path, BAD_UNANSWERABLE | {"key_facts": ["x"]}))
    with pytest.raises(UserError, match=r":1: unanswerable answer must be the abstain text"):
        load_natural(_write(tmp_path, BAD_UNANSWERABLE | {"answer": "모르겠습니다."}), ABSTAIN)
    with pytest.raises(UserError, match=r":1: unanswerable record needs type 'unanswerable'"):
        load_natural(_write(tmp_path, BAD_UNANSWERABLE | {"answer_kind": "text"}))


def test_load_normalises_to_nfc(tmp_path):
    import unicodedata

    nfd = unicodedata.normalize("NFD", "시티투어 요금은?")
    recs = load_natural(_write(tmp_path, GOOD | {"question": nfd}))
    assert recs[0]["question"] == "시티투어 요금은?" and recs[0]["question"] != nfd
