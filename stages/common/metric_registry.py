"""The metric registry: one `Metric` per aggregate, its per-example parts and labels (used by `metrics`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .records import Prediction

# ---------------------------------------------------------------- the metric registry
# A metric is added here and nowhere else: one `Metric` (register_metric from outside) gives its
# aggregate (metrics/eval/<name>.json at `path`), its paired-bootstrap comparison, its report rows
# (label, definition, why) and, with `card`, its row on the model card. Its value is
# sum(numerator) / sum(denominator) over examples, from `parts`; the default is the mean of the
# per-example score `source` (or `key`) over the examples where it is not None, and `example`
# computes such a score in score_example for a metric that needs a new one.
Parts = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Metric:
    key: str  # short id used in comparison.json and the report
    path: tuple[str, ...]  # where it sits in metrics/eval/<name>.json
    higher_is_better: bool | None  # None: no better direction (e.g. how often a model abstains)
    label: str = ""  # short Korean name for tables (the report and the model card read it)
    definition: str = ""  # what is counted, over which questions (Korean, for the report)
    why: str = ""  # why the report shows it (Korean)
    detail: bool = False  # behaviour or cost rather than answer quality: the report's detail table
    card: int = 0  # row position on the model card (0: not on the card)
    optional: bool = False  # left out of the metrics file when it has no value (the optional LLM judge)
    source: str = ""  # per-example score key averaged by the default parts ('' = key)
    parts: Callable[[list[dict[str, Any]], list[dict[str, Any]], str], Parts] | None = None  # (scores, preds, key)
    example: Callable[[dict[str, Any], dict[str, Any], str, Any], Any] | None = None  # (pred, scores, context, cfg)


def _v(x: Any) -> float:
    return float("nan") if x is None else float(x)


def _mean_of(scores: list[dict[str, Any]], key: str) -> Parts:
    vals = np.array([_v(s.get(key)) for s in scores], dtype=float)  # .get: judge_correct only when judged
    mask = ~np.isnan(vals)
    return np.where(mask, vals, 0.0), mask.astype(float)


def _rate(scores: list[dict[str, Any]], preds: list[dict[str, Any]], key: str) -> Parts:
    """Share of all examples whose boolean score `key` is true."""
    return np.array([float(s.get(key, False)) for s in scores]), np.ones(len(scores))


def _abstention(scores: list[dict[str, Any]], preds: list[dict[str, Any]]) -> tuple[np.ndarray, ...]:
    """(true, false, missed) abstentions per example; positive = unanswerable."""
    unans = np.array([not p["answerable"] for p in preds], dtype=float)
    abst = np.array([bool(s["abstained"]) for s in scores], dtype=float)
    return unans * abst, (1 - unans) * abst, unans * (1 - abst)


def _abstain_p(scores: list[dict[str, Any]], preds: list[dict[str, Any]], key: str) -> Parts:
    tp, fp, _ = _abstention(scores, preds)
    return tp, tp + fp


def _abstain_r(scores: list[dict[str, Any]], preds: list[dict[str, Any]], key: str) -> Parts:
    tp, _, fn = _abstention(scores, preds)
    return tp, tp + fn


def _abstain_f1(scores: list[dict[str, Any]], preds: list[dict[str, Any]], key: str) -> Parts:
    tp, fp, fn = _abstention(scores, preds)
    return 2 * tp, 2 * tp + fp + fn


def _abstain_rate(scores: list[dict[str, Any]], preds: list[dict[str, Any]], key: str) -> Parts:
    abst = np.array([bool(s["abstained"]) for s in scores], dtype=float)
    return abst, np.ones(len(scores))


def _latency(scores: list[dict[str, Any]], preds: list[dict[str, Any]], key: str) -> Parts:
    return np.array([float(p.get("latency_s", 0.0)) for p in preds]), np.ones(len(preds))


def _tokens_per_s(scores: list[dict[str, Any]], preds: list[dict[str, Any]], key: str) -> Parts:
    tokens = np.array([float(p.get("new_tokens", 0)) for p in preds])
    return tokens, np.array([float(p.get("latency_s", 0.0)) for p in preds])


def metric_parts(m: Metric, scores: list[dict[str, Any]], preds: list[Prediction]) -> Parts:
    """Per-example (numerator, denominator) of one metric; its value = sum(num) / sum(den)."""
    if m.parts is None:
        return _mean_of(scores, m.source or m.key)
    return m.parts(scores, preds, m.key)


def _ratio_parts(scores: list[dict[str, Any]], preds: list[Prediction]) -> dict[str, Parts]:
    return {m.key: metric_parts(m, scores, preds) for m in METRICS}


METRICS: list[Metric] = [
    Metric(
        "correct",
        ("correct",),
        True,
        "정답률",
        "실패 유형이 'ok'인 비율 — 답변 가능: 슬롯 사실(전화·시간·요금·주소·개수·날짜·URL)은 정답 값의 정규화 완전 "
        "일치, 이름·목록·서술은 핵심 사실 재현율 ≥ 임계값, 형식 실패(빈 답·반복·길이 초과·프롬프트 복창)는 오답; "
        "답변 불가: 기권",
        why="질문 유형이 섞인 테스트셋 전체를 한 숫자로 요약",
        card=1,
        parts=_rate,
    ),
    Metric(
        "em",
        ("answer", "em"),
        True,
        "EM",
        "정규화(NFC·인용·문장부호·공백) 후 정답 문장 또는 정답 값과 완전 일치",
        why="값 하나가 답인 사실 질문의 엄격한 기준",
        card=5,
    ),
    Metric(
        "contains",
        ("answer", "contains"),
        True,
        "포함 일치",
        "정답 문장 또는 정답 값이 답변 안에 그대로 있음 (띄어쓰기·구분자·뒤 조사 무시, 숫자 경계는 지킴; 숫자 없는 값은 "
        "바로 앞뒤에서 부정된 것만 있으면 불인정: '불가능'·'가능하지 않'·'무료가 아닙')",
        why="정답을 말하고 덧붙인 답을 0점 처리하지 않음",
        card=6,
    ),
    Metric(
        "key_fact_recall",
        ("answer", "key_fact_recall"),
        True,
        "핵심 사실 재현율",
        "정답의 핵심 사실(숫자·이름·값) 중 답변에 든 비율 — 정규화 완전 일치, 숫자 없는 사실은 내용 형태소가 모두 "
        "들어 있어도 인정; 바로 앞뒤에서 부정된 값('불가능', '무료가 아닙니다')은 불인정; 기권은 0",
        why="문장으로 답한 정답을 오답으로 치지 않는 문장형 답의 지표",
    ),
    Metric(
        "slot_exact",
        ("answer", "slot_exact"),
        True,
        "슬롯 정확도",
        "슬롯 사실 질문에서 정답 값(전화·시간·요금 등)이 정규화 후 그대로 답변에 있는 비율 (부분 점수 없음); 정답에 "
        "없는 전화번호·시각·URL을 evaluate.slot_max_extra_values개보다 많이 나열한 답은 불인정",
        why="전화·시간·요금처럼 한 글자만 틀려도 쓸모없는 값은 부분 점수 없이 채점",
    ),
    Metric(
        "f1_morph",
        ("answer", "f1_morph"),
        True,
        "형태소 F1",
        "Kiwi 내용 형태소(조사·어미 제외, 시간·전화번호 포함) 집합 F1, 정답 문장·값 중 높은 쪽",
        why="조사가 붙는 한국어에서 공백 토큰 F1은 부정확",
        card=3,
    ),
    Metric(
        "f1_char",
        ("answer", "f1_char"),
        True,
        "문자 F1",
        "공백 제외 문자 집합 F1, 정답 문장·값 중 높은 쪽",
        why="띄어쓰기 차이와 형태소 분석 오류에 강함",
        card=2,
    ),
    Metric(
        "rouge_l_char",
        ("answer", "rouge_l_char"),
        True,
        "ROUGE-L(문자)",
        "공백 제외 문자열의 LCS 기반 F1",
        why="rouge_score 기본 토크나이저는 한글을 버림 — 문자 단위로 순서까지 반영",
        card=4,
    ),
    Metric(
        "abstain_p",
        ("abstention", "precision"),
        True,
        "기권 정밀도",
        "기권한 답 중 실제로 답이 없는 질문의 비율",
        why="불필요한 기권(정보 누락) 측정",
        card=8,
        parts=_abstain_p,
    ),
    Metric(
        "abstain_r",
        ("abstention", "recall"),
        True,
        "기권 재현율",
        "답이 없는 질문 중 기권한 비율",
        why="환각 대신 모른다고 말하는 능력",
        card=9,
        parts=_abstain_r,
    ),
    Metric(
        "abstain_f1",
        ("abstention", "f1"),
        True,
        "기권 F1",
        "기권 정밀도·재현율의 조화평균 (양성 = 답변 불가)",
        why="기권의 두 오류를 한 숫자로",
        card=7,
        parts=_abstain_f1,
    ),
    Metric(
        "abstain_rate",
        ("abstention", "rate"),
        None,
        "기권 비율",
        "전체 질문 중 기권한 비율",
        why="과도한 기권 여부 확인용 (높낮이에 좋고 나쁨 없음)",
        detail=True,
        parts=_abstain_rate,
    ),
    Metric(
        "wrong_abstain",
        ("abstention", "wrong_rate"),
        False,
        "잘못된 기권",
        "답변 가능 질문 중 정답 청크가 모두 문맥에 있었는데 기권한 비율",
        why="답이 문맥에 있는데도 모른다고 하는 과잉 기권을 따로 드러냄",
        source="wrong_abstention",
    ),
    Metric(
        "citation_ok",
        ("citation_acc",),
        True,
        "인용 정확도",
        "정답 청크가 모두 검색되고 모델이 답한(기권 아님) 답변 가능 질문에서, 인용 [cNNN] 집합이 정답 청크 집합과 "
        "정확히 같은 비율; 형식 실패·프롬프트 복창의 인용은 0",
        why="출처 표시가 RAG 답변의 검증 가능성을 만든다",
        card=10,
    ),
    Metric(
        "citation_p",
        ("citation", "precision"),
        True,
        "인용 정밀도",
        "같은 질문들에서 인용한 청크 중 정답 청크의 비율 (불필요한 인용 감점, 인용 없으면 0)",
        why="아무 청크나 잔뜩 인용해 맞히는 답을 감점",
    ),
    Metric(
        "citation_r",
        ("citation", "recall"),
        True,
        "인용 재현율",
        "같은 질문들에서 정답 청크 중 인용된 비율",
        why="필요한 출처를 빠뜨린 답을 드러냄",
    ),
    Metric(
        "supported",
        ("faithfulness",),
        True,
        "충실도",
        "기권하지 않은 모든 답(답변 불가 질문 포함) 중 숫자는 그대로, 내용 형태소는 모두 문맥에 있는 비율; "
        "프롬프트 복창은 불충실",
        why="문맥에 없는 내용(환각)을 결정적으로 검출",
        card=11,
    ),
    Metric(
        "format_fail",
        ("format", "fail_rate"),
        False,
        "형식 실패율",
        "빈 답·반복·EOS 없이 길이 한도 도달·프롬프트 복창 중 하나",
        why="멈추지 못하는 모델을 드러냄",
        card=12,
        parts=_rate,
    ),
    Metric(
        "empty",
        ("format", "empty"),
        False,
        "빈 답",
        "인용·문장부호를 빼면 빈 답",
        why="형식 실패 세부",
        detail=True,
        parts=_rate,
    ),
    Metric(
        "looping",
        ("format", "looping"),
        False,
        "반복",
        "단어 n-gram 또는 문자 n-gram이 여러 번 반복",
        why="형식 실패 세부",
        detail=True,
        card=13,
        parts=_rate,
    ),
    Metric(
        "over_length",
        ("format", "over_length"),
        False,
        "길이 초과",
        "EOS 없이 max_new_tokens 도달",
        why="형식 실패 세부",
        detail=True,
        card=14,
        parts=_rate,
    ),
    Metric(
        "prompt_echo",
        ("format", "prompt_echo"),
        False,
        "프롬프트 복창",
        "답변에 문맥의 청크 머리글([cNNN] 섹션 경로)이나 시스템 프롬프트의 긴 구절이 그대로 나옴",
        why="프롬프트를 복창해 값과 인용을 '맞히는' 베이스 모델을 드러냄 (형식 실패 세부)",
        parts=_rate,
    ),
    Metric(
        "latency_s",
        ("latency_s_mean",),
        False,
        "지연(초)",
        "질문당 생성 시간 (배치 시간의 균등 분배)",
        why="서비스 비용",
        detail=True,
        card=15,
        parts=_latency,
    ),
    Metric(
        "tokens_per_s",
        ("tokens_per_s",),
        True,
        "토큰/초",
        "생성 토큰 수 / 생성 시간",
        why="하드웨어 처리량",
        detail=True,
        card=16,
        parts=_tokens_per_s,
    ),
    Metric(
        "judge_correct",
        ("judge", "correct"),
        True,
        "LLM 판정 정답률",
        "OpenAI 호환 LLM 채점자가 정답과 비교해 1로 판정한 비율 (선택, evaluate.judge)",
        why="어휘 지표가 놓치는 바꿔 말한 정답을 잡고, 결정적 지표를 교차 검증",
        optional=True,
    ),
]
BY_KEY: dict[str, Metric] = {m.key: m for m in METRICS}


def register_metric(metric: Metric) -> Metric:
    """Add a metric to the registry (after the built-in ones, in registration order)."""
    if metric.key in BY_KEY:
        raise ValueError(f"metric {metric.key!r} is already registered")
    METRICS.append(metric)
    BY_KEY[metric.key] = metric
    return metric


def unregister_metric(key: str) -> None:
    metric = BY_KEY.pop(key, None)
    if metric is not None:
        METRICS.remove(metric)


def card_metrics() -> list[Metric]:
    """The model card's rows, in card order."""
    return sorted((m for m in METRICS if m.card), key=lambda m: m.card)


def _safe_div(num: float, den: float) -> float | None:
    return float(num / den) if den > 0 else None


def metric_values(scores: list[dict[str, Any]], preds: list[Prediction]) -> dict[str, float | None]:
    """Flat {metric key: value}; None where the metric has no examples (e.g. no unanswerable questions)."""
    if not scores:
        return {m.key: None for m in METRICS}
    parts = _ratio_parts(scores, preds)
    return {m.key: _safe_div(parts[m.key][0].sum(), parts[m.key][1].sum()) for m in METRICS}
