"""report stage on fixture predictions/metrics in tmp_path: numbers in the markdown, figures, missing inputs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from conftest import ABSTAIN, EVALUATE_PARAMS, EVALUATE_PROFILE

from stages import report as R
from stages.common import metrics as M
from stages.common.prompting import cited_ids

PARAMS = {
    "profile": "cpu",
    "retrieval": {"method": "hybrid", "top_k": 2},
    "prompt": {"system": "문서로만 답하세요.", "abstain": ABSTAIN},
    "train": {"lora_r": 16, "learning_rate": 0.0002},
    "evaluate": EVALUATE_PARAMS,
    "report": {"seed": 13, "n_resamples": 300, "ci": 0.95, "max_example_chars": 80, "figure_dpi": 40},
    "profiles": {"cpu": {"model": {"name": "tiny-gemma"}, "index": {"embedder": "fake"}, "evaluate": EVALUATE_PROFILE}},
}
CONTEXT = "[c001] 케이블카\n주소: 제천시 청풍면 문화재길 166 전화 043-641-5532"
GOLD = {
    "q0001": "제천시 청풍면 문화재길 166",
    "q0002": "043-641-5532",
    "q0003": "제천시 청풍면",
    "q0004": "문화재길 166",
}
CFG = M.ScoreConfig.from_params(EVALUATE_PARAMS, {"abstain": ABSTAIN})


def _records(model: str) -> list[dict]:
    out = []
    for qid, gold in GOLD.items():
        answer = f"{gold} [c001]" if model == "finetuned" else "단양군 매포읍 999번지"
        out.append(_rec(qid, "factual", True, gold, answer))
    for qid in ("q0005", "q0006"):
        answer = ABSTAIN if model == "finetuned" else "케이블카 요금은 99,000원입니다"
        out.append(_rec(qid, "unanswerable", False, ABSTAIN, answer))
    return out


def _rec(qid, qtype, answerable, gold, answer):
    p = {
        "id": qid,
        "question": f"{qid} 질문은?",
        "type": qtype,
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


@pytest.fixture(scope="module")
def fixture_dirs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS, allow_unicode=True), encoding="utf-8")
    for model in R.MODELS:
        d = root / "eval" / model
        d.mkdir(parents=True)
        (d / "predictions.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in _records(model)), encoding="utf-8"
        )
    m = root / "metrics"
    m.mkdir()
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
        "--baseline",
        str(extra.get("eval", root / "eval") / "baseline"),
        "--finetuned",
        str(extra.get("eval", root / "eval") / "finetuned"),
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
        str(root / "params.yaml"),
        "--plot-metrics",
        str(root / f"{out}_plots" / "metrics.csv"),
        "--plot-types",
        str(root / f"{out}_plots" / "types.csv"),
    ]
    R.main(argv)
    return root / out


def test_report_tables_numbers_and_figures(fixture_dirs):
    out = _run(fixture_dirs, "report")
    md = (out / "REPORT.md").read_text(encoding="utf-8")
    for heading in (
        "## 1. 개요",
        "## 2. 데이터셋 구축",
        "## 3. 베이스라인 평가",
        "## 4. 파인튜닝",
        "## 5. 비교",
        "## 6. 코드",
        "## 7. 결론",
    ):
        assert heading in md
    # all 4 answerable wrong -> all right: a constant +1, so the bootstrap CI is [+1, +1]
    assert "| EM | 0.000 | 1.000 | +1.000 | [+1.000, +1.000] | ▲ 개선 |" in md
    assert "| 정답률 | 0.000 | 1.000 | +1.000 | [+1.000, +1.000] | ▲ 개선 |" in md
    # the baseline never abstains: its precision is undefined, not 0
    assert "| 기권 정밀도 | – | 1.000 | – | – | – |" in md
    assert "| 기권 재현율 | 0.000 | 1.000 | +1.000 | [+1.000, +1.000] | ▲ 개선 |" in md
    # dataset and retrieval tables come from the metrics files
    assert "| train | 10 | 7 | 3 | 4 | 7 | 3 |" in md
    assert "| **hybrid** (사용) | 0.900 | 1.000 | 0.950 | 0.960 |" in md
    # failure taxonomy: baseline 4 hallucinations + 2 missed abstentions, fine-tuned none
    assert "| 환각 | 답의 숫자/내용이 문맥에 없음 | 4 | 0 |" in md
    assert "| 기권 누락 | 답이 없는 질문에 답을 지어냄 | 2 | 0 |" in md
    assert "train loss 2.500 (step 1) → 0.750 (step 3)" in md
    assert md.count("**예시 ") >= 3
    for name in ("loss_curve", "metrics", "by_type", "failures"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
    comp = json.loads((fixture_dirs / "report.json").read_text(encoding="utf-8"))
    assert comp["overall"]["em"] == {"baseline": 0.0, "finetuned": 1.0, "delta": 1.0, "ci_low": 1.0, "ci_high": 1.0}
    assert comp["by_type"]["unanswerable"]["n"] == 2 and "em" not in comp["by_type"]["unanswerable"]
    assert comp["failures"]["finetuned"]["ok"] == 6
    # judge off: no judge row, no agreement section, nothing about it in comparison.json
    assert "judge_correct" not in comp["overall"] and "judge_agreement" not in comp
    assert "LLM 판정 정답률" not in md and "일치도" not in md
    # the CSVs `dvc plots` draws: one bar per (metric, model) with a value, per (type, model)
    with open(fixture_dirs / "report_plots" / "metrics.csv", encoding="utf-8") as fh:
        bars = {r["label"]: float(r["value"]) for r in csv.DictReader(fh)}
    assert bars["em · baseline"] == 0.0 and bars["em · finetuned"] == 1.0
    assert "abstain_p · baseline" not in bars and bars["abstain_p · finetuned"] == 1.0  # undefined: no bar
    with open(fixture_dirs / "report_plots" / "types.csv", encoding="utf-8") as fh:
        types = [(r["label"], float(r["correct"])) for r in csv.DictReader(fh)]
    assert types == [
        ("factual (n=4) · baseline", 0.0),
        ("factual (n=4) · finetuned", 1.0),
        ("unanswerable (n=2) · baseline", 0.0),
        ("unanswerable (n=2) · finetuned", 1.0),
    ]


def test_report_is_deterministic(fixture_dirs):
    a = (_run(fixture_dirs, "r1") / "REPORT.md").read_bytes()
    b = (_run(fixture_dirs, "r2") / "REPORT.md").read_bytes()
    assert a == b
    assert (fixture_dirs / "r1/figures/metrics.png").read_bytes() == (
        fixture_dirs / "r2/figures/metrics.png"
    ).read_bytes()


def test_report_tolerates_missing_optional_inputs(fixture_dirs, tmp_path):
    out = _run(fixture_dirs, "bare", metrics=tmp_path / "no-metrics", plots=tmp_path / "no-plots")
    md = (out / "REPORT.md").read_text(encoding="utf-8")
    assert "metrics/dataset.json` 없음" in md and "손실 곡선 생략" in md
    assert not (out / "figures" / "loss_curve.png").exists()
    assert (out / "figures" / "metrics.png").is_file()


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
    for model in R.MODELS:
        recs = _records(model)
        for n, r in enumerate(recs):
            # the judge agrees with `correct` except on the fine-tuned model's first example
            verdict = int(r["scores"]["correct"]) ^ int(model == "finetuned" and n == 0)
            r["judge"] = {"correct": verdict, "reason": "테스트"}
            r["scores"]["judge_correct"] = bool(verdict)
        d = tmp_path / "eval" / model
        d.mkdir(parents=True)
        (d / "predictions.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8"
        )
    out = _run(fixture_dirs, "judged", eval=tmp_path / "eval")
    md = (out / "REPORT.md").read_text(encoding="utf-8")
    comp = json.loads((fixture_dirs / "judged.json").read_text(encoding="utf-8"))
    # baseline: all 6 wrong by both -> agreement 1, kappa undefined; fine-tuned: 5/6 agree, judge says 5 correct
    assert comp["overall"]["judge_correct"]["baseline"] == 0.0
    assert comp["overall"]["judge_correct"]["finetuned"] == pytest.approx(5 / 6, abs=1e-4)
    base_a, tuned_a = comp["judge_agreement"]["baseline"], comp["judge_agreement"]["finetuned"]
    assert base_a["agreement"] == 1.0 and base_a["kappa"] is None and base_a["both_wrong"] == 6
    assert tuned_a["agreement"] == pytest.approx(5 / 6, abs=1e-4) and tuned_a["only_deterministic"] == 1
    assert tuned_a["kappa"] == 0.0  # `correct` is constant (all 1): no agreement beyond chance
    assert "| LLM 판정 정답률 | 0.000 | 0.833 | +0.833 |" in md
    assert "### LLM 판정과 결정적 지표의 일치도" in md
    assert "| 파인튜닝 | 6 | 0 | 0.833 | 0.000 | 5 | 1 | 0 | 0 |" in md
    assert "| 베이스라인 | 6 | 0 | 1.000 | – | 0 | 0 | 0 | 6 |" in md
