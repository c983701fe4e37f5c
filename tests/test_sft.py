import random

from stages.sft import build_example, make_context

PROMPT = {"system": "시스템", "abstain": "브로셔에 해당 정보가 없습니다."}
BY_ID = {f"c{i:03d}": {"chunk_id": f"c{i:03d}", "section_path": f"경로{i}", "text": f"본문{i}"} for i in range(1, 8)}
Q = {
    "id": "q1",
    "question": "포레스트 리솜의 전화번호는?",
    "answer": "043-649-6000",
    "answerable": True,
    "type": "factual",
    "chunk_id": "c005",
}


def test_gold_is_forced_into_context_when_kept():
    ids = make_context(Q, ["c001", "c002", "c003", "c004"], k=3, keep_gold=True, distractor_pool=[])
    assert ids == ["c005", "c001", "c002"]


def test_gold_is_removed_when_not_kept_and_distractors_fill_in():
    ids = make_context(Q, ["c005", "c001"], k=3, keep_gold=False, distractor_pool=["c005", "c006", "c007"])
    assert ids == ["c001", "c006", "c007"]


def test_unanswerable_keeps_retrieved_context():
    q = dict(Q, answerable=False, answer=PROMPT["abstain"])
    assert make_context(q, ["c005", "c001", "c002", "c003"], k=3, keep_gold=True, distractor_pool=[]) == [
        "c005",
        "c001",
        "c002",
    ]


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
    orders = {
        tuple(build_example(Q, ["c005", "c001", "c002"], BY_ID, PROMPT, 100, random.Random(s))["meta"]["context_ids"])
        for s in range(10)
    }
    assert len(orders) > 1
    again = build_example(Q, ["c005", "c001", "c002"], BY_ID, PROMPT, 100, random.Random(3))
    assert again == build_example(Q, ["c005", "c001", "c002"], BY_ID, PROMPT, 100, random.Random(3))


COMPARISON = dict(
    Q,
    id="q2",
    type="comparison",
    chunk_id="c005",
    chunk_ids=["c005", "c006"],
    question="포레스트 리솜과 청풍리조트 중 객실이 더 많은 곳은?",
    answer="포레스트 리솜입니다",
)


def test_cross_chunk_question_keeps_or_removes_all_its_chunks_together():
    kept = make_context(COMPARISON, ["c001", "c006", "c002"], k=3, keep_gold=True, distractor_pool=[])
    assert kept == ["c005", "c006", "c001"]
    removed = make_context(COMPARISON, ["c006", "c001", "c005"], k=3, keep_gold=False, distractor_pool=["c002", "c005"])
    assert removed == ["c001", "c002"]  # the pool cannot refill with a gold chunk


def test_cross_chunk_answer_cites_every_chunk_and_half_the_evidence_means_abstain():
    both = build_example(COMPARISON, ["c005", "c006", "c001"], BY_ID, PROMPT, 100, random.Random(0))
    assert both["messages"][-1]["content"] == "포레스트 리솜입니다 [c005][c006]"
    assert both["meta"]["gold_chunk_ids"] == ["c005", "c006"]
    half = build_example(COMPARISON, ["c005", "c001", "c002"], BY_ID, PROMPT, 100, random.Random(0))
    assert half["messages"][-1]["content"] == PROMPT["abstain"]
