import random

from stages.sft import build_example, make_context

PROMPT = {"system": "시스템", "abstain": "브로셔에 해당 정보가 없습니다."}
BY_ID = {f"c{i:03d}": {"chunk_id": f"c{i:03d}", "section_path": f"경로{i}", "text": f"본문{i}"} for i in range(1, 8)}
Q = {"id": "q1", "question": "포레스트 리솜의 전화번호는?", "answer": "043-649-6000", "answerable": True,
     "type": "factual", "chunk_id": "c005"}


def test_gold_is_forced_into_context_when_kept():
    ids = make_context(Q, ["c001", "c002", "c003", "c004"], k=3, keep_gold=True, distractor_pool=[])
    assert ids == ["c005", "c001", "c002"]


def test_gold_is_removed_when_not_kept_and_distractors_fill_in():
    ids = make_context(Q, ["c005", "c001"], k=3, keep_gold=False, distractor_pool=["c005", "c006", "c007"])
    assert ids == ["c001", "c006", "c007"]


def test_unanswerable_keeps_retrieved_context():
    q = dict(Q, answerable=False, answer=PROMPT["abstain"])
    assert make_context(q, ["c005", "c001", "c002", "c003"], k=3, keep_gold=True, distractor_pool=[]) == ["c005", "c001", "c002"]


def test_example_with_gold_cites_it_and_without_gold_abstains():
    with_gold = build_example(Q, ["c005", "c001", "c002"], BY_ID, PROMPT, 100, random.Random(0))
    assert with_gold["messages"][-1] == {"role": "assistant", "content": "043-649-6000 [c005]"}
    assert [m["role"] for m in with_gold["messages"]] == ["system", "user", "assistant"]
    assert all(f"[{c}]" in with_gold["messages"][1]["content"] for c in ("c005", "c001", "c002"))
    assert with_gold["meta"]["target"] == "answer"

    without = build_example(Q, ["c001", "c002", "c003"], BY_ID, PROMPT, 100, random.Random(0))
    assert without["messages"][-1]["content"] == PROMPT["abstain"]
    assert without["meta"] == {**without["meta"], "gold_in_context": False, "target": "abstain"}


def test_chunk_order_is_shuffled_deterministically():
    orders = {tuple(build_example(Q, ["c005", "c001", "c002"], BY_ID, PROMPT, 100, random.Random(s))["meta"]["context_ids"])
              for s in range(10)}
    assert len(orders) > 1
    again = build_example(Q, ["c005", "c001", "c002"], BY_ID, PROMPT, 100, random.Random(3))
    assert again == build_example(Q, ["c005", "c001", "c002"], BY_ID, PROMPT, 100, random.Random(3))
