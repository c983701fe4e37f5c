"""Answer metrics on hand-computed Korean cases (stages/common/metrics.py)."""

from __future__ import annotations

import numpy as np
import pytest

from stages.common import korean
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
    # numbers compare as values: '15000원' is the context's '15,000원', another separator is the same phone
    assert M.is_supported("15000원", CONTEXT, 1.0) is True
    assert M.is_supported("043.641.5532", CONTEXT, 1.0) is True
    assert M.is_supported("150,000원", CONTEXT, 1.0) is False
    assert M.support("1,500원", CONTEXT)["missing_numbers"] == ["1500"]
    s = M.support("단양군 문화재길 166", CONTEXT)
    # share over the non-number morphemes ['단양군', '문화재길'] (166 is checked as a number)
    assert s["missing"] == ["단양군"] and s["share"] == 0.5 and s["missing_numbers"] == []
    assert M.is_supported("단양군 문화재길 166", CONTEXT, 0.5) is True
    assert M.is_supported("단양군 문화재길 166", CONTEXT, 0.6) is False
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


# ---------------------------------------------------------------- a scorer that cannot pass a wrong answer
# Realistic golds in the new QA contract (answer sentence, answer_short, key_facts, answer_kind), two per
# kind so that each can be scored against the other ("swapped gold of the same fact type").
def _gold(gid, qtype, kind, answer, short, facts, style="direct"):
    return {"id": gid, "type": qtype, "answer_kind": kind, "answer": answer, "answer_short": short,
            "key_facts": facts, "style": style}  # fmt: skip


GOLDS = [
    _gold(
        "phone_a",
        "factual",
        "phone",
        "ES리조트 예약 문의는 043-652-9222로 하시면 됩니다.",
        "043-652-9222",
        ["043-652-9222"],
    ),
    _gold(
        "phone_b",
        "factual",
        "phone",
        "제천 시티투어 예약 전화번호는 043-648-0480입니다.",
        "043-648-0480",
        ["043-648-0480"],
    ),
    _gold(
        "time_a",
        "factual",
        "time",
        "청풍호반 케이블카 첫 운행은 14:54~15:24 사이입니다.",
        "14:54~15:24",
        ["14:54~15:24"],
        "when",
    ),
    _gold(
        "time_b",
        "factual",
        "time",
        "의림지 수리공원은 10:54~11:24에 점검합니다.",
        "10:54~11:24",
        ["10:54~11:24"],
        "when",
    ),
    _gold(
        "price_a",
        "factual",
        "price",
        "네, 디지털 관광주민증이 있으면 시티투어 요금을 3,000원 할인받을 수 있습니다.",
        "3,000원",
        ["3,000원"],
        "yes_no",
    ),
    _gold("price_b", "factual", "price", "가스트로 투어 도심권 A코스 요금은 26,000원입니다.", "26,000원", ["26,000원"]),
    _gold(
        "address_a",
        "factual",
        "address",
        "배론성지의 주소는 제천시 봉양읍 배론성지길 296입니다.",
        "제천시 봉양읍 배론성지길 296",
        ["제천시 봉양읍 배론성지길 296"],
        "where_to_book",
    ),
    _gold(
        "address_b",
        "multihop",
        "address",
        "청풍호반 케이블카는 제천시 청풍면 문화재길 166에 있습니다.",
        "제천시 청풍면 문화재길 166",
        ["제천시 청풍면 문화재길 166"],
    ),
    _gold("count_a", "factual", "count", "ES리조트의 객실은 모두 255개입니다.", "255개", ["255개"], "colloquial"),
    _gold("count_b", "factual", "count", "청풍리조트에는 객실이 451개 있습니다.", "451개", ["451개"]),
    _gold(
        "date_a",
        "factual",
        "date",
        "사자빈신사지 사사자구층석탑은 1963년에 보물로 지정되었습니다.",
        "1963년",
        ["1963년"],
    ),
    _gold("date_b", "factual", "date", "슬로시티 체험장은 2012년에 슬로시티 인증을 받았습니다.", "2012년", ["2012년"]),
    _gold(
        "url_a",
        "factual",
        "url",
        "의림지 자동차극장은 jucc.moonhwain.net에서 예매할 수 있습니다.",
        "jucc.moonhwain.net",
        ["jucc.moonhwain.net"],
        "where_to_book",
    ),
    _gold(
        "url_b",
        "factual",
        "url",
        "제천 관광 정보는 www.jecheon.go.kr/tour에서 볼 수 있습니다.",
        "www.jecheon.go.kr/tour",
        ["www.jecheon.go.kr/tour"],
        "where_to_book",
    ),
    _gold(
        "name_a",
        "factual",
        "name",
        "느티나무횟집의 대표 메뉴는 쏘가리매운탕입니다.",
        "쏘가리매운탕",
        ["쏘가리매운탕"],
        "recommendation",
    ),
    _gold("name_b", "factual", "name", "국립 제천 치유의 숲은 산림청이 운영합니다.", "산림청", ["산림청"]),
    _gold(
        "comparison_a",
        "comparison",
        "name",
        "엽연초하우스입니다. 엽연초하우스는 객실이 8개, 제천 휴게스트하우스는 11개입니다.",
        "엽연초하우스",
        ["엽연초하우스"],
        "difference",
    ),
    _gold(
        "comparison_b",
        "comparison",
        "name",
        "생들기름 선물세트가 40,000P로 돈육세트(50,000P)보다 적습니다.",
        "생들기름 선물세트",
        ["생들기름 선물세트"],
        "difference",
    ),
    _gold(
        "list_a",
        "factual",
        "list",
        "도심권 A코스는 내토전통시장과 중앙시장을 거쳐 빨간오뎅에서 끝납니다.",
        "내토전통시장, 중앙시장, 빨간오뎅",
        ["내토전통시장", "중앙시장", "빨간오뎅"],
    ),
    _gold(
        "list_b",
        "factual",
        "list",
        "청풍권 B코스는 청풍문화재단지와 옥순봉출렁다리를 둘러봅니다.",
        "청풍문화재단지, 옥순봉출렁다리",
        ["청풍문화재단지", "옥순봉출렁다리"],
    ),
    _gold(
        "text_a",
        "descriptive",
        "text",
        "배론성지는 천주교 전파의 중심지이자 박해 속 신앙을 지켜온 교우촌입니다.",
        "천주교 전파의 중심지이자 교우촌",
        ["천주교 전파의 중심지", "교우촌"],
        "how_to",
    ),
    _gold(
        "text_b",
        "descriptive",
        "text",
        "박달재는 박달도령과 금봉낭자의 설화로 유명한 고개입니다.",
        "박달도령과 금봉낭자의 설화",
        ["박달도령과 금봉낭자의 설화"],
    ),
    _gold(
        "multi_a",
        "factual",
        "list",
        "수리공원은 10:00~17:30에 문을 열고 매주 월요일에 쉽니다.",
        "10:00~17:30, 매주 월요일",
        ["10:00~17:30", "매주 월요일"],
        "multi_part",
    ),
    _gold(
        "multi_b",
        "factual",
        "list",
        "카페 너른은 좌석이 200석이고 주차장은 70대 규모입니다.",
        "200석, 70대",
        ["200석", "70대"],
        "multi_part",
    ),
]
BY_ID = {g["id"]: g for g in GOLDS}


def _new_pred(gold, answer, cited=("c001",), retrieved=("c001", "c002"), answerable=True):
    return {
        "id": gold["id"],
        "type": gold["type"],
        "style": gold["style"],
        "answerable": answerable,
        "answer_kind": gold["answer_kind"] if answerable else "abstain",
        "gold_answer": gold["answer"] if answerable else ABSTAIN,
        "gold_answer_short": gold["answer_short"] if answerable else "",
        "gold_key_facts": list(gold["key_facts"]) if answerable else [],
        "gold_chunk_id": "c001",
        "gold_chunk_ids": ["c001"],
        "retrieved_ids": list(retrieved),
        "answer": answer,
        "cited_ids": list(cited),
        "latency_s": 1.0,
        "new_tokens": 10,
        "hit_eos": True,
    }


def _score(gold, answer, **kw):
    context = f"[c001] 제천 여행 > 안내\n{gold['answer']}"
    return M.score_example(_new_pred(gold, answer, **kw), context, CFG)


@pytest.mark.parametrize("gid", sorted(BY_ID))
def test_every_gold_scores_itself_perfectly(gid):
    g = BY_ID[gid]
    s = _score(g, g["answer"] + " [c001]")
    assert s["correct"] and s["failure"] == "ok"
    assert s["em"] == 1.0 and s["contains"] == 1.0 and s["key_fact_recall"] == 1.0
    assert s["f1_morph"] == 1.0 and s["f1_char"] == 1.0 and s["rouge_l_char"] == 1.0
    assert s["slot_exact"] == (1.0 if g["answer_kind"] in M.SLOT_KINDS else None)
    assert (s["citation_ok"], s["citation_p"], s["citation_r"], s["supported"]) == (True, 1.0, 1.0, True)
    # the bare value is a complete answer too (short answers to comparisons, lists, multi-part)
    short = _score(g, g["answer_short"] + " [c001]")
    assert short["correct"] and short["em"] == 1.0 and short["key_fact_recall"] == 1.0


@pytest.mark.parametrize("gid", sorted(BY_ID))
def test_swapped_gold_of_the_same_kind_scores_zero(gid):
    g = BY_ID[gid]
    other = BY_ID[gid[:-1] + ("b" if gid.endswith("a") else "a")]
    assert other["answer_kind"] == g["answer_kind"]
    s = _score(g, other["answer"] + " [c001]")
    assert not s["correct"] and s["failure"] in ("wrong_fact", "hallucination")
    assert s["em"] == 0.0 and s["contains"] == 0.0 and s["key_fact_recall"] == 0.0
    assert s["slot_exact"] in (None, 0.0)
    assert not _score(g, other["answer_short"])["correct"]


@pytest.mark.parametrize(
    ("gold", "wrong"),
    [
        ("043-652-9222", "ES리조트 전화번호는 043-648-0480입니다."),
        ("14:54~15:24", "10:54~11:24에 운행합니다."),
        ("255개", "객실은 451개입니다."),
        ("5,000원", "요금은 15,000원입니다."),  # digit boundary: 5,000 is not inside 15,000
        ("09:00~18:00", "09:00~17:00에 엽니다."),
        ("3,000원", "3,000명이 방문합니다."),  # right number, wrong unit
    ],
)
def test_issue_wrong_values_score_zero_new_and_old_records(gold, wrong):
    """The issue's cases: the old scorer passed them (W_SERIAL → empty morphemes → F1 1.0, or F1 0.5 ≥ 0.5)."""
    assert M.value_in(wrong, gold) is False
    kind = M.infer_answer_kind(gold)
    assert kind in M.SLOT_KINDS
    new = _score(_gold("x", "factual", kind, gold, gold, [gold]), wrong)
    assert not new["correct"] and new["slot_exact"] == 0.0
    old = {
        k: v for k, v in _new_pred(BY_ID["phone_a"], wrong).items() if not k.startswith(("gold_answer_", "gold_key"))
    }
    old.pop("answer_kind")
    old["gold_answer"] = gold  # an old record: the bare value, no answer_kind / key facts
    s = M.score_example(old, "[c001] 안내\n" + gold, CFG)
    assert not s["correct"] and s["answer_kind"] == kind


def test_w_serial_only_strings_are_content_not_empty():
    assert korean.morphemes("043-652-9222") == ["043-652-9222"]
    assert korean.morphemes("10:54~11:24") == ["10:54", "11:24"]
    assert M.f1_morph("043-648-0480", "043-652-9222") == 0.0
    assert M.f1_morph("10:54~11:24", "14:54~15:24") == 0.0
    assert M.f1_morph("전화는 043-652-9222입니다", "043-652-9222") == pytest.approx(2 * (1 / 2) / 1.5)
    assert M.f1_morph("", "") is None and M.rouge_l_char("가", "") is None


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("전화: 043.652.9222", "043-652-9222"),
        ("(043) 652 9222로 연락하세요", "043-652-9222"),
        ("0436529222", "043-652-9222"),
        ("９:００～１８:００", "09:00~18:00"),  # fullwidth
        ("9:00 - 18:00", "09:00~18:00"),
        ("오전 9시부터 오후 6시까지", "09:00~18:00"),
        ("10:00 – 17:30", "10:00~17:30"),
        ("3000원을 할인", "3,000원"),
        ("₩3,000", "3,000원"),
        ("3천 원", "3,000원"),
        ("600,000원 / 1대", "60만원 / 1대"),
        ("7월~8월", "7~8월"),
        ("2025. 10. 1.", "2025년 10월 1일"),
        ("https://www.jecheon.go.kr/tour/", "www.jecheon.go.kr/tour"),
        ("ＥＳ 리조트", "ES리조트"),
        ("제천시 봉양읍 배론성지길 296에 있어요", "제천시 봉양읍 배론성지길 296"),
        ("1시간, 요금 5,000원", "1시간"),
    ],
)
def test_value_normalisation_matches_equivalent_forms(text, value):
    assert M.value_in(text, value)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("043-652-9223", "043-652-9222"),
        ("10:00~17:00", "10:00~17:30"),
        ("1,255개", "255개"),
        ("2550개", "255개"),
        ("제천시 봉양읍 배론성지길 29", "제천시 봉양읍 배론성지길 296"),
        ("1시간 50분", "1시 50분"),  # a duration is not a clock time
        ("소요시간은 1시간 50분입니다", "1시간"),  # a longer duration is a different value
        ("5분 30초", "5분"),
        ("jecheon.go.kr", "www.jecheon.go.kr/tour"),
        ("아무 말", ""),  # an empty value is never found
    ],
)
def test_value_normalisation_keeps_different_values_apart(text, value):
    assert not M.value_in(text, value)


def test_key_fact_recall_with_particles_spacing_order_and_negation():
    assert M.key_fact_recall("시티투어 요금을 3,000원을 할인받아요", ["3,000원"]) == 1.0
    assert M.key_fact_recall("디지털관광주민증이 있으면 됩니다", ["디지털 관광주민증"]) == 1.0
    # multi-word fact, words in another order with other particles: content morphemes all present
    assert M.key_fact_recall("금봉낭자와 박달도령의 설화가 전해집니다", ["박달도령과 금봉낭자의 설화"]) == 1.0
    # a negation the fact lacks: every morpheme of '주차 가능' is in the answer, which says the opposite
    assert M.key_fact_recall("주차가 불가능합니다", ["주차 가능"]) == 0.0
    assert M.key_fact_recall("주차가 가능합니다", ["주차 가능"]) == 1.0
    # numbers are never matched morpheme by morpheme: 3,000 and 원 apart are not '3,000원'
    assert M.key_fact_recall("요금 5,000원, 방문객 3,000명", ["3,000원"]) == 0.0
    assert M.key_fact_recall("내토전통시장과 빨간오뎅", ["내토전통시장", "중앙시장", "빨간오뎅"]) == pytest.approx(
        2 / 3
    )
    assert M.key_fact_recall("아무 답", []) is None


def test_descriptive_partial_key_facts_are_not_correct_at_threshold_one():
    g = BY_ID["list_a"]
    s = _score(g, "내토전통시장과 빨간오뎅을 지납니다 [c001]")
    assert s["key_fact_recall"] == pytest.approx(2 / 3) and not s["correct"]
    lenient = M.ScoreConfig(**{**CFG.__dict__, "correct_key_fact_recall": 0.6})
    assert M.score_example(_new_pred(g, "내토전통시장과 빨간오뎅을 지납니다 [c001]"), g["answer"], lenient)["correct"]


def test_text_path_without_key_facts_needs_every_gold_number():
    # old record, descriptive gold: F1 ≥ 0.5 is not enough when a number of the gold is missing or wrong
    old = dict(_new_pred(BY_ID["text_a"], "30,000원 (2인) [c001]"), gold_answer="30,000원 (1인)")
    for key in ("answer_kind", "gold_answer_short", "gold_key_facts"):
        old.pop(key)
    s = M.score_example(old, "[c001] 안내\n30,000원 (1인)", CFG)
    assert s["answer_kind"] == "text" and s["f1_morph"] >= 0.5 and not s["correct"]
    ok = M.score_example({**old, "answer": "1인 30,000원입니다 [c001]"}, "[c001] 안내\n1인 30,000원", CFG)
    assert ok["correct"]


def test_citation_precision_penalises_extra_citations():
    g = BY_ID["price_a"]
    extra = _score(g, g["answer"] + " [c001][c002]", cited=("c001", "c002"))
    assert (extra["citation_p"], extra["citation_r"], extra["citation_ok"]) == (0.5, 1.0, False)
    assert extra["correct"]  # the answer itself is right; the citation is not
    none = _score(g, g["answer"], cited=())
    assert (none["citation_p"], none["citation_r"], none["citation_ok"]) == (0.0, 0.0, False)
    assert M.citation_scores(["c001", "c003"], ["c001", "c003"]) == (1.0, 1.0, True)
    assert M.citation_scores(["c001"], ["c001", "c003"]) == (1.0, 0.5, False)


def test_prompt_echo_is_a_format_failure_and_earns_no_citation():
    g = BY_ID["price_a"]
    context = f"[c001] 제천 여행 > 디지털 관광주민증\n{g['answer']}\n\n[c002] 제천 여행 > 시티투어\n요금 30,000원"
    echo = "문서: [c001] 제천 여행 > 디지털 관광주민증 " + g["answer"] + " [c002] 제천 여행 > 시티투어"
    s = M.score_example(_new_pred(g, echo, cited=("c001", "c002")), context, CFG)
    assert s["prompt_echo"] and s["format_fail"] and s["failure"] == "format" and not s["correct"]
    assert (s["citation_p"], s["citation_r"], s["citation_ok"], s["supported"]) == (0.0, 0.0, False, False)
    system = "당신은 제천 여행 브로셔를 바탕으로 답하는 안내원입니다. 문서에 답이 없으면 정보가 없다고 답하세요."
    cfg = M.ScoreConfig(**{**CFG.__dict__, "system": system})
    assert M.prompt_echo("당신은 제천 여행 브로셔를 바탕으로 답하는 안내원입니다", "", system, 20)
    assert not M.prompt_echo(g["answer"] + " [c001]", context, system, 20)
    assert M.score_example(_new_pred(g, g["answer"] + " [c001]"), context, cfg)["correct"]


def test_abstentions_reported_separately_and_wrong_abstention():
    g = BY_ID["phone_a"]
    wrong = _score(g, ABSTAIN)  # gold chunk c001 was retrieved
    assert wrong["wrong_abstention"] is True and wrong["failure"] == "wrong_abstention"
    assert wrong["citation_ok"] is None and wrong["supported"] is None  # not an answer: no citation/faithfulness
    assert wrong["slot_exact"] == 0.0 and wrong["key_fact_recall"] == 0.0
    missed = _score(g, ABSTAIN, retrieved=("c002",))
    assert missed["wrong_abstention"] is False and missed["failure"] == "retrieval_miss"
    unans = _score(g, "네, 반려동물 동반이 가능합니다.", answerable=False)
    assert unans["wrong_abstention"] is None and unans["failure"] == "missed_abstention"
    assert unans["supported"] is False  # faithfulness covers answered unanswerable questions too
    preds = [_new_pred(g, ABSTAIN), _new_pred(g, g["answer"] + " [c001]"), _new_pred(g, ABSTAIN, answerable=False)]
    scores = [M.score_example(p, "[c001] 안내\n" + g["answer"], CFG) for p in preds]
    out = M.aggregate(scores, preds)
    assert out["abstention"]["wrong_rate"] == 0.5  # 1 of 2 answerable
    assert out["answer"]["slot_exact"] == 0.5 and out["answer"]["key_fact_recall"] == 0.5
    assert out["citation_acc"] == 1.0  # only the answered one counts


def test_unknown_answer_kind_is_an_error():
    with pytest.raises(ValueError, match="answer_kind"):
        M.score_example(dict(_new_pred(BY_ID["name_a"], "x"), answer_kind="money"), "", CFG)


def test_infer_answer_kind_for_old_records():
    assert [
        M.infer_answer_kind(x) for x in ("043-647-2121", "10:00~17:30", "26,000원", "13개", "jucc.moonhwain.net")
    ] == [
        "phone",
        "time",
        "price",
        "count",
        "url",
    ]
    assert M.infer_answer_kind("제천시 봉양읍 배론성지길 296") == "text"
    assert M.infer_answer_kind("쏘가리매운탕") == "text"


def test_every_metric_has_a_label_and_definition():
    assert all(m.label and m.definition for m in M.METRICS)
    assert {"key_fact_recall", "slot_exact", "citation_p", "citation_r", "wrong_abstain", "prompt_echo"} <= set(
        M.BY_KEY
    )


# ---------------------------------------------------------------- negation, listed candidates, ranges and lists
def _pred(kind, gold_answer, short, facts, answer):
    g = _gold("x", "factual", kind, gold_answer, short, facts)
    return _new_pred(g, answer)


@pytest.mark.parametrize(
    ("answer", "fact"),
    [
        ("네, 반려동물 동반은 불가능합니다.", "가능"),
        ("반려동물 동반은 가능하지 않습니다.", "가능"),
        ("아니요, 무료가 아닙니다.", "무료"),
        ("주차는 안 됩니다", "주차"),
    ],
)
def test_negated_word_value_is_not_found(answer, fact):
    assert not M.key_fact_found(answer, fact)
    assert M.key_fact_recall(answer, [fact]) == 0.0
    assert not M.value_found(answer, fact)
    assert M.contains_match(answer, fact) == 0.0


def test_negated_word_value_scores_zero_on_every_path():
    for kind, answer, short in (
        ("text", "네, 반려동물 동반은 불가능합니다. [c001]", "가능"),
        ("text", "반려동물 동반은 가능하지 않습니다. [c001]", "가능"),
        ("name", "아니요, 무료가 아닙니다. [c001]", "무료"),
    ):
        gold = f"네, {short}합니다." if short == "가능" else "입장료는 무료입니다."
        s = M.score_example(_pred(kind, gold, short, [short], answer), f"[c001] 안내\n{short}", CFG)
        assert s["key_fact_recall"] == 0.0 and not s["correct"], answer
        slot = _pred("address", gold, short, [short], answer)
        assert M.score_example(slot, f"[c001] 안내\n{short}", CFG)["slot_exact"] == 0.0, answer


def test_unnegated_occurrence_still_counts():
    assert M.key_fact_found("입장료 없어요, 무료예요", "무료")
    s = M.score_example(_pred("text", "입장료는 무료입니다.", "무료", ["무료"], "입장료 없어요, 무료예요 [c001]"),
                        "[c001] 안내\n입장료 없음, 무료", CFG)  # fmt: skip
    assert s["key_fact_recall"] == 1.0 and s["correct"]
    assert M.key_fact_found("네, 가능합니다", "가능")
    assert M.key_fact_found("주차는 불가능합니다", "불가능")  # the gold's own prefix is no negation
    assert M.key_fact_found("현장 결제는 안 되지만 온라인 예약은 가능합니다", "가능")
    assert M.value_found("1,000원이 아닙니다", "1,000원")  # numbers keep the plain route


def test_listing_several_phone_numbers_is_not_the_slot_value():
    gold = "ES리조트 예약 문의는 043-648-0480로 하시면 됩니다."
    p = _pred("phone", gold, "043-648-0480", ["043-648-0480"], "043-652-9222, 043-648-0480, 043-641-5114 [c001]")
    ctx = "[c001] 안내\n043-652-9222 043-648-0480 043-641-5114"
    s = M.score_example(p, ctx, CFG)
    assert s["slot_exact"] == 0.0 and not s["correct"]
    one = M.score_example({**p, "answer": "043-648-0480로 문의하세요 [c001]"}, ctx, CFG)
    assert one["slot_exact"] == 1.0 and one["correct"]
    loose = M.ScoreConfig(**{**CFG.__dict__, "slot_max_extra_values": 2})
    assert M.score_example(p, ctx, loose)["slot_exact"] == 1.0
    ref = M.gold_reference(p)
    assert M.extra_values("043-652-9222, 043-648-0480, 043-641-5114", ref) == 2
    assert M.slot_match(p["answer"], ref) and not M.slot_match(p["answer"], ref, 0)  # None: not checked
    # another family is no candidate list: a price answer may give the phone number to call
    price = M.gold_reference(_pred("price", "요금은 3,000원입니다.", "3,000원", ["3,000원"], ""))
    assert M.slot_match("3,000원이며 문의는 043-641-5114입니다", price, 0)


def test_closing_kkaji_and_a_gold_listing_several_values():
    assert M.value_in("운영기간은 6월~9월 초입니다.", "6월부터 9월 초까지")
    assert M.value_in("09:00부터 18:00까지 운영합니다", "09:00~18:00")
    assert not M.value_in("운영기간은 6월~8월입니다.", "6월부터 9월 초까지")
    closing = M.gold_reference(_pred("date", "휴무일은 월요일과 근로자의 날입니다.", "월요일과 근로자의 날", [], ""))
    assert M.slot_match("매주 월요일 및 근로자의 날은 휴무입니다", closing, 0)
    assert not M.slot_match("매주 월요일은 휴무입니다", closing, 0)
    weekly = M.gold_reference(
        _pred("date", "휴무일은 매주 월요일과 근로자의 날입니다.", "매주 월요일, 근로자의 날", [], "")
    )
    assert M.slot_match("근로자의 날과 월요일에 쉽니다", weekly, 0)  # a weekday closing is weekly anyway
    monthly = M.gold_reference(
        _pred("date", "휴무일은 매월 첫째 월요일과 설날입니다.", "매월 첫째 월요일과 설날", [], "")
    )
    assert not M.slot_match("월요일과 설날에 쉽니다", monthly, 0)
    assert M._gold_parts("사과 농장") == []  # a split into a single letter is no list


def test_a_prefix_letter_negates_only_as_a_prefix():
    assert M.key_fact_found("나무데크 산책로를 따라 걷습니다", "데크 산책로")  # 나무 is a word, not 무-
    assert not M.key_fact_found("비공개입니다", "공개")
    assert not M.key_fact_found("현재 미운영 중입니다", "운영")
