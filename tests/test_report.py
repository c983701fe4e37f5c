"""report stage on fixture predictions/metrics in tmp_path: numbers in the markdown, figures, missing inputs."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ABSTAIN, EVALUATE_PARAMS, EVALUATE_PROFILE

from stages import report as R
from stages.common import metrics as M
from stages.common import params as P
from stages.common.errors import UserError
from stages.common.prompting import cited_ids

PARAMS = {
    "profile": "cpu",
    "data": {"pdf": "data/other_brochure.pdf", "truth": ""},
    "retrieval": {"method": "hybrid", "top_k": 2},
    "prompt": {"system": "문서로만 답하세요.", "abstain": ABSTAIN},
    "train": {"lora_r": 16, "learning_rate": 0.0002},
    "evaluate": EVALUATE_PARAMS,
    "report": {
        "seed": 13,
        "n_resamples": 300,
        "ci": 0.95,
        "max_example_chars": 80,
        "figure_dpi": 40,
        "targets": {
            "natural": {"abstain_r": [{"min": 0.8}]},
            "template": {
                "f1_char": [{"vs": "baseline", "delta_min": 0.4}, {"vs": "baseline_fewshot", "ci_low_above": 0.0}],
                "wrong_abstention_share": [{"max": 0.15}],
                "citation_ok": [{"min": 1.01}],
            },
        },
    },
    "profiles": {"cpu": {"model": {"name": "tiny-gemma"}, "index": {"embedder": "fake"}, "evaluate": EVALUATE_PROFILE}},
}
CONTEXT = "[c001] 케이블카\n주소: 제천시 청풍면 문화재길 166 전화 043-641-5532"
GOLD = {
    "q0001": "제천시 청풍면 문화재길 166",
    "q0002": "043-641-5532",
    "q0003": "제천시 청풍면",
    "q0004": "문화재길 166",
}
CFG = M.ScoreConfig.from_params(
    P.make_section("evaluate", EVALUATE_PARAMS), P.make_section("prompt", {"abstain": ABSTAIN, "system": ""})
)


def _records(model: str, testset: str = "template") -> list[dict]:
    """finetuned: all right; baseline: all wrong; baseline_fewshot: first two answerable right, abstains on q0005."""
    out = []
    for n, (qid, gold) in enumerate(GOLD.items()):
        right = model == "finetuned" or (model == "baseline_fewshot" and n < 2)
        answer = f"{gold} [c001]" if right else "단양군 매포읍 999번지"
        out.append(_rec(qid, "factual", True, gold, answer, style="direct" if n % 2 == 0 else "yes_no"))
    for qid in ("q0005", "q0006"):
        abstains = model == "finetuned" or (model == "baseline_fewshot" and qid == "q0005")
        answer = ABSTAIN if abstains else "케이블카 요금은 99,000원입니다"
        out.append(_rec(qid, "unanswerable", False, ABSTAIN, answer, style="policy"))
    if testset == "natural":
        out = [{**r, "id": r["id"].replace("q", "n"), "testset": "natural"} for r in out]
    return out


def _rec(qid, qtype, answerable, gold, answer, style="direct"):
    p = {
        "id": qid,
        "question": f"{qid} 질문은?",
        "type": qtype,
        "style": style,
        "answerable": answerable,
        "gold_answer": gold,
        "gold_chunk_id": "c001",
        "retrieved_ids": ["c001", "c002"],
        "answer": answer,
        "cited_ids": cited_ids(answer),
        "latency_s": 0.5,
        "new_tokens": 5,
        "hit_eos": True,
    }
    p["scores"] = M.score_example(p, CONTEXT, CFG)
    return p


def write_eval(eval_dir: Path, metrics_dir: Path, testsets=("template",), models=None, records=_records) -> None:
    """predictions + metrics files as evaluate writes them; test sets not listed are recorded as skipped."""
    for model in models or R.MODELS:
        for ts in R.TESTSETS:
            d = eval_dir / model / ts
            d.mkdir(parents=True, exist_ok=True)
            recs = records(model, ts) if ts in testsets else []
            (d / "predictions.jsonl").write_text(
                "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8"
            )
            info = {"model": model, "testset": ts, "skipped": ts not in testsets}
            if ts in testsets:
                info.update(
                    {
                        "wall_seconds": 12.5,
                        "prompt_tokens_mean": 800.0 if model == "baseline_fewshot" else 400.0,
                        "fewshot_k": 4 if model == "baseline_fewshot" else 0,
                    }
                )
            else:
                info["reason"] = "natural.jsonl: not found"
            (metrics_dir / "eval" / model).mkdir(parents=True, exist_ok=True)
            (metrics_dir / "eval" / model / f"{ts}.json").write_text(json.dumps(info), encoding="utf-8")


@pytest.fixture(scope="module")
def fixture_dirs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS, allow_unicode=True), encoding="utf-8")
    m = root / "metrics"
    write_eval(root / "eval", m, testsets=("template",))
    (m / "dataset.json").write_text(
        json.dumps(
            {
                "total": 16,
                "train": {
                    "questions": 10,
                    "answerable": 7,
                    "unanswerable": 3,
                    "chunks": 4,
                    "by_type": {"factual": 7, "unanswerable": 3},
                    "by_fact": {"address": 7, "none": 3},
                },
                "test": {
                    "questions": 6,
                    "answerable": 4,
                    "unanswerable": 2,
                    "chunks": 2,
                    "by_type": {"factual": 4, "unanswerable": 2},
                    "by_fact": {"address": 4, "none": 2},
                },
            }
        ),
        encoding="utf-8",
    )
    (m / "retrieval.json").write_text(
        json.dumps(
            {
                "bm25": {"recall@1": 0.5, "recall@3": 0.75, "mrr": 0.625, "ndcg@10": 0.7},
                "hybrid": {"recall@1": 0.9, "recall@3": 1.0, "mrr": 0.95, "ndcg@10": 0.96},
                "n_questions": 4,
                "embedder": "fake",
                "n_chunks": 3,
            }
        ),
        encoding="utf-8",
    )
    plots = root / "plots"
    plots.mkdir()
    (plots / "train_loss.csv").write_text("step,loss\n1,2.5\n2,1.5\n3,0.75\n", encoding="utf-8")
    qa = root / "qa"
    qa.mkdir()
    (qa / "train.jsonl").write_text(
        json.dumps(
            {
                "id": "q0100",
                "question": "케이블카 주소는?",
                "answer": "제천시",
                "answerable": True,
                "type": "factual",
                "fact": "address",
                "chunk_id": "c001",
            },
            ensure_ascii=False,
        )
        + "\n",
        encoding="utf-8",
    )
    return root


def _run(root: Path, out: str, **extra) -> Path:
    argv = [
        "--eval",
        str(extra.get("eval", root / "eval")),
        "--metrics-dir",
        str(extra.get("metrics", root / "metrics")),
        "--plots",
        str(extra.get("plots", root / "plots")),
        "--qa",
        str(root / "qa"),
        "--out",
        str(root / out),
        "--comparison",
        str(root / f"{out}.json"),
        "--params",
        str(extra.get("params", root / "params.yaml")),
        "--plot-metrics",
        str(root / f"{out}_plots" / "metrics.csv"),
        "--plot-types",
        str(root / f"{out}_plots" / "styles.csv"),
    ]
    R.main(argv)
    return root / out


SECTIONS = (
    "## 1. 개요",
    "## 2. 데이터셋 구축",
    "### PDF 전처리",
    "## 3. 베이스라인 모델과 지표 선택",
    "## 4. 파인튜닝",
    "### 하이퍼파라미터",
    "### 손실 곡선",
    "### 만난 문제와 해결",
    "## 5. 비교",
    "#### 정성 비교",
    "#### 실패 분석 — 실패 유형별",
    "#### 실패 분석 — 질문 스타일별",
    "### 개선점과 한계",
    "## 6. 코드",
    "## 7. 결론과 다음 단계",
)


def _row(md: str, first_cell: str, after: str = "## 5. 비교") -> str:
    """The first markdown table row starting with `| first_cell |` after the heading `after`."""
    rows = [line for line in md[md.index(after) :].splitlines() if line.startswith(f"| {first_cell} |")]
    assert rows, first_cell
    return rows[0]


def test_report_three_models_numbers_and_figures(fixture_dirs):
    out = _run(fixture_dirs, "report")
    md = (out / "REPORT.md").read_text(encoding="utf-8")
    for heading in SECTIONS:
        assert heading in md, heading
    assert "{{" not in md and "{%" not in md  # the template rendered fully
    # any brochure: the title and the setup table name the PDF given in params, no sample city
    assert md.startswith("# 관광 브로셔 RAG — 실험 보고서 (`other_brochure.pdf`)\n")
    assert "| 브로셔 (params `data.pdf`) | `data/other_brochure.pdf` |" in md and "제천 여행" not in md
    # columns: zero-shot, few-shot, fine-tuned, then Δ [CI] verdict vs zero-shot and vs few-shot.
    # All 4 answerable: zero-shot wrong, few-shot 2 right, fine-tuned right -> EM 0 / 0.5 / 1.
    em = _row(md, "EM")
    assert em.startswith("| EM | 0.000 | 0.500 | 1.000 | +1.000 [+1.000, +1.000] ▲ 개선 | +0.500 [")
    assert em.endswith("▲ 개선 |") or em.endswith("= 차이 불확실 |")
    # the zero-shot baseline never abstains: its abstention precision is undefined, not 0
    assert _row(md, "기권 정밀도").startswith("| 기권 정밀도 | – | 1.000 | 1.000 | – | +0.000 ")
    assert _row(md, "기권 재현율").startswith(
        "| 기권 재현율 | 0.000 | 0.500 | 1.000 | +1.000 [+1.000, +1.000] ▲ 개선 |"
    )
    # dataset and retrieval tables come from the metrics files
    assert "| train | 10 | 7 | 3 | 4 | 7 | 3 |" in md
    assert "| **hybrid** (사용) | 0.900 | 1.000 | 0.950 | 0.960 |" in md
    # failure taxonomy per model: zero-shot 4 hallucinations + 2 missed abstentions; few-shot 2 + 1; fine-tuned none
    assert "| 환각 | 답의 숫자/내용이 문맥에 없음 | 4 | 2 | 0 |" in md
    assert "| 기권 누락 | 답이 없는 질문에 답을 지어냄 | 2 | 1 | 0 |" in md
    # per style: direct = q0001, q0003; yes_no = q0002, q0004; policy = the two unanswerable
    assert _row(md, "direct").startswith("| direct | 2 | 0.000 | 0.500 | 1.000 | – |")  # fine-tuned: no failure
    assert _row(md, "yes_no").startswith("| yes_no | 2 | 0.000 | 0.500 | 1.000 |")
    assert _row(md, "policy").startswith("| policy | 2 | 0.000 | 0.500 | 1.000 |")
    # one example per failure type and per style (fine-tuned has none: from the other models)
    assert "| 환각 | 베이스라인(few-shot) | `q0003` |" in md
    assert "| yes_no | 베이스라인(few-shot) | 환각 | `q0004` |" in md
    # cost table from metrics/eval/<model>/template.json
    assert "| 베이스라인(few-shot) | 4 | 800.0 | 12.5 | 0.50 |" in md
    assert "train loss 2.500 (step 1) → 0.750 (step 3)" in md
    assert md.count("**예시 ") >= 3
    # issue targets from params report.targets: met / missed / not measured (skipped test set)
    assert (
        "| 템플릿 테스트셋 | 문자 F1 | 파인튜닝 − 베이스라인(zero-shot): Δ ≥ +0.40 | +1.000 [+1.000, +1.000] | ✅ 충족 |"
        in md
    )
    assert (
        "| 템플릿 테스트셋 | 문자 F1 | 파인튜닝 − 베이스라인(few-shot): 95% CI 하한 > +0.00 | +0.500 [+0.000, +1.000] | ❌ 미달 |"
        in md
    )
    assert "| 템플릿 테스트셋 | 잘못된 기권 비율 | 파인튜닝: ≤ 0.15 | 0.000 | ✅ 충족 |" in md
    assert "| 템플릿 테스트셋 | 인용 정확도 | 파인튜닝: ≥ 1.01 | 1.000 | ❌ 미달 |" in md
    assert "| 자연 질문 테스트셋 | 기권 재현율 | 파인튜닝: ≥ 0.80 | – | – 측정 안 됨 |" in md
    assert "자연 질문 테스트셋 | 건너뜀 — natural.jsonl: not found" in md
    assert "_건너뜀: natural.jsonl: not found_" in md
    for name in ("loss_curve", "metrics_template", "by_style_template", "failures_template"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
    assert not (out / "figures" / "metrics_natural.png").exists()
    comp = json.loads((fixture_dirs / "report.json").read_text(encoding="utf-8"))
    t = comp["testsets"]["template"]
    assert comp["testsets"]["natural"] == {"skipped": True, "reason": "natural.jsonl: not found"}
    assert t["values"]["em"] == {"baseline": 0.0, "baseline_fewshot": 0.5, "finetuned": 1.0}
    assert t["pairs"]["finetuned-baseline"]["em"] == {
        "reference": 0.0,
        "finetuned": 1.0,
        "delta": 1.0,
        "ci_low": 1.0,
        "ci_high": 1.0,
    }
    assert t["pairs"]["finetuned-baseline_fewshot"]["em"]["delta"] == 0.5
    # every non-optional metric has a row in every pair, undefined ones as None (the zero-shot never abstains)
    assert set(t["pairs"]["finetuned-baseline"]) == {m.key for m in M.METRICS if not m.optional}
    assert t["pairs"]["finetuned-baseline"]["abstain_p"]["reference"] is None
    assert t["by_type"]["unanswerable"]["n"] == 2 and "em" not in t["by_type"]["unanswerable"]
    assert t["by_style"]["policy"]["abstain_r"] == {"baseline": 0.0, "baseline_fewshot": 0.5, "finetuned": 1.0}
    assert t["failures"]["finetuned"]["ok"] == 6 and t["wrong_abstention_share"]["finetuned"] == 0.0
    assert [r["status"] for r in comp["targets"]] == ["not measured", "missed", "met", "missed", "met"]
    assert t["cost"]["baseline_fewshot"] == {"wall_seconds": 12.5, "prompt_tokens_mean": 800.0, "fewshot_k": 4}
    # rows derive from METRICS: every metric with values is in comparison.json, judge off -> no judge keys
    assert {m.key for m in M.METRICS} - set(t["values"]) == {"judge_correct"}
    assert "judge_agreement" not in t and "LLM 판정 정답률" not in md and "일치도" not in md
    # the CSVs `dvc plots` draws: one bar per (metric, model, test set) with a value, per (style, model)
    with open(fixture_dirs / "report_plots" / "metrics.csv", encoding="utf-8") as fh:
        bars = {r["label"]: float(r["value"]) for r in csv.DictReader(fh)}
    assert bars["em · baseline · template"] == 0.0 and bars["em · baseline_fewshot · template"] == 0.5
    assert "abstain_p · baseline · template" not in bars  # undefined: no bar
    with open(fixture_dirs / "report_plots" / "styles.csv", encoding="utf-8") as fh:
        styles = {r["label"]: float(r["correct"]) for r in csv.DictReader(fh)}
    assert styles["template yes_no (n=2) · baseline_fewshot"] == 0.5
    assert styles["template policy (n=2) · finetuned"] == 1.0


def test_report_both_test_sets(fixture_dirs, tmp_path):
    write_eval(tmp_path / "eval", tmp_path / "metrics", testsets=("template", "natural"))
    out = _run(fixture_dirs, "both", eval=tmp_path / "eval", metrics=tmp_path / "metrics")
    md = (out / "REPORT.md").read_text(encoding="utf-8")
    assert "### 자연 질문 테스트셋" in md and "건너뜀" not in md
    assert md.count("| EM | 0.000 | 0.500 | 1.000 |") == 2  # one table per test set
    assert "`n0001`" in md
    assert (out / "figures" / "metrics_natural.png").is_file()
    comp = json.loads((fixture_dirs / "both.json").read_text(encoding="utf-8"))
    assert comp["testsets"]["natural"]["n"] == 6


def test_report_without_fewshot_and_misaligned(fixture_dirs, tmp_path):
    write_eval(tmp_path / "eval", tmp_path / "metrics", models=("baseline", "finetuned"))
    out = _run(fixture_dirs, "twomodels", eval=tmp_path / "eval", metrics=tmp_path / "metrics")
    md = (out / "REPORT.md").read_text(encoding="utf-8")
    assert _row(md, "EM").startswith("| EM | 0.000 | – | 1.000 | +1.000 [+1.000, +1.000] ▲ 개선 | – |")
    assert "few-shot 베이스라인 예측이 없어 그 비교는 하지 않았다" in md
    comp = json.loads((fixture_dirs / "twomodels.json").read_text(encoding="utf-8"))
    assert list(comp["testsets"]["template"]["pairs"]) == ["finetuned-baseline"]
    # different questions per model: one clear error; no fine-tuned predictions: another
    (tmp_path / "eval" / "finetuned" / "template" / "predictions.jsonl").write_text(
        json.dumps(_records("finetuned")[0], ensure_ascii=False) + "\n", encoding="utf-8"
    )
    with pytest.raises(UserError, match="cover different questions"):
        _run(fixture_dirs, "bad", eval=tmp_path / "eval", metrics=tmp_path / "metrics")
    (tmp_path / "eval" / "finetuned" / "template" / "predictions.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(UserError, match="template test set lacks predictions of finetuned"):
        _run(fixture_dirs, "bad", eval=tmp_path / "eval", metrics=tmp_path / "metrics")


def test_report_is_deterministic(fixture_dirs):
    a = (_run(fixture_dirs, "r1") / "REPORT.md").read_bytes()
    b = (_run(fixture_dirs, "r2") / "REPORT.md").read_bytes()
    assert a == b
    assert (fixture_dirs / "r1/figures/metrics_template.png").read_bytes() == (
        fixture_dirs / "r2/figures/metrics_template.png"
    ).read_bytes()


def test_report_tolerates_missing_optional_inputs(fixture_dirs, tmp_path):
    write_eval(tmp_path / "eval", tmp_path / "no-metrics")
    for f in (tmp_path / "no-metrics" / "eval").rglob("*.json"):
        f.unlink()  # no run-info files either: prompt tokens fall back to the predictions
    out = _run(fixture_dirs, "bare", eval=tmp_path / "eval", metrics=tmp_path / "no-metrics", plots=tmp_path / "no")
    md = (out / "REPORT.md").read_text(encoding="utf-8")
    assert "metrics/dataset.json` 없음" in md and "손실 곡선 생략" in md
    assert "| 베이스라인(zero-shot) | – | 0.0 | – | 0.50 |" in md
    assert not (out / "figures" / "loss_curve.png").exists()
    assert (out / "figures" / "metrics_template.png").is_file()


def test_prose_lives_in_the_template(fixture_dirs, tmp_path):
    """Rewording the template changes the report without touching code; a typo in it fails loudly."""
    import jinja2

    ctx_file = tmp_path / "REPORT.md.j2"
    ctx_file.write_text("# {{ model_name }} — {{ template.n }}문항\n", encoding="utf-8")
    assert R.render({"model_name": "tiny", "template": {"n": 6}}, ctx_file) == "# tiny — 6문항\n"
    ctx_file.write_text("{{ no_such_number }}\n", encoding="utf-8")
    with pytest.raises(jinja2.UndefinedError):
        R.render({}, ctx_file)


def test_citation_misses_separate_id_mix_ups_from_the_rest():
    from stages.report.compare import citation_misses

    def pred(retrieved, cited, ok, correct, gold="c002"):
        scores = {"citation_ok": ok, "correct": correct}
        return {"gold_chunk_id": gold, "retrieved_ids": retrieved, "cited_ids": cited, "scores": scores}

    preds = [
        pred(["c002", "c003"], ["c002"], True, True),  # right
        pred(["c002", "c003"], ["c003"], False, True),  # gold first, the neighbour cited, the value right
        pred(["c002", "c003"], ["c003"], False, False),  # the same, the value wrong
        pred(["c003", "c002"], ["c003"], False, True),  # gold second: not counted
        pred(["c002", "c003"], [], False, False),  # nothing cited: not an id mix-up
        pred(["c002", "c003"], ["c002", "c003"], False, True),  # the gold with an extra: not an id mix-up
        pred(["c001"], [], None, False, gold=None),  # unanswerable: citation not scored
    ]
    assert citation_misses(preds) == {
        "scored": 6,
        "missed": 5,
        "gold_first_other_cited": 2,
        "gold_first_other_cited_correct": 1,
    }


def test_report_says_where_wrong_citations_come_from(fixture_dirs, tmp_path):
    def miscited(model, testset):
        recs = _records(model, testset)
        if model != "finetuned":
            return recs
        return [
            _rec(r["id"], r["type"], True, r["gold_answer"], r["answer"].replace("[c001]", "[c002]"), r["style"])
            if r["answerable"]
            else r
            for r in recs
        ]

    write_eval(tmp_path / "eval", tmp_path / "metrics", records=miscited)
    out = _run(fixture_dirs, "miscited", eval=tmp_path / "eval", metrics=tmp_path / "metrics")
    md = (out / "REPORT.md").read_text(encoding="utf-8")
    assert "인용 오류: 파인튜닝은 인용을 채점한 4문항 중 4문항에서 정답 청크를 인용하지 못했고, 그중 4문항은" in md
    assert "(그중 4문항은 답 자체는 정답" in md
    comp = json.loads((fixture_dirs / "miscited.json").read_text(encoding="utf-8"))
    assert comp["testsets"]["template"]["citation_misses"]["baseline"]["gold_first_other_cited"] == 0
    # every citation right: no such line
    assert "인용 오류:" not in (_run(fixture_dirs, "r1") / "REPORT.md").read_text(encoding="utf-8")


def test_next_steps_fit_the_profile(fixture_dirs, tmp_path):
    """The next steps name the cpu profile's rounds and the runpod rerun only in a cpu-profile report."""
    cpu = (_run(fixture_dirs, "r1") / "REPORT.md").read_text(encoding="utf-8")
    runpod_params = {**PARAMS, "profile": "runpod", "profiles": {"runpod": PARAMS["profiles"]["cpu"]}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(runpod_params, allow_unicode=True), encoding="utf-8")
    runpod = (_run(fixture_dirs, "runpod", params=tmp_path / "params.yaml") / "REPORT.md").read_text(encoding="utf-8")
    steps = {name: md[md.index("다음 단계:") :] for name, md in (("cpu", cpu), ("runpod", runpod))}
    assert "runpod 프로필(지시 학습 모델 + QLoRA)에서 같은 비교를 반복한다" in steps["cpu"]
    assert "runpod 프로필(" not in steps["runpod"]
    assert "더 큰 모델에서 같은 혼합을 다시 시험하고" in steps["cpu"]
    assert "이 모델에서 같은 혼합" in steps["runpod"] and "더 큰 모델에서" not in steps["runpod"]
    assert "| 프로필 (params `profile`) | `runpod` |" in runpod


def test_pick_examples_rules():
    base, tuned = _records("baseline"), _records("finetuned")
    tuned[1] = {**base[1]}  # q0002: no change -> smallest gain
    picks = R.pick_examples(base, tuned)
    ids = [base[i]["id"] for _, i in picks]
    assert ids[0] == "q0001"  # first of the largest gains (ties broken by order)
    assert ids[1] == "q0002" and "하락 사례 없음" in picks[1][0]
    assert base[picks[2][1]]["type"] == "unanswerable"


def test_report_with_judge_verdicts_shows_agreement(fixture_dirs, tmp_path):
    """Judge verdicts in the predictions: judge row with CI, kappa/agreement table, comparison.json entry."""

    def judged(model, ts):
        recs = _records(model, ts)
        for n, r in enumerate(recs):
            # the judge agrees with `correct` except on the fine-tuned model's first example
            verdict = int(r["scores"]["correct"]) ^ int(model == "finetuned" and n == 0)
            r["judge"] = {"correct": verdict, "reason": "테스트"}
            r["scores"]["judge_correct"] = bool(verdict)
        return recs

    write_eval(tmp_path / "eval", tmp_path / "metrics", models=("baseline", "finetuned"), records=judged)
    out = _run(fixture_dirs, "judged", eval=tmp_path / "eval", metrics=tmp_path / "metrics")
    md = (out / "REPORT.md").read_text(encoding="utf-8")
    t = json.loads((fixture_dirs / "judged.json").read_text(encoding="utf-8"))["testsets"]["template"]
    # baseline: all 6 wrong by both -> agreement 1, kappa undefined; fine-tuned: 5/6 agree, judge says 5 correct
    assert t["values"]["judge_correct"]["baseline"] == 0.0
    assert t["values"]["judge_correct"]["finetuned"] == pytest.approx(5 / 6, abs=1e-4)
    base_a, tuned_a = t["judge_agreement"]["baseline"], t["judge_agreement"]["finetuned"]
    assert base_a["agreement"] == 1.0 and base_a["kappa"] is None and base_a["both_wrong"] == 6
    assert tuned_a["agreement"] == pytest.approx(5 / 6, abs=1e-4) and tuned_a["only_deterministic"] == 1
    assert tuned_a["kappa"] == 0.0  # `correct` is constant (all 1): no agreement beyond chance
    assert _row(md, "LLM 판정 정답률").startswith("| LLM 판정 정답률 | 0.000 | – | 0.833 | +0.833 ")
    assert "#### LLM 판정과 결정적 지표의 일치도" in md
    assert "| 파인튜닝 | 6 | 0 | 0.833 | 0.000 | 5 | 1 | 0 | 0 |" in md
    assert "| 베이스라인(zero-shot) | 6 | 0 | 1.000 | – | 0 | 0 | 0 | 6 |" in md


def test_bad_target_condition_is_one_clear_error():
    with pytest.raises(UserError, match="report.targets.template.f1_char: conditions use"):
        R.check_targets({"testsets": {}}, {"template": {"f1_char": [{"above": 0.5}]}})


def test_metric_table_rows_come_from_the_scorer(fixture_dirs):
    """Every metric the report has values for gets a row in the metric table, with the label and
    definition of stages.common.metrics.METRICS (no stale second copy), and its reason where one is written."""
    from stages.report import compare

    md = (_run(fixture_dirs, "docs") / "REPORT.md").read_text(encoding="utf-8")
    head = "| 지표 | 정의 | 선택 이유 |"
    assert head in md
    table = md[md.index(head) :].split("\n\n", 1)[0].splitlines()[2:]
    rows = {r.split(" | ")[0].lstrip("| "): r for r in table}
    for m in M.METRICS:
        if m.optional:
            continue  # the judge did not run here
        assert m.label and m.definition, m.key
        assert m.label in rows, m.key
        cells = [c.strip() for c in rows[m.label].strip("|").split("|")]
        assert cells[1] == m.definition.strip(), m.key
    assert rows["인용 정확도"].rstrip(" |").endswith(M.BY_KEY["citation_ok"].why)
    assert "정답 청크가 검색된 답변 가능 질문에서 그 청크를 [cNNN]으로 인용한 비율" not in md  # the stale definition
    assert compare.metric_doc("no_such_metric") == ("no_such_metric", "–", "–")


def test_style_table_keeps_every_column_for_unanswerable_only_styles():
    from stages.report.tables import style_table

    failures = {m: {"ok": 1} for m in ("baseline", "baseline_fewshot", "finetuned")}
    three = {"baseline": 0.0, "baseline_fewshot": 0.5, "finetuned": 1.0}
    by_style = {
        "direct": {"n": 2, "correct": three, "key_fact_recall": three, "failures": failures},
        "policy": {"n": 1, "correct": three, "failures": failures},  # unanswerable only: no key-fact recall
    }
    lines = [line for line in style_table({"by_style": by_style}).splitlines() if line.startswith("|")]
    assert {line.count("|") for line in lines} == {10}  # 9 columns: style, n, 3 correct, 3 key-fact recall, failure
    assert lines[-1].startswith("| policy | 1 | 0.000 | 0.500 | 1.000 | – | – | – |")


def _seed_spread_with_worse_run(tmp_path: Path):
    """scripts/seed_spread.py as a module, and in tmp_path/worse{,_m} a second training whose fine-tune answers
    exactly as the zero-shot baseline does."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import seed_spread

    write_eval(
        tmp_path / "worse", tmp_path / "worse_m", models=["finetuned"], records=lambda m, ts: _records("baseline", ts)
    )
    return seed_spread


def test_seed_spread_compares_each_training_with_the_same_baselines(tmp_path):
    """scripts/seed_spread.py: every run's fine-tune against the pipeline's baselines, by the report's own code."""
    S = _seed_spread_with_worse_run(tmp_path)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(PARAMS, allow_unicode=True), encoding="utf-8")
    write_eval(tmp_path / "eval", tmp_path / "metrics", testsets=("template",))
    out = tmp_path / "spread.json"
    S.main(
        [
            *("--run", f"good={tmp_path / 'eval'},{tmp_path / 'metrics' / 'eval'}"),
            *("--run", f"worse={tmp_path / 'worse'},{tmp_path / 'worse_m' / 'eval'}"),
            *("--baselines", f"{tmp_path / 'eval'},{tmp_path / 'metrics' / 'eval'}"),
            *("--out", str(out), "--params", str(params)),
        ]
    )
    d = json.loads(out.read_text(encoding="utf-8"))
    good, worse = d["runs"]["good"], d["runs"]["worse"]
    assert good["finetuned"]["template.f1_char"] == 1.0 and worse["finetuned"]["template.f1_char"] == 0.0
    assert d["summary"]["spread"]["template.f1_char"] == {"mean": 0.5, "sd": 0.7071, "min": 0.0, "max": 1.0}
    # the same comparison the report stage makes: f1 delta vs zero-shot >= 0.4 holds for the good run only
    met = {(t["metric"], json.dumps(t["condition"], sort_keys=True)): t["runs_met"] for t in d["summary"]["targets"]}
    assert met[("f1_char", json.dumps({"delta_min": 0.4, "vs": "baseline"}, sort_keys=True))] == 1
    # natural set skipped: not measured in either run
    assert met[("abstain_r", json.dumps({"min": 0.8}, sort_keys=True))] == 0
    assert worse["vs_fewshot"]["template.f1_char"]["delta"] < 0 < good["vs_fewshot"]["template.f1_char"]["delta"]
    with pytest.raises(SystemExit, match="is not NAME=EVAL_DIR,METRICS_DIR"):
        S.main(["--run", "broken", "--params", str(params)])

    # a retraining replaces the committed adapter: its recorded row is kept under a new name, the summary covers all
    kept = tmp_path / "spread3.json"
    again = [*("--run", f"good={tmp_path / 'eval'},{tmp_path / 'metrics' / 'eval'}")]
    common = [*("--baselines", f"{tmp_path / 'eval'},{tmp_path / 'metrics' / 'eval'}"), "--params", str(params)]
    S.main([*again, "--keep", str(out), "--rename", "good=good_before", "--out", str(kept), *common])
    d3 = json.loads(kept.read_text(encoding="utf-8"))
    assert list(d3["runs"]) == ["good_before", "worse", "good"] and d3["runs"]["good_before"] == good
    assert d3["summary"]["runs"] == 3 and d3["summary"]["spread"]["template.f1_char"]["mean"] == 0.6667
    with pytest.raises(SystemExit, match="a kept row has that name"):
        S.main([*again, "--keep", str(out), "--out", str(kept), *common])
    with pytest.raises(SystemExit, match="has no run 'nope'"):
        S.main([*again, "--keep", str(out), "--rename", "nope=x", "--out", str(kept), *common])


def test_report_shows_the_seed_spread_only_for_its_own_training(fixture_dirs, tmp_path):
    """REPORT.md gets the over-several-trainings table when metrics/seed_spread.json holds this very fine-tune
    (one run with its exact values); a spread of other trainings (another brochure, an older adapter) is left out."""
    import shutil

    S = _seed_spread_with_worse_run(tmp_path)
    metrics = tmp_path / "metrics"
    shutil.copytree(fixture_dirs / "metrics", metrics)
    this = f"this={fixture_dirs / 'eval'},{metrics / 'eval'}"
    other = f"other={tmp_path / 'worse'},{tmp_path / 'worse_m' / 'eval'}"
    common = [
        "--baselines",
        f"{fixture_dirs / 'eval'},{metrics / 'eval'}",
        "--params",
        str(fixture_dirs / "params.yaml"),
    ]

    S.main(["--run", this, "--run", other, "--out", str(metrics / "seed_spread.json"), *common])
    md = (_run(fixture_dirs, "rep_spread", metrics=metrics) / "REPORT.md").read_text(encoding="utf-8")
    assert "#### 학습 반복에 따른 편차" in md and "2번 학습한" in md and "| 학습 | 템플릿 핵심 사실 재현율 |" in md
    assert _row(md, "this (이 보고서)", "#### 학습 반복에 따른 편차").endswith(
        "| – | 1.000 | 1.000 | 1.000 | 0.000 | 2/5 |"
    )
    assert _row(md, "other", "#### 학습 반복에 따른 편차").endswith("| – | 0.000 | 0.000 | 0.000 | 0.000 | 1/5 |")
    assert "학습은 seed 하나로 한 번 했다" not in md

    S.main(["--run", other, "--out", str(metrics / "seed_spread.json"), *common])
    md = (_run(fixture_dirs, "rep_spread_other", metrics=metrics) / "REPORT.md").read_text(encoding="utf-8")
    assert "학습 반복에 따른 편차" not in md and "학습은 seed 하나로 한 번 했다" in md
