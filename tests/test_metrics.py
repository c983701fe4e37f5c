"""Answer metrics on hand-computed Korean cases (stages/common/metrics.py)."""

from __future__ import annotations

import numpy as np
import pytest

from stages.common import metrics as M

ABSTAIN = "브로셔에 해당 정보가 없습니다."
MARKERS = ("정보가 없", "나와 있지 않", "알 수 없")
CFG = M.ScoreConfig(
    abstain=ABSTAIN,
    abstain_markers=MARKERS,
    abstain_window=60,
    support_min_share=1.0,
    loop_word_ngram=4,
    loop_char_ngram=12,
    loop_repeats=3,
    correct_f1=0.5,
)
CONTEXT = "[c001] 청풍호반 케이블카\n주소: 제천시 청풍면 문화재길 166\n전화: 043-641-5532\n요금: 15,000원"


# ---------------------------------------------------------------- normalisation and overlap
def test_normalize_strips_citations_punctuation_and_space():
    assert M.normalize_answer("  제천시,  청풍면!! [c001][c002] ") == "제천시 청풍면"
    # NFD jamo input composes to the same syllables
    import unicodedata

    assert M.normalize_answer(unicodedata.normalize("NFD", "케이블카")) == "케이블카"
    assert M.compact("26,000원 (1시간)") == "26000원1시간"


def test_exact_and_contains():
    assert M.exact_match("제천시 청풍면 [c003]", "제천시 청풍면.") == 1.0
    assert M.exact_match("제천시 청풍면입니다", "제천시 청풍면") == 0.0
    pred = "주소는 제천시 청풍면 문화재길 166입니다 [c003]"
    assert M.contains_match(pred, "제천시 청풍면 문화재길 166") == 1.0
    assert M.exact_match(pred, "제천시 청풍면 문화재길 166") == 0.0
    assert M.contains_match("제천시청풍면", "제천시 청풍면") == 1.0  # spacing ignored
    assert M.contains_match("anything", "") == 0.0


def test_f1_char_hand_computed():
    # pred 가나다 / gold 가나라: 2 shared chars, P = R = 2/3
    assert M.f1_char("가나다", "가나라") == pytest.approx(2 / 3)
    assert M.f1_char("가 나", "가나") == 1.0
    assert M.f1_char("", "") is None  # an empty gold is undefined, never a perfect match
    assert M.f1_char("가", "") is None


def test_f1_morph_hand_computed():
    # ['케이블카', '주소'] on both sides: particles 의/는 do not count
    assert M.f1_morph("케이블카의 주소는", "케이블카 주소") == 1.0
    # pred ['청풍','호반','케이블카','요금','얼마'], gold ['케이블카','요금']: P = 2/5, R = 1
    assert M.f1_morph("청풍호반 케이블카 요금은 얼마인가요", "케이블카 요금") == pytest.approx(2 * 0.4 / 1.4)
    # pred ['박달재','휴양림','객실','10','개'], gold ['객실','10','개']: P = 3/5, R = 1 -> 0.75
    assert M.f1_morph("박달재 휴양림의 객실은 10개입니다 [c002]", "객실 10개") == pytest.approx(0.75)


def test_rouge_l_char_is_order_aware_and_reads_hangul():
    assert M.lcs_length("가나다라", "가다라마") == 3
    assert M.rouge_l_char("가나다라", "가다라마") == pytest.approx(0.75)
    # same characters, reversed order: char-F1 1.0 but LCS 1 -> P = R = 1/3
    assert M.f1_char("다나가", "가나다") == 1.0
    assert M.rouge_l_char("다나가", "가나다") == pytest.approx(1 / 3)
    # prefix: LCS 6 (제천시청풍면), P = 1, R = 6/10
    assert M.rouge_l_char("제천시 청풍면", "제천시 청풍면 문화재길") == pytest.approx(2 * 0.6 / 1.6)


def test_rouge_module_loads_offline_and_scores_hangul_only_strings():
    rouge = M.load_rouge_module()
    out = rouge.compute(predictions=["제천시 청풍면", "가나다"], references=["제천시 청풍면 문화재길", "라마바"])
    assert out["rouge_l_char"] == pytest.approx((0.75 + 0.0) / 2)
    assert out["rouge_l_char_recall"] == pytest.approx(0.3)


def test_rouge_score_default_tokenizer_drops_hangul_but_ours_does_not():
    """Why the local module exists: rouge_score keeps ASCII tokens only, so Hangul answers score 0."""
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    theirs = rouge_scorer.RougeScorer(["rougeL"]).score("제천시 청풍면 문화재길", "제천시 청풍면")["rougeL"].fmeasure
    assert theirs == 0.0
    assert M.rouge_l_char("제천시 청풍면", "제천시 청풍면 문화재길") == pytest.approx(0.75)


# ---------------------------------------------------------------- abstention, support, format
def test_abstention_detection():
    assert M.abstained("브로셔에 해당 정보가 없습니다. [c001]", ABSTAIN, MARKERS)
    assert M.abstained("브로셔에해당정보가없습니다", ABSTAIN, MARKERS)
    assert M.abstained("그 내용은 문서에 나와 있지 않아요.", ABSTAIN, MARKERS)
    assert not M.abstained("주소는 제천시 청풍면입니다.", ABSTAIN, MARKERS)
    assert not M.abstained("", ABSTAIN, MARKERS)
    # a base model echoing the system prompt quotes the phrase late: not an abstention
    echo = '당신은 제천 여행 브로셔를 바탕으로 답하는 안내원입니다. 주어진 문서에 있는 내용만으로 짧고 정확하게 한국어로 답하고, 문서에 답이 없으면 "브로셔에 해당 정보가 없습니다."라고만 답하세요.'
    assert M.abstained(echo, ABSTAIN, MARKERS, window=0)
    assert not M.abstained(echo, ABSTAIN, MARKERS, window=60)
    assert M.abstained("죄송합니다. 브로셔에 해당 정보가 없습니다.", ABSTAIN, MARKERS, window=60)


def test_support_numbers_verbatim_and_morphemes():
    assert M.is_supported("제천시 청풍면 문화재길 166 [c001]", CONTEXT, 1.0) is True
    assert M.is_supported("043-641-5532 [c001]", CONTEXT, 1.0) is True
    assert M.is_supported("043-641-5533", CONTEXT, 1.0) is False  # a wrong digit is not supported
    assert M.is_supported("15000원", CONTEXT, 1.0) is False  # numbers must appear verbatim
    s = M.support("단양군 문화재길 166", CONTEXT)
    assert s["missing"] == ["단양군"] and s["share"] == pytest.approx(2 / 3)
    assert M.is_supported("단양군 문화재길 166", CONTEXT, 0.6) is True
    assert M.is_supported("[c001]", CONTEXT, 1.0) is None


def test_looping():
    assert M.is_looping("가 나 다 라 가 나 다 라 가 나 다 라", 4, 12, 3)
    assert M.is_looping("케이블카" * 5, 4, 12, 3)  # 12-char window at offsets 0, 4, 8
    assert not M.is_looping("케이블카" * 4, 4, 12, 3)
    assert not M.is_looping("제천시 청풍면 문화재길 166입니다 [c001]", 4, 12, 3)


# ---------------------------------------------------------------- per example + aggregate
def _pred(i, answer, answerable=True, gold="제천시 청풍면 문화재길 166", retrieved=("c001", "c002"), hit_eos=True):
    from stages.common.prompting import cited_ids

    return {
        "id": f"q{i:04d}",
        "type": "factual" if answerable else "unanswerable",
        "answerable": answerable,
        "gold_answer": gold if answerable else ABSTAIN,
        "gold_chunk_id": "c001",
        "retrieved_ids": list(retrieved),
        "answer": answer,
        "cited_ids": cited_ids(answer),
        "latency_s": 1.0,
        "new_tokens": 10,
        "hit_eos": hit_eos,
    }


CASES = {
    "ok": _pred(1, "제천시 청풍면 문화재길 166 [c001]"),
    "hallucination": _pred(2, "단양군 매포읍 999 [c001]"),
    "wrong_fact": _pred(3, "043-641-5532 [c002]"),
    "wrong_abstention": _pred(4, ABSTAIN),
    "retrieval_miss": _pred(5, ABSTAIN, retrieved=("c002", "c003")),
    "missed_abstention": _pred(6, "제천시 청풍면입니다", answerable=False),
    "ok_abstain": _pred(7, ABSTAIN, answerable=False),
    "format": _pred(8, "제천시 청풍면 문화재길 166 제천시 청풍면", hit_eos=False),
    "empty": _pred(9, "[c001]"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_failure_classification(name):
    s = M.score_example(CASES[name], CONTEXT, CFG)
    expected = {"ok_abstain": "ok", "empty": "format"}.get(name, name)
    assert s["failure"] == expected


def test_score_example_fields():
    s = M.score_example(CASES["ok"], CONTEXT, CFG)
    assert (s["em"], s["contains"], s["citation_ok"], s["supported"], s["format_fail"]) == (1.0, 1.0, True, True, False)
    s = M.score_example(CASES["ok_abstain"], CONTEXT, CFG)
    assert s["em"] is None and s["citation_ok"] is None and s["abstained"] is True
    s = M.score_example(CASES["retrieval_miss"], CONTEXT, CFG)
    assert s["citation_ok"] is None and s["gold_retrieved"] is False
    s = M.score_example(CASES["format"], CONTEXT, CFG)
    assert s["over_length"] and not s["empty"]


def test_cross_chunk_question_needs_every_chunk_retrieved_and_cited():
    two = dict(CASES["ok"], gold_chunk_ids=["c001", "c002"])
    assert M.score_example(two, CONTEXT, CFG)["citation_ok"] is False  # cites c001 only
    both = dict(two, answer="제천시 청풍면 문화재길 166 [c001][c002]", cited_ids=["c001", "c002"])
    assert M.score_example(both, CONTEXT, CFG)["citation_ok"] is True
    half_retrieved = dict(two, retrieved_ids=["c001", "c003"])
    s = M.score_example(half_retrieved, CONTEXT, CFG)
    assert s["gold_retrieved"] is False and s["citation_ok"] is None


def test_aggregate_hand_computed():
    preds = [CASES[k] for k in ("ok", "hallucination", "wrong_abstention", "missed_abstention", "ok_abstain")]
    scores = [M.score_example(p, CONTEXT, CFG) for p in preds]
    out = M.aggregate(scores, preds)
    assert (out["n"], out["n_answerable"], out["n_unanswerable"]) == (5, 3, 2)
    assert out["answer"]["em"] == pytest.approx(round(1 / 3, 4))  # over the 3 answerable only
    # abstained: wrong_abstention (answerable, FP) and ok_abstain (TP); missed_abstention is a FN
    # wrong_rate: wrong_abstention abstained with c001 retrieved, 1 of 3 answerable
    assert out["abstention"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "rate": 0.4, "wrong_rate": 0.3333}
    # citation over answerable, gold retrieved, answered (ok, hallucination): both cite exactly c001
    assert out["citation_acc"] == 1.0 and out["citation"] == {"precision": 1.0, "recall": 1.0}
    # faithfulness over every non-abstaining answer (ok, hallucination, missed_abstention '제천시 청풍면입니다')
    assert out["faithfulness"] == pytest.approx(round(2 / 3, 4))
    assert out["format"]["fail_rate"] == 0.0
    assert out["latency_s_mean"] == 1.0 and out["tokens_per_s"] == 10.0
    assert out["failures"]["ok"] == 2 and out["failures"]["hallucination"] == 1


def test_aggregate_without_unanswerable_gives_none_not_error():
    preds = [CASES["ok"]]
    out = M.aggregate([M.score_example(preds[0], CONTEXT, CFG)], preds)
    assert out["abstention"]["precision"] is None and out["abstention"]["recall"] is None


# ---------------------------------------------------------------- bootstrap
def test_bootstrap_identical_systems_delta_zero():
    rng = np.random.default_rng(0)
    x = rng.random(40)
    w = M.bootstrap_weights(40, 500, seed=1)
    r = M.paired_bootstrap((x, np.ones(40)), (x.copy(), np.ones(40)), w, 0.95)
    assert r["delta"] == 0.0 and r["ci_low"] == 0.0 and r["ci_high"] == 0.0


def test_bootstrap_constant_improvement():
    x = np.random.default_rng(0).random(40)
    w = M.bootstrap_weights(40, 500, seed=1)
    r = M.paired_bootstrap((x, np.ones(40)), (x + 1.0, np.ones(40)), w, 0.95)
    assert (r["delta"], r["ci_low"], r["ci_high"]) == (1.0, 1.0, 1.0)


def test_bootstrap_ci_brackets_delta_and_is_seeded():
    base = np.r_[np.zeros(20), np.ones(20)]
    tuned = np.r_[np.ones(30), np.zeros(10)]
    ones = np.ones(40)
    a = M.paired_bootstrap((base, ones), (tuned, ones), M.bootstrap_weights(40, 1000, 7), 0.95)
    b = M.paired_bootstrap((base, ones), (tuned, ones), M.bootstrap_weights(40, 1000, 7), 0.95)
    assert a == b
    assert a["delta"] == 0.25 and a["ci_low"] < 0.25 < a["ci_high"]


def test_compare_requires_aligned_ids():
    p = [CASES["ok"]]
    s = [M.score_example(p[0], CONTEXT, CFG)]
    with pytest.raises(ValueError):
        M.compare(s, s, p, [CASES["hallucination"]], 10, 0, 0.95)
    out = M.compare(s, s, p, p, 10, 0, 0.95)
    assert out["em"]["delta"] == 0.0


def test_judge_agreement_hand_computed_kappa():
    # deterministic correct 1,1,0,0 vs judge 1,0,0,0: p_o = 3/4, p_e = 1/2*1/4 + 1/2*3/4 = 1/2, kappa = 1/2
    scores = [
        {"correct": c, "judge_correct": j} for c, j in [(True, True), (True, False), (False, False), (False, False)]
    ]
    scores.append({"correct": True, "judge_correct": None})  # unparseable verdict: not counted
    a = M.judge_agreement(scores)
    assert a == {
        "n_judged": 4,
        "n_unparsed": 1,
        "agreement": 0.75,
        "kappa": 0.5,
        "both_correct": 1,
        "only_deterministic": 1,
        "only_judge": 0,
        "both_wrong": 2,
    }
    assert M.judge_agreement([{"correct": True}]) is None  # judge never ran
    same = M.judge_agreement([{"correct": True, "judge_correct": True}] * 3)
    assert same["agreement"] == 1.0 and same["kappa"] is None  # one label everywhere: kappa undefined
    preds = [{"answerable": True, "latency_s": 1.0, "new_tokens": 2}] * 5
    full = [
        {
            **s,
            "abstained": False,
            "format_fail": False,
            "empty": False,
            "looping": False,
            "over_length": False,
            "failure": "ok" if s["correct"] else "wrong_fact",
        }
        for s in scores
    ]
    out = M.aggregate(full, preds)
    assert out["judge"]["correct"] == 0.25 and out["judge"]["kappa"] == 0.5  # 1 of 4 judged correct
    plain = M.aggregate([{k: v for k, v in s.items() if k != "judge_correct"} for s in full], preds)
    assert "judge" not in plain
