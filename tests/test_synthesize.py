import json
import subprocess
import sys

import pytest

from stages.synthesize import entity_facts, list_facts, rules_questions, split_by_chunk, supported

ABSTAIN = "브로셔에 해당 정보가 없습니다."
CFG = {"seed": 1, "max_questions_per_chunk": 6, "unanswerable_per_chunk": 1, "generator": "rules",
       "split": {"train": 0.6, "val": 0.2, "test": 0.2}}


def chunk(cid, title, text, kind="entry"):
    return {"chunk_id": cid, "title": title, "kind": kind, "text": text, "section_path": f"숙박 > {title}", "pages": [22]}


LODGING = chunk("c001", "포레스트 리솜 (레스트리 리솜)", "포레스트 리솜 (레스트리 리솜): 객실수 451 (제천시 백운면 금봉로 365, 043-649-6000)")
ATTRACTION = chunk(
    "c002", "청풍호반 케이블카",
    "청풍호반 케이블카: 비봉산의 풍경을 감상할 수 있는 제천 관광의 랜드마크로, 한국관광 100선에 선정된 명소이다.\n(제천시 청풍면 문화재길 166)",
)
RESTAURANTS = chunk(
    "c003", "제천맛집 위치별 소개",
    "북부권 (4)\n열두달밥상(가마솥약초밥상), 묵마을(채묵밥), 산아래(유기농 우렁쌈밥), 풍정(한방토종닭·오리백숙)", kind="section",
)


def test_entity_facts_find_address_phone_rooms_and_a_sentence():
    facts = {fact: (e, answer) for fact, e, answer in entity_facts(LODGING)}
    assert facts["address"] == ("포레스트 리솜", "제천시 백운면 금봉로 365")
    assert facts["phone"] == ("포레스트 리솜", "043-649-6000")
    assert facts["rooms"] == ("포레스트 리솜", "451")
    sentence = dict((f, a) for f, _, a in entity_facts(ATTRACTION))["sentence"]
    assert sentence.startswith("비봉산의 풍경을") and sentence.endswith("명소이다.")


def test_menu_facts_from_a_restaurant_list():
    facts = list_facts(RESTAURANTS)
    assert ("menu", "풍정", "한방토종닭, 오리백숙") in facts
    assert ("menu", "열두달밥상", "가마솥약초밥상") in facts


def test_grounding_filter_rejects_unsupported_answer():
    assert supported("043-649-6000", LODGING["text"])
    assert supported("제천시 백운면 금봉로365", LODGING["text"])  # spacing differences are fine
    assert not supported("043-649-6001", LODGING["text"])
    assert not supported("객실수 452", LODGING["text"])


def test_rules_questions_are_natural_korean_and_grounded():
    qa = rules_questions([LODGING, ATTRACTION, RESTAURANTS], CFG, ABSTAIN)
    by_fact = {q["fact"]: q for q in qa if q["answerable"]}
    assert by_fact["rooms"]["question"] in {
        "포레스트 리솜의 객실 수는 몇 개인가요?", "포레스트 리솜에는 객실이 몇 개 있나요?", "포레스트 리솜은 객실을 몇 개 갖추고 있나요?"}
    assert all(q["question"].endswith(("?", ".")) for q in qa)
    unanswerable = [q for q in qa if not q["answerable"]]
    assert len(unanswerable) == 2  # one per entry chunk
    assert all(q["answer"] == ABSTAIN and q["type"] == "unanswerable" for q in unanswerable)
    assert [q["id"] for q in qa] == [f"q{i:04d}" for i in range(1, len(qa) + 1)]


def test_same_question_from_two_chunks_is_dropped():
    twin = dict(LODGING, chunk_id="c009")
    qa = rules_questions([LODGING, twin], {**CFG, "unanswerable_per_chunk": 0}, ABSTAIN)
    assert qa == []


def test_group_split_never_shares_a_chunk():
    records = [{"chunk_id": f"c{i % 20:03d}", "q": i} for i in range(200)]
    splits = split_by_chunk(records, CFG["split"], seed=3)
    groups = {name: {r["chunk_id"] for r in rows} for name, rows in splits.items()}
    assert not groups["train"] & groups["test"]
    assert not groups["train"] & groups["validation"]
    assert not groups["validation"] & groups["test"]
    assert sum(len(rows) for rows in splits.values()) == 200
    assert len(groups["test"]) == 4  # 20% of 20 chunks
    assert split_by_chunk(records, CFG["split"], seed=3) == splits  # deterministic


def test_cli_writes_dataset_dict_card_and_counts(tmp_path):
    chunks_dir = tmp_path / "chunks"
    chunks_dir.mkdir()
    many = [chunk(f"c{i:03d}", f"호텔{i}", f"호텔{i}: 객실수 {i + 10} (제천시 의림대로 {i}, 043-600-{1000 + i})") for i in range(1, 11)]
    (chunks_dir / "chunks.jsonl").write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in many), encoding="utf-8")
    out, metrics = tmp_path / "qa", tmp_path / "dataset.json"
    subprocess.run([sys.executable, "-m", "stages.synthesize", "--chunks", str(chunks_dir), "--out", str(out),
                    "--metrics", str(metrics)], check=True, capture_output=True)
    from datasets import load_from_disk

    ds = load_from_disk(str(out / "hf"))
    assert set(ds) == {"train", "validation", "test"}
    stats = json.loads(metrics.read_text())
    assert stats["total"] == sum(len(ds[s]) for s in ds)
    assert stats["test"]["questions"] == len(ds["test"])
    assert "group split on `chunk_id`" in (out / "README.md").read_text()


def test_cli_missing_input_is_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "stages.synthesize", "--chunks", str(tmp_path / "nope"),
                           "--out", str(tmp_path / "qa"), "--metrics", str(tmp_path / "m.json")],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'nope' / 'chunks.jsonl'}: not found (run the chunk stage first)"]
    assert not (tmp_path / "qa").exists()


@pytest.mark.parametrize("bad", [{"train": 0.5, "val": 0.1, "test": 0.1}])
def test_split_ratios_must_sum_to_one(bad):
    from stages.common.errors import UserError

    with pytest.raises(UserError, match="sum to 1"):
        split_by_chunk([{"chunk_id": "c1"}] * 3, bad, seed=0)
