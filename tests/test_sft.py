import random

from stages.common.params import make_section
from stages.common.prompting import PromptLayout
from stages.sft import build_example, make_context

PROMPT = make_section(
    "prompt",
    {
        "system": "시스템",
        "abstain": "브로셔에 해당 정보가 없습니다.",
        "max_context_chars": 100,
        "question_first": False,
        "id_after_text": False,
    },
)
LAYOUT = PromptLayout.from_params(PROMPT)
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
    q = dict(Q, answerable=False, answer=PROMPT.abstain)
    assert make_context(q, ["c005", "c001", "c002", "c003"], k=3, keep_gold=True, distractor_pool=[]) == [
        "c005",
        "c001",
        "c002",
    ]


def test_example_with_gold_cites_it_and_without_gold_abstains():
    with_gold = build_example(Q, ["c005", "c001", "c002"], BY_ID, LAYOUT, PROMPT.abstain, random.Random(0))
    assert with_gold["messages"][-1] == {"role": "assistant", "content": "043-649-6000 [c005]"}
    assert [m["role"] for m in with_gold["messages"]] == ["system", "user", "assistant"]
    assert all(f"[{c}]" in with_gold["messages"][1]["content"] for c in ("c005", "c001", "c002"))
    assert with_gold["meta"]["target"] == "answer"

    without = build_example(Q, ["c001", "c002", "c003"], BY_ID, LAYOUT, PROMPT.abstain, random.Random(0))
    assert without["messages"][-1]["content"] == PROMPT.abstain
    assert without["meta"] == {**without["meta"], "gold_in_context": False, "target": "abstain"}


def test_question_first_rows_ask_before_the_documents_with_the_same_target():
    first = PromptLayout.from_params(make_section("prompt", {**{k: PROMPT[k] for k in PROMPT}, "question_first": True}))
    plain = build_example(Q, ["c005", "c001", "c002"], BY_ID, LAYOUT, PROMPT.abstain, random.Random(0))
    asked = build_example(Q, ["c005", "c001", "c002"], BY_ID, first, PROMPT.abstain, random.Random(0))
    assert asked["messages"][1]["content"] == f"질문: {Q['question']}\n\n" + plain["messages"][1]["content"]
    assert asked["messages"][-1] == plain["messages"][-1] and asked["meta"] == plain["meta"]


def test_chunk_order_is_shuffled_deterministically():
    orders = {
        tuple(
            build_example(Q, ["c005", "c001", "c002"], BY_ID, LAYOUT, PROMPT.abstain, random.Random(s))["meta"][
                "context_ids"
            ]
        )
        for s in range(10)
    }
    assert len(orders) > 1
    again = build_example(Q, ["c005", "c001", "c002"], BY_ID, LAYOUT, PROMPT.abstain, random.Random(3))
    assert again == build_example(Q, ["c005", "c001", "c002"], BY_ID, LAYOUT, PROMPT.abstain, random.Random(3))


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
    both = build_example(COMPARISON, ["c005", "c006", "c001"], BY_ID, LAYOUT, PROMPT.abstain, random.Random(0))
    assert both["messages"][-1]["content"] == "포레스트 리솜입니다 [c005][c006]"
    assert both["meta"]["gold_chunk_ids"] == ["c005", "c006"]
    half = build_example(COMPARISON, ["c005", "c001", "c002"], BY_ID, LAYOUT, PROMPT.abstain, random.Random(0))
    assert half["messages"][-1]["content"] == PROMPT.abstain


# ---------------------------------------------------------------- RAFT views, abstention share, split hygiene
from stages.sft import (  # noqa: E402
    abstention_count,
    allowed_chunks,
    build_split,
    pick_answer_rows,
    seeded_pick,
    split_abstentions,
    split_chunks,
    view_context,
)


def test_views_show_the_gold_with_different_distractors():
    hard = ["c001", "c005", "c002", "c003", "c004", "c006"]
    v0 = view_context(Q, hard, 3, True, 0, random.Random(0))
    assert v0 == ["c005", "c001", "c002"]  # the retriever's best non-gold chunks
    later = {tuple(view_context(Q, hard, 3, True, 1, random.Random(s))) for s in range(20)}
    assert all(v[0] == "c005" and "c005" not in v[1:] for v in later)
    assert len(later) > 1  # other distractors than view 0
    assert view_context(Q, hard, 3, False, 0, random.Random(0)) == ["c001", "c002", "c003"]


def test_cap_takes_every_first_view_before_second_views():
    rows = [(v, i) for i in range(40) for v in (0, 1)]
    picked = pick_answer_rows(rows, 45, random.Random(0))
    assert len(picked) == 45 and picked == sorted(picked)
    assert {i for v, i in picked if v == 0} == set(range(40))  # all 40 first views, then 5 second views
    assert pick_answer_rows(rows, 80, random.Random(0)) == sorted(rows)


def test_seeded_pick_round_robin_keeps_small_groups_whole():
    items = list(range(100)) + [100, 101, 102]  # a big group and a small one
    group = lambda i: "small" if i >= 100 else "big"  # noqa: E731
    picked = seeded_pick(items, 10, random.Random(0), group)
    assert {100, 101, 102} <= set(picked) and len(picked) == 10 == len(set(picked))
    plain = [seeded_pick(items, 10, random.Random(s)) for s in range(20)]
    assert sum(len({100, 101, 102} & set(p)) for p in plain) < 20  # a plain sample mostly misses them
    assert seeded_pick(items, 10, random.Random(3), group) == seeded_pick(items, 10, random.Random(3), group)
    assert (
        seeded_pick(items, 0, random.Random(0), group) == [] and len(seeded_pick(items, 500, random.Random(0))) == 103
    )


def test_no_training_prompt_shows_a_test_or_validation_chunk():
    qa = {
        "train": [dict(Q, id="t1", chunk_id="c001"), dict(Q, id="t2", chunk_id="c002", chunk_ids=["c002", "c003"])],
        "validation": [dict(Q, id="v1", chunk_id="c004")],
        "test": [dict(Q, id="x1", chunk_id="c005"), dict(Q, id="x2", chunk_id="c006", answerable=False)],
    }
    by_split = split_chunks(qa)
    ids = sorted(BY_ID)
    assert allowed_chunks(ids, by_split, "train") == {"c001", "c002", "c003", "c007"}
    assert allowed_chunks(ids, by_split, "validation") == {"c001", "c002", "c003", "c004", "c007"}


RCFG = make_section("retrieval", {"top_k": 3, "method": "hybrid"})
ALLOWED = {"c001", "c002", "c003", "c007"}  # what a training prompt may show in these tests


def sft_cfg(**values):
    """An sft section: plain picks, abstention share 0.25, no gold-removed rows unless asked."""
    base = {
        "seed": 1,
        "abstain_share": 0.25,
        "distractor_depth": 8,
        "gold_removed_share": 0.0,
        "balance_styles": False,
        "context_order": "shuffled",
    }
    return make_section("sft", {**base, **values})


class RankAll:
    """A retriever stand-in ranking every chunk, test chunks first (the worst case for leakage)."""

    def __init__(self):
        self.by_id = BY_ID

    def rank(self, queries, k, method):
        return [["c005", "c006", "c004", "c001", "c002", "c003", "c007"][:k] for _ in queries]


def test_build_split_rows_views_share_and_no_leak():
    questions = [dict(Q, id=f"t{i}", chunk_id=c) for i, c in enumerate(["c001", "c002", "c003"])]
    questions.append(dict(Q, id="u1", chunk_id="c007", answerable=False, type="unanswerable", answer="-"))
    questions.append(dict(Q, id="t9", chunk_id="c005"))  # its gold is a test chunk: cannot be trained on
    cfg, rcfg, allowed = sft_cfg(), RCFG, ALLOWED
    rows, stats = build_split(questions, RankAll(), cfg, rcfg, PROMPT, allowed, views=2, max_rows=0)
    assert stats["questions_dropped_gold_not_allowed"] == 1
    assert all(set(r["meta"]["context_ids"]) <= allowed for r in rows)
    answers = [r for r in rows if r["meta"]["target"] == "answer"]
    assert len(answers) == 6 and {r["meta"]["view"] for r in answers} == {0, 1}
    # 6 answer rows + 1 unanswerable: (0.25 * 7 - 1) / 0.75 = 1 gold-removed row
    assert stats["gold_removed_rows"] == 1 and stats["abstain_rows"] == 2 and stats["rows"] == 8
    for r in answers:
        assert r["messages"][-1]["content"] == f"043-649-6000 [{r['meta']['gold_chunk_id']}]"
    again, _ = build_split(questions, RankAll(), cfg, rcfg, PROMPT, allowed, views=2, max_rows=0)
    assert again == rows


def test_retrieval_order_shows_each_rows_chunks_as_the_retriever_ranks_them():
    questions = [dict(Q, id=f"t{i}", chunk_id=c) for i, c in enumerate(["c001", "c002", "c003"])]
    questions.append(dict(Q, id="u1", chunk_id="c007", answerable=False, type="unanswerable", answer="-"))
    rank = ["c005", "c006", "c004", "c001", "c002", "c003", "c007"]  # RankAll's order
    kept, _ = build_split(
        questions, RankAll(), sft_cfg(context_order="retrieval"), RCFG, PROMPT, ALLOWED, views=2, max_rows=0
    )
    assert kept and all(r["meta"]["context_ids"] == sorted(r["meta"]["context_ids"], key=rank.index) for r in kept)
    shuffled, _ = build_split(
        questions, RankAll(), sft_cfg(context_order="shuffled"), RCFG, PROMPT, ALLOWED, views=2, max_rows=0
    )
    assert [sorted(r["meta"]["context_ids"]) for r in shuffled] == [sorted(r["meta"]["context_ids"]) for r in kept]
    assert any(r["meta"]["context_ids"] != sorted(r["meta"]["context_ids"], key=rank.index) for r in shuffled)


def test_gold_removed_share_divides_the_abstention_rows():
    answerable, unanswerable = list(range(40)), list(range(100, 120))
    assert abstention_count(300, 100, 0.1, 320) == 32  # the cap binds: 10% of 320 rows
    assert abstention_count(90, 0, 0.1, 0) == 10  # no cap: 10 of 100 rows
    assert abstention_count(90, 5, 1.0, 0) == 95
    unans, removed = split_abstentions(answerable, unanswerable, 10, 0.5, random.Random(0))
    assert (len(unans), len(removed)) == (5, 5) and set(unans) <= set(unanswerable) and set(removed) <= set(answerable)
    assert split_abstentions(answerable, unanswerable, 10, 0.0, random.Random(0))[1] == []
    # too few unanswerable questions: gold-removed rows fill in; too few answerable ones: unanswerable fill in
    assert [len(x) for x in split_abstentions(answerable, [100, 101], 10, 0.5, random.Random(0))] == [2, 8]
    assert [len(x) for x in split_abstentions([1, 2], unanswerable, 10, 0.5, random.Random(0))] == [8, 2]


def test_build_split_with_gold_removed_share_keeps_the_share_and_removes_the_gold():
    questions = [dict(Q, id=f"t{i}", chunk_id=c) for i, c in enumerate(["c001", "c002", "c003"] * 3)]
    questions += [dict(Q, id=f"u{i}", chunk_id="c007", answerable=False, type="unanswerable") for i in range(4)]
    cfg, rcfg, allowed = sft_cfg(abstain_share=0.4, gold_removed_share=0.5), RCFG, ALLOWED
    rows, stats = build_split(questions, RankAll(), cfg, rcfg, PROMPT, allowed, views=1, max_rows=10)
    # the cap binds (9 answer + 4 unanswerable > 10): 4 abstentions, half of them gold-removed
    assert (stats["rows"], stats["abstain_rows"], stats["gold_removed_rows"]) == (10, 4, 2)
    for r in rows:
        meta = r["meta"]
        assert meta["gold_in_context"] == (meta["target"] == "answer")
        if meta["target"] == "abstain":
            assert r["messages"][-1]["content"] == PROMPT.abstain
            assert meta["gold_chunk_id"] not in meta["context_ids"] or not meta["answerable"]
    # at share 0.2 the unanswerable questions alone fill the 2 abstention rows, unless gold_removed_share asks for some
    cfg = cfg.replace(abstain_share=0.2)
    assert (
        build_split(questions, RankAll(), cfg, rcfg, PROMPT, allowed, views=1, max_rows=10)[1]["gold_removed_rows"] == 1
    )
    cfg0 = cfg.replace(gold_removed_share=0.0)
    assert (
        build_split(questions, RankAll(), cfg0, rcfg, PROMPT, allowed, views=1, max_rows=10)[1]["gold_removed_rows"]
        == 0
    )


def test_balanced_styles_keep_rare_styles_and_even_out_abstention_by_style():
    # 12 direct questions, 2 yes/no ones; unanswerable: 6 yes/no, 2 policy. The cap keeps 8 rows, 2 of them abstentions.
    questions = [dict(Q, id=f"d{i}", chunk_id=["c001", "c002", "c003"][i % 3], style="direct") for i in range(12)]
    questions += [dict(Q, id=f"y{i}", chunk_id="c001", style="yes_no") for i in range(2)]
    questions += [
        dict(Q, id=f"u{i}", chunk_id="c007", answerable=False, type="unanswerable", style=st)
        for i, st in enumerate(["yes_no"] * 6 + ["policy"] * 2)
    ]
    rcfg, allowed, balanced = RCFG, ALLOWED, sft_cfg(balance_styles=True)
    for seed in range(5):
        rows, stats = build_split(
            questions, RankAll(), balanced.replace(seed=seed), rcfg, PROMPT, allowed, views=1, max_rows=8
        )
        assert (stats["rows"], stats["abstain_rows"]) == (8, 2)
        answered = {r["meta"]["qa_id"] for r in rows if r["meta"]["target"] == "answer"}
        assert {"y0", "y1"} <= answered  # the rare style is kept whole
        abstained = sorted(r["meta"]["style"] for r in rows if r["meta"]["target"] == "abstain")
        assert abstained == ["policy", "yes_no"]  # one per style, not two yes/no ones
        assert stats["rows_by_style"]["policy"] == {"answer": 0, "abstain": 1}
        assert sum(n["answer"] for n in stats["rows_by_style"].values()) == 6
    again = build_split(questions, RankAll(), balanced, rcfg, PROMPT, allowed, views=1, max_rows=8)
    assert again == build_split(questions, RankAll(), balanced, rcfg, PROMPT, allowed, views=1, max_rows=8)


def test_abstention_picks_do_not_change_the_answer_rows():
    questions = [dict(Q, id=f"t{i}", chunk_id=["c001", "c002", "c003"][i % 3]) for i in range(12)]
    questions += [dict(Q, id=f"u{i}", chunk_id="c007", answerable=False, type="unanswerable") for i in range(6)]
    cfg = sft_cfg(abstain_share=0.2)

    def answered(c):
        rows, _ = build_split(questions, RankAll(), c, RCFG, PROMPT, ALLOWED, views=1, max_rows=10)
        return {r["meta"]["qa_id"] for r in rows if r["meta"]["target"] == "answer"}

    # the same 2 abstention rows of another kind: the 8 answer rows are the same questions
    assert answered(cfg) == answered(cfg.replace(gold_removed_share=1.0))


def test_followups_ask_more_questions_about_the_shown_context():
    # answerable questions on c001-c003 (a distinct answer each), c007's as near misses, two unanswerable ones
    questions = [
        dict(Q, id=f"t{i}", chunk_id=["c001", "c002", "c003"][i % 3], answer=f"답{i}", question=f"질문{i}")
        for i in range(9)
    ]
    questions += [dict(Q, id=f"n{i}", chunk_id="c007", answer=f"근처{i}", question=f"근처 질문{i}") for i in range(2)]
    questions += [
        dict(Q, id=f"u{i}", chunk_id=c, answerable=False, type="unanswerable", question=f"없는 질문{i}")
        for i, c in enumerate(["c001", "c002"])
    ]
    cfg = sft_cfg(abstain_share=0.25)
    plain, _ = build_split(questions, RankAll(), cfg, RCFG, PROMPT, ALLOWED, views=1, max_rows=8)
    rows, stats = build_split(questions, RankAll(), cfg, RCFG, PROMPT, ALLOWED, views=1, max_rows=8, followups=1)
    by_id = {q["id"]: q for q in questions}
    # the rows themselves are unchanged: the follow-up is appended after the row's own answer
    assert [r["messages"][:3] for r in rows] == [r["messages"] for r in plain]
    assert "followups" not in plain[0]["meta"]
    assert stats["followup_turns"] == {"answer": 6, "abstain": 2}  # 25% of the 8 follow-ups abstain
    for r in rows:
        (follow,) = r["meta"]["followups"]
        asked, reply = r["messages"][3:]
        q = by_id[follow["qa_id"]]
        assert asked == {"role": "user", "content": f"질문: {q['question']}"}
        shown = r["meta"]["context_ids"]
        assert follow["qa_id"] != r["meta"]["qa_id"]
        if follow["target"] == "answer":
            assert q["chunk_id"] in shown and reply["content"] == f"{q['answer']} [{q['chunk_id']}]"
        else:
            assert reply["content"] == PROMPT.abstain
            # an unanswerable question about a shown entry, or an answerable one whose gold is not shown
            assert (not q["answerable"] and q["chunk_id"] in shown) or q["chunk_id"] not in shown
    # the least-asked questions go first: the rows now ask more of the training questions than the 8 rows alone
    primary = {r["meta"]["qa_id"] for r in rows}
    assert stats["questions_asked"] > len(primary) and stats["questions_asked"] == len(
        primary | {r["meta"]["followups"][0]["qa_id"] for r in rows}
    )
    again = build_split(questions, RankAll(), cfg, RCFG, PROMPT, ALLOWED, views=1, max_rows=8, followups=1)
    assert again == (rows, stats)
