"""The report's numbers: loading every model x test set, paired-bootstrap comparisons, targets, plot rows.

Pure functions of predictions and params (no text, no figures): ``metrics/comparison.json`` is
``build_comparison``'s output. Metric rows come from ``stages.common.metrics.METRICS``.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

from stages.common import metrics as M
from stages.common.errors import UserError
from stages.common.io import atomic_path, read_json, read_jsonl
from stages.common.params_schema import Report
from stages.common.records import Prediction, gold_ids

log = logging.getLogger("report")

MODELS = ("baseline", "baseline_fewshot", "finetuned")
TESTSETS = ("template", "natural")
REQUIRED = ("baseline", "finetuned")  # a test set that runs at all must have these two
# The comparisons the report makes: fine-tuned minus each baseline.
PAIRS = (("finetuned", "baseline"), ("finetuned", "baseline_fewshot"))
MODEL_KO = {"baseline": "베이스라인(zero-shot)", "baseline_fewshot": "베이스라인(few-shot)", "finetuned": "파인튜닝"}
TESTSET_KO = {"template": "템플릿 테스트셋", "natural": "자연 질문 테스트셋"}


def metric_doc(key: str) -> tuple[str, str, str]:
    """(label, definition, why) of a metric key, from the metric registry (stages.common.metrics.METRICS):
    the scorer's own words, so the report cannot drift from what is computed; '–' where absent."""
    m = M.BY_KEY.get(key)
    return (m.label or key, m.definition or "–", m.why or "–") if m else (key, "–", "–")


FAILURE_DOCS: dict[str, tuple[str, str]] = {
    "format": ("형식 실패", "빈 답·반복, 또는 내용은 맞지만 EOS 없이 길이 한도 도달"),
    "missed_abstention": ("기권 누락", "답이 없는 질문에 답을 지어냄"),
    "retrieval_miss": ("검색 실패", "정답 청크가 top-k에 없어 맞히지 못함"),
    "wrong_abstention": ("잘못된 기권", "정답 청크가 문맥에 있는데 기권"),
    "hallucination": ("환각", "답의 숫자/내용이 문맥에 없음"),
    "wrong_fact": ("오답", "문맥에 있는 내용이지만 정답이 아님"),
}


def label(key: str) -> str:
    return metric_doc(key)[0]


def quality_keys() -> list[str]:
    """The main table's metrics; the rest (behaviour or cost rather than answer quality) go to the detail table."""
    return [m.key for m in M.METRICS if not m.detail]


def detail_keys() -> list[str]:
    return [m.key for m in M.METRICS if m.detail]


def failure_label(key: str) -> str:
    return FAILURE_DOCS.get(key, (key, ""))[0] if key != "ok" else "정상"


# ---------------------------------------------------------------- loading
def load_predictions(path: Path) -> list[Prediction] | None:
    """Predictions of one model on one test set; None when the run is absent or was skipped (empty file)."""
    if not path.is_file():
        return None
    preds = read_jsonl(path)
    if not preds:
        return None
    if any("scores" not in p for p in preds):
        raise UserError(f"{path}: predictions without scores (re-run the evaluate stage)")
    return preds


def align(ref: list[Prediction], other: list[Prediction], what: str) -> list[Prediction]:
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
    ref: list[dict[str, Any]], tuned: list[dict[str, Any]], cfg: Report
) -> dict[str, dict[str, float | None]]:
    """Every metric of METRICS: reference and fine-tuned values, delta (tuned − ref) and its paired-bootstrap CI."""
    raw = M.compare(
        [p["scores"] for p in ref],
        [p["scores"] for p in tuned],
        ref,
        tuned,
        cfg.n_resamples,
        cfg.seed,
        float(cfg.ci),
    )
    out = {}
    for key, r in raw.items():
        if M.BY_KEY[key].optional and r["baseline"] is None and r["finetuned"] is None:
            continue  # optional metric (LLM judge) not produced: left out, as in the metrics files
        out[key] = {
            "reference": r["baseline"],
            "finetuned": r["finetuned"],
            "delta": r["delta"],
            "ci_low": r["ci_low"],
            "ci_high": r["ci_high"],
        }
    return out


def values_by_group(preds: dict[str, list[Prediction]], field: str) -> dict[str, dict[str, Any]]:
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


def citation_misses(preds: list[Prediction]) -> dict[str, int]:
    """Where wrong citations come from: of the answers whose citation was scored, how many missed, how many of those
    had a gold chunk ranked first in the context and cited only other chunks (an id mix-up among retrieved chunks
    rather than a retrieval failure), and how many of those answers were correct all the same."""
    scored = [p for p in preds if p["scores"].get("citation_ok") is not None]
    missed = [p for p in scored if not p["scores"]["citation_ok"]]

    def gold_first_other_cited(p: Prediction) -> bool:
        golds, retrieved, cited = set(gold_ids(p, "gold_")), p.get("retrieved_ids") or [], p.get("cited_ids") or []
        return bool(retrieved) and retrieved[0] in golds and bool(cited) and not golds & set(cited)

    gold_first = [p for p in missed if gold_first_other_cited(p)]
    return {
        "scored": len(scored),
        "missed": len(missed),
        "gold_first_other_cited": len(gold_first),
        "gold_first_other_cited_correct": sum(bool(p["scores"].get("correct")) for p in gold_first),
    }


def build_testset(run: dict[str, Any], cfg: Report) -> dict[str, Any]:
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
        if mm.optional and all(v is None for v in vals.values()):
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
    out["citation_misses"] = {m: citation_misses(ps) for m, ps in preds.items()}
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


def build_comparison(runs: dict[str, dict[str, Any]], cfg: Report) -> dict[str, Any]:
    """metrics/comparison.json: per test set, values of all models and the fine-tuned − baseline pairs."""
    out: dict[str, Any] = {
        "ci": float(cfg.ci),
        "n_resamples": cfg.n_resamples,
        "seed": cfg.seed,
        "testsets": {},
    }
    for ts, run in runs.items():
        out["testsets"][ts] = (
            {"skipped": True, "reason": run["skipped"]} if "skipped" in run else build_testset(run, cfg)
        )
    out["targets"] = check_targets(out, cfg.get("targets") or {})
    return out


def finetuned_values(comp: dict[str, Any]) -> dict[str, float | None]:
    """The fine-tune's value of every metric of the test sets that ran, keyed '<testset>.<metric>'
    (wrong_abstention_share included): what scripts/seed_spread.py records per training and REPORT.md matches."""
    out: dict[str, float | None] = {}
    for ts, t in comp["testsets"].items():
        if t.get("skipped"):
            continue
        out.update({f"{ts}.{key}": vals.get("finetuned") for key, vals in t["values"].items()})
        out[f"{ts}.wrong_abstention_share"] = (t.get("wrong_abstention_share") or {}).get("finetuned")
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
def pick_examples(base: list[Prediction], tuned: list[Prediction]) -> list[tuple[str, int]]:
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
