"""The extension points: a retrieval method and a metric are each added by ONE registration (here, from the
test) and show up everywhere downstream — the index stage's retrieval metrics, the evaluate aggregate, the
report's tables and metric definitions, the model card."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import retrieval_options
from test_report import PARAMS, write_eval
from test_retrieval import CHUNKS, HashEmbedder

from publish.model_card import build_model_card, load_metrics
from stages import report as R
from stages.common import metrics as M
from stages.common.retrieval import Retriever, needs_dense, register_method, unregister_method
from stages.index import evaluate_retrievers, recall_curve_csv


@pytest.fixture
def toy_method():
    # Ranks the chunks in reverse document order: a method that needs no model.
    register_method(
        "toy_reverse", lambda r, queries, k: [sorted(r.by_id, reverse=True)[:k] for _ in queries], needs_dense=False
    )
    yield "toy_reverse"
    unregister_method("toy_reverse")


@pytest.fixture
def toy_metric():
    # Share of answers longer than 10 characters, from a per-example score of its own.
    metric = M.register_metric(
        M.Metric(
            "toy_long",
            ("toy", "long_share"),
            None,
            "긴 답 비율",
            "공백 포함 10자보다 긴 답의 비율",
            why="확장 예시",
            card=99,
            example=lambda pred, s, context, cfg: float(len(pred["answer"]) > 10),
        )
    )
    yield metric
    M.unregister_metric("toy_long")


def test_a_registered_retrieval_method_is_measured_by_the_index_stage(toy_method):
    retriever = Retriever.build(CHUNKS, HashEmbedder(), rrf_k=60, fusion_depth=10, options=retrieval_options())
    questions = [
        {"question": "제천한방엑스포공원", "answerable": True, "chunk_id": "c003"},  # reverse order: rank 1
        {"question": "케이블카", "answerable": True, "chunk_id": "c001"},  # rank 3
        {"question": "환불 규정", "answerable": False, "chunk_id": "c002"},  # no gold: not measured
    ]
    out = evaluate_retrievers(retriever, questions, [1, 3])
    assert out["toy_reverse"]["recall@1"] == 0.5 and out["toy_reverse"]["recall@3"] == 1.0
    assert out["toy_reverse"]["mrr"] == pytest.approx((1 + 1 / 3) / 2)
    assert "bm25" in out and out["n_questions"] == 2
    assert recall_curve_csv(out, [1, 3]).splitlines()[0].endswith(",toy_reverse")
    assert needs_dense("toy_reverse") is False and needs_dense("dense") is True


def test_a_registered_metric_reaches_aggregate_report_and_model_card(toy_metric, tmp_path):
    # Predictions scored after registration carry the metric's per-example score.
    write_eval(tmp_path / "eval", tmp_path / "metrics")
    preds = [json.loads(line) for line in (tmp_path / "eval/finetuned/template/predictions.jsonl").open()]
    assert all("toy_long" in p["scores"] for p in preds)
    expected = sum(len(p["answer"]) > 10 for p in preds) / len(preds)
    assert M.aggregate([p["scores"] for p in preds], preds)["toy"]["long_share"] == round(expected, 4)

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS, allow_unicode=True), encoding="utf-8")
    (tmp_path / "qa").mkdir()
    R.main(
        ["--eval", str(tmp_path / "eval"), "--metrics-dir", str(tmp_path / "metrics"), "--plots", str(tmp_path / "no"),
         "--qa", str(tmp_path / "qa"), "--out", str(tmp_path / "report"), "--comparison",
         str(tmp_path / "metrics/comparison.json"), "--params", str(tmp_path / "params.yaml"),
         "--plot-metrics", str(tmp_path / "p/m.csv"), "--plot-types", str(tmp_path / "p/s.csv")]
    )  # fmt: skip
    comp = json.loads((tmp_path / "metrics/comparison.json").read_text(encoding="utf-8"))["testsets"]["template"]
    assert comp["values"]["toy_long"]["finetuned"] == round(expected, 4)
    assert "toy_long" in comp["pairs"]["finetuned-baseline"]
    md = (tmp_path / "report/REPORT.md").read_text(encoding="utf-8")
    assert "| 긴 답 비율 | 공백 포함 10자보다 긴 답의 비율 | 확장 예시 |" in md  # metric definitions table
    assert f"| 긴 답 비율 | {comp['values']['toy_long']['baseline']:.3f} |" in md  # comparison table

    card = build_model_card(
        adapter_cfg={},
        metrics=load_metrics(tmp_path / "metrics"),
        model={"name": "x"},
        profile="cpu",
        system_prompt="s",
        abstain="a",
        repo_id="o/r",
        dataset_repo=None,
        license_id="mit",
    )
    rows = [line for line in card.splitlines() if line.startswith("| 긴 답 비율 (`toy_long`) |")]
    assert len(rows) == 1 and f"{expected:.3f}" in rows[0]


def test_a_registered_ocr_engine_is_built_by_name():
    from types import SimpleNamespace

    from stages.common.errors import UserError
    from stages.parse.ocr import ENGINES, make_engine, register_engine

    class ToyEngine:
        name = "toy"

        def __init__(self, layout):
            self.layout = layout

    cfg = SimpleNamespace(
        ocr_engine="toy",
        ocr_split_gap=1.0,
        ocr_line_gap=2.0,
        ocr_size_ratio=3.0,
        ocr_table_min_cols=4,
        table_min_rows=5,
    )
    register_engine("toy", lambda c, layout: ToyEngine(layout), ("toy_key",))
    try:
        engine = make_engine(cfg)
        assert isinstance(engine, ToyEngine) and engine.layout.line_gap == 2.0
        assert ENGINES["toy"].keys == ("toy_key",)
    finally:
        del ENGINES["toy"]
    with pytest.raises(UserError, match="must be one of tesseract, paddleocr, got 'toy'"):
        make_engine(cfg)
