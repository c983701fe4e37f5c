"""report: baseline vs fine-tuned comparison (paired bootstrap CIs), figures and REPORT.md.

    python -m stages.report --baseline data/eval/baseline --finetuned data/eval/finetuned \
        --metrics-dir metrics --plots plots --qa data/qa --out report [--adapter models/adapter]

Every number in REPORT.md is read from a pipeline output (predictions, metrics/*.json,
plots/*.csv, params.yaml, the resolved Axolotl config) — nothing is typed by hand.
Optional inputs (dataset/retrieval/train metrics, loss CSVs, axolotl.yaml) may be
missing: their section says so instead of failing. No timestamps: same inputs, same bytes.
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

FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/nanum/NanumGothic.ttf",
    "/usr/share/fonts/truetype/nanum/NanumBarunGothic.ttf",
)
MODELS = ("baseline", "finetuned")
MODEL_KO = {"baseline": "베이스라인", "finetuned": "파인튜닝"}

# label, definition, why this metric (one line each) — shown in the metric-choice table.
METRIC_DOCS: dict[str, tuple[str, str, str]] = {
    "correct": (
        "정답률",
        "실패 유형 분류에서 'ok'인 비율 (답변 가능: 포함/EM/형태소 F1 기준, 불가: 기권)",
        "질문 유형이 섞인 테스트셋 전체를 한 숫자로 요약",
    ),
    "em": (
        "EM",
        "정규화(NFC·인용·문장부호·공백) 후 완전 일치 — 답변 가능 질문",
        "템플릿 사실(주소·전화·요금)은 정답이 한 문자열",
    ),
    "contains": (
        "포함 일치",
        "정규화·공백 제거 후 정답이 답변 안에 들어 있음",
        "정답을 말하고 덧붙인 답을 EM처럼 0점 처리하지 않음",
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
    "abstain_p": ("기권 정밀도", "기권한 답 중 실제로 답이 없는 질문의 비율", "불필요한 기권(정보 누락) 측정"),
    "abstain_r": ("기권 재현율", "답이 없는 질문 중 기권한 비율", "환각 대신 모른다고 말하는 능력"),
    "abstain_f1": ("기권 F1", "기권 정밀도·재현율의 조화평균 (양성 = 답변 불가)", "기권의 두 오류를 한 숫자로"),
    "abstain_rate": ("기권 비율", "전체 질문 중 기권한 비율", "과도한 기권 여부 확인용 (낮을수록 좋음은 아님)"),
    "citation_ok": (
        "인용 정확도",
        "정답 청크가 검색된 답변 가능 질문에서 그 청크를 [cNNN]으로 인용한 비율",
        "출처 표시가 RAG 답변의 검증 가능성을 만든다",
    ),
    "supported": (
        "충실도",
        "기권하지 않은 답변 가능 답 중 숫자는 그대로, 내용 형태소는 모두 문맥에 있는 비율",
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


# ---------------------------------------------------------------- loading
def load_predictions(folder: Path) -> list[dict[str, Any]]:
    path = folder / "predictions.jsonl"
    if not path.is_file():
        raise UserError(f"{path}: not found (run the evaluate stage first)")
    preds = read_jsonl(path)
    if not preds:
        raise UserError(f"{path}: no predictions")
    if any("scores" not in p for p in preds):
        raise UserError(f"{path}: predictions without scores (re-run the evaluate stage)")
    return preds


def align(base: list[dict[str, Any]], tuned: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fine-tuned predictions in the baseline's order; both runs must cover the same questions."""
    by_id = {p["id"]: p for p in tuned}
    if set(by_id) != {p["id"] for p in base}:
        raise UserError("baseline and fine-tuned predictions cover different questions (same evaluate.limit?)")
    return [by_id[p["id"]] for p in base]


def optional_json(path: Path) -> Any:
    if not path.is_file():
        log.info("%s: not found, its section is left out", path)
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


# ---------------------------------------------------------------- comparison
def build_comparison(base: list[dict[str, Any]], tuned: list[dict[str, Any]], cfg: dict[str, Any]) -> dict[str, Any]:
    seed = P.require(cfg, "seed", int, "report")
    n_resamples = P.require(cfg, "n_resamples", int, "report")
    ci = float(P.require(cfg, "ci", (int, float), "report"))
    bs, ts = [p["scores"] for p in base], [p["scores"] for p in tuned]
    out: dict[str, Any] = {
        "n": len(base),
        "ci": ci,
        "n_resamples": n_resamples,
        "seed": seed,
        "overall": _drop_unused_optional(M.compare(bs, ts, base, tuned, n_resamples, seed, ci)),
        "by_type": {},
    }
    for qtype in sorted({p["type"] for p in base}):
        idx = [i for i, p in enumerate(base) if p["type"] == qtype]
        sub = M.compare(
            [bs[i] for i in idx],
            [ts[i] for i in idx],
            [base[i] for i in idx],
            [tuned[i] for i in idx],
            n_resamples,
            seed,
            ci,
        )
        keep = {k: v for k, v in sub.items() if v["baseline"] is not None and v["finetuned"] is not None}
        out["by_type"][qtype] = {"n": len(idx), **keep}
    out["failures"] = {"baseline": M.failure_counts(bs), "finetuned": M.failure_counts(ts)}
    agreement = {name: M.judge_agreement(scores) for name, scores in zip(MODELS, (bs, ts), strict=True)}
    if any(v is not None for v in agreement.values()):
        out["judge_agreement"] = agreement
    return out


def _drop_unused_optional(comp: dict[str, Any]) -> dict[str, Any]:
    """Optional metrics (the LLM judge) that neither run produced stay out of comparison.json."""
    return {k: v for k, v in comp.items() if k not in M.OPTIONAL_KEYS or has_values(comp, k)}


def has_values(comp_overall: dict[str, Any], key: str) -> bool:
    r = comp_overall.get(key)
    return bool(r) and any(r.get(m) is not None for m in MODELS)


def plot_rows(comp: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows of the CSVs `dvc plots` draws: per metric and per question type, one bar per model.

    Bar labels carry the model ('f1_char · finetuned'): DVC's bar template offsets
    bars by revision only, so two series in one revision would otherwise stack.
    """
    metric_rows = [
        {"label": f"{key} · {m}", "metric": key, "model": m, "value": comp["overall"][key][m]}
        for key in QUALITY_KEYS
        if has_values(comp["overall"], key)
        for m in MODELS
        if comp["overall"][key][m] is not None
    ]
    type_rows = [
        {
            "label": f"{qtype} (n={sub['n']}) · {m}",
            "type": qtype,
            "model": m,
            "correct": sub["correct"][m],
        }
        for qtype, sub in comp["by_type"].items()
        if "correct" in sub
        for m in MODELS
    ]
    return metric_rows, type_rows


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
        return tuned[i]["scores"]["f1_char"] - base[i]["scores"]["f1_char"]

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
        ax.bar_label(bars, fmt=label_fmt, fontsize=7, padding=1)
    ax.set_xticks(x, groups, rotation=30, ha="right")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.margins(y=0.12)  # room for the value labels
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _save(fig, path, dpi)


# ---------------------------------------------------------------- markdown helpers
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


def table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def verdict(m: M.Metric, r: dict[str, Any]) -> str:
    """▲ better / ▼ worse when the CI excludes 0, else '='."""
    lo, hi = r.get("ci_low"), r.get("ci_high")
    if lo is None or hi is None or m.higher_is_better is None:
        return "–"
    if lo > 0 or hi < 0:
        better = (lo > 0) == m.higher_is_better
        return "▲ 개선" if better else "▼ 악화"
    return "= 동일" if lo == hi == 0 else "= 차이 불확실"


def comparison_rows(comp: dict[str, Any], keys: list[str]) -> list[list[Any]]:
    rows = []
    for key in keys:
        r = comp.get(key)
        if not r or (r["baseline"] is None and r["finetuned"] is None):
            continue
        m = M.BY_KEY[key]
        rows.append(
            [
                METRIC_DOCS[key][0],
                fmt(r["baseline"]),
                fmt(r["finetuned"]),
                fmt_delta(r["delta"]),
                fmt_ci(r["ci_low"], r["ci_high"]),
                verdict(m, r),
            ]
        )
    return rows


# ---------------------------------------------------------------- the report
QUALITY_KEYS = [
    "correct",
    "em",
    "contains",
    "f1_morph",
    "f1_char",
    "rouge_l_char",
    "abstain_p",
    "abstain_r",
    "abstain_f1",
    "citation_ok",
    "supported",
    "format_fail",
    "judge_correct",  # only when the optional LLM judge ran (rows without values are left out)
]
DETAIL_KEYS = ["abstain_rate", "empty", "looping", "over_length", "latency_s", "tokens_per_s"]


class Report:
    def __init__(self, ctx: dict[str, Any]):
        self.c = ctx
        self.lines: list[str] = []

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def render(self) -> str:
        self.overview()
        self.dataset()
        self.baseline()
        self.finetune()
        self.comparison()
        self.code()
        self.conclusion()
        return "\n".join(self.lines).rstrip() + "\n"

    # 1 ------------------------------------------------------------
    def overview(self) -> None:
        c = self.c
        pr, comp = c["params"], c["comparison"]
        model = pr["model"].get("name", "–")
        ret = c.get("retrieval") or {}
        embedder = ret.get("embedder") or pr["index"].get("embedder", "–")
        rc = pr["retrieval"]
        o = comp["overall"]
        self.add(
            "# 제천 여행 브로셔 RAG — 실험 보고서",
            "",
            "## 1. 개요",
            "",
            "한국어 관광 브로셔 PDF 한 권을 근거로 질문에 답하는 RAG 시스템을 만들고, 같은 검색기·프롬프트·디코딩에서 "
            "LoRA 파인튜닝 전후의 생성 모델을 비교한다. 파이프라인은 DVC 스테이지 "
            "`parse → chunk → synthesize → index → sft → train → evaluate@{baseline,finetuned} → report` 이다.",
            "",
        )
        self.add(
            *table(
                ["항목", "값"],
                [
                    ["프로필 (params `profile`)", f"`{pr['profile']}`"],
                    ["생성 모델", f"`{model}`"],
                    ["임베딩 모델", f"`{embedder}`"],
                    ["검색 방식 / top-k", f"`{rc.get('method')}` / {rc.get('top_k')}"],
                    [
                        "디코딩",
                        f"greedy, max_new_tokens={pr['evaluate'].get('max_new_tokens')}, "
                        f"batch={pr['evaluate'].get('batch_size')}, {pr['evaluate'].get('device')}/"
                        f"{pr['evaluate'].get('dtype')}",
                    ],
                    ["테스트 질문 수", comp["n"]],
                ],
            )
        )
        self.add(
            "",
            f"핵심 결과: 정답률 {fmt(o['correct']['baseline'])} → {fmt(o['correct']['finetuned'])} "
            f"(Δ {fmt_delta(o['correct']['delta'])}, {int(round(comp['ci'] * 100))}% CI "
            f"{fmt_ci(o['correct']['ci_low'], o['correct']['ci_high'])}), "
            f"문자 F1 {fmt(o['f1_char']['baseline'])} → {fmt(o['f1_char']['finetuned'])}, "
            f"기권 F1 {fmt(o['abstain_f1']['baseline'])} → {fmt(o['abstain_f1']['finetuned'])}.",
            "",
        )

    # 2 ------------------------------------------------------------
    def dataset(self) -> None:
        c = self.c
        self.add("## 2. 데이터셋 구축", "")
        self.add(
            "PDF의 텍스트 레이어(없는 페이지는 OCR)에서 레이아웃 블록을 읽기 순서대로 추출하고(parse), 섹션 경로를 유지한 "
            "청크로 나눈 뒤(chunk), 청크마다 규칙 기반으로 사실형·서술형·답변 불가 질문을 생성했다(synthesize). "
            "train/validation/test 분할은 **원천 청크 단위**라서 테스트 질문의 근거 청크는 학습 질문에 쓰이지 않는다.",
            "",
        )
        ds = c.get("dataset")
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
            self.add("### 분할별 통계 (`metrics/dataset.json`)", "")
            self.add(*table(["분할", "질문", "답변 가능", "답변 불가", "원천 청크", *types], rows), "")
            facts = sorted({f for s in splits for f in ds[s].get("by_fact", {})})
            if facts:
                self.add("사실 유형별 질문 수:", "")
                self.add(
                    *table(
                        ["사실 유형", *splits],
                        [[f, *[ds[s].get("by_fact", {}).get(f, 0) for s in splits]] for f in facts],
                    ),
                    "",
                )
        else:
            self.add("_`metrics/dataset.json` 없음 — 통계 생략._", "")
        samples = c.get("qa_samples") or []
        if samples:
            self.add("### 질문 예시 (학습 분할, 유형별 첫 질문)", "")
            self.add(
                *table(
                    ["유형", "사실", "질문", "정답", "근거 청크"],
                    [
                        [q["type"], q.get("fact", "–"), cell(q["question"]), cell(q["answer"]), q["chunk_id"]]
                        for q in samples
                    ],
                ),
                "",
            )
        ret = c.get("retrieval")
        self.add("### 검색 성능 (`metrics/retrieval.json`)", "")
        if ret:
            methods = [k for k, v in ret.items() if isinstance(v, dict) and "mrr" in v]
            ks = sorted({k for m in methods for k in ret[m] if k.startswith("recall@")}, key=lambda s: int(s[7:]))
            extra = [k for k in ("ndcg@10", "latency_ms_per_query") if any(k in ret[m] for m in methods)]
            active = c["params"]["retrieval"].get("method")
            rows = [
                [
                    f"**{m}** (사용)" if m == active else m,
                    *[fmt(ret[m].get(k)) for k in [*ks, "mrr"]],
                    *[fmt(ret[m].get(k), 3 if k == "ndcg@10" else 2) for k in extra],
                ]
                for m in methods
            ]
            self.add(*table(["방식", *ks, "MRR", *extra], rows), "")
            self.add(
                f"답변 가능 질문 {fmt(ret.get('n_questions'))}개, 청크 {fmt(ret.get('n_chunks'))}개, "
                f"임베딩 `{ret.get('embedder', '–')}`. hybrid = BM25(Kiwi 형태소)와 dense의 RRF 융합.",
                "",
            )
        else:
            self.add("_`metrics/retrieval.json` 없음 — 검색 표 생략._", "")

    # 3 ------------------------------------------------------------
    def baseline(self) -> None:
        c = self.c
        comp = c["comparison"]
        self.add("## 3. 베이스라인 평가", "")
        self.add("### 지표 선택", "")
        self.add(
            *table(
                ["지표", "정의", "선택 이유"],
                [
                    [METRIC_DOCS[k][0], METRIC_DOCS[k][1], METRIC_DOCS[k][2]]
                    for k in QUALITY_KEYS + DETAIL_KEYS[-2:]
                    if has_values(comp["overall"], k)
                ],
            ),
            "",
        )
        judged = "judge_agreement" in comp
        self.add(
            "답변 지표(EM·포함·F1·ROUGE-L)는 답변 가능 질문만, 기권 지표는 '답변 불가'를 양성으로 전체 질문에서 계산한다. "
            + (
                f"LLM 판정(`{c['params']['evaluate'].get('judge', {}).get('model', '–')}`)을 함께 썼고, "
                "결정적 정답률과의 일치도는 5장에 있다."
                if judged
                else "LLM 판정(`evaluate.judge`)은 꺼져 있다: 오프라인 cpu 프로필에는 채점할 모델이 없고, "
                "BERTScore는 허브 모델이 필요하다 — 결정적 지표만 쓴다."
            ),
            "",
        )
        o = comp["overall"]
        self.add(f"### 베이스라인 결과 (n={comp['n']})", "")
        self.add(
            *table(
                ["지표", "베이스라인"],
                [[METRIC_DOCS[k][0], fmt(o[k]["baseline"])] for k in QUALITY_KEYS + DETAIL_KEYS if has_values(o, k)],
            ),
            "",
        )
        self.failure_table(["baseline"])

    def failure_table(self, models: list[str]) -> None:
        fails = self.c["comparison"]["failures"]
        rows = [[FAILURE_DOCS[k][0], FAILURE_DOCS[k][1], *[fails[m].get(k, 0) for m in models]] for k in M.FAILURES]
        rows.append(["정상(ok)", "실패 없음", *[fails[m].get("ok", 0) for m in models]])
        self.add(
            "실패 유형 (예시당 하나, 위에서부터 먼저 해당하는 것; 길이 한도에 걸린 오답은 내용 기준으로 분류):", ""
        )
        self.add(*table(["유형", "정의", *[MODEL_KO[m] for m in models]], rows), "")

    # 4 ------------------------------------------------------------
    def finetune(self) -> None:
        c = self.c
        self.add("## 4. 파인튜닝", "")
        self.add(
            "sft 스테이지는 각 학습 질문에 실제 검색 결과(top-k)를 문맥으로 붙이고, 일부는 정답 청크를 빼서 기권을 학습시킨다 "
            "(RAFT 방식). 평가와 같은 `stages.common.prompting` 코드로 프롬프트를 만들고, Axolotl로 LoRA를 학습했다.",
            "",
        )
        hyper = c.get("hyper") or {}
        src = c.get("hyper_source", "params.yaml `train`")
        self.add(f"### 하이퍼파라미터 ({src})", "")
        if hyper:
            self.add(*table(["키", "값"], [[f"`{k}`", cell(v)] for k, v in hyper.items()]), "")
        train = c.get("train_metrics")
        if train:
            flat = {k: v for k, v in _flatten(train).items() if isinstance(v, int | float | str | bool)}
            self.add("### 학습 결과 (`metrics/train.json`)", "")
            self.add(*table(["항목", "값"], [[f"`{k}`", fmt(v)] for k, v in flat.items()]), "")
        if c.get("loss_figure"):
            self.add("### 손실 곡선", "", "![학습 손실](figures/loss_curve.png)", "")
            tr, va = c["train_curve"], c["val_curve"]
            bits = []
            if tr:
                bits.append(
                    f"train loss {fmt(tr[0][1])} (step {int(tr[0][0])}) → {fmt(tr[-1][1])} (step {int(tr[-1][0])})"
                )
            if va:
                bits.append(f"validation loss {fmt(va[0][1])} → {fmt(va[-1][1])} (최저 {fmt(min(v for _, v in va))})")
            self.add("; ".join(bits) + ".", "")
        else:
            self.add("_`plots/train_loss.csv` 없음 — 손실 곡선 생략._", "")

    # 5 ------------------------------------------------------------
    def comparison(self) -> None:
        c = self.c
        comp = c["comparison"]
        pct = int(round(comp["ci"] * 100))
        self.add("## 5. 비교", "")
        self.add(
            f"같은 {comp['n']}개 테스트 질문에 대한 paired bootstrap (재표본 {comp['n_resamples']}회, seed {comp['seed']}): "
            f"Δ = 파인튜닝 − 베이스라인, {pct}% CI가 0을 포함하지 않으면 ▲/▼로 표시.",
            "",
        )
        headers = ["지표", "베이스라인", "파인튜닝", "Δ", f"{pct}% CI", "판정"]
        self.add(*table(headers, comparison_rows(comp["overall"], QUALITY_KEYS)), "")
        self.add("세부 지표:", "")
        self.add(*table(headers, comparison_rows(comp["overall"], DETAIL_KEYS)), "")
        self.add("![지표 비교](figures/metrics.png)", "")
        self.add("### 질문 유형별", "")
        rows = []
        for qtype, sub in comp["by_type"].items():
            for key in ("correct", "f1_char", "abstain_r"):
                if key in sub:
                    r = sub[key]
                    rows.append(
                        [
                            qtype,
                            sub["n"],
                            METRIC_DOCS[key][0],
                            fmt(r["baseline"]),
                            fmt(r["finetuned"]),
                            fmt_delta(r["delta"]),
                            fmt_ci(r["ci_low"], r["ci_high"]),
                        ]
                    )
        self.add(*table(["유형", "n", "지표", "베이스라인", "파인튜닝", "Δ", f"{pct}% CI"], rows), "")
        self.add("![유형별 비교](figures/by_type.png)", "")
        self.judge_agreement()
        self.examples()
        self.add("### 실패 유형 분석", "")
        self.failure_table(list(MODELS))
        self.add("![실패 유형](figures/failures.png)", "")
        limit = c["params"]["report"]["max_example_chars"] // 3
        for key in M.FAILURES:
            bits = []
            for m in MODELS:
                ex = next((p for p in c["preds"][m] if p["scores"]["failure"] == key), None)
                if ex:
                    bits.append(
                        f"{MODEL_KO[m]} `{ex['id']}` 「{cell(ex['question'])}」 → 「{cell(ex['answer'], limit)}」"
                    )
            if bits:
                self.add(f"- **{FAILURE_DOCS[key][0]}**: " + "; ".join(bits))
        self.add("")

    def judge_agreement(self) -> None:
        agreement = self.c["comparison"].get("judge_agreement")
        if not agreement:
            return
        self.add("### LLM 판정과 결정적 지표의 일치도", "")
        self.add(
            "결정적 `정답률`(실패 유형 'ok')과 LLM 판정(0/1)을 예시별로 비교했다. Cohen's κ는 우연 일치를 뺀 일치도 "
            "(1 = 완전 일치, 0 = 우연 수준)이며, 한쪽이 모든 예시에 같은 값을 주면 정의되지 않는다(–).",
            "",
        )
        rows = []
        for m in MODELS:
            a = agreement.get(m)
            if not a:
                continue
            rows.append(
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
        self.add(
            *table(
                [
                    "모델",
                    "판정 수",
                    "판정 실패",
                    "일치율",
                    "κ",
                    "둘 다 정답",
                    "결정적만 정답",
                    "LLM만 정답",
                    "둘 다 오답",
                ],
                rows,
            ),
            "",
        )

    def examples(self) -> None:
        c = self.c
        base, tuned = c["preds"]["baseline"], c["preds"]["finetuned"]
        limit = c["params"]["report"]["max_example_chars"]
        self.add("### 정성 비교 (규칙으로 선택)", "")
        for n, (why, i) in enumerate(pick_examples(base, tuned), start=1):
            b, t = base[i], tuned[i]
            hit = "포함" if b["gold_chunk_id"] in b["retrieved_ids"] else "없음"
            self.add(
                f"**예시 {n} — {why}** · `{b['id']}` ({b['type']})",
                "",
                f"- 질문: {cell(b['question'])}",
                f"- 정답: {cell(b['gold_answer'])} (근거 청크 `{b['gold_chunk_id']}`, 검색 결과 "
                f"{', '.join(f'`{x}`' for x in b['retrieved_ids'])} — 정답 청크 {hit})",
                "",
            )
            # Answers one per row (full width), scores side by side: a long rambling baseline answer
            # in a side-by-side cell would squeeze the other column to a few characters.
            self.add(
                *table(
                    ["모델", "답변"],
                    [[MODEL_KO[m], cell(p["answer"], limit)] for m, p in zip(MODELS, (b, t), strict=True)],
                ),
                "",
            )
            rows = []
            for key in ("f1_char", "f1_morph", "judge_correct"):
                if b["scores"].get(key) is not None:
                    rows.append([METRIC_DOCS[key][0], fmt(b["scores"][key]), fmt(t["scores"].get(key))])
            rows.append(["기권", fmt(b["scores"]["abstained"]), fmt(t["scores"]["abstained"])])
            rows.append(["실패 유형", b["scores"]["failure"], t["scores"]["failure"]])
            self.add(*table(["지표", "베이스라인", "파인튜닝"], rows), "")

    # 6 ------------------------------------------------------------
    def code(self) -> None:
        self.add("## 6. 코드", "")
        self.add(
            "모든 스테이지는 `python -m stages.<name>`이며 `params.yaml`(공통 섹션 + `profiles.<profile>`)만 읽는다. "
            "프롬프트는 `stages/common/prompting.py` 하나가 학습(sft)과 평가(evaluate)에 쓰이고, 지표는 "
            "`stages/common/metrics.py` 하나가 evaluate와 report에 쓰인다 (문자 ROUGE-L은 오프라인 "
            "`evaluate` 모듈 `stages/common/evaluate_modules/korean_rouge.py`로도 제공).",
            "",
            "재현:",
            "",
            "```bash",
            "dvc repro                              # 전체 파이프라인",
            "dvc exp run -S train.lora_r=32         # 하이퍼파라미터를 바꾼 실험",
            "dvc metrics diff                       # 지표 비교 (metrics/eval/*.json, metrics/comparison.json)",
            "dvc plots show                         # 손실 곡선, 검색 recall@k, 지표·유형별 막대",
            "```",
            "",
        )

    # 7 ------------------------------------------------------------
    def conclusion(self) -> None:
        c = self.c
        comp = c["comparison"]
        o = comp["overall"]
        better, worse = [], []
        for key in QUALITY_KEYS:
            r = o.get(key)
            if not r:
                continue
            v = verdict(M.BY_KEY[key], r)
            if v.startswith("▲"):
                better.append(f"{METRIC_DOCS[key][0]} ({fmt_delta(r['delta'])})")
            elif v.startswith("▼"):
                worse.append(f"{METRIC_DOCS[key][0]} ({fmt_delta(r['delta'])})")
        pct = int(round(comp["ci"] * 100))
        self.add("## 7. 결론", "")
        self.add(
            f"- {pct}% CI가 0을 넘는 개선: {', '.join(better) or '없음'}.",
            f"- {pct}% CI가 0을 넘는 악화: {', '.join(worse) or '없음'}.",
        )
        fails = comp["failures"]
        top = {m: max(M.FAILURES, key=lambda k: (fails[m].get(k, 0), -M.FAILURES.index(k))) for m in MODELS}
        self.add(
            "- 가장 흔한 실패: "
            + ", ".join(
                f"{MODEL_KO[m]} {FAILURE_DOCS[top[m]][0]} {fails[m][top[m]]}건"
                if fails[m].get(top[m])
                else f"{MODEL_KO[m]} 실패 없음"
                for m in MODELS
            )
            + ".",
            "",
            "### 한계",
            "",
        )
        n_unans = sum(not p["answerable"] for p in c["preds"]["baseline"])
        lim = [
            f"- 테스트 질문 {comp['n']}개(답변 불가 {n_unans}개), 단일 seed 학습: {ci_width_note(o.get('correct'), pct)}",
            "- 질문은 규칙 기반 합성이라 실제 사용자 질문보다 정형적이며, 템플릿 사실 질문에서는 파인튜닝 효과가 "
            "과대평가될 수 있다.",
            "- 지표는 어휘 기반(문자·형태소)이고 충실도는 어휘 포함 여부의 근사라 바꿔 말한 정답이나 미묘한 환각을 놓친다.",
        ]
        ret = c.get("retrieval") or {}
        active = c["params"]["retrieval"].get("method")
        k = c["params"]["retrieval"].get("top_k")
        if isinstance(ret.get(active), dict) and f"recall@{k}" in ret[active]:
            lim.append(f"- 생성 품질은 검색에 묶인다: `{active}` recall@{k} = {fmt(ret[active][f'recall@{k}'])}.")
        lim.append(f"- 지연 시간은 `{c['params']['evaluate'].get('device')}` 한 대에서 잰 값이다.")
        self.add(*lim, "")


def ci_width_note(r: dict[str, Any] | None, pct: int) -> str:
    """How large a change this test set can resolve, from the width of the correct-rate CI."""
    if not r or r.get("ci_low") is None or r.get("ci_high") is None:
        return "신뢰구간을 계산할 수 없다."
    width = r["ci_high"] - r["ci_low"]
    return (
        f"정답률 Δ의 {pct}% CI 폭이 {width:.3f}이다 — 이보다 훨씬 작은 차이는 이 테스트셋으로 가릴 수 없고, "
        "다른 seed의 학습 변동은 이 CI에 들어 있지 않다."
    )


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


def make_figures(ctx: dict[str, Any], fig_dir: Path, dpi: int) -> None:
    setup_matplotlib()
    fig_dir.mkdir(parents=True, exist_ok=True)
    ctx["loss_figure"] = plot_loss(ctx["train_curve"], ctx["val_curve"], fig_dir / "loss_curve.png", dpi)
    comp = ctx["comparison"]
    keys = [k for k in QUALITY_KEYS if has_values(comp["overall"], k)]
    plot_bars(
        [METRIC_DOCS[k][0] for k in keys],
        {MODEL_KO[m]: [comp["overall"][k][m] for k in keys] for m in MODELS},
        "베이스라인 vs 파인튜닝",
        fig_dir / "metrics.png",
        dpi,
    )
    types = list(comp["by_type"])
    series = {}
    for m in MODELS:
        series[f"{MODEL_KO[m]} 정답률"] = [comp["by_type"][t].get("correct", {}).get(m) for t in types]
    for m in MODELS:
        series[f"{MODEL_KO[m]} 문자 F1"] = [comp["by_type"][t].get("f1_char", {}).get(m) for t in types]
    plot_bars(
        [f"{t} (n={comp['by_type'][t]['n']})" for t in types], series, "질문 유형별", fig_dir / "by_type.png", dpi
    )
    cats = [*M.FAILURES, "ok"]
    plot_bars(
        [FAILURE_DOCS[k][0] if k in FAILURE_DOCS else "정상" for k in cats],
        {MODEL_KO[m]: [float(comp["failures"][m].get(k, 0)) for k in cats] for m in MODELS},
        "실패 유형 (건수)",
        fig_dir / "failures.png",
        dpi,
        label_fmt="%d",
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", type=Path, required=True, help="evaluate output folder of the baseline")
    ap.add_argument("--finetuned", type=Path, required=True, help="evaluate output folder of the fine-tuned model")
    ap.add_argument(
        "--metrics-dir", type=Path, required=True, help="folder with dataset.json, retrieval.json, train.json"
    )
    ap.add_argument("--plots", type=Path, required=True, help="folder with train_loss.csv / val_loss.csv")
    ap.add_argument("--qa", type=Path, required=True, help="QA dataset folder (question examples)")
    ap.add_argument("--out", type=Path, required=True, help="report folder (REPORT.md, figures/)")
    ap.add_argument("--comparison", type=Path, default=None, help="default: <metrics-dir>/comparison.json")
    ap.add_argument("--adapter", type=Path, default=None, help="adapter folder with the resolved axolotl.yaml")
    ap.add_argument("--plot-metrics", type=Path, default=None, help="CSV for `dvc plots`: per-metric bars")
    ap.add_argument("--plot-types", type=Path, default=None, help="CSV for `dvc plots`: per-question-type bars")
    ap.add_argument("--params", type=Path, default=P.DEFAULT_PARAMS)
    args = ap.parse_args(argv)

    params = P.load(args.params, "report", "model", "index", "retrieval", "train", "evaluate", "prompt")
    cfg = params["report"]
    dpi = P.require(cfg, "figure_dpi", int, "report")
    P.require(cfg, "max_example_chars", int, "report")
    base = load_predictions(args.baseline)
    tuned = align(base, load_predictions(args.finetuned))
    comparison = build_comparison(base, tuned, cfg)
    hyper, hyper_src = hyperparameters(args.adapter, params["train"])
    ctx: dict[str, Any] = {
        "params": params,
        "preds": {"baseline": base, "finetuned": tuned},
        "comparison": comparison,
        "dataset": optional_json(args.metrics_dir / "dataset.json"),
        "retrieval": optional_json(args.metrics_dir / "retrieval.json"),
        "train_metrics": optional_json(args.metrics_dir / "train.json"),
        "train_curve": read_curve(args.plots / "train_loss.csv", "loss"),
        "val_curve": read_curve(args.plots / "val_loss.csv", "val_loss"),
        "hyper": hyper,
        "hyper_source": hyper_src,
        "qa_samples": qa_samples(args.qa),
    }
    with atomic_dir(args.out) as tmp:
        make_figures(ctx, tmp / "figures", dpi)
        (tmp / "REPORT.md").write_text(Report(ctx).render(), encoding="utf-8")
    write_json(args.comparison or args.metrics_dir / "comparison.json", comparison)
    metric_rows, type_rows = plot_rows(comparison)
    if args.plot_metrics:
        write_csv(args.plot_metrics, metric_rows)
    if args.plot_types:
        write_csv(args.plot_types, type_rows)
    o = comparison["overall"]
    counts = Counter({m: sum(p["scores"]["correct"] for p in ctx["preds"][m]) for m in MODELS})
    log.info(
        "report: n=%d correct %d -> %d, f1_char %s -> %s (delta %s, CI %s)",
        comparison["n"],
        counts["baseline"],
        counts["finetuned"],
        fmt(o["f1_char"]["baseline"]),
        fmt(o["f1_char"]["finetuned"]),
        fmt_delta(o["f1_char"]["delta"]),
        fmt_ci(o["f1_char"]["ci_low"], o["f1_char"]["ci_high"]),
    )


if __name__ == "__main__":
    run_cli(main)
