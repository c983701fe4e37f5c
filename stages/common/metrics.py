"""Answer metrics shared by `evaluate` (per-example scores) and `report` (aggregates, bootstrap CIs).

Everything here is a pure function of strings and numbers, deterministic, offline.
Korean needs care: `rouge_score`'s default tokenizer drops every non-ASCII
character, so a Hangul-only answer scores 0 whatever it says; here overlap is
measured on characters (spaces removed) and on Kiwi content morphemes.

Per-example scores (``score_example``) are stored in predictions.jsonl; every
aggregate is a ratio of two per-example sums (``METRICS``), so the metrics file,
the per-type breakdown and the paired bootstrap all use one definition.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import korean
from .prompting import CITATION, strip_citations

ROUGE_MODULE = Path(__file__).with_name("evaluate_modules") / "korean_rouge.py"

# Numbers that must appear verbatim in the context: 26,000 / 043-641-5532 / 09:00~18:00 / 1.5
_NUMBER = re.compile(r"\d(?:[\d,.:~\-]*\d)?")

FAILURES = ("format", "missed_abstention", "retrieval_miss", "wrong_abstention", "hallucination", "wrong_fact")


# ---------------------------------------------------------------- normalisation
def _is_punct(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "PS"  # punctuation and symbols (→, ~, ₩, ·)


def normalize_answer(text: str) -> str:
    """NFC, citations removed, lower-cased, punctuation/symbols removed, whitespace collapsed."""
    text = unicodedata.normalize("NFC", text or "")
    text = CITATION.sub(" ", text).lower()
    text = "".join(" " if _is_punct(ch) else ch for ch in text)
    return re.sub(r"\s+", " ", text).strip()


def compact(text: str) -> str:
    """Normalised text without spaces (Korean spacing varies and carries no meaning here)."""
    return normalize_answer(text).replace(" ", "")


# ---------------------------------------------------------------- overlap metrics
def exact_match(pred: str, gold: str) -> float:
    return float(normalize_answer(pred) == normalize_answer(gold))


def contains_match(pred: str, gold: str) -> float:
    """Gold (normalised, spaces ignored) appears inside the prediction."""
    g = compact(gold)
    return float(bool(g) and g in compact(pred))


def _f1(pred_tokens: Sequence[str], gold_tokens: Sequence[str]) -> float:
    if not pred_tokens and not gold_tokens:
        return 1.0
    if not pred_tokens or not gold_tokens:
        return 0.0
    common = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if common == 0:
        return 0.0
    p, r = common / len(pred_tokens), common / len(gold_tokens)
    return 2 * p * r / (p + r)


def f1_morph(pred: str, gold: str) -> float:
    """Bag-of-tokens F1 over Kiwi content morphemes (particles and endings ignored)."""
    return _f1(korean.morphemes(strip_citations(pred)), korean.morphemes(strip_citations(gold)))


def f1_char(pred: str, gold: str) -> float:
    """Bag-of-characters F1 over the normalised text without spaces."""
    return _f1(list(compact(pred)), list(compact(gold)))


def lcs_length(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Length of the longest common subsequence (O(len(a)·len(b)) time, O(len(b)) memory)."""
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, start=1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(pred_tokens: Sequence[Any], gold_tokens: Sequence[Any]) -> dict[str, float]:
    """ROUGE-L precision/recall/F1 (beta = 1) over any token sequences."""
    if not pred_tokens and not gold_tokens:
        return {"precision": 1.0, "recall": 1.0, "f": 1.0}
    lcs = lcs_length(pred_tokens, gold_tokens)
    if lcs == 0:
        return {"precision": 0.0, "recall": 0.0, "f": 0.0}
    p, r = lcs / len(pred_tokens), lcs / len(gold_tokens)
    return {"precision": p, "recall": r, "f": 2 * p * r / (p + r)}


def rouge_l_char(pred: str, gold: str) -> float:
    """ROUGE-L F over characters of the normalised text without spaces."""
    return rouge_l(list(compact(pred)), list(compact(gold)))["f"]


def load_rouge_module():
    """The character ROUGE-L as a local `evaluate` module (works offline: no Hub lookup)."""
    import sys

    import evaluate

    root = str(ROUGE_MODULE.parents[3])  # the module imports stages.common.metrics
    if root not in sys.path:
        sys.path.insert(0, root)
    return evaluate.load(str(ROUGE_MODULE))


# ---------------------------------------------------------------- abstention, support, format
def abstained(pred: str, abstain_phrase: str, markers: Iterable[str], window: int = 0) -> bool:
    """The prediction contains the abstention phrase or a close variant (spaces/punctuation ignored).

    Only the first ``window`` characters of the normalised answer are searched
    (0 = all): a base model that echoes the system prompt quotes the phrase
    further on without abstaining.
    """
    text = compact(pred)
    if window > 0:
        text = text[:window]
    needles = [compact(abstain_phrase), *(compact(m) for m in markers)]
    return any(n and n in text for n in needles)


def numbers(text: str) -> list[str]:
    return _NUMBER.findall(unicodedata.normalize("NFC", text))


def support(pred: str, context: str) -> dict[str, Any]:
    """How much of the answer the context backs: numbers verbatim, content morphemes found.

    A morpheme counts as found when it is a content morpheme of the context or a
    substring of the space-free context (Kiwi splits compounds differently in
    different sentences). Numbers (prices, phone numbers, times) must appear verbatim.
    """
    answer = strip_citations(unicodedata.normalize("NFC", pred))
    ctx = unicodedata.normalize("NFC", context)
    nums = numbers(answer)
    missing_numbers = [n for n in nums if n not in ctx]
    morphs = korean.morphemes(answer)
    ctx_morphs = set(korean.morphemes(ctx))
    ctx_flat = re.sub(r"\s+", "", ctx).lower()
    found = [m for m in morphs if m in ctx_morphs or m in ctx_flat]
    share = len(found) / len(morphs) if morphs else 1.0
    return {
        "n_morphemes": len(morphs),
        "share": share,
        "missing_numbers": missing_numbers,
        "missing": [m for m in morphs if m not in found],
    }


def is_supported(pred: str, context: str, min_share: float) -> bool | None:
    """True/False, or None when the answer has nothing to check (empty after stripping citations)."""
    if not normalize_answer(strip_citations(pred)):
        return None
    s = support(pred, context)
    return not s["missing_numbers"] and s["share"] >= min_share


def is_looping(text: str, word_ngram: int, char_ngram: int, repeats: int) -> bool:
    """Some word n-gram, or some character n-gram of the space-free text, occurs ≥ `repeats` times."""
    words = text.split()
    grams = Counter(tuple(words[i : i + word_ngram]) for i in range(len(words) - word_ngram + 1))
    if grams and max(grams.values()) >= repeats:
        return True
    flat = re.sub(r"\s+", "", text)
    chars = Counter(flat[i : i + char_ngram] for i in range(len(flat) - char_ngram + 1))
    return bool(chars) and max(chars.values()) >= repeats


# ---------------------------------------------------------------- per-example scoring
@dataclass(frozen=True)
class ScoreConfig:
    abstain: str  # params prompt.abstain
    abstain_markers: tuple[str, ...]  # evaluate.abstain_markers
    abstain_window: int  # evaluate.abstain_window
    support_min_share: float  # evaluate.support_min_share
    loop_word_ngram: int
    loop_char_ngram: int
    loop_repeats: int
    correct_f1: float  # evaluate.correct_f1: f1_morph at which a non-verbatim answer counts as correct

    @classmethod
    def from_params(cls, evaluate_cfg: dict[str, Any], prompt_cfg: dict[str, Any]) -> ScoreConfig:
        return cls(
            abstain=prompt_cfg["abstain"],
            abstain_markers=tuple(evaluate_cfg["abstain_markers"]),
            abstain_window=int(evaluate_cfg["abstain_window"]),
            support_min_share=float(evaluate_cfg["support_min_share"]),
            loop_word_ngram=int(evaluate_cfg["loop_word_ngram"]),
            loop_char_ngram=int(evaluate_cfg["loop_char_ngram"]),
            loop_repeats=int(evaluate_cfg["loop_repeats"]),
            correct_f1=float(evaluate_cfg["correct_f1"]),
        )


def score_example(pred: dict[str, Any], context: str, cfg: ScoreConfig) -> dict[str, Any]:
    """Per-example scores for one prediction record (see the data contract for its fields).

    Scores that do not apply are None: overlap scores on unanswerable questions,
    citation when the gold chunk was not retrieved, support when the model abstained.
    """
    answer, gold = pred["answer"], pred["gold_answer"]
    answerable = bool(pred["answerable"])
    abst = abstained(answer, cfg.abstain, cfg.abstain_markers, cfg.abstain_window)
    empty = not normalize_answer(answer)
    looping = is_looping(answer, cfg.loop_word_ngram, cfg.loop_char_ngram, cfg.loop_repeats)
    over_length = not pred["hit_eos"]
    # Comparison / multi-hop questions need every one of their chunks retrieved and cited.
    golds = pred.get("gold_chunk_ids") or [pred["gold_chunk_id"]]
    retrieved = all(g in pred["retrieved_ids"] for g in golds)
    s: dict[str, Any] = {
        "em": exact_match(answer, gold) if answerable else None,
        "contains": contains_match(answer, gold) if answerable else None,
        "f1_morph": f1_morph(answer, gold) if answerable else None,
        "f1_char": f1_char(answer, gold) if answerable else None,
        "rouge_l_char": rouge_l_char(answer, gold) if answerable else None,
        "abstained": abst,
        "gold_retrieved": retrieved,
        "citation_ok": all(g in pred["cited_ids"] for g in golds) if answerable and retrieved else None,
        "supported": is_supported(answer, context, cfg.support_min_share) if answerable and not abst else None,
        "empty": empty,
        "looping": looping,
        "over_length": over_length,
        "format_fail": empty or looping or over_length,
    }
    s["failure"] = classify_failure(pred, s, cfg.correct_f1)
    s["correct"] = s["failure"] == "ok"
    return s


def classify_failure(pred: dict[str, Any], s: dict[str, Any], correct_f1: float) -> str:
    """One failure label per example (first that applies), or 'ok'.

    format (empty or looping) → missed_abstention (unanswerable, answered) →
    retrieval_miss (gold not retrieved, not answered correctly) → wrong_abstention →
    hallucination (answer not supported by the context) → wrong_fact (supported but
    not the gold answer). A right answer that ran past max_new_tokens without EOS is
    a format failure too; a wrong one keeps its content label, so a model that never
    stops still shows what it got wrong.
    """
    if s["empty"] or s["looping"]:
        return "format"
    label = _content_failure(pred, s, correct_f1)
    return "format" if label == "ok" and s["over_length"] else label


def _content_failure(pred: dict[str, Any], s: dict[str, Any], correct_f1: float) -> str:
    if not pred["answerable"]:
        return "ok" if s["abstained"] else "missed_abstention"
    correct = not s["abstained"] and (s["contains"] or s["em"] or s["f1_morph"] >= correct_f1)
    if correct:
        return "ok"
    if not s["gold_retrieved"]:
        return "retrieval_miss"
    if s["abstained"]:
        return "wrong_abstention"
    if s["supported"] is False:
        return "hallucination"
    return "wrong_fact"


# ---------------------------------------------------------------- aggregates
@dataclass(frozen=True)
class Metric:
    key: str  # short id used in comparison.json and the report
    path: tuple[str, ...]  # where it sits in metrics/eval/<name>.json
    higher_is_better: bool | None  # None: no better direction (e.g. how often a model abstains)


def _v(x: Any) -> float:
    return float("nan") if x is None else float(x)


def _ratio_parts(scores: list[dict[str, Any]], preds: list[dict[str, Any]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-example (numerator, denominator) pairs; metric = sum(num) / sum(den)."""
    n = len(scores)
    ones = np.ones(n)

    def mean_of(key: str) -> tuple[np.ndarray, np.ndarray]:
        vals = np.array([_v(s.get(key)) for s in scores], dtype=float)  # .get: judge_correct only when judged
        mask = ~np.isnan(vals)
        return np.where(mask, vals, 0.0), mask.astype(float)

    unans = np.array([not p["answerable"] for p in preds], dtype=float)
    abst = np.array([bool(s["abstained"]) for s in scores], dtype=float)
    tp, fp, fn = unans * abst, (1 - unans) * abst, unans * (1 - abst)
    latency = np.array([float(p.get("latency_s", 0.0)) for p in preds])
    tokens = np.array([float(p.get("new_tokens", 0)) for p in preds])
    parts = {
        k: mean_of(k)
        for k in ("em", "contains", "f1_morph", "f1_char", "rouge_l_char", "citation_ok", "supported", "judge_correct")
    }
    parts.update(
        {
            "abstain_p": (tp, tp + fp),
            "abstain_r": (tp, tp + fn),
            "abstain_f1": (2 * tp, 2 * tp + fp + fn),
            "abstain_rate": (abst, ones),
            "correct": (np.array([float(s["correct"]) for s in scores]), ones),
            "format_fail": (np.array([float(s["format_fail"]) for s in scores]), ones),
            "empty": (np.array([float(s["empty"]) for s in scores]), ones),
            "looping": (np.array([float(s["looping"]) for s in scores]), ones),
            "over_length": (np.array([float(s["over_length"]) for s in scores]), ones),
            "latency_s": (latency, ones),
            "tokens_per_s": (tokens, latency),
        }
    )
    return parts


METRICS: tuple[Metric, ...] = (
    Metric("correct", ("correct",), True),
    Metric("em", ("answer", "em"), True),
    Metric("contains", ("answer", "contains"), True),
    Metric("f1_morph", ("answer", "f1_morph"), True),
    Metric("f1_char", ("answer", "f1_char"), True),
    Metric("rouge_l_char", ("answer", "rouge_l_char"), True),
    Metric("abstain_p", ("abstention", "precision"), True),
    Metric("abstain_r", ("abstention", "recall"), True),
    Metric("abstain_f1", ("abstention", "f1"), True),
    Metric("abstain_rate", ("abstention", "rate"), None),
    Metric("citation_ok", ("citation_acc",), True),
    Metric("supported", ("faithfulness",), True),
    Metric("format_fail", ("format", "fail_rate"), False),
    Metric("empty", ("format", "empty"), False),
    Metric("looping", ("format", "looping"), False),
    Metric("over_length", ("format", "over_length"), False),
    Metric("latency_s", ("latency_s_mean",), False),
    Metric("tokens_per_s", ("tokens_per_s",), True),
    Metric("judge_correct", ("judge", "correct"), True),
)
BY_KEY = {m.key: m for m in METRICS}
# Present only when the optional LLM judge ran: left out of the metrics file otherwise.
OPTIONAL_KEYS = frozenset({"judge_correct"})


def _safe_div(num: float, den: float) -> float | None:
    return float(num / den) if den > 0 else None


def metric_values(scores: list[dict[str, Any]], preds: list[dict[str, Any]]) -> dict[str, float | None]:
    """Flat {metric key: value}; None where the metric has no examples (e.g. no unanswerable questions)."""
    if not scores:
        return {m.key: None for m in METRICS}
    parts = _ratio_parts(scores, preds)
    return {m.key: _safe_div(parts[m.key][0].sum(), parts[m.key][1].sum()) for m in METRICS}


def aggregate(scores: list[dict[str, Any]], preds: list[dict[str, Any]]) -> dict[str, Any]:
    """The metrics/eval/<name>.json dict: grouped, short keys (`dvc metrics show` friendly)."""
    values = metric_values(scores, preds)
    out: dict[str, Any] = {
        "n": len(preds),
        "n_answerable": sum(bool(p["answerable"]) for p in preds),
        "n_unanswerable": sum(not p["answerable"] for p in preds),
    }
    for m in METRICS:
        if m.key in OPTIONAL_KEYS and values[m.key] is None:
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
