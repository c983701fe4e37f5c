"""Aggregates over examples (the metrics file), judge agreement, failure counts and the paired bootstrap."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from .metric_registry import METRICS, _ratio_parts, _safe_div, metric_values
from .records import Prediction
from .scoring import FAILURES


def aggregate(scores: list[dict[str, Any]], preds: list[Prediction]) -> dict[str, Any]:
    """The metrics/eval/<name>.json dict: grouped, short keys (`dvc metrics show` friendly)."""
    values = metric_values(scores, preds)
    out: dict[str, Any] = {
        "n": len(preds),
        "n_answerable": sum(bool(p["answerable"]) for p in preds),
        "n_unanswerable": sum(not p["answerable"] for p in preds),
    }
    for m in METRICS:
        if m.optional and values[m.key] is None:
            continue
        node = out
        for part in m.path[:-1]:
            node = node.setdefault(part, {})
        node[m.path[-1]] = _round(values[m.key])
    latency = [float(p.get("latency_s", 0.0)) for p in preds]
    out["latency_s_p50"] = _round(float(np.median(latency))) if latency else None
    out["failures"] = failure_counts(scores)
    agreement = judge_agreement(scores)
    if agreement is not None:
        out.setdefault("judge", {}).update(agreement)
    return out


def judge_agreement(scores: list[dict[str, Any]]) -> dict[str, Any] | None:
    """How often the LLM judge agrees with the deterministic `correct`: raw agreement, Cohen's kappa, 2x2 counts.

    Only judged examples count (an unparseable verdict is None). Kappa is None
    when it is undefined (both raters gave one single label to everything).
    """
    judged = [s for s in scores if "judge_correct" in s]
    pairs = [(int(bool(s["correct"])), int(s["judge_correct"])) for s in judged if s["judge_correct"] is not None]
    if not judged:
        return None
    out: dict[str, Any] = {"n_judged": len(pairs), "n_unparsed": len(judged) - len(pairs)}
    if not pairs:
        return {**out, "agreement": None, "kappa": None}
    det, jud = (np.array(x) for x in zip(*pairs, strict=True))
    kappa = None
    if len(set(det) | set(jud)) > 1:
        from sklearn.metrics import cohen_kappa_score

        with np.errstate(invalid="ignore", divide="ignore"):
            k = float(cohen_kappa_score(det, jud))
        kappa = _round(k) if np.isfinite(k) else None
    out.update(
        {
            "agreement": _round(float(np.mean(det == jud))),
            "kappa": kappa,
            # rows: deterministic correct (1) / wrong (0); columns: judge correct / wrong
            "both_correct": int(np.sum((det == 1) & (jud == 1))),
            "only_deterministic": int(np.sum((det == 1) & (jud == 0))),
            "only_judge": int(np.sum((det == 0) & (jud == 1))),
            "both_wrong": int(np.sum((det == 0) & (jud == 0))),
        }
    )
    return out


def failure_counts(scores: list[dict[str, Any]]) -> dict[str, int]:
    counts = Counter(s["failure"] for s in scores)
    return {k: counts.get(k, 0) for k in ("ok", *FAILURES)}


def _round(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(float(x), nd)


def get_path(d: dict[str, Any], path: Sequence[str]) -> Any:
    for part in path:
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


# ---------------------------------------------------------------- paired bootstrap
def bootstrap_weights(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n) counts: how often each example is drawn in each resample."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_resamples, n))
    w = np.zeros((n_resamples, n))
    np.add.at(w, (np.arange(n_resamples)[:, None], idx), 1.0)
    return w


def paired_bootstrap(
    base: tuple[np.ndarray, np.ndarray],
    tuned: tuple[np.ndarray, np.ndarray],
    weights: np.ndarray,
    ci: float,
) -> dict[str, float | None]:
    """Delta (tuned − base) of a ratio metric and its percentile CI over paired resamples of examples."""
    (bn, bd), (tn, td) = base, tuned
    b_val, t_val = _safe_div(bn.sum(), bd.sum()), _safe_div(tn.sum(), td.sum())
    if b_val is None or t_val is None:
        return {"baseline": _round(b_val), "finetuned": _round(t_val), "delta": None, "ci_low": None, "ci_high": None}
    with np.errstate(invalid="ignore", divide="ignore"):
        deltas = (weights @ tn) / (weights @ td) - (weights @ bn) / (weights @ bd)
    deltas = deltas[~np.isnan(deltas)]
    alpha = (1.0 - ci) / 2
    lo, hi = np.quantile(deltas, [alpha, 1 - alpha]) if deltas.size else (np.nan, np.nan)
    delta = t_val - b_val
    return {
        "baseline": _round(b_val),
        "finetuned": _round(t_val),
        "delta": _round(delta),
        "ci_low": _round(float(lo)) if np.isfinite(lo) else None,
        "ci_high": _round(float(hi)) if np.isfinite(hi) else None,
    }


def compare(
    base_scores: list[dict[str, Any]],
    tuned_scores: list[dict[str, Any]],
    preds: list[dict[str, Any]],
    tuned_preds: list[dict[str, Any]],
    n_resamples: int,
    seed: int,
    ci: float,
) -> dict[str, dict[str, float | None]]:
    """Paired comparison of every metric; examples must be aligned (same ids, same order)."""
    if [p["id"] for p in preds] != [p["id"] for p in tuned_preds]:
        raise ValueError("baseline and fine-tuned predictions are not aligned by id")
    bparts, tparts = _ratio_parts(base_scores, preds), _ratio_parts(tuned_scores, tuned_preds)
    weights = bootstrap_weights(len(preds), n_resamples, seed)
    return {m.key: paired_bootstrap(bparts[m.key], tparts[m.key], weights, ci) for m in METRICS}
