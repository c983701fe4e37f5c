"""report: three models x two test sets — paired-bootstrap comparisons, figures and REPORT.md.

    python -m stages.report --eval data/eval --metrics-dir metrics --plots plots --qa data/qa \
        --out report [--adapter models/adapter] [--comparison metrics/comparison.json]

Inputs: ``data/eval/<model>/<testset>/predictions.jsonl`` for the models ``baseline``
(zero-shot), ``baseline_fewshot`` (k TRAIN examples in the prompt) and ``finetuned``, on
the test sets ``template`` (synthesized test split) and ``natural`` (hand-written), plus
``metrics/eval/<model>/<testset>.json`` (run time, prompt tokens, skipped sets).
The fine-tune is compared with both baselines on every test set (paired bootstrap CIs).

Python computes every number (this module); the prose and layout live in the Jinja2
template beside it (``REPORT.md.j2``), so the wording changes without touching code.
Metric rows come from ``stages.common.metrics.METRICS``: a new metric there appears here.
Optional inputs (dataset/retrieval/train metrics, loss CSVs, axolotl.yaml, the few-shot
model, the natural test set) may be missing: the report says so instead of failing.
No timestamps: same inputs, same bytes.
"""

from __future__ import annotations

import argparse
import csv
import logging
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from stages.common import metrics as M
from stages.common import params as P
from stages.common.errors import UserError, run_cli
from stages.common.io import atomic_dir, atomic_path, read_json, read_jsonl, write_json

log = logging.getLogger("report")

TEMPLATE = Path(__file__).with_name("REPORT.md.j2")
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/nanum/NanumGothic.ttf",
    "/usr/share/fonts/truetype/nanum/NanumBarunGothic.ttf",
)
MODELS = ("baseline", "baseline_fewshot", "finetuned")
TESTSETS = ("template", "natural")
REQUIRED = ("baseline", "finetuned")  # a test set that runs at all must have these two
# The comparisons the report makes: fine-tuned minus each baseline.
PAIRS = (("finetuned", "baseline"), ("finetuned", "baseline_fewshot"))
MODEL_KO = {"baseline": "베이스라인(zero-shot)", "baseline_fewshot": "베이스라인(few-shot)", "finetuned": "파인튜닝"}
TESTSET_KO = {"template": "템플릿 테스트셋", "natural": "자연 질문 테스트셋"}
# Metrics that describe behaviour or cost rather than answer quality: the "detail" table.
DETAIL_KEYS = ("abstain_rate", "empty", "looping", "over_length", "latency_s", "tokens_per_s")

# label, definition, why this metric — for the metric keys known when this was written. A metric
# added to stages.common.metrics.METRICS later still gets its rows (labelled by its key).
METRIC_DOCS: dict[str, tuple[str, str, str]] = {
    "correct": (
        "정답률",
        "실패 유형 분류에서 'ok'인 비율 (답변 가능: 채점기 기준 정답, 불가: 기권)",
        "질문 유형이 섞인 테스트셋 전체를 한 숫자로 요약",
    ),
    "em": (
        "EM",
        "정규화(NFC·인용·문장부호·공백) 후 완전 일치 — 답변 가능 질문",
        "값 하나가 답인 사실 질문의 엄격한 기준",
    ),
    "contains": (
        "포함 일치",
        "정규화·공백 제거 후 정답이 답변 안에 들어 있음",
        "정답을 말하고 덧붙인 답을 0점 처리하지 않음",
    ),
    "f1_morph": (
        "형태소 F1",
        "Kiwi 내용 형태소(조사·어미 제외) 집합 F1",
        "조사가 붙는 한국어에서 공백 토큰 F1은 부정확",
    ),
    "f1_char": ("문자 F1", "공백 제외 문자 집합 F1", "띄어쓰기 차이와 형태소 분석 오류에 강함"),
    "rouge_l_char": (
        "ROUGE-L(문자)",
        "공백 제외 문자열의 LCS 기반 F1",
        "rouge_score 기본 토크나이저는 한글을 버림 — 문자 단위로 순서까지 반영",
    ),
    "key_fact_recall": (
        "핵심 사실 재현율",
        "정답의 핵심 사실(숫자·이름·값) 중 답변에 (한국어 정규화 후) 들어 있는 비율",
        "문장으로 답한 정답을 오답으로 치지 않는 문장형 답의 지표",
    ),
    "abstain_p": ("기권 정밀도", "기권한 답 중 실제로 답이 없는 질문의 비율", "불필요한 기권(정보 누락) 측정"),
    "abstain_r": ("기권 재현율", "답이 없는 질문 중 기권한 비율", "환각 대신 모른다고 말하는 능력"),
    "abstain_f1": ("기권 F1", "기권 정밀도·재현율의 조화평균 (양성 = 답변 불가)", "기권의 두 오류를 한 숫자로"),
    "abstain_rate": ("기권 비율", "전체 질문 중 기권한 비율", "과도한 기권 여부 확인용 (높낮이에 좋고 나쁨 없음)"),
    "citation_ok": (
        "인용 정확도",
        "정답 청크가 검색된 답변 가능 질문에서 그 청크를 [cNNN]으로 인용한 비율",
        "출처 표시가 RAG 답변의 검증 가능성을 만든다",
    ),
    "supported": (
        "충실도",
        "기권하지 않은 답 중 숫자는 그대로, 내용 형태소는 모두 문맥에 있는 비율",
        "문맥에 없는 내용(환각)을 결정적으로 검출",
    ),
    "format_fail": (
        "형식 실패율",
        "빈 답·반복(n-gram 반복)·EOS 없이 길이 한도 도달 중 하나",
        "멈추지 못하는 모델을 드러냄",
    ),
    "empty": ("빈 답", "인용·문장부호를 빼면 빈 답", "형식 실패 세부"),
    "looping": ("반복", "단어 n-gram 또는 문자 n-gram이 여러 번 반복", "형식 실패 세부"),
    "over_length": ("길이 초과", "EOS 없이 max_new_tokens 도달", "형식 실패 세부"),
    "latency_s": ("지연(초)", "질문당 생성 시간 (배치 시간의 균등 분배)", "서비스 비용"),
    "tokens_per_s": ("토큰/초", "생성 토큰 수 / 생성 시간", "하드웨어 처리량"),
    "judge_correct": (
        "LLM 판정 정답률",
        "OpenAI 호환 LLM 채점자가 정답과 비교해 1로 판정한 비율 (선택, evaluate.judge)",
        "어휘 지표가 놓치는 바꿔 말한 정답을 잡고, 결정적 지표를 교차 검증",
    ),
}

FAILURE_DOCS: dict[str, tuple[str, str]] = {
    "format": ("형식 실패", "빈 답·반복, 또는 내용은 맞지만 EOS 없이 길이 한도 도달"),
    "missed_abstention": ("기권 누락", "답이 없는 질문에 답을 지어냄"),
    "retrieval_miss": ("검색 실패", "정답 청크가 top-k에 없어 맞히지 못함"),
    "wrong_abstention": ("잘못된 기권", "정답 청크가 문맥에 있는데 기권"),
    "hallucination": ("환각", "답의 숫자/내용이 문맥에 없음"),
    "wrong_fact": ("오답", "문맥에 있는 내용이지만 정답이 아님"),
}

# Axolotl keys worth a row in the hyper-parameter table (in this order, when present).
HYPER_KEYS = (
    "base_model",
    "adapter",
    "load_in_4bit",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "lora_target_modules",
    "sequence_len",
    "sample_packing",
    "micro_batch_size",
    "gradient_accumulation_steps",
    "num_epochs",
    "max_steps",
    "learning_rate",
    "lr_scheduler",
    "warmup_ratio",
    "optimizer",
    "weight_decay",
    "bf16",
    "train_on_inputs",
    "eval_steps",
    "val_set_size",
    "seed",
)


def label(key: str) -> str:
    return METRIC_DOCS.get(key, (key, "", ""))[0]


def quality_keys() -> list[str]:
    return [m.key for m in M.METRICS if m.key not in DETAIL_KEYS]


def failure_label(key: str) -> str:
    return FAILURE_DOCS.get(key, (key, ""))[0] if key != "ok" else "정상"


# ---------------------------------------------------------------- loading
def load_predictions(path: Path) -> list[dict[str, Any]] | None:
    """Predictions of one model on one test set; None when the run is absent or was skipped (empty file)."""
    if not path.is_file():
        return None
    preds = read_jsonl(path)
    if not preds:
        return None
    if any("scores" not in p for p in preds):
        raise UserError(f"{path}: predictions without scores (re-run the evaluate stage)")
    return preds


def align(ref: list[dict[str, Any]], other: list[dict[str, Any]], what: str) -> list[dict[str, Any]]:
    """`other` in the order of `ref`; both runs must cover the same questions."""
    by_id = {p["id"]: p for p in other}
    if set(by_id) != {p["id"] for p in ref}:
        raise UserError(f"{what}: the models' predictions cover different questions (same evaluate.limit?)")
    return [by_id[p["id"]] for p in ref]


def load_runs(eval_dir: Path, metrics_dir: Path) -> dict[str, dict[str, Any]]:
    """Per test set: {'preds': {model: aligned predictions}, 'metrics': {model: json}} or {'skipped': reason}."""
    runs: dict[str, dict[str, Any]] = {}
    for ts in TESTSETS:
        preds = {m: load_predictions(eval_dir / m / ts / "predictions.jsonl") for m in MODELS}
        mfiles = {m: optional_json(metrics_dir / "eval" / m / f"{ts}.json") for m in MODELS}
        present = {m: p for m, p in preds.items() if p is not None}
        if not present:
            if ts == "template":
                raise UserError(f"{eval_dir}/*/template/predictions.jsonl: not found (run the evaluate stage first)")
            reasons = [f.get("reason") for f in mfiles.values() if f and f.get("skipped")]
            runs[ts] = {"skipped": reasons[0] if reasons else "no predictions (evaluate did not run on it)"}
            continue
        missing = [m for m in REQUIRED if m not in present]
        if missing:
            raise UserError(f"{eval_dir}: {ts} test set lacks predictions of {', '.join(missing)}")
        ref = present["baseline"]
        aligned = {m: ref if m == "baseline" else align(ref, p, f"{ts} test set") for m, p in present.items()}
        runs[ts] = {"preds": aligned, "metrics": {m: mfiles[m] for m in aligned}}
    return runs


def optional_json(path: Path) -> Any:
    if not path.is_file():
        log.info("%s: not found, its part is left out", path)
        return None
    return read_json(path)


def read_curve(path: Path, column: str) -> list[tuple[float, float]]:
    if not path.is_file():
        return []
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for row in rows:
        try:
            out.append((float(row["step"]), float(row[column])))
        except (KeyError, TypeError, ValueError):
            continue
    return out


# ---------------------------------------------------------------- comparison (numbers)
def _pair_key(tuned: str, ref: str) -> str:
    return f"{tuned}-{ref}"


def compare_pair(
    ref: list[dict[str, Any]], tuned: list[dict[str, Any]], cfg: dict[str, Any]
) -> dict[str, dict[str, float | None]]:
    """Every metric of METRICS: reference and fine-tuned values, delta (tuned − ref) and its paired-bootstrap CI."""
    raw = M.compare(
        [p["scores"] for p in ref],
        [p["scores"] for p in tuned],
        ref,
        tuned,
        P.require(cfg, "n_resamples", int, "report"),
        P.require(cfg, "seed", int, "report"),
        float(P.require(cfg, "ci", (int, float), "report")),
    )
    out = {}
    for key, r in raw.items():
        if key in M.OPTIONAL_KEYS and r["baseline"] is None and r["finetuned"] is None:
            continue  # optional metric (LLM judge) not produced: left out, as in the metrics files
        out[key] = {
            "reference": r["baseline"],
            "finetuned": r["finetuned"],
            "delta": r["delta"],
            "ci_low": r["ci_low"],
            "ci_high": r["ci_high"],
        }
    return out


def values_by_group(preds: dict[str, list[dict[str, Any]]], field: str) -> dict[str, dict[str, Any]]:
    """Per value of `field` (type, style): n and every metric per model."""
    base = preds["baseline"]
    groups = sorted({str(p.get(field) or "–") for p in base})
    out: dict[str, dict[str, Any]] = {}
    for g in groups:
        idx = [i for i, p in enumerate(base) if str(p.get(field) or "–") == g]
        node: dict[str, Any] = {"n": len(idx), "n_answerable": sum(bool(base[i]["answerable"]) for i in idx)}
        per_model = {
            m: M.metric_values([ps[i]["scores"] for i in idx], [ps[i] for i in idx]) for m, ps in preds.items()
        }
        for key in (mm.key for mm in M.METRICS):
            vals = {m: per_model[m][key] for m in preds}
            if any(v is not None for v in vals.values()):
                node[key] = {m: _round(v) for m, v in vals.items()}
        node["failures"] = {
            m: M.failure_counts([p["scores"] for p in ps if str(p.get(field) or "–") == g]) for m, ps in preds.items()
        }
        out[g] = node
    return out


def build_testset(run: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    preds: dict[str, list[dict[str, Any]]] = run["preds"]
    base = preds["baseline"]
    n_ans = sum(bool(p["answerable"]) for p in base)
    out: dict[str, Any] = {
        "n": len(base),
        "n_answerable": n_ans,
        "n_unanswerable": len(base) - n_ans,
        "models": list(preds),
        "values": {},
        "pairs": {},
    }
    per_model = {m: M.metric_values([p["scores"] for p in ps], ps) for m, ps in preds.items()}
    for mm in M.METRICS:
        vals = {m: _round(per_model[m][mm.key]) for m in preds}
        if mm.key in M.OPTIONAL_KEYS and all(v is None for v in vals.values()):
            continue
        out["values"][mm.key] = vals
    for tuned, ref in PAIRS:
        if tuned in preds and ref in preds:
            out["pairs"][_pair_key(tuned, ref)] = compare_pair(preds[ref], preds[tuned], cfg)
    out["by_type"] = values_by_group(preds, "type")
    out["by_style"] = values_by_group(preds, "style")
    out["failures"] = {m: M.failure_counts([p["scores"] for p in ps]) for m, ps in preds.items()}
    # Wrong abstentions as a share of answerable questions (issue #13's target: ≤ 15% on the natural set).
    out["wrong_abstention_share"] = {
        m: _round(out["failures"][m].get("wrong_abstention", 0) / n_ans) if n_ans else None for m in preds
    }
    runinfo = run.get("metrics") or {}
    out["cost"] = {
        m: {
            "wall_seconds": (runinfo.get(m) or {}).get("wall_seconds"),
            "prompt_tokens_mean": (runinfo.get(m) or {}).get("prompt_tokens_mean")
            or _round(sum(float(p.get("prompt_tokens") or 0) for p in ps) / len(ps), 1),
            "fewshot_k": (runinfo.get(m) or {}).get("fewshot_k"),
        }
        for m, ps in preds.items()
    }
    agreement = {m: M.judge_agreement([p["scores"] for p in ps]) for m, ps in preds.items()}
    if any(v is not None for v in agreement.values()):
        out["judge_agreement"] = agreement
    return out


def build_comparison(runs: dict[str, dict[str, Any]], cfg: dict[str, Any]) -> dict[str, Any]:
    """metrics/comparison.json: per test set, values of all models and the fine-tuned − baseline pairs."""
    out: dict[str, Any] = {
        "ci": float(P.require(cfg, "ci", (int, float), "report")),
        "n_resamples": P.require(cfg, "n_resamples", int, "report"),
        "seed": P.require(cfg, "seed", int, "report"),
        "testsets": {},
    }
    for ts, run in runs.items():
        out["testsets"][ts] = (
            {"skipped": True, "reason": run["skipped"]} if "skipped" in run else build_testset(run, cfg)
        )
    out["targets"] = check_targets(out, cfg.get("targets") or {})
    return out


def _round(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(float(x), nd)


def plot_rows(comp: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows of the CSVs `dvc plots` draws: per (metric, model, test set) and per (style, model, test set).

    Bar labels carry model and test set: DVC's bar template offsets bars by revision only,
    so several series in one revision would otherwise stack.
    """
    metric_rows, style_rows = [], []
    for ts, t in comp["testsets"].items():
        if t.get("skipped"):
            continue
        for key in quality_keys():
            for m, v in t["values"].get(key, {}).items():
                if v is not None:
                    metric_rows.append(
                        {"label": f"{key} · {m} · {ts}", "metric": key, "model": m, "testset": ts, "value": v}
                    )
        for style, sub in t["by_style"].items():
            for m in t["models"]:
                style_rows.append(
                    {
                        "label": f"{ts} {style} (n={sub['n']}) · {m}",
                        "testset": ts,
                        "style": style,
                        "model": m,
                        "correct": sub["correct"][m],
                    }
                )
    return metric_rows, style_rows


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["label"])
        writer.writeheader()
        writer.writerows(rows)


# ---------------------------------------------------------------- qualitative examples
def pick_examples(base: list[dict[str, Any]], tuned: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """(why, index) by rule: largest char-F1 gain, worst regression, an unanswerable case."""
    chosen: list[tuple[str, int]] = []
    used: set[int] = set()
    ans = [i for i, p in enumerate(base) if p["answerable"]]

    def gain(i: int) -> float:
        return (tuned[i]["scores"].get("f1_char") or 0.0) - (base[i]["scores"].get("f1_char") or 0.0)

    if ans:
        best = max(ans, key=lambda i: (gain(i), -i))
        chosen.append((f"문자 F1 개선이 가장 큰 질문 (Δ {gain(best):+.3f})", best))
        used.add(best)
        rest = [i for i in ans if i not in used]
        if rest:
            worst = min(rest, key=lambda i: (gain(i), i))
            why = "문자 F1 하락이 가장 큰 질문" if gain(worst) < 0 else "하락 사례 없음 — 개선 폭이 가장 작은 질문"
            chosen.append((f"{why} (Δ {gain(worst):+.3f})", worst))
            used.add(worst)
    unans = [i for i, p in enumerate(base) if not p["answerable"] and i not in used]
    if unans:
        flipped = [i for i in unans if tuned[i]["scores"]["abstained"] != base[i]["scores"]["abstained"]]
        i = (flipped or unans)[0]
        chosen.append(("답변 불가 질문 (기권 여부)", i))
    return chosen


# ---------------------------------------------------------------- figures
def setup_matplotlib() -> bool:
    """Agg backend + a Korean font when one is installed; False when Hangul will render as boxes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import font_manager
    from matplotlib import pyplot as plt

    plt.rcParams["axes.unicode_minus"] = False
    for path in FONT_CANDIDATES:
        if Path(path).is_file():
            font_manager.fontManager.addfont(path)
            plt.rcParams["font.family"] = font_manager.FontProperties(fname=path).get_name()
            return True
    log.warning("no Korean font found (apt-get install fonts-nanum): figure labels in Hangul will not render")
    warnings.filterwarnings("ignore", message="Glyph .* missing from font")
    return False


def _save(fig, path: Path, dpi: int) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=dpi, metadata={"Software": None})  # no version string: same inputs, same bytes
    import matplotlib.pyplot as plt

    plt.close(fig)


def plot_loss(train: list[tuple[float, float]], val: list[tuple[float, float]], path: Path, dpi: int) -> bool:
    if not train and not val:
        return False
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", linewidth=1.2)
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation loss", linewidth=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("학습 손실 곡선")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path, dpi)
    return True


def plot_bars(
    groups: list[str],
    series: dict[str, list[float | None]],
    title: str,
    path: Path,
    dpi: int,
    label_fmt: str = "%.2f",
) -> None:
    """Grouped bars, one group per x label, one bar per series; None = no bar (metric undefined)."""
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(groups))
    width = 0.8 / max(len(series), 1)
    # Capped width: the page shows figures ~1000 px wide, and a wider figure only shrinks its labels.
    fig, ax = plt.subplots(figsize=(min(10.0, max(6.0, 0.6 * len(groups) + 3)), 4.2))
    for j, (name, vals) in enumerate(series.items()):
        heights = [np.nan if v is None else v for v in vals]
        bars = ax.bar(x + (j - (len(series) - 1) / 2) * width, heights, width, label=name)
        ax.bar_label(bars, fmt=label_fmt, fontsize=6, padding=1)
    ax.set_xticks(x, groups, rotation=30, ha="right")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.margins(y=0.12)  # room for the value labels
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _save(fig, path, dpi)


def make_figures(comp: dict[str, Any], train_curve, val_curve, fig_dir: Path, dpi: int) -> dict[str, Any]:
    """Figures under fig_dir; returns which were drawn (the template links only those)."""
    setup_matplotlib()
    fig_dir.mkdir(parents=True, exist_ok=True)
    drawn: dict[str, Any] = {"loss": plot_loss(train_curve, val_curve, fig_dir / "loss_curve.png", dpi)}
    for ts, t in comp["testsets"].items():
        if t.get("skipped"):
            continue
        keys = [k for k in quality_keys() if k in t["values"]]
        plot_bars(
            [label(k) for k in keys],
            {MODEL_KO[m]: [t["values"][k][m] for k in keys] for m in t["models"]},
            f"{TESTSET_KO[ts]}: 지표별 세 모델",
            fig_dir / f"metrics_{ts}.png",
            dpi,
        )
        styles = list(t["by_style"])
        plot_bars(
            [f"{s} (n={t['by_style'][s]['n']})" for s in styles],
            {MODEL_KO[m]: [t["by_style"][s]["correct"][m] for s in styles] for m in t["models"]},
            f"{TESTSET_KO[ts]}: 질문 스타일별 정답률",
            fig_dir / f"by_style_{ts}.png",
            dpi,
        )
        cats = [*M.FAILURES, "ok"]
        plot_bars(
            [failure_label(k) for k in cats],
            {MODEL_KO[m]: [float(t["failures"][m].get(k, 0)) for k in cats] for m in t["models"]},
            f"{TESTSET_KO[ts]}: 실패 유형 (건수)",
            fig_dir / f"failures_{ts}.png",
            dpi,
            label_fmt="%d",
        )
        drawn[ts] = True
    return drawn


# ---------------------------------------------------------------- formatting (used by the template as filters)
def fmt(x: Any, nd: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "예" if x else "아니오"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def fmt_delta(x: float | None) -> str:
    return "–" if x is None else f"{x:+.3f}"


def fmt_ci(lo: float | None, hi: float | None) -> str:
    return "–" if lo is None or hi is None else f"[{lo:+.3f}, {hi:+.3f}]"


def cell(text: Any, limit: int = 0) -> str:
    """Text safe inside a markdown table cell."""
    s = str(text)
    if limit and len(s) > limit:
        s = s[:limit].rstrip() + " …"
    return s.replace("|", "\\|").replace("\r", "").replace("\n", "<br>") or "(빈 답)"


def md_table(headers: list[Any], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(str(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(key: str, r: dict[str, Any]) -> str:
    """▲ better / ▼ worse when the CI excludes 0, else '='."""
    m = M.BY_KEY.get(key)
    lo, hi = r.get("ci_low"), r.get("ci_high")
    if m is None or lo is None or hi is None or m.higher_is_better is None:
        return "–"
    if lo > 0 or hi < 0:
        return "▲ 개선" if (lo > 0) == m.higher_is_better else "▼ 악화"
    return "= 동일" if lo == hi == 0 else "= 차이 불확실"


# ---------------------------------------------------------------- the report's context (numbers only)
def main_table(t: dict[str, Any], keys: list[str]) -> list[list[str]]:
    """One row per metric: the three models, then Δ [CI] verdict of fine-tuned vs each baseline."""
    rows = []
    for key in keys:
        vals = t["values"].get(key)
        if not vals or all(v is None for v in vals.values()):
            continue
        row = [label(key), *[fmt(vals.get(m)) for m in MODELS]]
        for tuned, ref in PAIRS:
            r = t["pairs"].get(_pair_key(tuned, ref), {}).get(key)
            defined = r is not None and r["delta"] is not None
            row.append(
                f"{fmt_delta(r['delta'])} {fmt_ci(r['ci_low'], r['ci_high'])} {verdict(key, r)}" if defined else "–"
            )
        rows.append(row)
    return rows


def significant(t: dict[str, Any], pair: str) -> dict[str, list[str]]:
    """Metrics whose CI excludes 0, by direction: what the conclusion may claim, and nothing more."""
    out: dict[str, list[str]] = {"better": [], "worse": [], "unclear": []}
    for key in quality_keys():
        r = t["pairs"].get(pair, {}).get(key)
        if not r:
            continue
        v = verdict(key, r)
        text = f"{label(key)} ({fmt_delta(r['delta'])})"
        if v.startswith("▲"):
            out["better"].append(text)
        elif v.startswith("▼"):
            out["worse"].append(text)
        elif v.startswith("= 차이"):
            out["unclear"].append(label(key))
    return out


def example_blocks(preds: dict[str, list[dict[str, Any]]], ref_model: str, limit: int) -> list[dict[str, Any]]:
    """Qualitative examples (rules in pick_examples, fine-tuned vs `ref_model`), every model's answer shown."""
    blocks = []
    for why, i in pick_examples(preds[ref_model], preds["finetuned"]):
        b = preds["baseline"][i]
        rows = [[MODEL_KO[m], cell(ps[i]["answer"], limit)] for m, ps in preds.items()]
        scores = []
        for key in ("f1_char", "key_fact_recall", "judge_correct"):
            if any(ps[i]["scores"].get(key) is not None for ps in preds.values()):
                scores.append([label(key), *[fmt(ps[i]["scores"].get(key)) for ps in preds.values()]])
        scores.append(["기권", *[fmt(ps[i]["scores"]["abstained"]) for ps in preds.values()]])
        scores.append(["실패 유형", *[ps[i]["scores"]["failure"] for ps in preds.values()]])
        gold_ids = b.get("gold_chunk_ids") or ([b["gold_chunk_id"]] if b.get("gold_chunk_id") else [])
        blocks.append(
            {
                "why": why,
                "id": b["id"],
                "type": b["type"],
                "style": b.get("style") or "–",
                "question": cell(b["question"]),
                "gold": cell(b["gold_answer"]),
                "gold_ids": ", ".join(f"`{g}`" for g in gold_ids) or "–",
                "retrieved": ", ".join(f"`{x}`" for x in b["retrieved_ids"]),
                "hit": "포함" if gold_ids and all(g in b["retrieved_ids"] for g in gold_ids) else "없음",
                "answers": md_table(["모델", "답변"], rows),
                "scores": md_table(["지표", *[MODEL_KO[m] for m in preds]], scores),
            }
        )
    return blocks


def failure_examples(preds: dict[str, list[dict[str, Any]]], field: str | None, limit: int) -> list[list[str]]:
    """One example per failure type (field None) or per style (the fine-tuned model's failures first)."""
    rows = []
    order = [m for m in ("finetuned", "baseline_fewshot", "baseline") if m in preds]
    if field is None:
        for key in M.FAILURES:
            ex = next(((m, p) for m in order for p in preds[m] if p["scores"]["failure"] == key), None)
            if ex:
                m, p = ex
                rows.append(
                    [
                        failure_label(key),
                        MODEL_KO[m],
                        f"`{p['id']}`",
                        cell(p["question"]),
                        cell(p["gold_answer"], limit),
                        cell(p["answer"], limit),
                    ]
                )
        return rows
    for g in sorted({str(p.get(field) or "–") for p in preds["baseline"]}):
        ex = next(
            (
                (m, p)
                for m in order
                for p in preds[m]
                if str(p.get(field) or "–") == g and p["scores"]["failure"] != "ok"
            ),
            None,
        )
        if ex:
            m, p = ex
            rows.append(
                [
                    g,
                    MODEL_KO[m],
                    failure_label(p["scores"]["failure"]),
                    f"`{p['id']}`",
                    cell(p["question"]),
                    cell(p["answer"], limit),
                ]
            )
    return rows


def testset_context(ts: str, t: dict[str, Any], run: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    if t.get("skipped"):
        return {"name": ts, "ko": TESTSET_KO[ts], "skipped": True, "reason": t["reason"]}
    preds = run["preds"]
    limit = cfg["max_example_chars"]
    pct = int(round(float(cfg["ci"]) * 100))
    models = t["models"]
    headers = ["지표", *[MODEL_KO[m] for m in MODELS]] + [
        f"{MODEL_KO[a]} − {MODEL_KO[b]} Δ [{pct}% CI]" for a, b in PAIRS
    ]
    style_rows = []
    for style, sub in t["by_style"].items():
        style_rows.append(
            [
                style,
                sub["n"],
                *[fmt(sub.get("correct", {}).get(m)) for m in MODELS],
                *[fmt(sub.get("key_fact_recall", {}).get(m)) for m in MODELS if "key_fact_recall" in sub],
                top_failure(sub["failures"]["finetuned"]) or "–",
            ]
        )
    has_kfr = any("key_fact_recall" in sub for sub in t["by_style"].values())
    style_headers = ["스타일", "n", *[f"정답률 {MODEL_KO[m]}" for m in MODELS]]
    if has_kfr:
        style_headers += [f"핵심 사실 재현율 {MODEL_KO[m]}" for m in MODELS]
    style_headers.append("파인튜닝의 가장 흔한 실패")
    type_rows = [
        [
            qtype,
            sub["n"],
            *[fmt(sub.get("correct", {}).get(m)) for m in MODELS],
            *[fmt(sub.get("f1_char", {}).get(m)) for m in MODELS],
        ]
        for qtype, sub in t["by_type"].items()
    ]
    failure_rows = [
        [failure_label(k), FAILURE_DOCS[k][1], *[t["failures"].get(m, {}).get(k, "–") for m in MODELS]]
        for k in M.FAILURES
    ] + [["정상(ok)", "실패 없음", *[t["failures"].get(m, {}).get("ok", "–") for m in MODELS]]]
    cost_rows = [
        [
            MODEL_KO[m],
            fmt(t["cost"][m]["fewshot_k"]),
            fmt(t["cost"][m]["prompt_tokens_mean"], 1),
            fmt(t["cost"][m]["wall_seconds"], 1),
            fmt(t["values"].get("latency_s", {}).get(m), 2),
        ]
        for m in models
    ]
    ref_model = "baseline_fewshot" if "baseline_fewshot" in preds else "baseline"
    judge_rows = []
    for m, a in (t.get("judge_agreement") or {}).items():
        if a:
            judge_rows.append(
                [
                    MODEL_KO[m],
                    a["n_judged"],
                    a["n_unparsed"],
                    fmt(a["agreement"]),
                    fmt(a["kappa"]),
                    a.get("both_correct", 0),
                    a.get("only_deterministic", 0),
                    a.get("only_judge", 0),
                    a.get("both_wrong", 0),
                ]
            )
    return {
        "name": ts,
        "ko": TESTSET_KO[ts],
        "skipped": False,
        "n": t["n"],
        "n_answerable": t["n_answerable"],
        "n_unanswerable": t["n_unanswerable"],
        "has_fewshot": "baseline_fewshot" in models,
        "main_table": md_table(headers, main_table(t, quality_keys())),
        "detail_table": md_table(headers, main_table(t, list(DETAIL_KEYS))),
        "type_table": md_table(
            ["유형", "n", *[f"정답률 {MODEL_KO[m]}" for m in MODELS], *[f"문자 F1 {MODEL_KO[m]}" for m in MODELS]],
            type_rows,
        ),
        "style_table": md_table(style_headers, style_rows),
        "failure_table": md_table(["유형", "정의", *[MODEL_KO[m] for m in MODELS]], failure_rows),
        "failure_examples": md_table(
            ["실패 유형", "모델", "id", "질문", "정답", "답변"], failure_examples(preds, None, limit // 2)
        ),
        "style_examples": md_table(
            ["스타일", "모델", "실패 유형", "id", "질문", "답변"], failure_examples(preds, "style", limit // 2)
        ),
        "wrong_abstention": {m: fmt(v) for m, v in t["wrong_abstention_share"].items()},
        "cost_table": md_table(
            ["모델", "few-shot k", "프롬프트 토큰(평균)", "평가 전체 시간(s)", "질문당 지연(s)"], cost_rows
        ),
        "examples": example_blocks(preds, ref_model, limit),
        "ref_model_ko": MODEL_KO[ref_model],
        "vs_baseline": significant(t, _pair_key("finetuned", "baseline")),
        "vs_fewshot": significant(t, _pair_key("finetuned", "baseline_fewshot"))
        if "baseline_fewshot" in models
        else None,
        "judge_table": md_table(
            ["모델", "판정 수", "판정 실패", "일치율", "κ", "둘 다 정답", "결정적만 정답", "LLM만 정답", "둘 다 오답"],
            judge_rows,
        )
        if judge_rows
        else "",
        "top_failure": {m: top_failure(t["failures"][m]) for m in models},
        "correct_ci_width": _ci_width(t["pairs"].get(_pair_key("finetuned", "baseline"), {}).get("correct")),
    }


def top_failure(counts: dict[str, int]) -> str | None:
    """'label (n건)' of the most frequent failure type (first in M.FAILURES order on ties); None without failures."""
    if not any(counts.get(k, 0) for k in M.FAILURES):
        return None
    key = max(M.FAILURES, key=lambda k: (counts.get(k, 0), -M.FAILURES.index(k)))
    return f"{failure_label(key)} {counts[key]}건"


TARGET_KEYS = {"min", "max", "vs", "delta_min", "ci_low_above"}


def check_targets(comp: dict[str, Any], targets: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target condition of params report.targets against the fine-tuned model's numbers.

    A condition is `{min|max: x}` on the fine-tuned value, or `{vs: <baseline>, delta_min: x}` /
    `{vs: <baseline>, ci_low_above: x}` on the paired delta. `wrong_abstention_share` is read from
    its own entry. Status: met | missed | not measured (test set skipped, metric or model absent).
    """
    rows = []
    for ts in sorted(targets or {}):
        for key in sorted(targets[ts] or {}):
            conds = targets[ts][key]
            for cond in conds if isinstance(conds, list) else [conds]:
                if not isinstance(cond, dict) or not cond or set(cond) - TARGET_KEYS:
                    raise UserError(f"params: report.targets.{ts}.{key}: conditions use {sorted(TARGET_KEYS)}")
                rows.append({"testset": ts, "metric": key, **_check(comp["testsets"].get(ts) or {}, key, cond)})
    return rows


def _check(t: dict[str, Any], key: str, cond: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"condition": cond, "value": None, "status": "not measured"}
    if not t or t.get("skipped"):
        return out
    if "vs" in cond:
        r = t["pairs"].get(_pair_key("finetuned", cond["vs"]), {}).get(key)
        if not r or r["delta"] is None:
            return out
        out["value"], out["ci"] = r["delta"], [r["ci_low"], r["ci_high"]]
        ok = "delta_min" not in cond or r["delta"] >= cond["delta_min"]
        if "ci_low_above" in cond:
            ok = ok and r["ci_low"] is not None and r["ci_low"] > cond["ci_low_above"]
    else:
        source = t.get(key) if key == "wrong_abstention_share" else t["values"].get(key)
        value = (source or {}).get("finetuned")
        if value is None:
            return out
        out["value"] = value
        ok = ("min" not in cond or value >= cond["min"]) and ("max" not in cond or value <= cond["max"])
    out["status"] = "met" if ok else "missed"
    return out


def targets_table(rows: list[dict[str, Any]], pct: int) -> str:
    status_ko = {"met": "✅ 충족", "missed": "❌ 미달", "not measured": "– 측정 안 됨"}
    body = []
    for r in rows:
        c = r["condition"]
        if "vs" in c:
            what = f"파인튜닝 − {MODEL_KO.get(c['vs'], c['vs'])}:"
            parts = [f"Δ ≥ {c['delta_min']:+.2f}"] if "delta_min" in c else []
            parts += [f"{pct}% CI 하한 > {c['ci_low_above']:+.2f}"] if "ci_low_above" in c else []
            measured = fmt_delta(r["value"]) + (f" {fmt_ci(*r['ci'])}" if r.get("ci") else "")
        else:
            what = "파인튜닝:"
            parts = [f"≥ {c['min']:.2f}"] if "min" in c else []
            parts += [f"≤ {c['max']:.2f}"] if "max" in c else []
            measured = fmt(r["value"])
        name = "잘못된 기권 비율" if r["metric"] == "wrong_abstention_share" else label(r["metric"])
        body.append(
            [
                TESTSET_KO.get(r["testset"], r["testset"]),
                name,
                f"{what} {' 그리고 '.join(parts)}",
                measured,
                status_ko[r["status"]],
            ]
        )
    return md_table(["테스트셋", "지표", "목표", "측정값", "판정"], body) if body else ""


def _ci_width(r: dict[str, Any] | None) -> str | None:
    if not r or r.get("ci_low") is None or r.get("ci_high") is None:
        return None
    return f"{r['ci_high'] - r['ci_low']:.3f}"


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def hyperparameters(adapter: Path | None, train_cfg: dict[str, Any]) -> tuple[dict[str, Any], str]:
    path = adapter / "axolotl.yaml" if adapter else None
    if path and path.is_file():
        cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return {k: cfg[k] for k in HYPER_KEYS if k in cfg}, f"`{path.as_posix()}`"
    return dict(train_cfg), "params.yaml `train`"


def qa_samples(qa_dir: Path) -> list[dict[str, Any]]:
    path = qa_dir / "train.jsonl"
    if not path.is_file():
        return []
    seen: dict[str, dict[str, Any]] = {}
    for q in read_jsonl(path):
        seen.setdefault(q["type"], q)
    return [seen[t] for t in sorted(seen)]


def dataset_context(ds: dict[str, Any] | None, samples: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"present": bool(ds)}
    if ds:
        splits = [k for k, v in ds.items() if isinstance(v, dict) and "questions" in v]
        types = sorted({t for s in splits for t in ds[s].get("by_type", {})})
        rows = [
            [
                s,
                ds[s].get("questions"),
                ds[s].get("answerable"),
                ds[s].get("unanswerable"),
                ds[s].get("chunks"),
                *[ds[s].get("by_type", {}).get(t, 0) for t in types],
            ]
            for s in splits
        ]
        out["split_table"] = md_table(["분할", "질문", "답변 가능", "답변 불가", "원천 청크", *types], rows)
        facts = sorted({f for s in splits for f in ds[s].get("by_fact", {})})
        out["fact_table"] = (
            md_table(
                ["사실 유형", *splits], [[f, *[ds[s].get("by_fact", {}).get(f, 0) for s in splits]] for f in facts]
            )
            if facts
            else ""
        )
    out["samples_table"] = (
        md_table(
            ["유형", "사실", "질문", "정답", "근거 청크"],
            [[q["type"], q.get("fact", "–"), cell(q["question"]), cell(q["answer"]), q["chunk_id"]] for q in samples],
        )
        if samples
        else ""
    )
    return out


def retrieval_context(ret: dict[str, Any] | None, rcfg: dict[str, Any]) -> dict[str, Any]:
    if not ret:
        return {"present": False}
    methods = [k for k, v in ret.items() if isinstance(v, dict) and "mrr" in v]
    ks = sorted({k for m in methods for k in ret[m] if k.startswith("recall@")}, key=lambda s: int(s[7:]))
    extra = [k for k in ("ndcg@10", "latency_ms_per_query") if any(k in ret[m] for m in methods)]
    active = rcfg.get("method")
    rows = [
        [
            f"**{m}** (사용)" if m == active else m,
            *[fmt(ret[m].get(k)) for k in [*ks, "mrr"]],
            *[fmt(ret[m].get(k), 3 if k == "ndcg@10" else 2) for k in extra],
        ]
        for m in methods
    ]
    k = rcfg.get("top_k")
    recall_k = ret[active].get(f"recall@{k}") if isinstance(ret.get(active), dict) else None
    return {
        "present": True,
        "table": md_table(["방식", *ks, "MRR", *extra], rows),
        "n_questions": fmt(ret.get("n_questions")),
        "n_chunks": fmt(ret.get("n_chunks")),
        "embedder": ret.get("embedder", "–"),
        "recall_at_k": fmt(recall_k) if recall_k is not None else None,
    }


def build_context(
    args: argparse.Namespace,
    params: dict[str, Any],
    runs: dict[str, Any],
    comp: dict[str, Any],
    drawn: dict[str, Any],
    train_curve,
    val_curve,
) -> dict[str, Any]:
    cfg = params["report"]
    hyper, hyper_src = hyperparameters(args.adapter, params["train"])
    train = optional_json(args.metrics_dir / "train.json")
    ret = optional_json(args.metrics_dir / "retrieval.json")
    ecfg = params["evaluate"]
    testsets = {ts: testset_context(ts, comp["testsets"][ts], runs[ts], cfg) for ts in TESTSETS}
    loss: dict[str, Any] = {"train": None, "val": None}
    if train_curve:
        loss["train"] = (
            f"{train_curve[0][1]:.3f}",
            int(train_curve[0][0]),
            f"{train_curve[-1][1]:.3f}",
            int(train_curve[-1][0]),
        )
    if val_curve:
        loss["val"] = (f"{val_curve[0][1]:.3f}", f"{val_curve[-1][1]:.3f}", f"{min(v for _, v in val_curve):.3f}")
    return {
        "p": params,
        "model_name": params["model"].get("name", "–"),
        "embedder": (ret or {}).get("embedder") or params["index"].get("embedder", "–"),
        "pct": int(round(float(cfg["ci"]) * 100)),
        "n_resamples": comp["n_resamples"],
        "seed": comp["seed"],
        "fewshot_k": ecfg.get("fewshot_k"),
        "fewshot_chars": ecfg.get("fewshot_chunk_chars"),
        "ts": testsets,
        "template": testsets["template"],
        "natural": testsets["natural"],
        "dataset": dataset_context(optional_json(args.metrics_dir / "dataset.json"), qa_samples(args.qa)),
        "retrieval": retrieval_context(ret, params["retrieval"]),
        "metric_docs": md_table(
            ["지표", "정의", "선택 이유"],
            [
                list(METRIC_DOCS.get(k, (k, "–", "–")))
                for k in [*quality_keys(), "latency_s", "tokens_per_s"]
                if any(not t.get("skipped") and k in t["values"] for t in comp["testsets"].values())
            ],
        ),
        "judge_model": (ecfg.get("judge") or {}).get("model", "–"),
        "judge_on": any(t.get("judge_table") for t in testsets.values()),
        "hyper_source": hyper_src,
        "hyper_table": md_table(["키", "값"], [[f"`{k}`", cell(v)] for k, v in hyper.items()]) if hyper else "",
        "train_table": md_table(
            ["항목", "값"],
            [[f"`{k}`", fmt(v)] for k, v in _flatten(train).items() if isinstance(v, int | float | str | bool)],
        )
        if train
        else "",
        "figures": drawn,
        "targets_table": targets_table(comp.get("targets") or [], int(round(float(cfg["ci"]) * 100))),
        "loss": loss,
        "failure_docs": FAILURE_DOCS,
        "model_ko": MODEL_KO,
    }


def render(ctx: dict[str, Any], template: Path = TEMPLATE) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template.parent)),
        undefined=jinja2.StrictUndefined,  # a typo in the template fails the stage instead of printing nothing
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # markdown, not HTML
    )
    env.filters.update({"fmt": fmt, "delta": fmt_delta, "cell": cell})
    text = env.get_template(template.name).render(**ctx)
    # Collapse the blank-line runs that conditional blocks leave behind.
    lines: list[str] = []
    for line in text.splitlines():
        if line.strip() == "" and lines and lines[-1].strip() == "":
            continue
        lines.append(line.rstrip())
    return "\n".join(lines).strip() + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eval", type=Path, required=True, help="folder with <model>/<testset>/predictions.jsonl")
    ap.add_argument(
        "--metrics-dir", type=Path, required=True, help="folder with eval/, dataset.json, retrieval.json, train.json"
    )
    ap.add_argument("--plots", type=Path, required=True, help="folder with train_loss.csv / val_loss.csv")
    ap.add_argument("--qa", type=Path, required=True, help="QA dataset folder (question examples)")
    ap.add_argument("--out", type=Path, required=True, help="report folder (REPORT.md, figures/)")
    ap.add_argument("--comparison", type=Path, default=None, help="default: <metrics-dir>/comparison.json")
    ap.add_argument("--adapter", type=Path, default=None, help="adapter folder with the resolved axolotl.yaml")
    ap.add_argument("--plot-metrics", type=Path, default=None, help="CSV for `dvc plots`: per-metric bars")
    ap.add_argument("--plot-types", type=Path, default=None, help="CSV for `dvc plots`: per-question-style bars")
    ap.add_argument("--params", type=Path, default=P.DEFAULT_PARAMS)
    args = ap.parse_args(argv)

    params = P.load(args.params, "report", "model", "index", "retrieval", "train", "evaluate", "prompt")
    cfg = params["report"]
    dpi = P.require(cfg, "figure_dpi", int, "report")
    P.require(cfg, "max_example_chars", int, "report")
    runs = load_runs(args.eval, args.metrics_dir)
    comparison = build_comparison(runs, cfg)
    train_curve = read_curve(args.plots / "train_loss.csv", "loss")
    val_curve = read_curve(args.plots / "val_loss.csv", "val_loss")
    with atomic_dir(args.out) as tmp:
        drawn = make_figures(comparison, train_curve, val_curve, tmp / "figures", dpi)
        ctx = build_context(args, params, runs, comparison, drawn, train_curve, val_curve)
        (tmp / "REPORT.md").write_text(render(ctx), encoding="utf-8")
    write_json(args.comparison or args.metrics_dir / "comparison.json", comparison)
    metric_rows, style_rows = plot_rows(comparison)
    if args.plot_metrics:
        write_csv(args.plot_metrics, metric_rows)
    if args.plot_types:
        write_csv(args.plot_types, style_rows)
    for ts, t in comparison["testsets"].items():
        if t.get("skipped"):
            log.info("report: %s test set skipped (%s)", ts, t["reason"])
            continue
        counts = Counter({m: sum(p["scores"]["correct"] for p in ps) for m, ps in runs[ts]["preds"].items()})
        f1 = t["values"].get("f1_char", {})
        log.info(
            "report: %s n=%d correct %s, f1_char %s",
            ts,
            t["n"],
            " / ".join(f"{m} {counts[m]}" for m in t["models"]),
            " / ".join(f"{m} {fmt(f1.get(m))}" for m in t["models"]),
        )


if __name__ == "__main__":
    run_cli(main)
