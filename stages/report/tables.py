"""Markdown tables and number formatting for the report (the template uses the formatters as filters)."""

from __future__ import annotations

from typing import Any

from stages.common import metrics as M
from stages.common.records import Prediction, gold_ids
from stages.report.compare import (
    FAILURE_DOCS,
    MODEL_KO,
    MODELS,
    PAIRS,
    _pair_key,
    failure_label,
    label,
    pick_examples,
    quality_keys,
)


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


def example_blocks(preds: dict[str, list[Prediction]], ref_model: str, limit: int) -> list[dict[str, Any]]:
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
        golds = gold_ids(b, prefix="gold_")
        blocks.append(
            {
                "why": why,
                "id": b["id"],
                "type": b["type"],
                "style": b.get("style") or "–",
                "question": cell(b["question"]),
                "gold": cell(b["gold_answer"]),
                "gold_ids": ", ".join(f"`{g}`" for g in golds) or "–",
                "retrieved": ", ".join(f"`{x}`" for x in b["retrieved_ids"]),
                "hit": "포함" if golds and all(g in b["retrieved_ids"] for g in golds) else "없음",
                "answers": md_table(["모델", "답변"], rows),
                "scores": md_table(["지표", *[MODEL_KO[m] for m in preds]], scores),
            }
        )
    return blocks


def failure_examples(preds: dict[str, list[Prediction]], field: str | None, limit: int) -> list[list[str]]:
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


def style_table(t: dict[str, Any]) -> str:
    """Per question style: n, correct per model (and key-fact recall where measured), the fine-tune's top failure."""
    # a style with only unanswerable questions has no key-fact recall: its cells are "–", not missing
    has_kfr = any("key_fact_recall" in sub for sub in t["by_style"].values())
    rows = []
    for style, sub in t["by_style"].items():
        rows.append(
            [
                style,
                sub["n"],
                *[fmt(sub.get("correct", {}).get(m)) for m in MODELS],
                *([fmt(sub.get("key_fact_recall", {}).get(m)) for m in MODELS] if has_kfr else []),
                top_failure(sub["failures"]["finetuned"]) or "–",
            ]
        )
    headers = ["스타일", "n", *[f"정답률 {MODEL_KO[m]}" for m in MODELS]]
    if has_kfr:
        headers += [f"핵심 사실 재현율 {MODEL_KO[m]}" for m in MODELS]
    headers.append("파인튜닝의 가장 흔한 실패")
    return md_table(headers, rows)


def type_table(t: dict[str, Any]) -> str:
    rows = [
        [
            qtype,
            sub["n"],
            *[fmt(sub.get("correct", {}).get(m)) for m in MODELS],
            *[fmt(sub.get("f1_char", {}).get(m)) for m in MODELS],
        ]
        for qtype, sub in t["by_type"].items()
    ]
    return md_table(
        ["유형", "n", *[f"정답률 {MODEL_KO[m]}" for m in MODELS], *[f"문자 F1 {MODEL_KO[m]}" for m in MODELS]], rows
    )


def failure_table(t: dict[str, Any]) -> str:
    rows = [
        [failure_label(k), FAILURE_DOCS[k][1], *[t["failures"].get(m, {}).get(k, "–") for m in MODELS]]
        for k in M.FAILURES
    ] + [["정상(ok)", "실패 없음", *[t["failures"].get(m, {}).get("ok", "–") for m in MODELS]]]
    return md_table(["유형", "정의", *[MODEL_KO[m] for m in MODELS]], rows)


def cost_table(t: dict[str, Any]) -> str:
    rows = [
        [
            MODEL_KO[m],
            fmt(t["cost"][m]["fewshot_k"]),
            fmt(t["cost"][m]["prompt_tokens_mean"], 1),
            fmt(t["cost"][m]["wall_seconds"], 1),
            fmt(t["values"].get("latency_s", {}).get(m), 2),
        ]
        for m in t["models"]
    ]
    return md_table(["모델", "few-shot k", "프롬프트 토큰(평균)", "평가 전체 시간(s)", "질문당 지연(s)"], rows)


def judge_table(t: dict[str, Any]) -> str:
    """LLM judge vs deterministic `correct` per model ('' when the judge did not run)."""
    rows = [
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
        for m, a in (t.get("judge_agreement") or {}).items()
        if a
    ]
    headers = ["모델", "판정 수", "판정 실패", "일치율", "κ", "둘 다 정답", "결정적만 정답", "LLM만 정답", "둘 다 오답"]
    return md_table(headers, rows) if rows else ""


def top_failure(counts: dict[str, int]) -> str | None:
    """'label (n건)' of the most frequent failure type (first in M.FAILURES order on ties); None without failures."""
    if not any(counts.get(k, 0) for k in M.FAILURES):
        return None
    key = max(M.FAILURES, key=lambda k: (counts.get(k, 0), -M.FAILURES.index(k)))
    return f"{failure_label(key)} {counts[key]}건"
